// The GraphQL client: urql with graphcache (a normalised cache: a like, an edited comment or a
// subscription updates every page showing that video, comment or channel), the auth exchange
// (bearer token on every operation, one refresh and one retry on a 401 or UNAUTHENTICATED),
// and graphql-ws for subscriptions on the same origin's /graphql (the edge sends WebSocket
// upgrades to the router's /graphql/ws). Subscriptions are read from graphql-ws directly (see
// upload/progress.ts): a stream's completion matters there, and nothing caches them.

import { Client, fetchExchange, makeOperation, type Exchange, type Operation } from '@urql/core';
import { cacheExchange, type Cache } from '@urql/exchange-graphcache';
import { authExchange } from '@urql/exchange-auth';
import type { Client as WsClient } from 'graphql-ws';
import type { Session } from '../auth/session';
import { isAuthError } from './errors';
import { HistoryPausedQuery } from '../graphql/operations';

type Entity = Parameters<Cache['inspectFields']>[0];

/**
 * Invalidates `fieldName` of `entity` under every set of arguments it was read with
 * (`cache.invalidate(entity, name)` alone only reaches the field read without arguments), so
 * every page of a paged list is asked for again by the queries showing it.
 */
export function invalidateField(cache: Cache, entity: Entity, fieldName: string): void {
  for (const field of cache.inspectFields(entity)) {
    if (field.fieldName === fieldName) cache.invalidate(entity, field.fieldName, field.arguments ?? undefined);
  }
}

/** The viewer's history changed: every loaded page of it, and of "Continue watching". */
function historyChanged(cache: Cache): void {
  invalidateField(cache, 'Query', 'watchHistory');
  invalidateField(cache, 'Query', 'continueWatching');
}

export interface FlickClient {
  client: Client;
  /** The graphql-ws client, loaded and created on first use (only the upload page needs it). */
  ws(): Promise<WsClient>;
  dispose(): void;
}

