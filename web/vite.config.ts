/// <reference types="vitest/config" />
import { defineConfig, type Plugin } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync, constants } from 'node:zlib';

// The app only ever calls its own origin (/graphql, /auth, /user, /video): in production the
// edge serves it at /. In development vite's server stands in for the edge and forwards those
// paths (and the graphql-ws upgrade on /graphql) to it.
const edge = process.env.FLICK_EDGE_URL ?? 'http://127.0.0.1:8080';
const api = { target: edge, changeOrigin: false };

// The policy `flick web` serves the built app with (crates/flick/src/web.rs): `npm run
// preview` sends it too, so the built app is tested under it.
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
  "img-src 'self' data: blob:; media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'";

/** Writes `name.gz` beside every compressible output file, for servers that send precompressed files. */
function precompress(): Plugin {
  let outDir = 'dist';
  return {
    name: 'flick-precompress',
    apply: 'build',
    configResolved(config) {
      outDir = config.build.outDir;
    },
    async closeBundle() {
      for (const name of await readdir(outDir, { recursive: true })) {
        if (!/\.(js|css|html|svg|json)$/.test(name)) continue;
        const file = join(outDir, name);
        const body = await readFile(file);
        if (body.length < 1024) continue;
        await writeFile(`${file}.gz`, gzipSync(body, { level: constants.Z_BEST_COMPRESSION }));
      }
    },
  };
}

export default defineConfig({
  plugins: [svelte(), precompress()],
  server: {
    host: '127.0.0.1',
    port: 5173,
    strictPort: true,
    proxy: {
      '/graphql': { ...api, ws: true },
      '/auth': api,
      '/user': api,
      '/video': api,
    },
  },
  preview: {
    host: '127.0.0.1',
    port: 4173,
    strictPort: true,
    headers: { 'Content-Security-Policy': CSP },
    proxy: {
      '/graphql': { ...api, ws: true },
      '/auth': api,
      '/user': api,
      '/video': api,
    },
  },
  build: {
    target: 'es2022',
    sourcemap: true,
    // hls.js is the one large dependency; it is only loaded by the watch page.
    chunkSizeWarningLimit: 600,
  },
  test: {
    include: ['tests/unit/**/*.test.ts'],
    environment: 'node',
  },
});
