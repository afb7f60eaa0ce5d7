import { afterEach, describe, expect, it, vi } from 'vitest';
import { Session, subjectOf, type StorageLike } from '../../src/lib/auth/session';
import { ApiError } from '../../src/lib/api/errors';

/** A JWT-shaped token with this subject (the app never verifies it; accounts does). */
function jwt(sub: string, n: number): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'EdDSA' })}.${b64({ sub, n })}.sig`;
}

class MemoryStorage implements StorageLike {
  map = new Map<string, string>();
  getItem(k: string) {
    return this.map.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.map.set(k, v);
  }
  removeItem(k: string) {
    this.map.delete(k);
  }
}

interface Call {
  path: string;
  method: string;
  auth: string | null;
  body: unknown;
}

/** A fake accounts service: issues numbered token pairs and rotates refresh tokens once. */
function fakeAccounts(opts: { expiresIn?: number; refreshStatus?: number; refreshThrows?: boolean } = {}) {
  const calls: Call[] = [];
  let issued = 0;
  const live = new Set<string>();
  const validAccess = new Set<string>();
  const issue = () => {
    issued++;
    const access = jwt('user-1', issued);
    const refresh = `r${issued}`;
    live.add(refresh);
    validAccess.add(access);
    return { access_token: access, refresh_token: refresh, token_type: 'Bearer', expires_in: opts.expiresIn ?? 900 };
  };
  const json = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  const fetch = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const path = String(input);
    const headers = new Headers(init.headers);
    const body = init.body ? JSON.parse(String(init.body)) : null;
    calls.push({ path, method: init.method ?? 'GET', auth: headers.get('authorization'), body });
    if (path === '/auth/login') {
      if (body.password !== 'correct horse') return json(401, { error: { code: 'UNAUTHENTICATED', message: 'wrong login or password' } });
      return json(200, issue());
    }
    if (path === '/auth/register') {
      return json(201, { id: 'user-1', username: body.username, display_name: body.display_name, email: body.email });
    }
    if (path === '/auth/refresh') {
      if (opts.refreshThrows) throw new TypeError('Failed to fetch');
      if (opts.refreshStatus) return json(opts.refreshStatus, { error: { code: 'UNAVAILABLE', message: 'down' } });
      if (!live.has(body.refresh_token)) return json(401, { error: { code: 'UNAUTHENTICATED', message: 'refresh token reused' } });
      live.delete(body.refresh_token);
      return json(200, issue());
    }
    const token = headers.get('authorization')?.replace('Bearer ', '') ?? '';
    if (!validAccess.has(token)) return json(401, { error: { code: 'UNAUTHENTICATED', message: 'invalid token' } });
    if (path === '/auth/logout') {
      validAccess.clear();
      live.clear();
      return new Response(null, { status: 204 });
    }
    return json(200, { ok: true });
  });
  return {
    fetch,
    calls,
    revokeAccess: () => validAccess.clear(),
    revokeAll: () => {
      validAccess.clear();
      live.clear();
    },
  };
}

const sessions: Session[] = [];
function session(deps: ConstructorParameters<typeof Session>[0]): Session {
  const s = new Session({ autoRefresh: false, ...deps });
  sessions.push(s);
  return s;
}

afterEach(() => {
  while (sessions.length) sessions.pop()!.dispose();
  vi.useRealTimers();
});

describe('signing in', () => {
  it('keeps the access token in memory and only the refresh token in storage', async () => {
    const api = fakeAccounts();
    const storage = new MemoryStorage();
    const s = session({ fetch: api.fetch, storage });
    const statuses: string[] = [];
    s.subscribe((st) => statuses.push(st));
    await s.login('ada', 'correct horse');
    expect(s.status).toBe('signed-in');
    expect(s.userId).toBe('user-1');
    expect(s.accessToken).toBe(jwt('user-1', 1));
    const stored = JSON.parse(storage.getItem('flick.session')!);
    expect(stored.refreshToken).toBe('r1');
    expect(JSON.stringify(stored)).not.toContain(s.accessToken!);
    expect(statuses).toEqual(['signed-in']);
  });

  it('never sends a bearer token to /auth (the edge would refuse a stale one)', async () => {
    const api = fakeAccounts();
    const s = session({ fetch: api.fetch });
    await s.login('ada', 'correct horse');
    await s.refresh();
    expect(api.calls.filter((c) => c.path.startsWith('/auth/') && c.path !== '/auth/logout').every((c) => c.auth === null)).toBe(true);
  });

  it('throws the API problem for a wrong password', async () => {
    const api = fakeAccounts();
    const s = session({ fetch: api.fetch });
    const err = await s.login('ada', 'wrong').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).problem.code).toBe('UNAUTHENTICATED');
    expect(s.status).toBe('anonymous');
  });

  it('registers, then signs in with the new account', async () => {
    const api = fakeAccounts();
    const s = session({ fetch: api.fetch });
    const user = await s.register({ email: 'ada@example.org', username: 'ada', password: 'correct horse', displayName: 'Ada' });
    expect(user.display_name).toBe('Ada');
    expect(api.calls.map((c) => c.path)).toEqual(['/auth/register', '/auth/login']);
    expect(api.calls[0]!.body).toEqual({ email: 'ada@example.org', username: 'ada', password: 'correct horse', display_name: 'Ada' });
    expect(s.status).toBe('signed-in');
  });
});

describe('refresh', () => {
  it('rotates the refresh token and runs one refresh for concurrent callers', async () => {
    const api = fakeAccounts();
    const storage = new MemoryStorage();
    const s = session({ fetch: api.fetch, storage });
    await s.login('ada', 'correct horse');
    const results = await Promise.all([s.refresh(), s.refresh(), s.refresh()]);
    expect(results).toEqual([true, true, true]);
    expect(api.calls.filter((c) => c.path === '/auth/refresh')).toHaveLength(1);
    expect(JSON.parse(storage.getItem('flick.session')!).refreshToken).toBe('r2');
  });

  it('refreshes before a token that is about to expire is used', async () => {
    vi.useFakeTimers();
    const api = fakeAccounts({ expiresIn: 120 });
    const s = session({ fetch: api.fetch, refreshSkewMs: 60_000 });
    await s.login('ada', 'correct horse');
    expect(await s.freshToken()).toBe(jwt('user-1', 1));
    vi.advanceTimersByTime(61_000);
    expect(s.expiresSoon).toBe(true);
    expect(await s.freshToken()).toBe(jwt('user-1', 2));
  });

  it('a 401 triggers one refresh and one retry', async () => {
    const api = fakeAccounts();
    const s = session({ fetch: api.fetch });
    await s.login('ada', 'correct horse');
    api.revokeAccess(); // e.g. the access token's key was rotated out
    const res = await s.authFetch('/user/profile');
    expect(res.status).toBe(200);
    expect(api.calls.map((c) => c.path)).toEqual(['/auth/login', '/user/profile', '/auth/refresh', '/user/profile']);
    expect(s.status).toBe('signed-in');
  });

  it('asks for a new sign-in when the refresh is refused, once', async () => {
    const api = fakeAccounts();
    const storage = new MemoryStorage();
    const s = session({ fetch: api.fetch, storage });
    await s.login('ada', 'correct horse');
    api.revokeAll(); // logged out elsewhere: the family is revoked
    const statuses: string[] = [];
    s.subscribe((st) => statuses.push(st));
    const res = await s.authFetch('/user/profile');
    expect(res.status).toBe(401);
    expect(s.status).toBe('expired');
    expect(statuses).toEqual(['expired']);
    expect(storage.getItem('flick.session')).toBeNull();
    expect(api.calls.filter((c) => c.path === '/auth/refresh')).toHaveLength(1);
    s.dismissExpired();
    expect(s.status).toBe('anonymous');
  });

  it('keeps the session when accounts cannot answer the refresh', async () => {
    const api = fakeAccounts({ refreshStatus: 503 });
    const s = session({ fetch: api.fetch });
    await s.login('ada', 'correct horse');
    const err = await s.refresh().catch((e: unknown) => e);
    expect((err as ApiError).problem.code).toBe('UNAVAILABLE');
    expect(s.status).toBe('signed-in');
    expect(s.signedIn).toBe(true);
  });

  it('keeps the session through a network error during the refresh', async () => {
    const api = fakeAccounts({ refreshThrows: true });
    const s = session({ fetch: api.fetch });
    await s.login('ada', 'correct horse');
    const err = await s.refresh().catch((e: unknown) => e);
    expect((err as ApiError).problem.code).toBe('NETWORK');
    expect(s.signedIn).toBe(true);
  });

  it('refreshes in the background before expiry', async () => {
    vi.useFakeTimers();
    const api = fakeAccounts({ expiresIn: 900 });
    const s = new Session({ fetch: api.fetch, refreshSkewMs: 60_000 });
    sessions.push(s);
    await s.login('ada', 'correct horse');
    await vi.advanceTimersByTimeAsync(841_000);
    expect(api.calls.filter((c) => c.path === '/auth/refresh')).toHaveLength(1);
    expect(s.accessToken).toBe(jwt('user-1', 2));
  });
});

describe('reload and tabs', () => {
  it('restores a session left in storage by rotating its refresh token', async () => {
    const api = fakeAccounts();
    const storage = new MemoryStorage();
    const first = session({ fetch: api.fetch, storage });
    await first.login('ada', 'correct horse');
    first.dispose(); // the page reloads: memory is gone, sessionStorage stays
    const second = session({ fetch: api.fetch, storage, channel: (n) => new BroadcastChannel(n) as never, claimWaitMs: 30 });
    expect(await second.restore()).toBe('signed-in');
    expect(second.accessToken).toBe(jwt('user-1', 2));
  });

  it('a stored session that cannot be refreshed signs out quietly (no prompt)', async () => {
    const api = fakeAccounts();
    const storage = new MemoryStorage();
    storage.setItem('flick.session', JSON.stringify({ refreshToken: 'stale', key: 'k' }));
    const s = session({ fetch: api.fetch, storage });
    expect(await s.restore()).toBe('anonymous');
    expect(storage.getItem('flick.session')).toBeNull();
  });

  it('a duplicated tab leaves the session to the tab that holds it', async () => {
    const api = fakeAccounts();
    const channel = (n: string) => new BroadcastChannel(n) as never;
    const storageA = new MemoryStorage();
    const a = session({ fetch: api.fetch, storage: storageA, channel, claimWaitMs: 200 });
    await a.login('ada', 'correct horse');
    // Duplicating a tab copies its sessionStorage.
    const storageB = new MemoryStorage();
    storageB.setItem('flick.session', storageA.getItem('flick.session')!);
    const b = session({ fetch: api.fetch, storage: storageB, channel, claimWaitMs: 200 });
    expect(await b.restore()).toBe('anonymous');
    expect(storageB.getItem('flick.session')).toBeNull();
    expect(api.calls.filter((c) => c.path === '/auth/refresh')).toHaveLength(0);
    // The original tab's session is untouched and still refreshes.
    expect(await a.refresh()).toBe(true);
  });

  it('ignores unreadable storage', async () => {
    const api = fakeAccounts();
    const storage = new MemoryStorage();
    storage.setItem('flick.session', '{not json');
    const s = session({ fetch: api.fetch, storage });
    expect(await s.restore()).toBe('anonymous');
    expect(api.fetch).not.toHaveBeenCalled();
  });
});

describe('logout', () => {
  it('revokes on the server with the access token, then forgets everything', async () => {
    const api = fakeAccounts();
    const storage = new MemoryStorage();
    const s = session({ fetch: api.fetch, storage });
    await s.login('ada', 'correct horse');
    expect(await s.logout()).toBeNull();
    const call = api.calls.find((c) => c.path === '/auth/logout')!;
    expect(call.method).toBe('POST');
    expect(call.auth).toBe(`Bearer ${jwt('user-1', 1)}`);
    expect(s.status).toBe('anonymous');
    expect(s.accessToken).toBeNull();
    expect(storage.getItem('flick.session')).toBeNull();
  });

  it('signs out locally and reports it when the server cannot be reached', async () => {
    const api = fakeAccounts();
    const s = session({ fetch: api.fetch });
    await s.login('ada', 'correct horse');
    api.fetch.mockImplementationOnce(async () => {
      throw new TypeError('Failed to fetch');
    });
    const problem = await s.logout();
    expect(problem?.code).toBe('NETWORK');
    expect(s.status).toBe('anonymous');
  });
});

describe('subjectOf', () => {
  it('reads the sub claim of a JWT and nothing else', () => {
    expect(subjectOf(jwt('0190-abc', 1))).toBe('0190-abc');
    expect(subjectOf('not a jwt')).toBeNull();
    expect(subjectOf('a.%%%.c')).toBeNull();
  });
});
