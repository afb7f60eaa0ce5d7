import { describe, expect, it } from 'vitest';
import {
  checkFile,
  initialUpload,
  reduceUpload,
  stageLabel,
  uploadPercent,
  type UploadEvent,
  type UploadState,
} from '../../src/lib/upload/state';
import { fingerprintFor, shouldRetry } from '../../src/lib/upload/tus';
import { makeProblem } from '../../src/lib/api/errors';

function run(events: UploadEvent[], from: UploadState = initialUpload): UploadState {
  return events.reduce(reduceUpload, from);
}

const created: UploadEvent[] = [
  { type: 'create', title: 'Clip', bytesTotal: 1000 },
  { type: 'created', videoId: 'v1' },
];

describe('upload state', () => {
  it('goes from the form through the upload and processing to ready', () => {
    let s = run(created);
    expect(s.phase).toBe('uploading');
    s = run([{ type: 'progress', bytesSent: 250, bytesTotal: 1000 }], s);
    expect(uploadPercent(s)).toBe(25);
    s = run([{ type: 'uploaded' }], s);
    expect(s.phase).toBe('processing');
    expect(s.stage).toBe('queued');
    s = run([{ type: 'stage', stage: 'encoding', percent: 40, rendition: '720p', etaSeconds: 5 }], s);
    expect(s).toMatchObject({ phase: 'processing', stage: 'encoding', stagePercent: 40, rendition: '720p', etaSeconds: 5 });
    s = run([{ type: 'stage', stage: 'ready', percent: 100 }], s);
    expect(s.phase).toBe('ready');
    expect(s.stagePercent).toBe(100);
  });

  it('remembers stages that arrive while bytes are still going out, without leaving the upload', () => {
    let s = run([...created, { type: 'stage', stage: 'awaiting_upload', percent: 0 }]);
    expect(s.phase).toBe('uploading');
    s = run([{ type: 'stage', stage: 'downloading', percent: 0 }], s); // the server finished first
    expect(s.phase).toBe('uploading');
    s = run([{ type: 'uploaded' }], s);
    expect(s.phase).toBe('processing');
    expect(s.stage).toBe('downloading');
  });

  it('a stream already at ready before tus reports success ends ready', () => {
    const s = run([...created, { type: 'stage', stage: 'ready', percent: 100 }, { type: 'uploaded' }]);
    expect(s.phase).toBe('ready');
  });

  it('a failed transcode keeps its reason', () => {
    const s = run([...created, { type: 'uploaded' }, { type: 'stage', stage: 'failed', percent: 0, error: 'no video stream' }]);
    expect(s.phase).toBe('failed');
    expect(s.failure).toBe('no video stream');
  });

  it('nothing moves a finished upload (late or repeated messages)', () => {
    const done = run([...created, { type: 'uploaded' }, { type: 'stage', stage: 'ready', percent: 100 }]);
    expect(run([{ type: 'stage', stage: 'encoding', percent: 10 }], done)).toBe(done);
    expect(run([{ type: 'progress', bytesSent: 1, bytesTotal: 1000 }], done)).toBe(done);
    expect(run([{ type: 'uploadFailed', problem: makeProblem({ code: 'NETWORK' }) }], done)).toBe(done);
  });

  it('pauses and resumes only an upload in flight', () => {
    let s = run([...created, { type: 'pause' }]);
    expect(s.phase).toBe('paused');
    s = run([{ type: 'progress', bytesSent: 10, bytesTotal: 1000 }], s);
    expect(s.phase).toBe('paused'); // a progress event from an aborted request does not unpause
    s = run([{ type: 'resume' }], s);
    expect(s.phase).toBe('uploading');
    expect(run([{ type: 'pause' }])).toEqual(initialUpload);
  });

  it('waits for the network and carries on', () => {
    let s = run([...created, { type: 'progress', bytesSent: 500, bytesTotal: 1000 }, { type: 'offline' }]);
    expect(s.phase).toBe('offline');
    s = run([{ type: 'online' }, { type: 'progress', bytesSent: 600, bytesTotal: 1000 }], s);
    expect(s.phase).toBe('uploading');
    expect(s.bytesSent).toBe(600);
  });

  it('a refused create goes back to the form with the problem (fields included)', () => {
    const problem = makeProblem({ code: 'BAD_USER_INPUT', fields: { title: 'must be 1 to 100 characters' } });
    const s = run([{ type: 'create', title: '', bytesTotal: 1 }, { type: 'createFailed', problem }]);
    expect(s.phase).toBe('idle');
    expect(s.problem?.fields['title']).toBe('must be 1 to 100 characters');
  });

  it('a refused upload can be resumed once the cause is fixed (e.g. signed in again)', () => {
    let s = run([...created, { type: 'uploadFailed', problem: makeProblem({ code: 'UNAUTHENTICATED' }) }]);
    expect(s.phase).toBe('error');
    s = run([{ type: 'resume' }], s);
    expect(s.phase).toBe('uploading');
    expect(s.problem).toBeNull();
  });

  it('records who ended the progress stream, once', () => {
    let s = run([...created, { type: 'streamEnded', by: 'server' }]);
    s = run([{ type: 'streamEnded', by: 'client' }], s);
    expect(s.streamEnd).toBe('server');
  });

  it('a broken progress stream is shown but does not stop the upload', () => {
    const s = run([...created, { type: 'streamFailed', problem: makeProblem({ code: 'NETWORK' }) }]);
    expect(s.phase).toBe('uploading');
    expect(s.problem?.code).toBe('NETWORK');
  });

  it('follows an existing video without an upload', () => {
    const s = run([{ type: 'follow', videoId: 'v9', title: 'Old' }, { type: 'stage', stage: 'encoding', percent: 50 }]);
    expect(s).toMatchObject({ phase: 'processing', videoId: 'v9', stage: 'encoding', stagePercent: 50 });
  });

  it('clamps bytes and percents', () => {
    const s = run([...created, { type: 'progress', bytesSent: 5000, bytesTotal: 1000 }]);
    expect(uploadPercent(s)).toBe(100);
    const t = run([{ type: 'uploaded' }, { type: 'stage', stage: 'encoding', percent: 140 }], s);
    expect(t.stagePercent).toBe(100);
  });

  it('names every stage for people', () => {
    for (const stage of ['awaiting_upload', 'queued', 'downloading', 'probing', 'encoding', 'thumbnails', 'uploading', 'ready', 'failed']) {
      expect(stageLabel(stage)).not.toContain('_');
    }
    expect(stageLabel('uploading')).toBe('Storing the renditions');
  });

  it('checks the chosen file before anything is sent', () => {
    expect(checkFile(null)).toMatch(/choose/i);
    expect(checkFile({ name: 'a.mp4', type: 'video/mp4', size: 0 })).toMatch(/empty/);
    expect(checkFile({ name: 'a.png', type: 'image/png', size: 10 })).toMatch(/not a video/);
    expect(checkFile({ name: 'a.mkv', type: '', size: 10 })).toBeNull();
    expect(checkFile({ name: 'a.mp4', type: 'video/mp4', size: 10 })).toBeNull();
  });
});

