// The upload page's state: a pure reducer over what happens to one video, from createVideo
// through the tus upload to the transcoder's progress (Subscription.videoProgress), so the
// rules (what a late progress message may change, when pause is allowed, what counts as
// done) are tested without a browser.

import type { Problem } from '../api/errors';

export type Phase =
  | 'idle' // the form
  | 'creating' // createVideo sent
  | 'uploading' // bytes going out
  | 'paused' // stopped by the user, resumable
  | 'offline' // stopped by a lost network, resumes by itself
  | 'processing' // all bytes stored, the transcoder is at work
  | 'ready' // playable
  | 'failed' // the transcoder gave up (failure reason from the server)
  | 'error'; // the app could not go on (create refused, upload refused)

export interface UploadState {
  phase: Phase;
  videoId: string | null;
  title: string;
  bytesSent: number;
  bytesTotal: number;
  /** The transcoder's stage (videoProgress.stage) and its percent. */
  stage: string | null;
  stagePercent: number;
  rendition: string | null;
  etaSeconds: number | null;
  /** Why the transcode failed (owner only), when phase is 'failed'. */
  failure: string | null;
  problem: Problem | null;
  /** How the progress stream ended: by the server (complete) or closed by the app. */
  streamEnd: 'server' | 'client' | null;
}

export type UploadEvent =
  | { type: 'create'; title: string; bytesTotal: number }
  | { type: 'created'; videoId: string }
  | { type: 'createFailed'; problem: Problem }
  | { type: 'resumeFound'; videoId: string; title: string; bytesTotal: number }
  | { type: 'follow'; videoId: string; title: string }
  | { type: 'progress'; bytesSent: number; bytesTotal: number }
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'offline' }
  | { type: 'online' }
  | { type: 'uploaded' }
  | { type: 'uploadFailed'; problem: Problem }
  | {
      type: 'stage';
      stage: string;
      percent: number;
      rendition?: string | null;
      etaSeconds?: number | null;
      error?: string | null;
    }
  | { type: 'streamEnded'; by: 'server' | 'client' }
  | { type: 'streamFailed'; problem: Problem }
  | { type: 'reset' };

export const initialUpload: UploadState = {
  phase: 'idle',
  videoId: null,
  title: '',
  bytesSent: 0,
  bytesTotal: 0,
  stage: null,
  stagePercent: 0,
  rendition: null,
  etaSeconds: null,
  failure: null,
  problem: null,
  streamEnd: null,
};

/** Stages before the transcoder has the whole file (the stream starts with one of these). */
const BEFORE_UPLOAD = new Set(['awaiting_upload']);
const TERMINAL = new Set(['ready', 'failed']);

export function isTerminal(phase: Phase): boolean {
  return phase === 'ready' || phase === 'failed' || phase === 'error';
}

