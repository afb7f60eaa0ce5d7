// The video's bytes, with tus-js-client through the edge's /video/upload (the transcoder's tus
// 1.0 server: creation, creation-with-upload, creation-defer-length, termination, expiration,
// checksum; ARCHITECTURE.md "transcoder").
//
// The creation flow: POST /video/upload with Upload-Length and Upload-Metadata `videoId`
// (crates/transcoder/src/tus.rs reads `videoId`, or `video_id`), the bearer token in
// Authorization (ForwardAuth identifies the owner), then PATCHes. tus-js-client keeps the
// upload URL in localStorage under the file's fingerprint, so after a reload choosing the same
// file resumes where the server stopped (HEAD → Upload-Offset).

import * as tus from 'tus-js-client';
import type { Session } from '../auth/session';
import { makeProblem, toProblem, type Problem } from '../api/errors';
import type { UploadEvent } from './state';

export const UPLOAD_ENDPOINT = '/video/upload';

/** Delays between retries of a failed request (ms); a request that made progress resets them. */
export const RETRY_DELAYS = [0, 1_000, 3_000, 5_000, 10_000, 20_000, 30_000];

export interface TransferMeta {
  videoId: string;
  title: string;
}

/** An unfinished upload remembered in this browser. */
export interface Unfinished {
  videoId: string;
  title: string;
  filename: string;
  size: number | null;
  createdAt: string;
  urlStorageKey: string;
}

/** Fingerprints are per user, so one person never finds another's upload in a shared browser. */
export function fingerprintFor(userId: string, file: { name: string; type: string; size: number; lastModified: number }): string {
  return ['flick', userId, file.name, file.type, file.size, file.lastModified].join('-');
}

/** Whether a retry makes sense: what tus-js-client would do, plus one refresh on a 401. */
export function shouldRetry(
  status: number,
  online: boolean,
  signedIn: boolean,
): 'retry' | 'refresh-and-retry' | 'wait-for-network' | 'give-up' {
  if (!online) return 'wait-for-network';
  if (status === 401) return signedIn ? 'refresh-and-retry' : 'give-up';
  if (status === 0) return 'retry'; // no answer: network error
  if (status === 409 || status === 423 || status === 460) return 'retry'; // offset race, locked, bad checksum
  if (status >= 400 && status < 500) return 'give-up';
  return 'retry';
}

export class Transfer {
  private upload: tus.Upload;
  private refreshedFor401 = false;
  private onlineListener: (() => void) | null = null;
  private stopped = false;
  private onUrlCalled = false;

  constructor(
    /** A File in the browser (a Buffer works in Node, for tests). */
    readonly file: File,
    readonly meta: TransferMeta,
    private readonly session: Session,
    private readonly emit: (e: UploadEvent) => void,
    /** Called once the upload has its URL (created or found again). */
    private readonly onUrl?: () => void,
    /** The creation endpoint (absolute); this origin's /video/upload by default. */
    endpoint: string = new URL(UPLOAD_ENDPOINT, globalThis.location?.href ?? 'http://localhost/').toString(),
    /**
     * createVideo's ticket: an upload already created with this file's length (createVideo
     * got `sizeBytes`), used as is instead of creating another one.
     */
    uploadUrl: string | null = null,
  ) {
    const userId = session.userId ?? 'anonymous';
    this.upload = new tus.Upload(file, {
      // Absolute: tus-js-client resolves the Location it gets back against it.
      endpoint,
      uploadUrl,
      metadata: {
        videoId: meta.videoId,
        title: meta.title,
        filename: file.name,
        filetype: file.type || 'application/octet-stream',
      },
      retryDelays: RETRY_DELAYS,
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      fingerprint: async (f) => fingerprintFor(userId, f as File),
      onBeforeRequest: async (req) => {
        // A fresh token for every request (uploads outlive the 15-minute access token).
        const token = await this.session.freshToken().catch(() => this.session.accessToken);
        if (!token) throw new Error('signed out');
        req.setHeader('Authorization', `Bearer ${token}`);
      },
      onShouldRetry: (err) => {
        const status = err.originalResponse?.getStatus() ?? 0;
        const online = typeof navigator === 'undefined' || navigator.onLine !== false;
        switch (shouldRetry(status, online, this.session.signedIn)) {
          case 'retry':
            return true;
          case 'refresh-and-retry':
            if (this.refreshedFor401) return false;
            this.refreshedFor401 = true;
            void this.session.refresh().then((ok) => ok || this.session.expire(), () => undefined);
            return true;
          case 'wait-for-network':
          case 'give-up':
            return false;
        }
      },
      onUploadUrlAvailable: () => {
        if (this.onUrlCalled) return;
        this.onUrlCalled = true;
        this.onUrl?.();
      },
      onProgress: (sent, total) => {
        this.refreshedFor401 = false;
        this.emit({ type: 'progress', bytesSent: sent, bytesTotal: total });
      },
      onSuccess: () => {
        this.removeOnlineListener();
        this.emit({ type: 'uploaded' });
      },
      onError: (err) => this.failed(err),
    });
  }

