import { afterEach, describe, expect, it, vi } from 'vitest';
import { Session } from '../../src/lib/auth/session';
import { createFlickClient, websocketUrl, type FlickClient } from '../../src/lib/api/client';
import { LikeVideoMutation, MeQuery, WatchQuery } from '../../src/lib/graphql/operations';
import { toProblem } from '../../src/lib/api/errors';

function jwt(sub: string, n: number): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'EdDSA' })}.${b64({ sub, n })}.sig`;
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

/** The edge in front of accounts and the router: ForwardAuth refuses unknown tokens with 401. */
function fakeEdge() {
  let issued = 0;
  const valid = new Set<string>();
  const liveRefresh = new Set<string>();
  const paths: string[] = [];
  const auths: (string | null)[] = [];
  let liked = false;
  const issue = () => {
    issued++;
    const access = jwt('u1', issued);
    valid.add(access);
    liveRefresh.add(`r${issued}`);
    return { access_token: access, refresh_token: `r${issued}`, token_type: 'Bearer', expires_in: 900 };
  };
  const fetch = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const path = String(input);
    paths.push(path);
    const body = init.body ? JSON.parse(String(init.body)) : null;
    if (path === '/auth/login') return json(200, issue());
    if (path === '/auth/refresh') {
      if (!liveRefresh.delete(body.refresh_token)) return json(401, { error: { code: 'UNAUTHENTICATED', message: 'no' } });
      return json(200, issue());
    }
    const auth = new Headers(init.headers).get('authorization');
    auths.push(auth);
    if (auth && !valid.has(auth.replace('Bearer ', ''))) {
      return json(401, { error: { code: 'UNAUTHENTICATED', message: 'invalid token' } });
    }
    const op = body.operationName as string;
    if (op === 'Me') {
      return json(200, { data: { me: auth ? { __typename: 'User', id: 'u1', username: 'ada', displayName: 'Ada', email: 'a@x.org', bio: '', avatarUrl: null } : null } });
    }
    if (op === 'LikeVideo') {
      if (!auth) return json(200, { data: null, errors: [{ message: 'sign in', extensions: { code: 'UNAUTHENTICATED' } }] });
      liked = true;
      return json(200, { data: { likeVideo: { __typename: 'Video', id: 'v1', likeCount: 1, viewerHasLiked: true } } });
    }
    if (op === 'Watch') {
      return json(200, {
        data: {
          video: {
            __typename: 'Video', id: 'v1', title: 'Clip', description: '', tags: [], category: null, visibility: 'PUBLIC',
            status: 'READY', createdAt: '2026-12-06T00:00:00Z', publishedAt: '2026-12-06T00:00:00Z',
            likeCount: liked ? 1 : 0, viewerHasLiked: liked, commentCount: 0, viewCount: 0, viewerProgress: null,
            owner: { __typename: 'User', id: 'u2', displayName: 'Bo', avatarUrl: null, subscriberCount: 0, viewerIsSubscribed: false },
            playback: null, processing: { __typename: 'Processing', state: 'READY', playable: true, error: null },
          },
        },
      });
    }
    return json(400, { errors: [{ message: `unknown ${op}` }] });
  });
  return { fetch, paths, auths, revoke: () => valid.clear(), revokeAll: () => { valid.clear(); liveRefresh.clear(); } };
}

const made: FlickClient[] = [];
afterEach(() => {
  while (made.length) made.pop()!.dispose();
});

function setup() {
  const edge = fakeEdge();
  const session = new Session({ fetch: edge.fetch, autoRefresh: false });
  const flick = createFlickClient(session, { protocol: 'http:', host: '127.0.0.1:5173' }, { fetch: edge.fetch, webSocketImpl: class { static CLOSED = 3; static CLOSING = 2; static CONNECTING = 0; static OPEN = 1; } });
  made.push(flick);
  return { edge, session, client: flick.client };
}

describe('GraphQL client', () => {
  it('connects subscriptions to this origin', () => {
    expect(websocketUrl({ protocol: 'https:', host: 'flick.example' })).toBe('wss://flick.example/graphql');
    expect(websocketUrl({ protocol: 'http:', host: '127.0.0.1:5173' })).toBe('ws://127.0.0.1:5173/graphql');
  });

  it('sends the bearer token, and after a 401 refreshes once and retries', async () => {
    const { edge, session, client } = setup();
    await session.login('ada', 'pw');
    edge.revoke();
    const r = await client.query(MeQuery, {}, { requestPolicy: 'network-only' }).toPromise();
    expect(r.error).toBeUndefined();
    expect(r.data?.me?.username).toBe('ada');
    expect(edge.paths.filter((p) => p === '/auth/refresh')).toHaveLength(1);
    expect(session.status).toBe('signed-in');
  });

  it('ends the session when the refresh is refused, and the page gets UNAUTHENTICATED', async () => {
    const { edge, session, client } = setup();
    await session.login('ada', 'pw');
    edge.revokeAll();
    const r = await client.mutation(LikeVideoMutation, { id: 'v1' }).toPromise();
    expect(session.status).toBe('expired');
    expect(r.error && toProblem(r.error).code).toBe('UNAUTHENTICATED');
    // The retry after the failed refresh goes out without the stale token (which the edge
    // would refuse with a 401 again), so the page gets the API's own answer.
    expect(edge.auths[edge.auths.length - 1]).toBeNull();
  });

  it('does not try to refresh for an anonymous caller', async () => {
    const { edge, client } = setup();
    const r = await client.mutation(LikeVideoMutation, { id: 'v1' }).toPromise();
    expect(r.error && toProblem(r.error).code).toBe('UNAUTHENTICATED');
    expect(edge.paths.filter((p) => p === '/auth/refresh')).toHaveLength(0);
  });

  it('a like updates the cached video everywhere it is shown (normalised cache)', async () => {
    const { session, client } = setup();
    await session.login('ada', 'pw');
    const seen: (boolean | undefined)[] = [];
    const sub = client.query(WatchQuery, { id: 'v1' }).subscribe((r) => seen.push(r.data?.video?.viewerHasLiked));
    await vi.waitFor(() => expect(seen).toContain(false));
    await client.mutation(LikeVideoMutation, { id: 'v1' }).toPromise();
    await vi.waitFor(() => expect(seen[seen.length - 1]).toBe(true));
    sub.unsubscribe();
  });
});