export function reduceUpload(state: UploadState, event: UploadEvent): UploadState {
  switch (event.type) {
    case 'create':
      return { ...initialUpload, phase: 'creating', title: event.title, bytesTotal: event.bytesTotal };
    case 'created':
      return state.phase === 'creating' ? { ...state, phase: 'uploading', videoId: event.videoId } : state;
    case 'createFailed':
      return state.phase === 'creating' ? { ...state, phase: 'idle', problem: event.problem } : state;
    case 'resumeFound':
      return {
        ...initialUpload,
        phase: 'uploading',
        videoId: event.videoId,
        title: event.title,
        bytesTotal: event.bytesTotal,
      };
    case 'follow':
      // An existing video's processing, watched without an upload from this page.
      return { ...initialUpload, phase: 'processing', videoId: event.videoId, title: event.title };
    case 'progress':
      if (state.phase !== 'uploading' && state.phase !== 'offline') return state;
      return {
        ...state,
        phase: 'uploading',
        problem: null,
        bytesSent: Math.max(0, Math.min(event.bytesSent, event.bytesTotal)),
        bytesTotal: event.bytesTotal,
      };
    case 'pause':
      return state.phase === 'uploading' || state.phase === 'offline' ? { ...state, phase: 'paused' } : state;
    case 'resume':
      return state.phase === 'paused' || state.phase === 'offline' || (state.phase === 'error' && state.videoId)
        ? { ...state, phase: 'uploading', problem: null }
        : state;
    case 'offline':
      return state.phase === 'uploading' ? { ...state, phase: 'offline' } : state;
    case 'online':
      return state.phase === 'offline' ? { ...state, phase: 'uploading' } : state;
    case 'uploaded':
      if (state.phase === 'uploading' || state.phase === 'offline' || state.phase === 'paused') {
        // The stream may already be past the upload (a fast transcoder): keep its stage.
        const stage = state.stage && !BEFORE_UPLOAD.has(state.stage) ? state.stage : 'queued';
        const next = { ...state, phase: 'processing' as Phase, bytesSent: state.bytesTotal, stage, problem: null };
        return state.stage && TERMINAL.has(state.stage) ? applyTerminal(next, state.stage, state.failure) : next;
      }
      return state;
    case 'uploadFailed':
      if (state.phase === 'uploading' || state.phase === 'offline' || state.phase === 'paused') {
        return { ...state, phase: 'error', problem: event.problem };
      }
      return state;
    case 'stage': {
      if (state.videoId === null || isTerminal(state.phase)) return state;
      const percent = clampPercent(event.percent);
      const updated: UploadState = {
        ...state,
        stage: event.stage,
        stagePercent: percent,
        rendition: event.rendition ?? null,
        etaSeconds: event.etaSeconds ?? null,
        failure: event.stage === 'failed' ? (event.error ?? 'processing failed') : state.failure,
      };
      // Until the bytes are all sent, the stream's stages are only remembered: the page
      // shows the upload's own progress.
      if (state.phase !== 'processing') return updated;
      return TERMINAL.has(event.stage) ? applyTerminal(updated, event.stage, updated.failure) : updated;
    }
    case 'streamEnded':
      return state.streamEnd ? state : { ...state, streamEnd: event.by };
    case 'streamFailed':
      // Progress is a view of the work, not the work: the upload page keeps going and shows it.
      return isTerminal(state.phase) ? state : { ...state, problem: event.problem };
    case 'reset':
      return initialUpload;
  }
}

function applyTerminal(state: UploadState, stage: string, failure: string | null): UploadState {
  return stage === 'ready'
    ? { ...state, phase: 'ready', stage: 'ready', stagePercent: 100, etaSeconds: null }
    : { ...state, phase: 'failed', stage: 'failed', failure: failure ?? 'processing failed' };
}

function clampPercent(p: number): number {
  if (!Number.isFinite(p)) return 0;
  return Math.max(0, Math.min(100, p));
}

/** The upload's own progress, 0 to 100. */
export function uploadPercent(s: UploadState): number {
  if (s.bytesTotal <= 0) return 0;
  return Math.floor((s.bytesSent / s.bytesTotal) * 1000) / 10;
}

/** A person's words for a videoProgress stage. */
export function stageLabel(stage: string | null): string {
  switch (stage) {
    case null:
    case 'awaiting_upload':
      return 'Waiting for the upload';
    case 'queued':
      return 'Queued for processing';
    case 'downloading':
      return 'Fetching the upload';
    case 'probing':
      return 'Checking the video';
    case 'encoding':
      return 'Encoding';
    case 'thumbnails':
      return 'Making thumbnails';
    case 'uploading':
      return 'Storing the renditions';
    case 'ready':
      return 'Ready';
    case 'failed':
      return 'Processing failed';
    default:
      return stage.replace(/_/g, ' ');
  }
}

/** A client-side check before anything is sent: the API's own rules are shown as it answers. */
export function checkFile(file: { name: string; type: string; size: number } | null): string | null {
  if (!file) return 'Choose a video file.';
  if (file.size === 0) return 'That file is empty.';
  if (file.type && !file.type.startsWith('video/') && file.type !== 'application/octet-stream') {
    return `That is a ${file.type} file, not a video.`;
  }
  return null;
}
