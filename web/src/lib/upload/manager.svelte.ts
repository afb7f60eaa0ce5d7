// The one upload this tab runs: created by the upload page, kept across in-app navigation
// (leaving the page does not stop the bytes), stopped at sign-out. It owns the tus transfer,
// the videoProgress subscription and the state the page and the header show.

import { app } from '../app.svelte';
import { CreateVideoMutation, VideoStateQuery } from '../graphql/operations';
import { mutate } from '../graphql/mutate';
import type { CreateVideoInput } from '../gql/graphql';
import { current } from './current.svelte';
import { initialUpload, isTerminal, reduceUpload, type UploadEvent, type UploadState } from './state';
import { Transfer } from './tus';
import { watchProgress, type ProgressWatch } from './progress';

/** How long to wait for the server to end the progress stream after ready/failed. */
export const STREAM_END_GRACE_MS = 10_000;

class UploadManager {
  private transfer: Transfer | null = null;
  private watch: ProgressWatch | null = null;
  private graceTimer: ReturnType<typeof setTimeout> | null = null;
  private generation = app.generation;

  constructor() {
    window.addEventListener('beforeunload', (e) => {
      // tus resumes after a reload, but only once the file is chosen again: ask first.
      if (this.state.phase === 'uploading' || this.state.phase === 'offline') e.preventDefault();
    });
    // Signed out (or another user): this upload is not theirs to continue.
    $effect.root(() => {
      $effect(() => {
        const generation = app.generation;
        if (generation !== this.generation) {
          this.generation = generation;
          this.reset();
        }
      });
    });
  }

  get state(): UploadState {
    return current.upload;
  }

  dispatch = (e: UploadEvent): void => {
    const before = current.upload.phase;
    current.upload = reduceUpload(current.upload, e);
    if (!isTerminal(before) && isTerminal(current.upload.phase)) this.closeStreamSoon();
  };

  /** createVideo, then the bytes. Resolves once the video exists (or was refused). */
  async create(file: File, input: CreateVideoInput): Promise<void> {
    this.stop();
    this.dispatch({ type: 'create', title: input.title, bytesTotal: file.size });
    // With the file's size, the ticket's upload knows its length: tus-js-client uses it as is.
    const r = await mutate(
      CreateVideoMutation,
      { input: { ...input, sizeBytes: file.size } },
      'Sign in again to upload. Your form stays as it is.',
    );
    if (r.problem) {
      this.dispatch({ type: 'createFailed', problem: r.problem });
      return;
    }
    const { video, upload: ticket } = r.data.createVideo;
    this.dispatch({ type: 'created', videoId: video.id });
    this.begin(file, video.id, video.title, ticket?.url ?? null);
  }

  /** Continues an upload remembered in this browser, with the same file chosen again. */
  resumeRemembered(file: File, videoId: string, title: string): void {
    this.stop();
    this.dispatch({ type: 'resumeFound', videoId, title, bytesTotal: file.size });
    this.begin(file, videoId, title, null);
  }

  /** Shows an existing video's processing (no upload from here). */
  async follow(videoId: string): Promise<void> {
    if (current.upload.videoId === videoId) return;
    this.stop();
    const r = await app.flick.client.query(VideoStateQuery, { id: videoId }, { requestPolicy: 'network-only' }).toPromise();
    const v = r.data?.video;
    this.dispatch({ type: 'follow', videoId, title: v?.title ?? '' });
    if (v?.status === 'READY') this.dispatch({ type: 'stage', stage: 'ready', percent: 100 });
    else if (v?.status === 'FAILED') {
      this.dispatch({ type: 'stage', stage: 'failed', percent: 0, error: v.failure ?? v.processing?.error ?? null });
    } else this.startWatch(videoId);
  }

  pause(): void {
    this.transfer?.pause();
    this.dispatch({ type: 'pause' });
  }

  resume(): void {
    this.dispatch({ type: 'resume' });
    this.transfer?.resume();
  }

  /** Stops and deletes the upload on the server; the video stays, without its file. */
  async cancel(): Promise<void> {
    const t = this.transfer;
    this.transfer = null;
    await t?.cancel();
    this.reset();
  }

  /** Back to an empty form; anything running stops (an unfinished upload stays resumable). */
  reset(): void {
    this.stop();
    current.upload = initialUpload;
  }

  private begin(file: File, videoId: string, title: string, ticketUrl: string | null): void {
    // Subscribe first: the stream starts at awaiting_upload and follows the whole way.
    this.startWatch(videoId);
    this.transfer = new Transfer(file, { videoId, title }, app.session, this.dispatch, undefined, undefined, ticketUrl);
    void this.transfer.start();
  }

  private startWatch(videoId: string): void {
    this.watch?.close();
    this.watch = null;
    void app.flick.ws().then((ws) => {
      // Still the same video (not reset or replaced while graphql-ws loaded)?
      if (current.upload.videoId === videoId && !this.watch && !isTerminal(current.upload.phase)) {
        this.watch = watchProgress(ws, videoId, this.dispatch);
      }
    });
  }

  /** Once ready or failed, give the server a moment to end the stream itself, then close it. */
  private closeStreamSoon(): void {
    if (!this.watch || this.graceTimer) return;
    this.graceTimer = setTimeout(() => {
      this.graceTimer = null;
      if (this.watch && !current.upload.streamEnd) {
        console.warn(
          `flick: videoProgress did not complete within ${STREAM_END_GRACE_MS} ms of "${current.upload.stage}"; closing it`,
        );
      }
      this.watch?.close();
      this.watch = null;
    }, STREAM_END_GRACE_MS);
  }

  private stop(): void {
    this.transfer?.dispose();
    this.transfer = null;
    this.watch?.close();
    this.watch = null;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = null;
  }
}

export const uploads = new UploadManager();
