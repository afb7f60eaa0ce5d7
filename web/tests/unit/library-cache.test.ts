// The cache after the activity's mutations (history, playlists, Watch later): the client
// against a fake router that executes the operations on the real supergraph schema, so every
// answer has exactly the shape (aliases, __typename) the app asked for.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { readFileSync } from 'node:fs';
import { buildSchema, graphql as execute } from 'graphql';
import { Session } from '../../src/lib/auth/session';
import { createFlickClient, type FlickClient } from '../../src/lib/api/client';
import {
  AddToPlaylistMutation,
  AddToWatchLaterMutation,
  ClearHistoryMutation,
  ContinueWatchingQuery,
  CreatePlaylistMutation,
  DeletePlaylistMutation,
  HistoryPausedQuery,
  MovePlaylistItemMutation,
  MyPlaylistsQuery,
  PlaylistQuery,
  RecordPlaybackMutation,
  RemoveFromHistoryMutation,
  SetHistoryPausedMutation,
  UpdatePlaylistMutation,
  UserPlaylistsQuery,
  WatchHistoryQuery,
  WatchLaterQuery,
} from '../../src/lib/graphql/operations';
import { toProblem } from '../../src/lib/api/errors';

const schema = buildSchema(readFileSync(new URL('../../../supergraph/supergraph.graphql', import.meta.url), 'utf8'), {
  assumeValidSDL: true,
});

const ME = 'u1';

