#!/usr/bin/env node
// GraphiQL at the edge (issue 16: bundled, no CDN). A browser opening /graphql gets the web
// app's GraphiQL page (web/graphiql.html, routed by the edge); every request for a host other
// than the app's is aborted, so a page that still needs a CDN fails here. The check waits for
// the editors, types a query, runs it and reads the answer in the result pane.
//
// journey.mjs runs checkGraphiQL signed in (`{ me { username } }`: the tab's session reaches
// the router); run alone it checks `{ __typename }` anonymously:
//   FLICK_WEB_URL=http://127.0.0.1:8080 node tests/graphiql.mjs
// env: FLICK_WEB_URL (default http://127.0.0.1:8080), CHROMIUM (default /usr/bin/chromium),
//      FLICK_DATA_DIR (the screenshot goes to web-screenshots/, default ./data)

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * Aborts every request of `page` for a host other than `base`'s (any port: `npm run dev` on
 * :5173 plays from the edge's :8080); returns the list of what was aborted. Requests for the
 * app's host are not intercepted at all.
 */
export async function offHostBlocked(page, base) {
  const host = new URL(base).hostname;
  const blocked = [];
  await page.route(
    (url) => url.hostname !== host && !['data:', 'blob:'].includes(url.protocol),
    (route) => {
      blocked.push(route.request().url());
      return route.abort('blockedbyclient');
    },
  );
  return blocked;
}

/** The text of a Monaco editor under `selector` (view lines; Monaco renders spaces as NBSP). */
async function editorText(page, selector) {
  return page.locator(`${selector} .view-lines`).first().evaluate((el) => el.innerText.replace(/\u00a0/g, ' '));
}

/**
 * Opens `${base}/graphql` as a browser would (Accept: text/html), runs `query` in GraphiQL and
 * waits until the result pane shows `expect`. Returns what it saw.
 */
export async function checkGraphiQL(page, { base, query = '{ __typename }', expect = '"__typename": "Query"', timeout = 30_000 }) {
  const response = await page.goto(`${base}/graphql`);
  const type = response?.headers()['content-type'] ?? '';
  if (!response?.ok() || !type.startsWith('text/html')) {
    throw new Error(`GET /graphql in a browser: HTTP ${response?.status()} ${type}, want GraphiQL's page`);
  }
  const title = await page.title();
  if (!title.includes('GraphiQL')) throw new Error(`GET /graphql gave "${title}", not the web app's GraphiQL`);
  const editor = '.graphiql-query-editor';
  await page.locator(`${editor} .monaco-editor`).first().waitFor({ timeout });
  // Replace whatever the editor holds (the welcome query, or the last session's) with `query`.
  await page.locator(`${editor} .monaco-editor`).first().click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(query);
  const typed = await editorText(page, editor);
  if (typed.replace(/\s+/g, ' ').trim() !== query.replace(/\s+/g, ' ').trim()) {
    throw new Error(`the query editor holds ${JSON.stringify(typed)}, not the query typed`);
  }
  // GraphiQL parses the editor's text after a pause (debounced, 100 ms) and runs what it
  // parsed last: a click at once would run the previous query. Its other debounced write, of
  // the query into localStorage (500 ms), says the parse is done.
  await page.waitForFunction((q) => localStorage.getItem('graphiql:query') === q, query, { timeout });
  await page.locator('button.graphiql-execute-button').click();
  const result = '.graphiql-response';
  await page.waitForFunction(
    ([sel, want]) => document.querySelector(`${sel} .view-lines`)?.innerText.replace(/\u00a0/g, ' ').includes(want),
    [result, expect],
    { timeout },
  );
  return { title, result: (await editorText(page, result)).replace(/\s+/g, ' ').trim() };
}

// ---- run alone --------------------------------------------------------------------------------

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const base = (process.env.FLICK_WEB_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
  const shots = join(resolve(process.env.FLICK_DATA_DIR ?? './data'), 'web-screenshots');
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: process.env.HEADED !== '1',
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
  let status = 0;
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const csp = [];
    await page.exposeFunction('__flickCsp', (v) => csp.push(v));
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__flickCsp?.(`${e.violatedDirective} ${e.blockedURI || 'inline'}`);
      });
    });
    const blocked = await offHostBlocked(page, base);
    const seen = await checkGraphiQL(page, { base });
    await page.screenshot({ path: join(shots, 'graphiql.png') });
    if (blocked.length) throw new Error(`requests for other hosts: ${blocked.join(', ')}`);
    if (errors.length) throw new Error(`uncaught errors: ${errors.join(' | ')}`);
    if (csp.length) throw new Error(`CSP violations: ${csp.join(' | ')}`);
    console.log(`ok    GraphiQL at ${base}/graphql, nothing from other hosts: ${seen.result}`);
  } catch (e) {
    console.log(`FAIL  GraphiQL at ${base}/graphql: ${e?.message ?? e}`);
    status = 1;
  } finally {
    await browser.close();
  }
  process.exit(status);
}
