import { describe, expect, it } from 'vitest';
import {
  bars,
  DEFAULT_RANGE,
  labelEvery,
  linePath,
  percent,
  rangeFromQuery,
  retentionPoints,
  shortDay,
  watchTime,
  wholeAxis,
} from '../../src/lib/analytics';
import { moveTarget, resumeAt, watchedShare } from '../../src/lib/library';
import { fromGraphQLErrors } from '../../src/lib/api/errors';

describe('analytics ranges', () => {
  it('reads ?range=7|28|90 and falls back to the API default', () => {
    expect(rangeFromQuery('range=7').range).toBe('LAST_7_DAYS');
    expect(rangeFromQuery('range=90').range).toBe('LAST_90_DAYS');
    expect(rangeFromQuery('range=28').range).toBe('LAST_28_DAYS');
    expect(rangeFromQuery('range=30')).toBe(DEFAULT_RANGE);
    expect(rangeFromQuery('range=abc')).toBe(DEFAULT_RANGE);
    expect(rangeFromQuery(undefined)).toBe(DEFAULT_RANGE);
    expect(DEFAULT_RANGE.range).toBe('LAST_28_DAYS');
  });
});

describe('chart scaling', () => {
  it('steps whole quantities by 1, 2 or 5 × 10ⁿ, at most four intervals, no fractions', () => {
    expect(wholeAxis(0)).toEqual({ top: 1, lines: [0, 1] }); // an empty chart still has an axis
    expect(wholeAxis(1)).toEqual({ top: 1, lines: [0, 1] });
    // 2 s of watch time: 0, 1, 2 (not 0, 0.5, 1, 1.5, 2, which read "1 s" twice once formatted)
    expect(wholeAxis(2)).toEqual({ top: 2, lines: [0, 1, 2] });
    expect(wholeAxis(2.4)).toEqual({ top: 3, lines: [0, 1, 2, 3] });
    expect(wholeAxis(7)).toEqual({ top: 8, lines: [0, 2, 4, 6, 8] });
    expect(wholeAxis(12)).toEqual({ top: 15, lines: [0, 5, 10, 15] });
    expect(wholeAxis(1234)).toEqual({ top: 1500, lines: [0, 500, 1000, 1500] });
    expect(wholeAxis(Number.NaN)).toEqual({ top: 1, lines: [0, 1] });
    for (const max of [3, 9, 41, 99, 250, 7777]) {
      const { top, lines } = wholeAxis(max);
      expect(top).toBeGreaterThanOrEqual(max);
      expect(lines.length - 1).toBeLessThanOrEqual(4);
      expect(lines.every(Number.isInteger)).toBe(true);
    }
  });

  it('lays out bars in equal slots, scaled to the top, growing up from the bottom', () => {
    const b = bars([0, 5, 10], 300, 100, 10);
    expect(b).toHaveLength(3);
    expect(b.map((x) => x.height)).toEqual([0, 50, 100]);
    expect(b.map((x) => x.y)).toEqual([100, 50, 0]);
    expect(b[0]!.width).toBe(80); // 100 per slot, 20% gap
    expect(b.map((x) => x.x)).toEqual([10, 110, 210]);
  });

  it('never draws outside the plot: negative or non-finite values are zero, values over the top are capped', () => {
    const b = bars([-3, Number.NaN, 50], 30, 100, 10);
    expect(b.map((x) => x.height)).toEqual([0, 0, 100]);
    expect(bars([], 300, 100, 10)).toEqual([]);
    expect(bars([1, 2], 300, 100, 0).every((x) => x.height === 0)).toBe(true);
  });

  it('builds the retention line from its points, in order, y downwards on screen', () => {
    const points = retentionPoints([
      { percent: 50, share: 0.5 },
      { percent: 0, share: 1 },
      { percent: 100, share: 0.25 },
    ]);
    expect(points.map((p) => p.x)).toEqual([0, 50, 100]);
    expect(linePath(points, 200, 100, 100, 1)).toBe('M0 0 L100 50 L200 75');
    expect(linePath([], 200, 100, 100, 1)).toBe('');
    // A share over 1 (should not happen) stays inside the plot.
    expect(linePath([{ x: 0, y: 1.2 }], 200, 100, 100, 1)).toBe('M0 0');
  });

  it('labels at most `room` days, always the last one', () => {
    const show = labelEvery(28, 7);
    const shown = Array.from({ length: 28 }, (_, i) => i).filter(show);
    expect(shown.length).toBeLessThanOrEqual(7);
    expect(shown).toContain(27);
    expect(Array.from({ length: 7 }, (_, i) => i).filter(labelEvery(7, 10))).toHaveLength(7);
  });
});

describe('analytics text', () => {
  it('watch time in the largest sensible unit', () => {
    expect(watchTime(0)).toBe('0 s');
    expect(watchTime(null)).toBe('0 s');
    expect(watchTime(42.4)).toBe('42 s');
    expect(watchTime(600)).toBe('10 min');
    expect(watchTime(5400)).toBe('1.5 h');
    expect(watchTime(3600 * 1250)).toBe('1,250 h');
  });

  it('shares as percentages', () => {
    expect(percent(0.423)).toBe('42%');
    expect(percent(0.004)).toBe('0.4%');
    expect(percent(0)).toBe('0%');
    expect(percent(1)).toBe('100%');
  });

  it('days as the API gives them (UTC), whatever the local zone', () => {
    expect(shortDay('2026-12-06')).toBe('Dec 6');
    expect(shortDay('not a day')).toBe('not a day');
  });

  it('FORBIDDEN analytics show the API sentence', () => {
    const p = fromGraphQLErrors([{ message: "only the video's owner sees its analytics", extensions: { code: 'FORBIDDEN' } }]);
    expect(p.message).toBe("Only the video's owner sees its analytics.");
  });
});

describe('library helpers', () => {
  it('resumes where the viewer stopped, not at the very start, near the end, or after finishing', () => {
    expect(resumeAt({ positionSeconds: 42, watchedFraction: 0.3 }, 140)).toBe(42);
    expect(resumeAt({ positionSeconds: 42, watchedFraction: null }, null)).toBe(42);
    expect(resumeAt({ positionSeconds: 3, watchedFraction: 0.01 }, 300)).toBeNull();
    expect(resumeAt({ positionSeconds: 137, watchedFraction: 0.9 }, 140)).toBeNull();
    expect(resumeAt({ positionSeconds: 100, watchedFraction: 0.96 }, 104)).toBeNull();
    expect(resumeAt(null, 100)).toBeNull();
  });

  it('clamps the watched share for the progress bar', () => {
    expect(watchedShare(0.5)).toBe(0.5);
    expect(watchedShare(1.2)).toBe(1);
    expect(watchedShare(null)).toBeNull();
  });

  it('moves an item one place up or down within the list, not past its ends', () => {
    expect(moveTarget(2, -1, 5)).toBe(1);
    expect(moveTarget(2, 1, 5)).toBe(3);
    expect(moveTarget(0, -1, 5)).toBeNull();
    expect(moveTarget(4, 1, 5)).toBeNull();
    expect(moveTarget(7, -1, 5)).toBeNull();
  });
});
