import { describe, expect, it, vi } from 'vitest';
import { PlaybackReporter, RefusedReport, newSessionId, type PlaybackReport, type ReportAnswer } from '../../src/lib/playback/reporter';

/** A server stand-in that records reports and answers (or fails) as told. */
function server() {
  const got: PlaybackReport[] = [];
  let fail: Error | null = null;
  return {
    got,
    failNext(e: Error) {
      fail = e;
    },
    send: async (r: PlaybackReport): Promise<ReportAnswer> => {
      got.push({ ...r });
      if (fail) {
        const e = fail;
        fail = null;
        throw e;
      }
      const watched = got.filter((g) => g.sequence === r.sequence).length === 1 ? r.watchedSeconds : 0;
      return { applied: true, viewCounted: watched > 0 && r.sequence === 3 };
    },
  };
}

function play(r: PlaybackReporter, from: number, to: number, step = 0.25) {
  for (let t = from; t <= to + 1e-9; t += step) r.time(t, true);
}

describe('playback reporter', () => {
  it('reports the start, then the media time watched while playing', async () => {
    const s = server();
    const r = new PlaybackReporter('v1', s.send, 'session-1');
    r.time(0, false);
    await r.flush();
    expect(s.got[0]).toMatchObject({ videoId: 'v1', sessionId: 'session-1', sequence: 1, positionSeconds: 0, watchedSeconds: 0 });
    play(r, 0, 10);
    r.playingRendition('720p');
    await r.flush();
    expect(s.got[1]).toMatchObject({ sequence: 2, positionSeconds: 10, watchedSeconds: 10, rendition: '720p' });
    await r.flush();
    expect(s.got).toHaveLength(2); // nothing new: nothing sent
  });

  it('counts no time for seeks or while paused', async () => {
    const s = server();
    const r = new PlaybackReporter('v1', s.send);
    play(r, 0, 5);
    r.seeked(60);
    play(r, 60, 62);
    r.time(300, true); // a jump without a seeking event is not watching either
    r.time(301, false);
    expect(r.unreported).toBeCloseTo(7, 5);
    await r.flush();
    expect(s.got[0]).toMatchObject({ sequence: 1, positionSeconds: 301, watchedSeconds: 7 });
  });

  it('sends a failed report again as it was, and what was watched meanwhile after it', async () => {
    const s = server();
    const r = new PlaybackReporter('v1', s.send);
    play(r, 0, 4);
    s.failNext(new Error('network'));
    await r.flush();
    play(r, 4, 6);
    await r.flush();
    await r.flush();
    expect(s.got.map((g) => [g.sequence, g.watchedSeconds])).toEqual([
      [1, 4],
      [1, 4],
      [2, 2],
    ]);
    expect(r.unreported).toBe(0);
  });

  it('drops a report the server refused for good', async () => {
    const s = server();
    const r = new PlaybackReporter('v1', s.send);
    play(r, 0, 3);
    s.failNext(new RefusedReport('no such video'));
    await r.flush();
    expect(r.unreported).toBe(0);
    await r.flush();
    expect(s.got).toHaveLength(1);
  });

  it('sends one report at a time, in order', async () => {
    const order: number[] = [];
    let release: () => void = () => {};
    const slow = (rep: PlaybackReport) =>
      new Promise<ReportAnswer>((resolve) => {
        order.push(rep.sequence);
        release = () => resolve({ applied: true, viewCounted: false });
      });
    const r = new PlaybackReporter('v1', slow);
    play(r, 0, 2);
    const first = r.flush();
    play(r, 2, 4);
    const second = r.flush();
    await Promise.resolve();
    expect(order).toEqual([1]);
    release();
    await first;
    await vi.waitFor(() => expect(order).toEqual([1, 2])); // sent once the first answered
    release();
    await second;
    expect(order).toEqual([1, 2]);
  });

  it('remembers that the playback became a view', async () => {
    const s = server();
    const r = new PlaybackReporter('v1', s.send);
    for (let i = 0; i < 3; i++) {
      play(r, i * 10, i * 10 + 10);
      await r.flush();
    }
    expect(r.viewCounted).toBe(true);
  });

  it('makes random session ids the server accepts', () => {
    const a = newSessionId();
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(newSessionId()).not.toBe(a);
  });
});
