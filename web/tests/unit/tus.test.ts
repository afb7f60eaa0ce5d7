// The upload wiring with the real tus-js-client against a small tus server that behaves like
// the transcoder's (crates/transcoder/src/tus.rs): creation with Upload-Metadata videoId,
// HEAD for the offset, PATCH, DELETE; every request must carry a valid bearer token.
import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Session } from '../../src/lib/auth/session';
import { Transfer, releaseTicket } from '../../src/lib/upload/tus';
import type { UploadEvent } from '../../src/lib/upload/state';

function jwt(n: number): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'EdDSA' })}.${b64({ sub: 'u1', n })}.sig`;
}

interface Seen {
  method: string;
  url: string;
  auth: string | undefined;
  metadata?: string | undefined;
  length?: string | undefined;
}

function tusServer(opts: { failFirstPatchWith401?: boolean; ticketLength?: number } = {}) {
  const seen: Seen[] = [];
  const valid = new Set<string>([jwt(1)]);
  let offset = 0;
  // A ticket: createVideo with sizeBytes opened up1 with this length already.
  let length = opts.ticketLength ?? 0;
  let failed = false;
  const server = http.createServer((req, res) => {
    const auth = req.headers['authorization'];
    seen.push({ method: req.method!, url: req.url!, auth, metadata: req.headers['upload-metadata'] as string, length: req.headers['upload-length'] as string });
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('end', () => {
      const reply = (status: number, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'Tus-Resumable': '1.0.0', ...headers });
        res.end();
      };
      if (!auth || !valid.has(auth.replace('Bearer ', ''))) return reply(401);
      if (req.method === 'POST' && req.url === '/video/upload') {
        length = Number(req.headers['upload-length']);
        return reply(201, { Location: '/video/upload/up1', 'Upload-Offset': '0' });
      }
      if (req.method === 'HEAD' && req.url === '/video/upload/up1') {
        return reply(200, { 'Upload-Offset': String(offset), 'Upload-Length': String(length), 'Cache-Control': 'no-store' });
      }
      if (req.method === 'PATCH' && req.url === '/video/upload/up1') {
        if (opts.failFirstPatchWith401 && !failed) {
          failed = true;
          valid.clear(); // the access token expired mid-upload
          valid.add(jwt(2));
          return reply(401);
        }
        offset += Buffer.concat(body).length;
        return reply(204, { 'Upload-Offset': String(offset) });
      }
      if (req.method === 'DELETE') return reply(204);
      reply(404);
    });
  });
  return { server, seen };
}

/** A session whose token is jwt(1), refreshed to jwt(2). */
async function signedIn(): Promise<Session> {
  let n = 0;
  const fetch = async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const path = String(input);
    if (path === '/auth/login' || path === '/auth/refresh') {
      n++;
      return new Response(JSON.stringify({ access_token: jwt(n), refresh_token: `r${n}`, expires_in: 900 }), { status: 200 });
    }
    // releaseTicket goes through authFetch with an absolute URL: hand it to the real server.
    return globalThis.fetch(input, init);
  };
  const s = new Session({ fetch: fetch as typeof globalThis.fetch, autoRefresh: false });
  await s.login('ada', 'pw');
  return s;
}

const servers: http.Server[] = [];
afterEach(() => {
  while (servers.length) servers.pop()!.close();
});

async function listen(server: http.Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function run(transfer: Transfer, events: UploadEvent[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no end: ${JSON.stringify(events)}`)), 5000);
    const check = setInterval(() => {
      const last = events[events.length - 1];
      if (last?.type === 'uploaded' || last?.type === 'uploadFailed') {
        clearInterval(check);
        clearTimeout(timer);
        resolve();
      }
    }, 5);
    void transfer.start();
  });
}

