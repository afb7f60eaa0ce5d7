// Creator analytics for people and for the small SVG charts of the studio: the range in the
// address, chart scaling (a "nice" top of the axis), bar and line geometry, watch time text.
// Pure functions; the components only draw what these return.

import type { AnalyticsRange } from './gql/graphql';

export interface RangeChoice {
  range: AnalyticsRange;
  days: number;
  label: string;
}

/** The ranges the API offers (`AnalyticsRange`), shortest first. */
export const RANGES: readonly RangeChoice[] = [
  { range: 'LAST_7_DAYS', days: 7, label: '7 days' },
  { range: 'LAST_28_DAYS', days: 28, label: '28 days' },
  { range: 'LAST_90_DAYS', days: 90, label: '90 days' },
];

/** The API's default range. */
export const DEFAULT_RANGE: RangeChoice = RANGES[1]!;

/** The range of `?range=7|28|90` in a route's query string; anything else is the default. */
export function rangeFromQuery(querystring: string | null | undefined): RangeChoice {
  const days = Number(new URLSearchParams(querystring ?? '').get('range'));
  return RANGES.find((r) => r.days === days) ?? DEFAULT_RANGE;
}

/**
 * A value axis for whole quantities (views, seconds): at most `most` intervals of one round
 * whole step (1, 2 or 5 × 10ⁿ), from 0 to the first multiple of the step at or above `max`, so
 * no two gridlines read the same once formatted ("1 s, 1 s") and none is a fraction of a view.
 */
export function wholeAxis(max: number, most = 4): { top: number; lines: number[] } {
  const m = Number.isFinite(max) && max > 0 ? max : 0;
  let step = 1;
  for (let power = 1; ; power *= 10) {
    const found = [1, 2, 5].map((k) => k * power).find((s) => Math.ceil(m / s) <= most);
    if (found !== undefined) {
      step = found;
      break;
    }
  }
  const intervals = Math.max(1, Math.ceil(m / step));
  return { top: intervals * step, lines: Array.from({ length: intervals + 1 }, (_, i) => i * step) };
}

export interface Bar {
  x: number;
  y: number;
  width: number;
  height: number;
  value: number;
}

/**
 * Bars for `values` in a `width` × `height` plot (y grows downwards, as in SVG): each bar
 * gets an equal slot with `gap` (a share of the slot) left empty, scaled to `top`.
 */
export function bars(values: readonly number[], width: number, height: number, top: number, gap = 0.2): Bar[] {
  if (values.length === 0) return [];
  const slot = width / values.length;
  const barWidth = Math.max(slot * (1 - gap), 0.5);
  return values.map((value, i) => {
    const v = Math.max(0, Number.isFinite(value) ? value : 0);
    const h = top > 0 ? Math.min(height, (v / top) * height) : 0;
    return { x: round(i * slot + (slot - barWidth) / 2), y: round(height - h), width: round(barWidth), height: round(h), value: v };
  });
}

/**
 * An SVG path through `points` (x in 0–`xMax`, y in 0–`yMax`) in a `width` × `height` plot,
 * y upwards in the data and downwards on screen. Empty for no points.
 */
export function linePath(
  points: readonly { x: number; y: number }[],
  width: number,
  height: number,
  xMax: number,
  yMax: number,
): string {
  return points
    .map((p, i) => {
      const x = xMax > 0 ? (clamp(p.x, 0, xMax) / xMax) * width : 0;
      const y = height - (yMax > 0 ? (clamp(p.y, 0, yMax) / yMax) * height : 0);
      return `${i === 0 ? 'M' : 'L'}${round(x)} ${round(y)}`;
    })
    .join(' ');
}

/** The retention curve as chart points: percent of the video (0–100) → share still watching. */
export function retentionPoints(retention: readonly { percent: number; share: number }[]): { x: number; y: number }[] {
  return [...retention].sort((a, b) => a.percent - b.percent).map((r) => ({ x: r.percent, y: r.share }));
}

/** Watch time for people: "45 s", "12 min", "3.4 h", "1,250 h". */
export function watchTime(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds <= 0) return '0 s';
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  const hours = seconds / 3600;
  return hours < 100 ? `${hours.toFixed(1)} h` : `${Math.round(hours).toLocaleString('en')} h`;
}

/** A share (0–1) as a percentage: "42%", "0.5%" below one percent. */
export function percent(share: number): string {
  const p = Math.max(0, share) * 100;
  if (p > 0 && p < 1) return `${p.toFixed(1)}%`;
  return `${Math.round(p)}%`;
}

const dayFormat = new Intl.DateTimeFormat('en', { month: 'short', day: 'numeric', timeZone: 'UTC' });

/** A UTC day (`YYYY-MM-DD`, as the API gives it) as "Dec 6". */
export function shortDay(day: string): string {
  const t = Date.parse(`${day}T00:00:00Z`);
  return Number.isNaN(t) ? day : dayFormat.format(t);
}

/** Which of `count` day labels to print so that at most `room` show, the last always. */
export function labelEvery(count: number, room: number): (index: number) => boolean {
  const step = Math.max(1, Math.ceil(count / Math.max(1, room)));
  return (i) => (count - 1 - i) % step === 0;
}

function clamp(v: number, lo: number, hi: number): number {
  return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : lo;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
