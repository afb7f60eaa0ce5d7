#!/usr/bin/env node
// The browser journey (issue 16): Debian's Chromium, headless, driven by playwright-core,
// through the web app against a running Flick (make dev, or the stack):
//   register → upload a generated 10 s 720p clip → transcoding progress reaches ready →
//   play ≥ 2 s at 720p → play from the start past its last part boundary at 2x without a stall
//   (the e2e run splits the clip into parts, scripts/e2e.sh) → like → comment (and edit it) → search finds the video with a
//   one-letter typo → the channel page lists it → the studio shows it ready → save it to Watch
//   later and a new playlist → the library shows it in history, Watch later and the playlist
//   (pause history on and off; a phone-sized screenshot) → the playlist page lists it and its
//   owner makes it public (then on the channel) → the studio's analytics of the video (7-day
//   range) and of the channel render → an upload paused and reloaded resumes from the server's
//   offset → GraphiQL at /graphql (the edge's browser route to the web app's bundled page)
//   answers `me` for the signed-in user → sign out (the token is revoked).
// Requests for hosts other than the app's are aborted for the whole run (everything is served
// by Flick itself: no CDN).
// Every page is screenshotted and checked with axe-core (no serious or critical violation),
// and the watch page's main controls must be reachable with the keyboard. Each step waits for
// what it checks; nothing sleeps for a fixed time.
//
// env: FLICK_WEB_URL   the app (default http://127.0.0.1:5173: `npm run dev`, or the edge)
//      FLICK_DATA_DIR  artifacts: web-screenshots/, web-journey/ (clip, report) (default ./data)
//      CHROMIUM        the browser (default /usr/bin/chromium)
//      FFMPEG          ffmpeg for the clip (default: $FLICK_TOOLS_DIR/bin/ffmpeg, then PATH)
//      FLICK_JOURNEY_TIMEOUT_S  the transcode wait (default 240)
//      HEADED=1        show the browser

import { chromium } from 'playwright-core';
import { checkGraphiQL, offHostBlocked } from './graphiql.mjs';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';

const require = createRequire(import.meta.url);
const BASE = (process.env.FLICK_WEB_URL ?? 'http://127.0.0.1:5173').replace(/\/$/, '');
const DATA = resolve(process.env.FLICK_DATA_DIR ?? './data');
const SHOTS = join(DATA, 'web-screenshots');
const WORK = join(DATA, 'web-journey');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const TRANSCODE_TIMEOUT = Number(process.env.FLICK_JOURNEY_TIMEOUT_S ?? 240) * 1000;
const STEP_TIMEOUT = 30_000;

mkdirSync(SHOTS, { recursive: true });
mkdirSync(WORK, { recursive: true });

const started = Date.now();
const report = { base: BASE, started: new Date(started).toISOString(), steps: [], axe: {}, observations: {}, console: [] };
let failed = false;

