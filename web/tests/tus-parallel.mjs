// tus-js-client's parallel uploads against the running platform, through the edge: a clip is
// sent as PARTS partial uploads at once (`parallelUploads`), which tus-js-client then joins with
// a final upload (tus concatenation: `Upload-Concat: partial`, then `final;<urls>`), and the
// video it names is transcoded to READY. The client is the real tus-js-client of the web app's
// dependencies, in Node.
//
// env: FLICK_EDGE_URL  the edge (default http://127.0.0.1:8080)
//      FLICK_DATA_DIR  where the clip is made (default ./data)
//      FFMPEG          ffmpeg for the clip (default: $FLICK_TOOLS_DIR/bin/ffmpeg, then PATH)
//      FLICK_TUS_PARTS the partial uploads (default 3)
//      FLICK_TUS_TIMEOUT_S  the transcode wait (default 240)

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';

const require = createRequire(import.meta.url);
const tus = require('tus-js-client');

const BASE = (process.env.FLICK_EDGE_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
const WORK = join(resolve(process.env.FLICK_DATA_DIR ?? './data'), 'tus-parallel');
const PARTS = Number(process.env.FLICK_TUS_PARTS ?? 3);
const TIMEOUT = Number(process.env.FLICK_TUS_TIMEOUT_S ?? 240) * 1000;
const started = Date.now();

function log(msg) {
  process.stdout.write(`[tus-parallel +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
}

function ffmpegPath() {
  if (process.env.FFMPEG) return process.env.FFMPEG;
  const tools = process.env.FLICK_TOOLS_DIR ?? '/var/cache/flick/tools';
  for (const p of [join(tools, 'bin/ffmpeg'), '/var/cache/flick/tools/bin/ffmpeg']) if (existsSync(p)) return p;
  return 'ffmpeg';
}

/** A 12 s 720p clip (long enough for the e2e's segment-parallel jobs). */
function makeClip() {
  mkdirSync(WORK, { recursive: true });
  const clip = join(WORK, 'clip.mp4');
  const args = ['-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440',
    '-t', '12', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', clip];
  const r = spawnSync(ffmpegPath(), args, { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`ffmpeg failed (${r.error?.message ?? `exit ${r.status}`})`);
  return readFileSync(clip);
}

async function json(path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${BASE}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${path}: HTTP ${res.status} ${text}`);
  return JSON.parse(text);
}

async function graphql(token, query, variables = {}) {
  const answer = await json('/graphql', { query, variables }, token);
  if (answer.errors) throw new Error(`GraphQL: ${JSON.stringify(answer.errors)}`);
  return answer.data;
}

async function signIn() {
  const name = `tus${randomBytes(5).toString('hex')}`;
  const password = 'correct horse battery';
  await json('/auth/register', { email: `${name}@example.com`, username: name, password, display_name: 'Parallel' });
  return (await json('/auth/login', { login: name, password })).access_token;
}

/** Sends `bytes` with tus-js-client in `parts` partial uploads; resolves with the final URL. */
function upload(bytes, token, videoId, parts) {
  const sent = new Map();
  const created = [];
  return new Promise((done, fail) => {
    const u = new tus.Upload(bytes, {
      endpoint: `${BASE}/video/upload`,
      parallelUploads: parts,
      metadata: { videoId, filename: 'clip.mp4', filetype: 'video/mp4' },
      metadataForPartialUploads: { filename: 'clip.mp4' },
      headers: { Authorization: `Bearer ${token}` },
      storeFingerprintForResuming: false,
      retryDelays: [0, 500, 2_000],
      onAfterResponse: (req, res) => {
        if (req.getMethod() === 'POST') created.push({ concat: req.getHeader('Upload-Concat'), status: res.getStatus() });
        if (req.getMethod() === 'PATCH') sent.set(req.getURL(), Number(res.getHeader('Upload-Offset')));
      },
      onSuccess: () => done({ url: u.url, created, sent }),
      onError: fail,
    });
    u.start();
  });
}

async function main() {
  const bytes = makeClip();
  const token = await signIn();
  const created = await graphql(token,
    'mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id } } }',
    { i: { title: 'Sent in parallel', visibility: 'PUBLIC' } });
  const videoId = created.createVideo.video.id;
  log(`video ${videoId}: ${bytes.length} bytes in ${PARTS} partial uploads`);

  const { url, created: posts, sent } = await upload(bytes, token, videoId, PARTS);
  const partials = posts.filter((p) => p.concat === 'partial' && p.status === 201);
  const finals = posts.filter((p) => String(p.concat).startsWith('final;') && p.status === 201);
  if (partials.length !== PARTS) throw new Error(`expected ${PARTS} partial uploads created, saw ${JSON.stringify(posts)}`);
  if (finals.length !== 1 || finals[0].concat.split(' ').length !== PARTS) {
    throw new Error(`expected one final upload joining ${PARTS} partials, saw ${JSON.stringify(posts)}`);
  }
  const total = [...sent.values()].reduce((a, b) => a + b, 0);
  if (sent.size !== PARTS || total !== bytes.length) {
    throw new Error(`the partials' offsets add up to ${total} over ${sent.size} uploads, not ${bytes.length} over ${PARTS}`);
  }
  // The final upload is whole: its offset is the sum of the partials'.
  const head = await fetch(url, { method: 'HEAD', headers: { authorization: `Bearer ${token}`, 'Tus-Resumable': '1.0.0' } });
  const offset = Number(head.headers.get('upload-offset'));
  if (head.status !== 200 || offset !== bytes.length) {
    throw new Error(`HEAD of the final upload: HTTP ${head.status}, Upload-Offset ${offset} (want ${bytes.length})`);
  }
  log(`joined: ${url} (${offset} bytes)`);

  // Transcoded from the joined bytes: READY with the clip's duration and a ladder.
  const deadline = Date.now() + TIMEOUT;
  let video;
  for (let wait = 100; ; wait = Math.min(wait * 2, 2_000)) {
    video = (await graphql(token, 'query($id: ID!) { video(id: $id) { status failure playback { durationSeconds renditions { height } } } }', { id: videoId })).video;
    if (video.status === 'READY' || video.status === 'FAILED' || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, wait));
  }
  if (video.status !== 'READY') throw new Error(`the video ended ${video.status}: ${JSON.stringify(video)}`);
  const duration = video.playback?.durationSeconds ?? 0;
  if (Math.abs(duration - 12) > 0.2) throw new Error(`the transcoded video lasts ${duration} s, not the clip's 12`);
  const heights = video.playback.renditions.map((r) => r.height);
  if (heights.length === 0) throw new Error('READY without renditions');
  log(`ok   READY, ${duration.toFixed(2)} s, renditions ${heights.join('/')}p`);
}

main().then(
  () => process.exit(0),
  (e) => {
    log(`FAIL ${e?.stack ?? e}`);
    process.exit(1);
  },
);