function jwt(sub: string): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'EdDSA' })}.${b64({ sub })}.sig`;
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

function video(id: string) {
  return {
    id,
    title: `Video ${id}`,
    viewCount: 0,
    createdAt: '2026-12-01T00:00:00Z',
    publishedAt: '2026-12-01T00:00:00Z',
    owner: { id: 'u2', displayName: 'Bo' },
    playback: null,
    viewerProgress: null,
  };
}

/** A page of `list` from `after` (an index as text), as a Relay connection. */
function connection<T>(list: T[], args: { first?: number | null; after?: string | null }) {
  const start = args.after ? Number(args.after) + 1 : 0;
  const nodes = list.slice(start, start + (args.first ?? 20));
  const end = start + nodes.length - 1;
  return {
    nodes,
    edges: nodes.map((node, i) => ({ node, cursor: String(start + i) })),
    pageInfo: { hasNextPage: end < list.length - 1, endCursor: nodes.length ? String(end) : null, hasPreviousPage: start > 0, startCursor: String(start) },
  };
}

interface FakePlaylist {
  id: string;
  title: string;
  description: string;
  visibility: 'PUBLIC' | 'UNLISTED' | 'PRIVATE';
  isWatchLater: boolean;
  items: string[];
}

/** The router and the activity service, in memory: what each operation sees and changes. */
function fakeRouter() {
  const state = {
    history: ['v1', 'v2', 'v3'],
    paused: false,
    playlists: [
      { id: 'wl', title: 'Watch later', description: '', visibility: 'PRIVATE', isWatchLater: true, items: [] },
      { id: 'p1', title: 'Mix', description: '', visibility: 'PUBLIC', isWatchLater: false, items: ['v1', 'v2', 'v3'] },
    ] as FakePlaylist[],
    created: 0,
  };
  const calls: Record<string, number> = {};

  const historyItem = (id: string) => ({ video: video(id), positionSeconds: 12, watchedFraction: 0.4, updatedAt: '2026-12-06T00:00:00Z' });
  const playlist = (p: FakePlaylist) => ({
    ...p,
    owner: { id: ME, displayName: 'Ada' },
    itemCount: p.items.length,
    createdAt: '2026-12-01T00:00:00Z',
    items: (args: { first?: number; after?: string }) =>
      connection(p.items.map((v) => ({ video: video(v), addedAt: '2026-12-02T00:00:00Z' })), args),
  });
  const find = (id: string) => {
    const p = state.playlists.find((x) => x.id === id);
    if (!p) throw Object.assign(new Error('no such playlist'), { extensions: { code: 'NOT_FOUND' } });
    return p;
  };

  const root = {
    watchHistory: (args: { first?: number; after?: string }) => connection(state.history.map(historyItem), args),
    continueWatching: (args: { first?: number; after?: string }) => connection(state.history.map(historyItem), args),
    historyPaused: () => state.paused,
    myPlaylists: (args: { first?: number; after?: string }) => connection(state.playlists.map(playlist), args),
    watchLater: () => playlist(find('wl')),
    playlist: ({ id }: { id: string }) => {
      const p = state.playlists.find((x) => x.id === id);
      return p ? playlist(p) : null;
    },
    user: ({ id }: { id: string }) => ({
      id,
      playlists: (args: { first?: number; after?: string }) =>
        connection(state.playlists.filter((p) => p.visibility === 'PUBLIC').map(playlist), args),
    }),
    recordPlayback: () => ({ applied: true, viewCounted: false, positionSeconds: 1, watchedSeconds: 1 }),
    removeFromHistory: ({ videoId }: { videoId: string }) => {
      const before = state.history.length;
      state.history = state.history.filter((v) => v !== videoId);
      return state.history.length < before;
    },
    clearHistory: () => {
      const n = state.history.length;
      state.history = [];
      return n;
    },
    setHistoryPaused: ({ paused }: { paused: boolean }) => (state.paused = paused),
    createPlaylist: ({ input }: { input: { title: string; description?: string; visibility?: FakePlaylist['visibility'] } }) => {
      if (!input.title.trim()) {
        throw Object.assign(new Error('title must be 1 to 150 characters'), {
          extensions: { code: 'BAD_USER_INPUT', fields: { title: '1 to 150 characters' } },
        });
      }
      const p: FakePlaylist = {
        id: `new${++state.created}`,
        title: input.title,
        description: input.description ?? '',
        visibility: input.visibility ?? 'PRIVATE',
        isWatchLater: false,
        items: [],
      };
      state.playlists.splice(1, 0, p);
      return playlist(p);
    },
    updatePlaylist: ({ id, input }: { id: string; input: Partial<FakePlaylist> }) => {
      const p = find(id);
      if (p.isWatchLater && (input.title || input.visibility)) {
        throw Object.assign(new Error('Watch later keeps its name and stays private'), { extensions: { code: 'BAD_USER_INPUT' } });
      }
      Object.assign(p, Object.fromEntries(Object.entries(input).filter(([, v]) => v != null)));
      return playlist(p);
    },
    deletePlaylist: ({ id }: { id: string }) => {
      find(id);
      state.playlists = state.playlists.filter((p) => p.id !== id);
      return true;
    },
    addToPlaylist: ({ playlistId, videoId }: { playlistId: string; videoId: string }) => {
      const p = find(playlistId);
      if (!p.items.includes(videoId)) p.items.push(videoId);
      return playlist(p);
    },
    movePlaylistItem: ({ playlistId, videoId, position }: { playlistId: string; videoId: string; position: number }) => {
      const p = find(playlistId);
      p.items = p.items.filter((v) => v !== videoId);
      p.items.splice(Math.min(position, p.items.length), 0, videoId);
      return playlist(p);
    },
    addToWatchLater: ({ videoId }: { videoId: string }) => root.addToPlaylist({ playlistId: 'wl', videoId }),
  };

  const fetch = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const path = String(input);
    if (path === '/auth/login') {
      return json(200, { access_token: jwt(ME), refresh_token: 'r1', token_type: 'Bearer', expires_in: 900 });
    }
    const body = JSON.parse(String(init.body)) as { query: string; variables?: Record<string, unknown>; operationName?: string };
    const name = body.operationName ?? '?';
    calls[name] = (calls[name] ?? 0) + 1;
    const result = await execute({ schema, source: body.query, rootValue: root, variableValues: body.variables ?? {} });
    const errors = result.errors?.map((e) => ({ message: e.message, extensions: (e.originalError as { extensions?: unknown })?.extensions ?? e.extensions }));
    return json(200, errors ? { data: result.data ?? null, errors } : { data: result.data });
  });
  return { fetch, state, calls };
}

const made: FlickClient[] = [];
afterEach(() => {
  while (made.length) made.pop()!.dispose();
});

async function setup() {
  const router = fakeRouter();
  const session = new Session({ fetch: router.fetch, autoRefresh: false });
  await session.login('ada', 'pw');
  const flick = createFlickClient(session, { protocol: 'http:', host: '127.0.0.1:5173' }, { fetch: router.fetch });
  made.push(flick);
  return { ...router, client: flick.client };
}

/** Subscribes to a query and keeps its latest data. */
function watch<T>(source: { subscribe(fn: (r: { data?: T }) => void): { unsubscribe(): void } }) {
  const seen: { latest: T | undefined; count: number } = { latest: undefined, count: 0 };
  const sub = source.subscribe((r) => {
    if (r.data) {
      seen.latest = r.data;
      seen.count++;
    }
  });
  return { seen, stop: () => sub.unsubscribe() };
}

describe('cache updates after the library mutations', () => {
  it('removing a history entry asks again for every loaded page of history and of continue watching', async () => {
    const { client, calls } = await setup();
    const page1 = watch(client.query(WatchHistoryQuery, { first: 2, after: null }));
    const page2 = watch(client.query(WatchHistoryQuery, { first: 2, after: '1' }));
    const cont = watch(client.query(ContinueWatchingQuery, { first: 12 }));
    await vi.waitFor(() => expect(page2.seen.latest?.watchHistory.nodes.map((n) => n.video.id)).toEqual(['v3']));
    await vi.waitFor(() => expect(cont.seen.latest?.continueWatching.nodes).toHaveLength(3));

    const r = await client.mutation(RemoveFromHistoryMutation, { videoId: 'v1' }).toPromise();
    expect(r.data?.removeFromHistory).toBe(true);
    await vi.waitFor(() => expect(page1.seen.latest?.watchHistory.nodes.map((n) => n.video.id)).toEqual(['v2', 'v3']));
    await vi.waitFor(() => expect(page2.seen.latest?.watchHistory.nodes).toEqual([]));
    await vi.waitFor(() => expect(cont.seen.latest?.continueWatching.nodes).toHaveLength(2));
    expect(calls['WatchHistory']).toBe(4);
    [page1, page2, cont].forEach((w) => w.stop());
  });

  it('clearing the history empties it', async () => {
    const { client } = await setup();
    const history = watch(client.query(WatchHistoryQuery, { first: 24 }));
    await vi.waitFor(() => expect(history.seen.latest?.watchHistory.nodes).toHaveLength(3));
    const r = await client.mutation(ClearHistoryMutation, {}).toPromise();
    expect(r.data?.clearHistory).toBe(3);
    await vi.waitFor(() => expect(history.seen.latest?.watchHistory.nodes).toHaveLength(0));
    history.stop();
  });

  it('pausing the history updates historyPaused from the answer, without asking again', async () => {
    const { client, calls } = await setup();
    const paused = watch(client.query(HistoryPausedQuery, {}));
    await vi.waitFor(() => expect(paused.seen.latest?.historyPaused).toBe(false));
    await client.mutation(SetHistoryPausedMutation, { paused: true }).toPromise();
    await vi.waitFor(() => expect(paused.seen.latest?.historyPaused).toBe(true));
    expect(calls['HistoryPaused']).toBe(1);
    paused.stop();
  });

  it('a playback report marks the history stale: the next visit asks the server', async () => {
    const { client, calls } = await setup();
    await client.query(WatchHistoryQuery, { first: 24 }).toPromise();
    await client.query(WatchHistoryQuery, { first: 24 }, { requestPolicy: 'cache-first' }).toPromise();
    expect(calls['WatchHistory']).toBe(1);
    await client
      .mutation(RecordPlaybackMutation, { input: { videoId: 'v9', sessionId: 's'.repeat(32), sequence: 1, positionSeconds: 1, watchedSeconds: 1 } })
      .toPromise();
    await client.query(WatchHistoryQuery, { first: 24 }, { requestPolicy: 'cache-first' }).toPromise();
    expect(calls['WatchHistory']).toBe(2);
  });

  it('a new playlist shows in my playlists and on my channel; a deleted one leaves them', async () => {
    const { client } = await setup();
    const mine = watch(client.query(MyPlaylistsQuery, { first: 24 }));
    const channel = watch(client.query(UserPlaylistsQuery, { id: ME, first: 24 }));
    await vi.waitFor(() => expect(mine.seen.latest?.myPlaylists.nodes).toHaveLength(2));
    await vi.waitFor(() => expect(channel.seen.latest?.user?.playlists.nodes).toHaveLength(1));

    const created = await client.mutation(CreatePlaylistMutation, { input: { title: 'Road trip', visibility: 'PUBLIC' } }).toPromise();
    const id = created.data!.createPlaylist.id;
    await vi.waitFor(() => expect(mine.seen.latest?.myPlaylists.nodes.map((p) => p.title)).toContain('Road trip'));
    await vi.waitFor(() => expect(channel.seen.latest?.user?.playlists.nodes).toHaveLength(2));

    await client.mutation(DeletePlaylistMutation, { id }).toPromise();
    await vi.waitFor(() => expect(mine.seen.latest?.myPlaylists.nodes.map((p) => p.id)).not.toContain(id));
    await vi.waitFor(() => expect(channel.seen.latest?.user?.playlists.nodes).toHaveLength(1));
    mine.stop();
    channel.stop();
  });

  it('adding and moving items refresh the playlist page, its count and the covers', async () => {
    const { client } = await setup();
    const page = watch(client.query(PlaylistQuery, { id: 'p1', first: 50 }));
    const mine = watch(client.query(MyPlaylistsQuery, { first: 24 }));
    await vi.waitFor(() => expect(page.seen.latest?.playlist?.items.nodes).toHaveLength(3));
    await vi.waitFor(() => expect(mine.seen.latest?.myPlaylists.nodes[1]?.cover.nodes[0]?.video.id).toBe('v1'));

    await client.mutation(AddToPlaylistMutation, { playlistId: 'p1', videoId: 'v4' }).toPromise();
    await vi.waitFor(() => expect(page.seen.latest?.playlist?.items.nodes.map((n) => n.video.id)).toEqual(['v1', 'v2', 'v3', 'v4']));
    expect(page.seen.latest?.playlist?.itemCount).toBe(4);

    await client.mutation(MovePlaylistItemMutation, { playlistId: 'p1', videoId: 'v4', position: 0 }).toPromise();
    await vi.waitFor(() => expect(page.seen.latest?.playlist?.items.nodes.map((n) => n.video.id)).toEqual(['v4', 'v1', 'v2', 'v3']));
    await vi.waitFor(() => expect(mine.seen.latest?.myPlaylists.nodes[1]?.cover.nodes[0]?.video.id).toBe('v4'));
    page.stop();
    mine.stop();
  });

  it('saving to Watch later refreshes Watch later', async () => {
    const { client } = await setup();
    const later = watch(client.query(WatchLaterQuery, { first: 8 }));
    await vi.waitFor(() => expect(later.seen.latest?.watchLater.itemCount).toBe(0));
    await client.mutation(AddToWatchLaterMutation, { videoId: 'v2' }).toPromise();
    await vi.waitFor(() => expect(later.seen.latest?.watchLater.items.nodes.map((n) => n.video.id)).toEqual(['v2']));
    expect(later.seen.latest?.watchLater.itemCount).toBe(1);
    later.stop();
  });

  it('an edit shows everywhere the playlist is, from the answer alone', async () => {
    const { client, calls } = await setup();
    const page = watch(client.query(PlaylistQuery, { id: 'p1', first: 50 }));
    await vi.waitFor(() => expect(page.seen.latest?.playlist?.title).toBe('Mix'));
    await client.mutation(UpdatePlaylistMutation, { id: 'p1', input: { title: 'Best of' } }).toPromise();
    await vi.waitFor(() => expect(page.seen.latest?.playlist?.title).toBe('Best of'));
    expect(calls['Playlist']).toBe(1);
    page.stop();
  });
});

describe('the library mutations refused', () => {
  it("Watch later's name: the server's sentence is shown", async () => {
    const { client } = await setup();
    const r = await client.mutation(UpdatePlaylistMutation, { id: 'wl', input: { title: 'Mine' } }).toPromise();
    const p = toProblem(r.error);
    expect(p.code).toBe('BAD_USER_INPUT');
    expect(p.message).toBe('Watch later keeps its name and stays private.');
  });

  it('an empty title: the problem goes next to the title input', async () => {
    const { client } = await setup();
    const r = await client.mutation(CreatePlaylistMutation, { input: { title: ' ' } }).toPromise();
    const p = toProblem(r.error);
    expect(p.code).toBe('BAD_USER_INPUT');
    expect(p.fields).toEqual({ title: '1 to 150 characters' });
    expect(p.message).toBe('Please check what you entered.');
  });

  it('a playlist that is gone: NOT_FOUND', async () => {
    const { client } = await setup();
    const r = await client.mutation(AddToPlaylistMutation, { playlistId: 'gone', videoId: 'v1' }).toPromise();
    expect(toProblem(r.error).code).toBe('NOT_FOUND');
  });
});
