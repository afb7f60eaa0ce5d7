// The signed-in session: tokens from accounts' REST API (api.md: POST /auth/login answers
// {access_token, refresh_token, token_type, expires_in}; POST /auth/refresh takes
// {refresh_token} in its JSON body and rotates it; POST /auth/logout revokes the access token
// and the refresh-token family; no cookies anywhere, ARCHITECTURE.md "Edge and router").
//
// Where the tokens live, and why:
// - The access token (15 min) lives in memory only: nothing else on the page can find it
//   after a reload, and it is sent only in `Authorization` headers and graphql-ws's
//   connection_init.
// - The refresh token has to be held by script, since the API returns it in a JSON body
//   rather than an HttpOnly cookie. It is kept in sessionStorage so a reload (or a tab
//   restored after a crash) stays signed in. The trade-off: a script injected into the page
//   (XSS) could read it, as it could read a token kept in memory while the page is open; it
//   is not kept across browser restarts or shared with other tabs (localStorage would be),
//   rotation makes a stolen one single-use, and a reuse revokes the whole family on the
//   server. Keeping it in memory only would remove the window after the tab closes, at the
//   cost of a sign-in on every reload. If accounts ever sets it as an HttpOnly, SameSite
//   cookie scoped to /auth, this module should stop storing it.
// - A duplicated tab copies sessionStorage. Two tabs rotating one refresh token would make
//   the second refresh a reuse, which revokes the family and signs both out. So a tab that
//   finds a stored token first asks the other tabs (BroadcastChannel) whether one of them is
//   already using it; if so, it drops its copy and the user signs in again in that tab.

import { ApiError, fromRest, makeProblem, type Problem } from '../api/errors';

export type SessionStatus = 'anonymous' | 'signed-in' | 'expired';

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface ChannelLike {
  postMessage(message: unknown): void;
  addEventListener(type: 'message', listener: (ev: { data: unknown }) => void): void;
  close(): void;
}

export interface SessionDeps {
  fetch: typeof fetch;
  /** Where the refresh token survives a reload (sessionStorage), or null for memory only. */
  storage?: StorageLike | null;
  /** A BroadcastChannel factory, or null where there is none. */
  channel?: ((name: string) => ChannelLike) | null;
  now?: () => number;
  /** How long a tab waits for another tab to claim a stored session (ms). */
  claimWaitMs?: number;
  /** Refresh this long before the access token expires (ms). */
  refreshSkewMs?: number;
  /** Proactive refresh in the background (off in tests that drive time themselves). */
  autoRefresh?: boolean;
}

interface Tokens {
  accessToken: string;
  refreshToken: string;
  /** Epoch ms when the access token expires. */
  expiresAt: number;
}

interface TokenResponse {
  access_token: string;
  refresh_token: string;
  token_type?: string;
  expires_in: number;
}

export interface RegisteredUser {
  id: string;
  email?: string | null;
  username: string;
  display_name: string;
}

export interface Registration {
  email: string;
  username: string;
  password: string;
  displayName: string;
}

const STORAGE_KEY = 'flick.session';
const CHANNEL = 'flick-session';

type Listener = (status: SessionStatus) => void;

export class Session {
  private tokens: Tokens | null = null;
  private key: string | null = null;
  private refreshing: Promise<boolean> | null = null;
  private restoring = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private listeners = new Set<Listener>();
  private channel: ChannelLike | null = null;
  private readonly deps: Required<Omit<SessionDeps, 'storage' | 'channel'>> & {
    storage: StorageLike | null;
    channel: ((name: string) => ChannelLike) | null;
  };
  status: SessionStatus = 'anonymous';

  constructor(deps: SessionDeps) {
    this.deps = {
      fetch: deps.fetch,
      storage: deps.storage ?? null,
      channel: deps.channel ?? null,
      now: deps.now ?? (() => Date.now()),
      claimWaitMs: deps.claimWaitMs ?? 150,
      refreshSkewMs: deps.refreshSkewMs ?? 60_000,
      autoRefresh: deps.autoRefresh ?? true,
    };
    if (this.deps.channel) {
      this.channel = this.deps.channel(CHANNEL);
      this.channel.addEventListener('message', (ev) => this.onChannelMessage(ev.data));
    }
  }

  /** Calls `fn` with every status change; returns the unsubscribe function. */
  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** The access token if it has not expired (for synchronous callers such as hls.js). */
  get accessToken(): string | null {
    if (!this.tokens || this.tokens.expiresAt <= this.deps.now()) return null;
    return this.tokens.accessToken;
  }

  get signedIn(): boolean {
    return this.tokens !== null;
  }

  /** The signed-in user's id, read from the access token's `sub` (for display decisions only). */
  get userId(): string | null {
    return this.tokens ? subjectOf(this.tokens.accessToken) : null;
  }

