// Reports playback to the activity service (`recordPlayback`): how far the viewer got and how
// long they watched, every few seconds while the video plays and when it stops. The server
// counts a view from these reports (>= 30 s watched, or half of a short video) and keeps the
// signed-in viewer's resume position.
//
// Watched time is the media time that passed while playing, so seeking adds nothing and
// playback speed counts as the server bounds it (at most twice the wall clock). Each report
// carries the session's next sequence number; a report that failed is sent again as it was
// (same number), so a retry the server already applied changes nothing there, and what was
// watched meanwhile goes in the next one.

export interface PlaybackReport {
  videoId: string;
  sessionId: string;
  sequence: number;
  positionSeconds: number;
  watchedSeconds: number;
  rendition?: string | null;
}

export interface ReportAnswer {
  applied: boolean;
  viewCounted: boolean;
}

/**
 * Sends one report. Throws to keep it for the next attempt; throws a `RefusedReport` when the
 * server refused it for good (a bad report, a video it does not know): it is dropped.
 */
export type SendReport = (report: PlaybackReport) => Promise<ReportAnswer>;

export class RefusedReport extends Error {}

/** Between two reports while playing. */
export const REPORT_EVERY_MS = 10_000;
/** A jump of media time larger than this between two time updates is a seek, not watching. */
const SEEK_SECONDS = 2;

export function newSessionId(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class PlaybackReporter {
  readonly sessionId: string;
  private sequence = 0;
  private unsent = 0;
  private lastTime: number | null = null;
  private position = 0;
  private rendition: string | null = null;
  private pending: PlaybackReport | null = null;
  private sending: Promise<void> | null = null;
  /** Set once a report made the playback a view. */
  viewCounted = false;

  constructor(
    private readonly videoId: string,
    private readonly send: SendReport,
    sessionId: string = newSessionId(),
  ) {
    this.sessionId = sessionId;
  }

  /** The element's `timeupdate` (and `playing`): media time `time`, `playing` unless paused. */
  time(time: number, playing: boolean): void {
    if (!Number.isFinite(time) || time < 0) return;
    if (playing && this.lastTime !== null) {
      const step = time - this.lastTime;
      if (step > 0 && step <= SEEK_SECONDS) this.unsent += step;
    }
    this.lastTime = time;
    this.position = time;
  }

  /** A seek: the next time update starts a new stretch. */
  seeked(time: number): void {
    this.lastTime = null;
    if (Number.isFinite(time) && time >= 0) this.position = time;
  }

  playingRendition(name: string | null): void {
    this.rendition = name;
  }

  /** Watched seconds not reported yet (tests, and whether a final report is worth sending). */
  get unreported(): number {
    return this.unsent + (this.pending?.watchedSeconds ?? 0);
  }

  /**
   * Sends what is not reported yet: the pending report first (unchanged), then a new one when
   * there is anything new. Reports go one at a time, in order; a failure keeps the report
   * pending for the next call and resolves (playback must not stop for its count).
   */
  async flush(): Promise<void> {
    while (this.sending) await this.sending;
    this.sending = this.flushOnce().finally(() => {
      this.sending = null;
    });
    return this.sending;
  }

  private async flushOnce(): Promise<void> {
    if (!this.pending && (this.unsent > 0 || this.sequence === 0)) {
      this.sequence += 1;
      this.pending = {
        videoId: this.videoId,
        sessionId: this.sessionId,
        sequence: this.sequence,
        positionSeconds: round(this.position),
        watchedSeconds: round(this.unsent),
        rendition: this.rendition,
      };
      this.unsent = 0;
    }
    const report = this.pending;
    if (!report) return;
    try {
      const answer = await this.send(report);
      this.pending = null;
      if (answer.viewCounted) this.viewCounted = true;
    } catch (e) {
      // Refused for good: sending it again would only be refused again. Otherwise it is kept
      // as it is and the next flush sends the same report again.
      if (e instanceof RefusedReport) this.pending = null;
    }
  }
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
