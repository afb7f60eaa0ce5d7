// Storyboards: the transcoder's sprite of stills and its WebVTT index, whose cues point at
// tiles as `sprite.jpg#xywh=x,y,w,h` (Playback.storyboardUrl / storyboardVttUrl).

export interface Tile {
  start: number;
  end: number;
  url: string;
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface Storyboard {
  tiles: Tile[];
  /** The sprite's size, from the furthest tile. */
  width: number;
  height: number;
}

function seconds(ts: string): number {
  const parts = ts.trim().split(':').map(Number);
  let s = 0;
  for (const p of parts) s = s * 60 + p;
  return s;
}

/** Parses a storyboard's WebVTT; tile URLs are resolved against `base` (the VTT's URL). */
export function parseStoryboard(vtt: string, base: string): Storyboard {
  const tiles: Tile[] = [];
  const lines = vtt.replace(/\r/g, '').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const m = /^\s*([\d:.]+)\s+-->\s+([\d:.]+)/.exec(line);
    if (!m) continue;
    const target = (lines[i + 1] ?? '').trim();
    const hash = /^(.*)#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(target);
    if (!hash) continue;
    tiles.push({
      start: seconds(m[1]!),
      end: seconds(m[2]!),
      url: new URL(hash[1]!, base).toString(),
      x: Number(hash[2]),
      y: Number(hash[3]),
      w: Number(hash[4]),
      h: Number(hash[5]),
    });
  }
  const width = Math.max(0, ...tiles.map((t) => t.x + t.w));
  const height = Math.max(0, ...tiles.map((t) => t.y + t.h));
  return { tiles, width, height };
}

/** The tile shown at `time` seconds (the last one past the end). */
export function tileAt(board: Storyboard, time: number): Tile | null {
  if (board.tiles.length === 0) return null;
  for (const t of board.tiles) if (time >= t.start && time < t.end) return t;
  return time < board.tiles[0]!.start ? board.tiles[0]! : board.tiles[board.tiles.length - 1]!;
}

const cache = new Map<string, Promise<Storyboard | null>>();

/** Fetches and parses a storyboard once per URL; null when it cannot be had. */
export function loadStoryboard(vttUrl: string): Promise<Storyboard | null> {
  let p = cache.get(vttUrl);
  if (!p) {
    p = fetch(vttUrl, { credentials: 'omit' })
      .then((r) => (r.ok ? r.text() : null))
      .then((text) => (text ? parseStoryboard(text, new URL(vttUrl, window.location.href).toString()) : null))
      .catch(() => null);
    cache.set(vttUrl, p);
  }
  return p;
}
