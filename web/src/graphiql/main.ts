// GraphiQL for the supergraph, bundled with the web app (issue 16: every asset served by Flick,
// no CDN). A page of its own (graphiql.html, the second Vite entry): React and GraphiQL stay
// out of the Svelte app's bundle. The edge sends a browser's `GET /graphql` (Accept: text/html)
// here; queries and mutations go to `/graphql` over HTTP, subscriptions over graphql-ws on the
// same path (the edge's graphql-websocket route), as the app's own client does.
//
// Signed in: a session this tab keeps (the app's refresh token in sessionStorage) is picked up
// as the app does it (src/lib/auth/session.ts), so every request carries the user's access
// token, in `Authorization` over HTTP and in connection_init's headers over the WebSocket. A
// header typed in GraphiQL's Headers tab wins over it.

import { createElement } from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import './workers';
import 'graphiql/style.css';
import { createGraphiQLFetcher, type Fetcher } from '@graphiql/toolkit';
import { createClient } from 'graphql-ws';
import { Session } from '../lib/auth/session';

function sessionStorageOrNull(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

const session = new Session({
  fetch: (input, init) => window.fetch(input, init),
  storage: sessionStorageOrNull(),
  channel: typeof BroadcastChannel === 'function' ? (name) => new BroadcastChannel(name) : null,
});

async function authorization(): Promise<Record<string, string>> {
  const token = await session.freshToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`;
const wsClient = createClient({
  url: wsUrl,
  // The router takes identity over a WebSocket only from connection_init's headers.
  connectionParams: async () => ({ headers: await authorization() }),
});

const http = createGraphiQLFetcher({ url: '/graphql', wsClient });

const fetcher: Fetcher = async (params, opts) =>
  http(params, { ...opts, headers: { ...(await authorization()), ...opts?.headers } });

function welcome(signedIn: boolean): string {
  return [
    "# Flick's supergraph: queries and mutations over HTTP at /graphql, subscriptions over",
    '# graphql-ws on the same path.',
    signedIn
      ? "# Signed in: requests carry this tab's session token."
      : '# Not signed in: sign in to the web app in this tab, or set an Authorization header below.',
    '',
    '{',
    '  feed(first: 5) {',
    '    nodes { id title owner { displayName } }',
    '  }',
    '}',
    '',
  ].join('\n');
}

const status = await session.restore();
createRoot(document.getElementById('graphiql')!).render(
  createElement(GraphiQL, { fetcher, defaultQuery: welcome(status === 'signed-in') }),
);