  /** Starts, resuming this file's unfinished upload when there is one. */
  async start(): Promise<void> {
    this.stopped = false;
    try {
      const previous = await this.upload.findPreviousUploads();
      const mine = previous.find((p) => p.metadata['videoId'] === this.meta.videoId);
      if (mine) this.upload.resumeFromPreviousUpload(mine);
    } catch {
      // no storage: a fresh upload
    }
    this.upload.start();
  }

  pause(): void {
    this.stopped = true;
    this.removeOnlineListener();
    void this.upload.abort(false);
  }

  resume(): void {
    this.stopped = false;
    this.refreshedFor401 = false;
    this.upload.start();
  }

  /** Stops and deletes the upload on the server (tus termination). */
  async cancel(): Promise<void> {
    this.stopped = true;
    this.removeOnlineListener();
    await this.upload.abort(true).catch(() => undefined);
  }

  dispose(): void {
    this.stopped = true;
    this.removeOnlineListener();
    void this.upload.abort(false);
  }

  private failed(err: Error): void {
    if (this.stopped) return;
    const offline = typeof navigator !== 'undefined' && navigator.onLine === false;
    if (offline) {
      // Lost network: wait for it, then go on from the server's offset.
      this.emit({ type: 'offline' });
      this.waitForNetwork();
      return;
    }
    let problem: Problem = toProblem(err);
    if (!this.session.signedIn) problem = makeProblem({ code: 'UNAUTHENTICATED' });
    this.emit({ type: 'uploadFailed', problem });
  }

  private waitForNetwork(): void {
    if (this.onlineListener || typeof window === 'undefined') return;
    this.onlineListener = () => {
      this.removeOnlineListener();
      if (this.stopped) return;
      this.emit({ type: 'online' });
      this.upload.start();
    };
    window.addEventListener('online', this.onlineListener);
  }

  private removeOnlineListener(): void {
    if (this.onlineListener && typeof window !== 'undefined') window.removeEventListener('online', this.onlineListener);
    this.onlineListener = null;
  }
}

/** This user's unfinished uploads remembered in this browser, newest first. */
export async function findUnfinished(userId: string): Promise<Unfinished[]> {
  const storage = tus.defaultOptions.urlStorage;
  if (!storage) return [];
  const all = await storage.findAllUploads().catch(() => []);
  const prefix = `tus::flick-${userId}-`;
  return all
    .filter((u) => u.urlStorageKey.startsWith(prefix) && u.metadata['videoId'])
    .map((u) => ({
      videoId: u.metadata['videoId']!,
      title: u.metadata['title'] ?? '',
      filename: u.metadata['filename'] ?? '',
      size: u.size,
      createdAt: u.creationTime,
      urlStorageKey: u.urlStorageKey,
    }))
    .sort((a, b) => (Date.parse(b.createdAt) || 0) - (Date.parse(a.createdAt) || 0));
}

/** Forgets a remembered upload (the server expires it by itself). */
export async function forgetUnfinished(urlStorageKey: string): Promise<void> {
  await tus.defaultOptions.urlStorage?.removeUpload(urlStorageKey).catch(() => undefined);
}

/**
 * Terminates an upload ticket this app will not use (a ticket of a deferred length, from a
 * createVideo without `sizeBytes`): it would stay open until it expires (24 h) and count
 * toward the per-user cap of open uploads (10).
 */
export async function releaseTicket(session: Session, ticketUrl: string): Promise<void> {
  try {
    const res = await session.authFetch(ticketUrl, { method: 'DELETE', headers: { 'Tus-Resumable': '1.0.0' } });
    if (!res.ok && res.status !== 404 && res.status !== 410) {
      console.warn('flick: could not release the upload ticket', res.status, await res.text());
    }
  } catch (e) {
    console.warn('flick: could not release the upload ticket', e);
  }
}