describe('tus retries', () => {
  it('retries server errors, dropped connections and tus conflicts', () => {
    expect(shouldRetry(0, true, true)).toBe('retry');
    expect(shouldRetry(502, true, true)).toBe('retry');
    expect(shouldRetry(409, true, true)).toBe('retry');
    expect(shouldRetry(423, true, true)).toBe('retry');
    expect(shouldRetry(460, true, true)).toBe('retry');
  });

  it('refreshes the token on a 401 when signed in, gives up when not', () => {
    expect(shouldRetry(401, true, true)).toBe('refresh-and-retry');
    expect(shouldRetry(401, true, false)).toBe('give-up');
  });

  it('gives up on refusals the user must act on', () => {
    for (const status of [400, 403, 404, 410, 413, 415]) expect(shouldRetry(status, true, true)).toBe('give-up');
  });

  it('waits for the network instead of spending retries offline', () => {
    expect(shouldRetry(0, false, true)).toBe('wait-for-network');
  });

  it('fingerprints files per user', () => {
    const file = { name: 'clip.mp4', type: 'video/mp4', size: 10, lastModified: 5 };
    expect(fingerprintFor('u1', file)).not.toBe(fingerprintFor('u2', file));
    expect(fingerprintFor('u1', file)).toBe(fingerprintFor('u1', { ...file }));
  });
});