function log(msg) {
  process.stdout.write(`[journey +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    const detail = await fn();
    const ms = Date.now() - t0;
    report.steps.push({ name, ok: true, ms, ...(detail ? { detail } : {}) });
    log(`ok   ${name} (${ms} ms)`);
  } catch (e) {
    const ms = Date.now() - t0;
    report.steps.push({ name, ok: false, ms, error: String(e?.stack ?? e) });
    log(`FAIL ${name} (${ms} ms): ${e?.message ?? e}`);
    throw e;
  }
}

// ---- the clip ----------------------------------------------------------------------------

function ffmpegPath() {
  if (process.env.FFMPEG) return process.env.FFMPEG;
  const tools = process.env.FLICK_TOOLS_DIR ?? '/var/cache/flick/tools';
  for (const p of [join(tools, 'bin/ffmpeg'), '/var/cache/flick/tools/bin/ffmpeg']) if (existsSync(p)) return p;
  return 'ffmpeg';
}

function makeClip() {
  const clip = join(WORK, 'clip.mp4');
  if (existsSync(clip)) return clip;
  const args = ['-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine',
    '-t', '10', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', clip];
  const r = spawnSync(ffmpegPath(), args, { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`ffmpeg failed (${r.error?.message ?? `exit ${r.status}`})`);
  return clip;
}

// ---- checks ------------------------------------------------------------------------------

const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

async function axeCheck(page, name) {
  // Evaluated, not added as a <script>: the app's Content-Security-Policy (npm run preview,
  // flick web) refuses inline scripts, and a CDP evaluation is not subject to it.
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  report.axe[name] = result;
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length > 0) {
    throw new Error(`axe: ${bad.length} serious/critical violation(s) on ${name}: ${bad.map((v) => `${v.id} (${v.nodes.join(', ')})`).join('; ')}`);
  }
  return result.length;
}

async function shot(page, name) {
  // Full page; the sticky header is pinned to the top for the picture.
  await page.addStyleTag({ content: 'header.top { position: static !important; }' });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/**
 * Waits for `selector`, or fails at once with the message of an error the app shows instead
 * (an API refusal is shown, not swallowed: the test reads it rather than timing out).
 */
async function expectOrAlert(page, selector, timeout = STEP_TIMEOUT) {
  const alert = '[role="alert"][data-error-code]';
  const found = await page.waitForSelector(`${selector}, ${alert}`, { timeout });
  if (await found.evaluate((el, a) => el.matches(a), alert)) {
    const [code, text] = await found.evaluate((el) => [el.getAttribute('data-error-code'), el.textContent.trim()]);
    throw new Error(`the app shows an error instead of ${selector}: ${code}: ${text}`);
  }
  return found;
}

/** Checks a page: screenshot, then axe. */
async function checkPage(page, name) {
  await shot(page, name);
  const minor = await axeCheck(page, name);
  return { screenshot: `${name}.png`, minorAxeFindings: minor };
}

/** Tabs through the page and returns which of the wanted controls received focus. */
async function tabReach(page, wanted, maxTabs = 80) {
  await page.evaluate(() => {
    document.activeElement?.blur?.();
    window.scrollTo(0, 0);
  });
  await page.locator('body').focus();
  const reached = new Set();
  for (let i = 0; i < maxTabs && reached.size < wanted.length; i++) {
    await page.keyboard.press('Tab');
    const hit = await page.evaluate((sels) => sels.filter((s) => document.activeElement?.matches(s)), wanted);
    hit.forEach((h) => reached.add(h));
  }
  return wanted.filter((w) => !reached.has(w));
}

// ---- the journey -------------------------------------------------------------------------

const suffix = randomBytes(4).toString('hex');
const word = `flick${Array.from(randomBytes(6), (b) => String.fromCharCode(97 + (b % 26))).join('')}`;
const typo = word.slice(0, 7) + (word[7] === 'x' ? 'y' : 'x') + word.slice(8);
const user = { username: `web${suffix}`, email: `web${suffix}@example.org`, password: `pw-${suffix}-journey`, displayName: `Web Journey ${suffix}` };
const title = `Journey ${word}`;

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: process.env.HEADED !== '1',
  args: ['--autoplay-policy=no-user-gesture-required', ...(process.getuid?.() === 0 ? ['--no-sandbox'] : [])],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
// Time to first feed render: from navigation start to the feed's first answer on screen.
await context.addInitScript(() => {
  const seen = () => {
    if (window.__feedRenderedAt) return;
    if (document.querySelector('main section[aria-busy="false"]')) window.__feedRenderedAt = performance.now();
  };
  new MutationObserver(seen).observe(document, { subtree: true, childList: true, attributes: true });
});
// Content-Security-Policy violations (the built app under `npm run preview` or `flick web`
// gets the production policy): any is a failure.
await context.addInitScript(() => {
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__flickCsp?.(`${e.violatedDirective} ${e.blockedURI || 'inline'} (${e.sourceFile || ''}:${e.lineNumber || ''})`);
  });
});
const page = await context.newPage();
const offHost = await offHostBlocked(page, BASE);
const cspViolations = [];
await page.exposeFunction('__flickCsp', (v) => cspViolations.push(v));
page.setDefaultTimeout(STEP_TIMEOUT);
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
page.on('console', (m) => {
  if (m.type() === 'error' || m.type() === 'warning') report.console.push(`${m.type()}: ${m.text()}`);
});
let accessToken = null;
page.on('request', (req) => {
  const auth = req.headers()['authorization'];
  if (auth?.startsWith('Bearer ') && req.url().startsWith(BASE)) accessToken = auth.slice(7);
});

let videoId = null;
let userId = null;

try {
  const clip = await (async () => {
    let c;
    await step('make a 10 s 720p clip with ffmpeg', async () => {
      c = makeClip();
      return { clip: c };
    });
    return c;
  })();

  await step('the app loads', async () => {
    await page.goto(`${BASE}/#/`);
    await page.getByRole('heading', { name: 'Latest videos' }).waitFor();
    await page.waitForFunction(() => window.__feedRenderedAt);
    const feedMs = await page.evaluate(() => Math.round(window.__feedRenderedAt));
    report.observations.timeToFirstFeedRenderMs = feedMs;
    return { timeToFirstFeedRenderMs: feedMs, ...(await checkPage(page, '01-home-anonymous')) };
  });

  await step('register', async () => {
    await page.goto(`${BASE}/#/register`);
    await page.getByLabel('Email').fill(user.email);
    await page.getByLabel('Username').fill(user.username);
    await page.getByLabel('Display name').fill(user.displayName);
    await page.getByLabel('Password').fill(user.password);
    const detail = await checkPage(page, '02-register');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByRole('link', { name: 'Upload', exact: true }).waitFor();
    userId = await page.evaluate(() => {
      const a = document.querySelector('nav a[href^="#/channel/"]');
      return a ? a.getAttribute('href').replace('#/channel/', '') : null;
    });
    if (!userId) throw new Error('no channel link after registering');
    return { ...detail, username: user.username, userId };
  });

  const stages = [];
  await step('upload the clip and watch it transcode to ready', async () => {
    await page.getByRole('link', { name: 'Upload', exact: true }).click();
    await page.getByRole('heading', { name: 'Upload a video' }).waitFor();
    await page.getByLabel('Video file', { exact: true }).setInputFiles(clip);
    await page.getByLabel('Title').fill(title);
    await page.getByLabel('Description').fill(`A generated test clip for the web journey (${suffix}).`);
    await page.getByLabel('Tags').fill('journey, testsrc');
    await page.getByLabel('Category').selectOption('tech');
    await checkPage(page, '03-upload-form');
    // Record every stage the page shows, as it shows it.
    await page.exposeFunction('__flickStage', (s) => {
      if (s && stages[stages.length - 1] !== s) stages.push(s);
    });
    await page.evaluate(() => {
      const seen = () => {
        const phase = document.querySelector('[data-phase]')?.getAttribute('data-phase');
        const stage = document.querySelector('[data-stage]')?.getAttribute('data-stage');
        if (phase) window.__flickStage(stage ? `${phase}/${stage}` : phase);
      };
      new MutationObserver(seen).observe(document.body, { subtree: true, childList: true, attributes: true });
    });
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    const card = page.locator('section[data-phase]');
    await expectOrAlert(page, 'section[data-phase]');
    videoId = await card.getAttribute('data-video-id');
    await page.waitForSelector('section[data-phase="processing"], section[data-phase="ready"], section[data-phase="failed"], section[data-phase="error"]', { timeout: 120_000 });
    await shot(page, '04-upload-processing');
    await page.waitForSelector('section[data-phase="ready"], section[data-phase="failed"], section[data-phase="error"]', { timeout: TRANSCODE_TIMEOUT });
    const phase = await card.getAttribute('data-phase');
    if (phase !== 'ready') {
      const text = await card.innerText();
      throw new Error(`upload ended ${phase}: ${text}`);
    }
    const detail = await checkPage(page, '05-upload-ready');
    return { ...detail, videoId, stages: [...stages] };
  });

  await step('the progress stream ends (by the server, else the app closes it)', async () => {
    const card = page.locator('section[data-phase]');
    await page.waitForFunction(() => document.querySelector('section[data-phase]')?.getAttribute('data-stream-end'), null, { timeout: 20_000 });
    const by = await card.getAttribute('data-stream-end');
    report.observations.videoProgressEndedBy = by;
    return { endedBy: by };
  });

  await step('play at least 2 s at 720p', async () => {
    await page.getByRole('link', { name: 'Watch now' }).click();
    await page.getByRole('heading', { name: title }).waitFor();
    const quality = page.getByLabel('Quality');
    await quality.waitFor();
    const options = await quality.locator('option').allTextContents();
    const p720 = options.find((o) => o.trim() === '720p');
    if (!p720) throw new Error(`no 720p in the quality menu: ${options.join(', ')}`);
    await quality.selectOption({ label: '720p' });
    await page.evaluate(async () => {
      const v = document.querySelector('video');
      v.muted = true;
      await v.play();
    });
    // At least 2 s played, with 720p frames on screen (a switch flushes what was buffered).
    await page.waitForFunction(
      () => {
        const v = document.querySelector('video');
        return !!v && v.currentTime >= 2 && v.videoHeight === 720;
      },
      null,
      { timeout: 60_000 },
    ).catch(async (e) => {
      const state = await page.evaluate(() => {
        const v = document.querySelector('video');
        return v && { currentTime: v.currentTime, videoHeight: v.videoHeight, paused: v.paused, ended: v.ended, error: v.error?.message };
      });
      throw new Error(`playback did not reach 2 s at 720p: ${JSON.stringify(state)} (${e.message})`);
    });
    const played = await page.evaluate(() => {
      const v = document.querySelector('video');
      return { currentTime: v.currentTime, videoWidth: v.videoWidth, videoHeight: v.videoHeight, playingHeight: v.dataset.playingHeight };
    });
    if (played.videoHeight !== 720) throw new Error(`played at ${played.videoWidth}x${played.videoHeight}, not 720p`);
    await page.evaluate(() => document.querySelector('video').pause());
    report.observations.qualityMenu = options;
    return { ...played, qualityMenu: options };
  });

  // The e2e run splits videos of 8 s or more into 4 s parts (scripts/e2e.sh): the 10 s clip is
  // two spans encoded apart and assembled. Played at double speed from the start to its last
  // second: the boundaries at 4 and 8 s pass without a stall or an error.
  await step('play across the parts\' boundaries', async () => {
    await page.evaluate(() => {
      const v = document.querySelector('video');
      window.__stalls = [];
      v.addEventListener('waiting', () => window.__stalls.push(v.currentTime));
      v.currentTime = 0;
      v.playbackRate = 2;
      return v.play();
    });
    await page.waitForFunction(() => document.querySelector('video').currentTime >= 9.5, null, { timeout: 30_000 })
      .catch(async (e) => {
        const state = await page.evaluate(() => {
          const v = document.querySelector('video');
          return { currentTime: v.currentTime, paused: v.paused, error: v.error?.message, stalls: window.__stalls };
        });
        throw new Error(`playback did not pass the parts' boundaries: ${JSON.stringify(state)} (${e.message})`);
      });
    const stalls = await page.evaluate(() => {
      document.querySelector('video').pause();
      return window.__stalls;
    });
    // A 'waiting' right after the seek to 0 is the start buffering; none after the first second.
    const late = stalls.filter((t) => t > 1);
    if (late.length) throw new Error(`playback stalled at ${late.map((t) => t.toFixed(2)).join(', ')} s`);
    report.observations.boundaryStalls = stalls;
    return { stalls };
  });

  await step('like', async () => {
    const like = page.getByTestId('like');
    await like.click();
    await expectOrAlert(page, '[data-testid="like"][aria-pressed="true"]');
    await page.locator('[data-testid="like-count"]', { hasText: /^1$/ }).waitFor();
  });

  const commentText = `Nice clip! (${suffix})`;
  await step('comment, then edit it', async () => {
    await page.getByLabel('Add a comment').fill(commentText);
    await page.getByRole('button', { name: 'Comment', exact: true }).click();
    const comment = page.locator('article.comment', { hasText: commentText });
    await expectOrAlert(page, 'article.comment');
    await comment.waitFor();
    await page.getByRole('heading', { name: '1 comment' }).waitFor();
    await comment.getByRole('button', { name: /^Edit/ }).click();
    await page.getByLabel('Edit your comment').fill(`${commentText} Edited.`);
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await page.locator('article.comment', { hasText: 'Edited.' }).getByText('(edited)').waitFor();
    const missing = await tabReach(page, ['video', 'select', '[data-testid="like"]', '#new-comment', '#search-input']);
    if (missing.length > 0) throw new Error(`not reachable with Tab on the watch page: ${missing.join(', ')}`);
    return await checkPage(page, '06-watch');
  });

  await step('search finds it with a one-letter typo', async () => {
    const box = page.getByRole('searchbox', { name: 'Search videos' });
    await box.click();
    await box.pressSequentially(typo, { delay: 30 });
    await page.waitForURL((u) => u.hash.startsWith('#/search'));
    await page.locator(`article.video-card[data-video-id="${videoId}"]`).waitFor();
    return { query: typo, title, ...(await checkPage(page, '07-search')) };
  });

  await step('the channel page lists it', async () => {
    await page.goto(`${BASE}/#/channel/${userId}`);
    await page.getByRole('heading', { name: user.displayName }).waitFor();
    await page.locator(`article.video-card[data-video-id="${videoId}"]`).waitFor();
    return await checkPage(page, '08-channel');
  });

  await step('the studio shows it ready', async () => {
    await page.getByRole('link', { name: 'Studio' }).click();
    await page.locator(`li[data-video-id="${videoId}"][data-status="READY"]`).waitFor();
    return await checkPage(page, '09-studio');
  });

  const playlistTitle = `Journey list ${suffix}`;
  await step('save the video to Watch later and to a new playlist', async () => {
    await page.goto(`${BASE}/#/watch/${videoId}`);
    await page.getByRole('heading', { name: title }).waitFor();
    await page.getByTestId('save').click();
    await page.getByTestId('save-watch-later').click();
    await expectOrAlert(page, '[data-testid="save-watch-later"]:has-text("✓")');
    await page.getByLabel('New playlist (private)').fill(playlistTitle);
    await page.getByRole('button', { name: 'Create', exact: true }).click();
    await expectOrAlert(page, `#save-panel button:has-text("${playlistTitle}"):has-text("✓")`);
    const detail = await checkPage(page, '09a-save-menu');
    await page.keyboard.press('Escape');
    await page.locator('#save-panel').waitFor({ state: 'detached' });
    return detail;
  });

  await step('the library shows it in history and Watch later, and the new playlist', async () => {
    await page.getByRole('link', { name: 'Library', exact: true }).click();
    await page.getByRole('heading', { name: 'Library', exact: true }).waitFor();
    await expectOrAlert(page, `[data-testid="history"] li[data-video-id="${videoId}"]`);
    await page.locator(`[data-testid="watch-later"] article[data-video-id="${videoId}"]`).waitFor();
    await page.locator('[data-testid="my-playlists"] article.playlist-card', { hasText: playlistTitle }).waitFor();
    const continueWatching = await page.locator(`section[aria-labelledby="continue-heading"] article[data-video-id="${videoId}"]`).count();
    // Pausing the history is a toggle the server keeps.
    const pause = page.getByTestId('pause-history');
    await pause.click();
    await expectOrAlert(page, '[data-testid="pause-history"][aria-pressed="true"]');
    await pause.click();
    await expectOrAlert(page, '[data-testid="pause-history"][aria-pressed="false"]');
    const detail = await checkPage(page, '09b-library');
    // The same page on a phone-sized screen.
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '09c-library-phone');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await page.setViewportSize({ width: 1280, height: 900 });
    if (overflow > 1) throw new Error(`the library is ${overflow} px wider than a 390 px screen`);
    return { ...detail, inContinueWatching: continueWatching > 0 };
  });

  await step('the playlist page lists it; its owner makes it public', async () => {
    await page.locator('[data-testid="my-playlists"] article.playlist-card', { hasText: playlistTitle }).getByRole('link').click();
    await page.getByRole('heading', { name: playlistTitle }).waitFor();
    await expectOrAlert(page, `li[data-video-id="${videoId}"]`);
    await page.getByTestId('item-count').getByText('1 video').waitFor();
    await page.getByRole('button', { name: 'Edit', exact: true }).click();
    await page.getByLabel('Visibility').selectOption('PUBLIC');
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await expectOrAlert(page, 'header.head:has-text("Public")');
    const detail = await checkPage(page, '09d-playlist');
    // Public: it shows on the owner's channel.
    await page.goto(`${BASE}/#/channel/${userId}?tab=playlists`);
    await page.locator('article.playlist-card', { hasText: playlistTitle }).waitFor();
    return detail;
  });

  await step('studio analytics render (the video, then the channel)', async () => {
    await page.goto(`${BASE}/#/studio`);
    await page.getByRole('link', { name: `Analytics of ${title}` }).click();
    await expectOrAlert(page, '[data-testid="video-analytics"]');
    await page.getByRole('img', { name: /^Views per day/ }).waitFor();
    await page.getByRole('img', { name: /^Watch time per day/ }).waitFor();
    await page.getByRole('link', { name: 'Last 7 days' }).click();
    await page.waitForURL((u) => u.hash.includes('range=7'));
    await expectOrAlert(page, '[data-testid="video-analytics"]');
    const days = await page.locator('#views-per-day-caption').innerText();
    if (!/in 7 days/.test(days)) throw new Error(`the 7-day range shows: ${days}`);
    const detail = await checkPage(page, '09e-video-analytics');
    await page.getByRole('link', { name: 'Channel analytics' }).click();
    await expectOrAlert(page, '[data-testid="channel-analytics"]');
    await page.getByRole('img', { name: /^Views per day/ }).waitFor();
    await checkPage(page, '09f-channel-analytics');
    return detail;
  });

  await step('an upload paused and reloaded resumes from the server offset', async () => {
    // Slow the upload down so it can be paused part-way (Chromium throttles XHR bodies).
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 200 * 1024 });
    try {
      await page.goto(`${BASE}/#/upload`);
      await page.getByLabel('Video file', { exact: true }).setInputFiles(clip);
      await page.getByLabel('Title').fill(`Resume ${suffix}`);
      await page.getByRole('button', { name: 'Upload', exact: true }).click();
      await page.waitForFunction(() => Number(document.querySelector('#upload-progress')?.getAttribute('value') ?? 0) >= 15);
      await page.getByRole('button', { name: 'Pause' }).click();
      await page.locator('section[data-phase="paused"]').waitFor();
      const paused = Number(await page.locator('#upload-progress').getAttribute('value'));
      await page.reload();
      await page.getByRole('heading', { name: 'Unfinished uploads' }).waitFor();
      await page.getByLabel('Video file', { exact: true }).setInputFiles(clip);
      await page.getByRole('button', { name: 'Resume that upload' }).click();
      // The first figure after the HEAD is the server's offset: what arrived before the pause.
      await page.locator('section[data-phase="uploading"]').waitFor();
      await page.waitForFunction(() => Number(document.querySelector('#upload-progress')?.getAttribute('value') ?? 0) > 0);
      const resumedAt = Number(await page.locator('#upload-progress').getAttribute('value'));
      if (resumedAt < paused * 0.5) throw new Error(`resumed at ${resumedAt}% after pausing at ${paused}%`);
      await shot(page, '10-upload-resumed');
      // Leave no upload behind: cancel terminates it on the server (tus DELETE).
      page.once('dialog', (d) => void d.accept());
      await page.getByRole('button', { name: 'Cancel upload' }).click();
      await page.getByRole('button', { name: 'Upload', exact: true }).waitFor();
      return { pausedAtPercent: paused, resumedAtPercent: resumedAt };
    } finally {
      await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    }
  });

  await step('GraphiQL at /graphql: bundled, and signed in as the tab is', async () => {
    // The browser route of the edge (GET /graphql, Accept: text/html) to the web app's
    // GraphiQL page; it picks up this tab's session, so `me` is the journey's user.
    const seen = await checkGraphiQL(page, {
      base: BASE,
      query: '{ me { username } }',
      expect: `"username": "${user.username}"`,
    });
    await shot(page, '11-graphiql');
    // Back to the app, still signed in (the session GraphiQL refreshed is this tab's).
    await page.goto(`${BASE}/#/`);
    await page.getByRole('link', { name: 'Upload', exact: true }).waitFor();
    return { screenshot: '11-graphiql.png', result: seen.result };
  });

  await step('sign out revokes the session', async () => {
    const token = accessToken;
    await page.getByRole('link', { name: 'Account' }).click();
    await page.getByRole('heading', { name: 'Your account' }).waitFor();
    await page.getByLabel('Display name').waitFor();
    const detail = await checkPage(page, '12-account');
    await page.getByRole('button', { name: 'Sign out' }).click();
    // The header's link: the account page itself also offers one once signed out.
    await page.getByRole('navigation', { name: 'Account' }).getByRole('link', { name: 'Sign in' }).waitFor();
    const stored = await page.evaluate(() => sessionStorage.getItem('flick.session'));
    if (stored) throw new Error('the refresh token is still in sessionStorage');
    if (!token) throw new Error('no access token was seen on the wire');
    const status = await page.evaluate(
      async (t) => (await fetch('/user/profile', { headers: { authorization: `Bearer ${t}` } })).status,
      token,
    );
    if (status !== 401) throw new Error(`the old access token still works after sign-out (HTTP ${status})`);
    await shot(page, '13-signed-out');
    return { ...detail, oldTokenStatus: status };
  });

  await step('no uncaught errors, no Content-Security-Policy violations, nothing from other hosts', async () => {
    if (offHost.length > 0) throw new Error(`requests for other hosts (aborted): ${offHost.join(' | ')}`);
    if (pageErrors.length > 0) throw new Error(`uncaught errors in the page: ${pageErrors.join(' | ')}`);
    if (cspViolations.length > 0) throw new Error(`CSP violations: ${cspViolations.join(' | ')}`);
  });
} catch (e) {
  failed = true;
  try {
    await shot(page, 'failure');
  } catch {
    // the page may be gone
  }
} finally {
  await browser.close();
  report.durationMs = Date.now() - started;
  report.pageErrors = pageErrors;
  report.cspViolations = cspViolations;
  report.ok = !failed;
  writeFileSync(join(WORK, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  const passed = report.steps.filter((s) => s.ok).length;
  const fails = report.steps.filter((s) => !s.ok).length;
  log(`report: ${join(WORK, 'report.json')}; screenshots: ${SHOTS}`);
  process.stdout.write(`journey: ${passed} passed, ${fails} failed in ${(report.durationMs / 1000).toFixed(1)} s\n`);
  process.exit(failed ? 1 : 0);
}
