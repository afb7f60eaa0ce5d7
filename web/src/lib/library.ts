// The viewer's library: where a video resumes, how far an entry was watched, where a moved
// playlist item goes. Pure functions, shared by the pages and the player.

import type { Visibility } from './gql/graphql';

/** A playlist's editable fields, as its form holds them. */
export interface PlaylistDraft {
  title: string;
  description: string;
  visibility: Visibility;
}

/** Below this share watched, a video resumes; at or above it, it starts over. */
export const FINISHED_SHARE = 0.95;
/** Positions this close to the start or the end are not worth resuming. */
const EDGE_SECONDS = 5;

export interface Progress {
  positionSeconds: number;
  watchedFraction: number | null;
}

/**
 * Where playback resumes for a viewer's progress, or null to start at the beginning: not
 * for a finished video (≥ 95%), nor in its first or last 5 seconds.
 */
export function resumeAt(progress: Progress | null | undefined, durationSeconds?: number | null): number | null {
  if (!progress) return null;
  const { positionSeconds: at, watchedFraction } = progress;
  if (!Number.isFinite(at) || at <= EDGE_SECONDS) return null;
  if ((watchedFraction ?? 0) >= FINISHED_SHARE) return null;
  if (durationSeconds && Number.isFinite(durationSeconds) && at >= durationSeconds - EDGE_SECONDS) return null;
  return at;
}

/** A watched share for a progress bar: 0–1, or null when unknown. */
export function watchedShare(fraction: number | null | undefined): number | null {
  if (fraction == null || !Number.isFinite(fraction)) return null;
  return Math.min(1, Math.max(0, fraction));
}

/**
 * The `position` for `movePlaylistItem` that moves the item shown at `index` of `count`
 * one step up (-1) or down (+1); null when it cannot move that way. Positions are 0-based
 * in the playlist's order (the API's: 0 first, past the end last).
 */
export function moveTarget(index: number, direction: -1 | 1, count: number): number | null {
  const to = index + direction;
  if (index < 0 || index >= count || to < 0 || to >= count) return null;
  return to;
}

export const VISIBILITY_TEXT = {
  PUBLIC: 'Public',
  UNLISTED: 'Unlisted',
  PRIVATE: 'Private',
} as const;

/** What each visibility means for a playlist, for the forms. */
export const VISIBILITY_HINT = {
  PUBLIC: 'Anyone can find it on your channel.',
  UNLISTED: 'Anyone with the link can see it; it is not listed on your channel.',
  PRIVATE: 'Only you can see it.',
} as const;