describe('tus upload with tus-js-client', () => {
  it('creates the upload with videoId metadata and the bearer token, then sends the bytes', async () => {
    const { server, seen } = tusServer();
    const base = await listen(server);
    const session = await signedIn();
    const events: UploadEvent[] = [];
    let urls = 0;
    const file = Buffer.alloc(64 * 1024, 7) as unknown as File;
    const t = new Transfer(file, { videoId: 'v42', title: 'Clip' }, session, (e) => events.push(e), () => urls++, `${base}/video/upload`);
    await run(t, events);
    expect(events[events.length - 1]!.type).toBe('uploaded');
    const post = seen.find((s) => s.method === 'POST')!;
    expect(post.length).toBe(String(64 * 1024));
    const meta = Object.fromEntries(post.metadata!.split(',').map((kv) => {
      const [k, v] = kv.split(' ');
      return [k, Buffer.from(v ?? '', 'base64').toString()];
    }));
    expect(meta['videoId']).toBe('v42');
    expect(meta['title']).toBe('Clip');
    expect(seen.every((s) => s.auth === `Bearer ${jwt(1)}`)).toBe(true);
    expect(urls).toBe(1);
    expect(events.some((e) => e.type === 'progress' && e.bytesSent === 64 * 1024)).toBe(true);
  });

  it("uses createVideo's ticket (an upload that knows its length) without creating another", async () => {
    const file = Buffer.alloc(48 * 1024, 3) as unknown as File;
    const { server, seen } = tusServer({ ticketLength: 48 * 1024 });
    const base = await listen(server);
    const session = await signedIn();
    const events: UploadEvent[] = [];
    const t = new Transfer(file, { videoId: 'v7', title: 'Ticket' }, session, (e) => events.push(e), undefined, `${base}/video/upload`, `${base}/video/upload/up1`);
    await run(t, events);
    expect(events[events.length - 1]!.type).toBe('uploaded');
    expect(seen.some((s) => s.method === 'POST')).toBe(false);
    expect(seen.filter((s) => s.method === 'PATCH').every((s) => s.url === '/video/upload/up1')).toBe(true);
  });

  it('refreshes the token on a 401 mid-upload and carries on from the server offset', async () => {
    const { server, seen } = tusServer({ failFirstPatchWith401: true });
    const base = await listen(server);
    const session = await signedIn();
    const events: UploadEvent[] = [];
    const file = Buffer.alloc(1000, 1) as unknown as File;
    const t = new Transfer(file, { videoId: 'v1', title: 'x' }, session, (e) => events.push(e), undefined, `${base}/video/upload`);
    await run(t, events);
    expect(events[events.length - 1]!.type).toBe('uploaded');
    expect(seen.map((s) => `${s.method} ${s.auth === `Bearer ${jwt(2)}` ? 'new' : 'old'}`)).toEqual([
      'POST old',
      'PATCH old', // 401: the token expired
      'HEAD new', // after one refresh, tus-js-client asks the offset
      'PATCH new',
    ]);
  });

  it('reports a refusal it cannot fix (e.g. the open-uploads cap) without retrying', async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(403, { 'Tus-Resumable': '1.0.0', 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'FORBIDDEN', message: 'too many unfinished uploads: 10 are open and at most 10 are allowed; finish or terminate one first' } }));
    });
    const base = await listen(server);
    const session = await signedIn();
    const events: UploadEvent[] = [];
    const t = new Transfer(Buffer.alloc(10) as unknown as File, { videoId: 'v', title: 't' }, session, (e) => events.push(e), undefined, `${base}/video/upload`);
    await run(t, events);
    const last = events[events.length - 1]!;
    expect(last.type).toBe('uploadFailed');
    if (last.type === 'uploadFailed') {
      expect(last.problem.code).toBe('FORBIDDEN');
      expect(last.problem.message).toMatch(/^Too many unfinished uploads/);
    }
  });

  it("terminates createVideo's unused ticket with tus DELETE", async () => {
    const { server, seen } = tusServer();
    const base = await listen(server);
    const session = await signedIn();
    await releaseTicket(session, `${base}/video/upload/ticket1`);
    expect(seen).toEqual([{ method: 'DELETE', url: '/video/upload/ticket1', auth: `Bearer ${jwt(1)}`, metadata: undefined, length: undefined }]);
  });
});