  /** A token good for at least `refreshSkewMs`, refreshing first when needed; null when signed out. */
  async freshToken(): Promise<string | null> {
    if (!this.tokens) return null;
    if (this.tokens.expiresAt - this.deps.now() <= this.deps.refreshSkewMs) {
      const ok = await this.refresh();
      if (!ok) return null;
    }
    return this.tokens?.accessToken ?? null;
  }

  /** Whether the token is about to expire (urql's authExchange asks before each operation). */
  get expiresSoon(): boolean {
    return this.tokens !== null && this.tokens.expiresAt - this.deps.now() <= this.deps.refreshSkewMs;
  }

  /**
   * Rotates the refresh token. One refresh runs at a time: concurrent callers share it.
   * Resolves false when the session is over (refused refresh: expired, revoked, reused);
   * throws an ApiError when accounts could not answer (network, 5xx, 429), keeping the
   * tokens so a later try can still succeed.
   */
  refresh(): Promise<boolean> {
    if (!this.tokens) return Promise.resolve(false);
    if (!this.refreshing) {
      const refreshToken = this.tokens.refreshToken;
      this.refreshing = this.doRefresh(refreshToken).finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(refreshToken: string): Promise<boolean> {
    let res: Response;
    try {
      res = await this.deps.fetch('/auth/refresh', {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ refresh_token: refreshToken }),
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(makeProblem({ code: 'NETWORK', serverMessage: (e as Error).message }));
    }
    if (res.ok) {
      this.setTokens((await res.json()) as TokenResponse);
      return true;
    }
    const problem = fromRest(res.status, await res.text(), res.headers.get('retry-after'));
    if (refusesSession(problem)) {
      this.expire();
      return false;
    }
    throw new ApiError(problem);
  }

  /** Signs in with an email or username; throws an ApiError with the reason. */
  async login(login: string, password: string): Promise<void> {
    const res = await this.post('/auth/login', { login, password });
    this.key = randomKey();
    this.setTokens((await res.json()) as TokenResponse);
  }

  /** Creates the account, then signs in with it. */
  async register(r: Registration): Promise<RegisteredUser> {
    const res = await this.post('/auth/register', {
      email: r.email,
      username: r.username,
      password: r.password,
      display_name: r.displayName,
    });
    const user = (await res.json()) as RegisteredUser;
    await this.login(r.username, r.password);
    return user;
  }

  /**
   * Revokes the tokens on the server, then forgets them here whatever the answer. Returns the
   * problem when the server could not confirm the revocation (the user is signed out here
   * either way; the refresh token dies with its session at the latest).
   */
  async logout(): Promise<Problem | null> {
    let problem: Problem | null = null;
    try {
      const res = await this.authFetch('/auth/logout', { method: 'POST' });
      if (!res.ok && res.status !== 401) problem = fromRest(res.status, await res.text());
    } catch (e) {
      problem = e instanceof ApiError ? e.problem : makeProblem({ code: 'NETWORK' });
    }
    this.clear('anonymous');
    return problem;
  }

  /**
   * Deletes the account (DELETE /user/profile with the current password: a stolen access
   * token alone cannot, ADR 0030); on success the session ends here too. Throws the problem.
   */
  async deleteAccount(currentPassword: string): Promise<void> {
    const res = await this.authFetch('/user/profile', {
      method: 'DELETE',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ current_password: currentPassword }),
    });
    if (!res.ok) throw new ApiError(fromRest(res.status, await res.text(), res.headers.get('retry-after')));
    this.clear('anonymous');
  }

  /**
   * fetch() with the bearer token. A 401 triggers one refresh and one retry; if that fails
   * too, the session is over (status 'expired': the app asks the user to sign in again).
   */
  async authFetch(path: string, init: RequestInit = {}): Promise<Response> {
    const send = async (token: string | null): Promise<Response> => {
      const headers = new Headers(init.headers);
      if (token) headers.set('authorization', `Bearer ${token}`);
      try {
        return await this.deps.fetch(path, { ...init, headers, credentials: 'omit' });
      } catch (e) {
        throw new ApiError(makeProblem({ code: 'NETWORK', serverMessage: (e as Error).message }));
      }
    };
    const token = await this.freshToken();
    const res = await send(token);
    if (res.status !== 401 || !token) return res;
    if (!(await this.refresh())) return res;
    const again = await send(this.tokens?.accessToken ?? null);
    if (again.status === 401) this.expire();
    return again;
  }

  /**
   * Picks up the session a reload left in storage, unless another open tab is using it.
   * Resolves to the status reached.
   */
  async restore(): Promise<SessionStatus> {
    const stored = this.readStored();
    if (!stored) return this.status;
    if (await this.claimedElsewhere(stored.key)) {
      // This tab is a duplicate: its copy of the token belongs to the other tab.
      this.deps.storage?.removeItem(STORAGE_KEY);
      return this.status;
    }
    this.key = stored.key;
    // A placeholder access token that is already expired: the refresh replaces it.
    this.tokens = { accessToken: '', refreshToken: stored.refreshToken, expiresAt: 0 };
    this.restoring = true;
    try {
      await this.refresh();
    } catch {
      // Accounts could not answer: keep the stored token, count as signed in, and let the
      // next request try the refresh again.
      if (this.tokens && this.status !== 'signed-in') {
        this.status = 'signed-in';
        this.emit();
      }
    } finally {
      this.restoring = false;
    }
    return this.status;
  }

