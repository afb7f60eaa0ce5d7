import { describe, expect, it } from 'vitest';
import { parseStoryboard, tileAt } from '../../src/lib/storyboard';
import { ago, bytes, count, duration, eta } from '../../src/lib/format';

describe('storyboard', () => {
  const vtt = `WEBVTT

00:00:00.000 --> 00:00:02.000
storyboard.jpg#xywh=0,0,160,90

00:00:02.000 --> 00:00:04.000
storyboard.jpg#xywh=160,0,160,90

00:00:04.000 --> 00:00:06.500
storyboard.jpg#xywh=0,90,160,90
`;

  it('parses tiles and resolves the sprite against the index URL', () => {
    const board = parseStoryboard(vtt, 'http://127.0.0.1:8080/video/v1/hls/thumbs/storyboard.vtt');
    expect(board.tiles).toHaveLength(3);
    expect(board.tiles[1]).toMatchObject({ start: 2, end: 4, x: 160, y: 0, w: 160, h: 90 });
    expect(board.tiles[0]!.url).toBe('http://127.0.0.1:8080/video/v1/hls/thumbs/storyboard.jpg');
    expect(board.width).toBe(320);
    expect(board.height).toBe(180);
  });

  it('finds the tile for a time', () => {
    const board = parseStoryboard(vtt, 'http://x/a.vtt');
    expect(tileAt(board, 3)?.x).toBe(160);
    expect(tileAt(board, 99)?.y).toBe(90);
    expect(tileAt(parseStoryboard('WEBVTT\n', 'http://x/'), 1)).toBeNull();
  });
});

describe('format', () => {
  it('durations', () => {
    expect(duration(9.6)).toBe('0:10');
    expect(duration(3725)).toBe('1:02:05');
    expect(duration(null)).toBe('');
  });
  it('counts', () => {
    expect(count(1, 'view')).toBe('1 view');
    expect(count(0, 'view')).toBe('0 views');
    expect(count(1500, 'view')).toBe('1.5K views');
  });
  it('relative times', () => {
    const now = Date.parse('2026-12-06T12:00:00Z');
    expect(ago('2026-12-06T11:59:50Z', now)).toBe('just now');
    expect(ago('2026-12-06T09:00:00Z', now)).toBe('3 hours ago');
    expect(ago('2026-12-04T12:00:00Z', now)).toBe('2 days ago');
    expect(ago(null, now)).toBe('');
  });
  it('sizes and ETAs', () => {
    expect(bytes(512)).toBe('512 B');
    expect(bytes(5 * 1024 * 1024)).toBe('5.0 MiB');
    expect(eta(12.2)).toBe('about 13 s left');
    expect(eta(0)).toBe('');
  });
});