/** The WebSocket URL of this origin's /graphql. */
export function websocketUrl(location: { protocol: string; host: string }): string {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/graphql`;
}

/** graphcache's configuration (exported for tests). */
export function cacheConfig(currentUserId: () => string | null = () => null) {
  return cacheExchange({
    keys: {
      // Types without an id are embedded in their parent.
      PageInfo: () => null,
      VideoConnection: () => null,
      VideoEdge: () => null,
      CommentConnection: () => null,
      CommentEdge: () => null,
      Playback: () => null,
      Processing: () => null,
      Rendition: () => null,
      Dashboard: () => null,
      CreateVideoPayload: () => null,
      VideoProgress: () => null,
      ViewerProgress: () => null,
      PlaybackRecorded: () => null,
      HistoryItem: () => null,
      HistoryItemConnection: () => null,
      HistoryItemEdge: () => null,
      PlaylistConnection: () => null,
      PlaylistEdge: () => null,
      PlaylistItem: () => null,
      PlaylistItemConnection: () => null,
      PlaylistItemEdge: () => null,
      VideoAnalytics: () => null,
      ChannelAnalytics: () => null,
      DailyFigures: () => null,
      RetentionPoint: () => null,
      RenditionShare: () => null,
      VideoFigures: () => null,
    },
    updates: {
      Mutation: {
        addComment(_result, args, cache) {
          const videoId = args['videoId'] as string;
          invalidateField(cache, { __typename: 'Video', id: videoId }, 'comments');
          cache.invalidate({ __typename: 'Video', id: videoId }, 'commentCount');
        },
        deleteComment(_result, args, cache) {
          const id = args['id'] as string;
          const videoId = cache.resolve({ __typename: 'Comment', id }, 'videoId');
          cache.invalidate({ __typename: 'Comment', id });
          if (typeof videoId === 'string') {
            invalidateField(cache, { __typename: 'Video', id: videoId }, 'comments');
            cache.invalidate({ __typename: 'Video', id: videoId }, 'commentCount');
          }
        },
        createVideo(_result, _args, cache) {
          // The owner's own lists (channel page, dashboard) now have one more video.
          const me = currentUserId();
          if (me) invalidateField(cache, { __typename: 'User', id: me }, 'videos');
          cache.invalidate('Query', 'dashboard');
        },
        deleteVideo(_result, args, cache) {
          cache.invalidate({ __typename: 'Video', id: args['id'] as string });
        },
        // History: a report may add or move an entry (nothing on screen shows the history
        // while a video plays, so this only marks the lists stale for the next visit).
        recordPlayback(_result, _args, cache) {
          historyChanged(cache);
        },
        removeFromHistory(_result, args, cache) {
          historyChanged(cache);
          cache.invalidate({ __typename: 'Video', id: args['videoId'] as string }, 'viewerProgress');
        },
        clearHistory(_result, _args, cache) {
          historyChanged(cache);
        },
        setHistoryPaused(result, _args, cache) {
          const paused = result['setHistoryPaused'];
          if (typeof paused === 'boolean') {
            cache.updateQuery({ query: HistoryPausedQuery }, () => ({ __typename: 'Query', historyPaused: paused }));
          }
        },
        // Playlists: the lists of them change with a new or deleted one (and with a changed
        // visibility, for the channel page); a playlist's items with every add, remove, move.
        createPlaylist(_result, _args, cache) {
          playlistsChanged(cache, currentUserId());
        },
        updatePlaylist(_result, _args, cache) {
          playlistsChanged(cache, currentUserId());
        },
        deletePlaylist(_result, args, cache) {
          cache.invalidate({ __typename: 'Playlist', id: args['id'] as string });
          playlistsChanged(cache, currentUserId());
        },
        addToPlaylist(_result, args, cache) {
          itemsChanged(cache, args['playlistId'] as string);
        },
        removeFromPlaylist(_result, args, cache) {
          itemsChanged(cache, args['playlistId'] as string);
        },
        movePlaylistItem(_result, args, cache) {
          itemsChanged(cache, args['playlistId'] as string);
        },
        addToWatchLater(result, _args, cache) {
          watchLaterChanged(cache, result);
        },
        removeFromWatchLater(result, _args, cache) {
          watchLaterChanged(cache, result);
        },
      },
    },
  });
}

function playlistsChanged(cache: Cache, me: string | null): void {
  invalidateField(cache, 'Query', 'myPlaylists');
  if (me) invalidateField(cache, { __typename: 'User', id: me }, 'playlists');
}

function itemsChanged(cache: Cache, playlistId: string): void {
  invalidateField(cache, { __typename: 'Playlist', id: playlistId }, 'items');
}

function watchLaterChanged(cache: Cache, result: Record<string, unknown>): void {
  const list = result['addToWatchLater'] ?? result['removeFromWatchLater'];
  const id = list && typeof list === 'object' && 'id' in list ? (list as { id: unknown }).id : null;
  if (typeof id === 'string') itemsChanged(cache, id);
  // Made on first use: a query that read no Watch later before reads it again.
  if (!cache.resolve('Query', 'watchLater')) cache.invalidate('Query', 'watchLater');
}

/** The operation without an Authorization header in its fetch options. */
export function withoutAuthorization(operation: Operation): Operation {
  const options =
    typeof operation.context.fetchOptions === 'function'
      ? operation.context.fetchOptions()
      : (operation.context.fetchOptions ?? {});
  if (!options.headers) return operation;
  const headers = Object.fromEntries(
    Object.entries(options.headers as Record<string, string>).filter(([k]) => k.toLowerCase() !== 'authorization'),
  );
  return makeOperation(operation.kind, operation, { ...operation.context, fetchOptions: { ...options, headers } });
}

export function createFlickClient(
  session: Session,
  location: { protocol: string; host: string },
  /** For tests: a fetch and a WebSocket class instead of the browser's. */
  impl: { fetch?: typeof fetch; webSocketImpl?: unknown } = {},
): FlickClient {
  let ws: Promise<WsClient> | null = null;
  const wsClient = (): Promise<WsClient> =>
    (ws ??= import('graphql-ws').then(({ createClient }) =>
      createClient({
        url: websocketUrl(location),
        lazy: true,
        ...(impl.webSocketImpl ? { webSocketImpl: impl.webSocketImpl } : {}),
        // The router takes a WebSocket's headers from connection_init; the subgraphs identify
        // the connection only by this bearer token (ARCHITECTURE.md "Identity", ADR 0016).
        connectionParams: async () => {
          const token = await session.freshToken().catch(() => null);
          return token ? { headers: { authorization: `Bearer ${token}` } } : {};
        },
        // 4403 (token expired or revoked) is retried by graphql-ws with a fresh connection_init.
        retryAttempts: 8,
      }),
    ));

  const auth: Exchange = authExchange(async (utils) => ({
    addAuthToOperation(operation) {
      // A retried operation still carries the headers of its first attempt: drop the old
      // token first, so a retry after a failed refresh goes out anonymous, not stale.
      const base = withoutAuthorization(operation);
      const token = session.accessToken;
      return token ? utils.appendHeaders(base, { Authorization: `Bearer ${token}` }) : base;
    },
    willAuthError() {
      return session.signedIn && session.expiresSoon;
    },
    didAuthError(error) {
      // Anonymous callers have nothing to refresh: their UNAUTHENTICATED goes to the page.
      return session.signedIn && isAuthError(error);
    },
    async refreshAuth() {
      try {
        const ok = await session.refresh();
        if (!ok) session.expire();
      } catch {
        // Accounts unreachable: the operation fails with its own error and is not retried
        // as signed out.
      }
    },
  }));

  const client = new Client({
    url: '/graphql',
    exchanges: [
      cacheConfig(() => session.userId),
      auth,
      fetchExchange,
    ],
    fetchOptions: { credentials: 'omit' },
    ...(impl.fetch ? { fetch: impl.fetch } : {}),
    requestPolicy: 'cache-and-network',
    preferGetMethod: false,
  });

  return {
    client,
    ws: wsClient,
    dispose() {
      void ws?.then((c) => c.dispose());
    },
  };
}