  /** The API refused the credentials after a refresh was tried: ask the user to sign in. */
  expire(): void {
    if (!this.tokens) return;
    // A session found in storage that cannot be refreshed lost nothing on this page: no prompt.
    this.clear(this.restoring ? 'anonymous' : 'expired');
  }

  /** The user closed the sign-in prompt without signing in. */
  dismissExpired(): void {
    if (this.status === 'expired') {
      this.status = 'anonymous';
      this.emit();
    }
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.channel?.close();
    this.listeners.clear();
  }

  // ---- internals -------------------------------------------------------------------------

  private async post(path: string, body: unknown): Promise<Response> {
    let res: Response;
    try {
      // No Authorization here: the edge's ForwardAuth answers 401 to a stale token on
      // every route, /auth included.
      res = await this.deps.fetch(path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(makeProblem({ code: 'NETWORK', serverMessage: (e as Error).message }));
    }
    if (!res.ok) throw new ApiError(fromRest(res.status, await res.text(), res.headers.get('retry-after')));
    return res;
  }

  private setTokens(t: TokenResponse): void {
    this.tokens = {
      accessToken: t.access_token,
      refreshToken: t.refresh_token,
      expiresAt: this.deps.now() + t.expires_in * 1000,
    };
    this.key ??= randomKey();
    this.deps.storage?.setItem(STORAGE_KEY, JSON.stringify({ refreshToken: t.refresh_token, key: this.key }));
    this.schedule();
    const changed = this.status !== 'signed-in';
    this.status = 'signed-in';
    if (changed) this.emit();
  }

  private clear(status: SessionStatus): void {
    this.tokens = null;
    this.key = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.deps.storage?.removeItem(STORAGE_KEY);
    const changed = this.status !== status;
    this.status = status;
    if (changed) this.emit();
  }

  private schedule(): void {
    if (!this.deps.autoRefresh || !this.tokens) return;
    if (this.timer) clearTimeout(this.timer);
    const due = Math.max(1_000, this.tokens.expiresAt - this.deps.now() - this.deps.refreshSkewMs);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.refresh().catch(() => {
        // Accounts unreachable: try again soon, while the access token still works.
        if (this.tokens && this.tokens.expiresAt > this.deps.now()) {
          this.timer = setTimeout(() => void this.refresh().catch(() => undefined), 15_000);
        }
      });
    }, due);
  }

  private emit(): void {
    for (const fn of this.listeners) fn(this.status);
  }

  private readStored(): { refreshToken: string; key: string } | null {
    const raw = this.deps.storage?.getItem(STORAGE_KEY);
    if (!raw) return null;
    try {
      const v = JSON.parse(raw) as { refreshToken?: unknown; key?: unknown };
      if (typeof v.refreshToken === 'string' && typeof v.key === 'string') {
        return { refreshToken: v.refreshToken, key: v.key };
      }
    } catch {
      // unreadable: dropped below
    }
    this.deps.storage?.removeItem(STORAGE_KEY);
    return null;
  }

  private claimedElsewhere(key: string): Promise<boolean> {
    const channel = this.channel;
    if (!channel || !this.deps.channel) return Promise.resolve(false);
    return new Promise((resolve) => {
      const probe = this.deps.channel!(CHANNEL);
      const timer = setTimeout(() => {
        probe.close();
        resolve(false);
      }, this.deps.claimWaitMs);
      probe.addEventListener('message', (ev) => {
        const m = ev.data as { type?: string; key?: string } | null;
        if (m?.type === 'session-in-use' && m.key === key) {
          clearTimeout(timer);
          probe.close();
          resolve(true);
        }
      });
      probe.postMessage({ type: 'who-uses-session', key });
    });
  }

  private onChannelMessage(data: unknown): void {
    const m = data as { type?: string; key?: string } | null;
    if (m?.type === 'who-uses-session' && m.key && m.key === this.key && this.tokens) {
      this.channel?.postMessage({ type: 'session-in-use', key: m.key });
    }
  }
}

/** A refresh the server refused for good (as opposed to one it could not answer). */
function refusesSession(p: Problem): boolean {
  return p.code === 'UNAUTHENTICATED' || p.code === 'BAD_USER_INPUT' || p.code === 'FORBIDDEN' || p.code === 'NOT_FOUND';
}

function randomKey(): string {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The `sub` claim of a JWT, unverified (the server verifies; the app only reads it). */
export function subjectOf(jwt: string): string | null {
  const part = jwt.split('.')[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    const claims = JSON.parse(json) as { sub?: unknown };
    return typeof claims.sub === 'string' ? claims.sub : null;
  } catch {
    return null;
  }
}
