// The app's shared state: the session, the signed-in user, the GraphQL client, and the
// sign-in prompt that opens over the current page (so nothing typed there is lost) when a
// session ends or an action needs one.

import { Session, type SessionStatus } from './auth/session';
import { createFlickClient, type FlickClient } from './api/client';
import { MeQuery } from './graphql/operations';
import type { MeQuery as MeData } from './gql/graphql';

export type Me = NonNullable<MeData['me']>;

function browserSession(): Session {
  return new Session({
    fetch: (input, init) => window.fetch(input, init),
    storage: safeSessionStorage(),
    channel: typeof BroadcastChannel === 'function' ? (name) => new BroadcastChannel(name) : null,
  });
}

function safeSessionStorage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled: memory only
  }
}

class AppState {
  readonly session: Session = browserSession();
  status = $state<SessionStatus>('anonymous');
  userId = $state<string | null>(null);
  me = $state<Me | null>(null);
  /** Bumped at every sign-in and sign-out: pages showing viewer data query again. */
  epoch = $state(0);
  /** Bumped when the client is replaced (sign-out, another user): the page tree remounts. */
  generation = $state(0);
  flick = $state.raw<FlickClient>(createFlickClient(this.session, window.location));
  /** Why the sign-in prompt is open, or null. */
  prompt = $state<string | null>(null);
  /** A message for the whole app (e.g. a sign-out the server could not confirm). */
  notice = $state<string | null>(null);
  /** The stored session has been tried (restore finished). */
  ready = $state(false);

  private lastUserId: string | null = null;

  constructor() {
    this.session.subscribe((status) => this.onStatus(status));
  }

  async start(): Promise<void> {
    await this.session.restore();
    this.onStatus(this.session.status);
    this.ready = true;
  }

  /** Opens the sign-in prompt over the current page. */
  requireSignIn(reason = 'Sign in to continue.'): void {
    this.prompt = reason;
  }

  closePrompt(): void {
    this.prompt = null;
    this.session.dismissExpired();
  }

  async refreshMe(): Promise<void> {
    const result = await this.flick.client.query(MeQuery, {}, { requestPolicy: 'network-only' }).toPromise();
    if (result.data) this.me = result.data.me ?? null;
  }

  private onStatus(status: SessionStatus): void {
    const previous = this.status;
    this.status = status;
    if (status === 'signed-in') {
      const id = this.session.userId;
      this.userId = id;
      if (previous !== 'signed-in') {
        if (this.lastUserId && id !== this.lastUserId) this.replaceClient();
        this.lastUserId = id;
        this.epoch++;
        this.prompt = null;
        void this.refreshMe();
      }
    } else if (status === 'expired') {
      // Keep lastUserId: signing in again as the same user keeps the page as it is.
      this.userId = null;
      this.prompt = 'Your session has ended. Sign in again to continue; what you typed stays here.';
    } else if (previous === 'signed-in') {
      // Signed out: drop everything cached for the previous user (the pages remount).
      this.userId = null;
      this.me = null;
      this.lastUserId = null;
      this.epoch++;
      this.replaceClient();
    } else if (previous === 'expired') {
      // The prompt was closed without signing in: the page stays, its queries run anonymously.
      this.me = null;
      this.lastUserId = null;
      this.epoch++;
    }
  }

  private replaceClient(): void {
    this.flick.dispose();
    this.flick = createFlickClient(this.session, window.location);
    this.generation++;
  }
}

export const app = new AppState();
