/// <reference types="vitest/config" />
import { defineConfig, type Plugin, type UserConfig } from 'vite';
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

/**
 * Moves fonts that stylesheets inline as `data:` URLs (GraphiQL's Roboto and Fira Code,
 * Monaco's icons) into files of their own beside them: the production policy's `font-src`
 * (default-src 'self') refuses `data:` fonts.
 */
function fontsAsFiles(): Plugin {
  return {
    name: 'flick-fonts-as-files',
    apply: 'build',
    generateBundle(_options, bundle) {
      const emitted = new Map<string, string>();
      for (const file of Object.values(bundle)) {
        if (file.type !== 'asset' || !file.fileName.endsWith('.css')) continue;
        const css = String(file.source);
        const dir = file.fileName.slice(0, file.fileName.lastIndexOf('/') + 1);
        file.source = css.replace(/url\((["']?)data:font\/([\w-]+);base64,([A-Za-z0-9+/=]+)\1\)/g, (_m, _q, type: string, data: string) => {
          let fileName = emitted.get(data);
          if (!fileName) {
            const ext = type.replace(/^x-font-/, '').replace('truetype', 'ttf').replace('opentype', 'otf');
            const ref = this.emitFile({ type: 'asset', name: `font.${ext}`, source: Buffer.from(data, 'base64') });
            fileName = this.getFileName(ref);
            emitted.set(data, fileName);
          }
          return `url(./${fileName.slice(dir.length)})`;
        });
      }
    },
  };
}

// `vite build --mode graphiql` (npm run build's second step) builds graphiql.html, GraphiQL for
// the edge's browser `GET /graphql`, into the same dist/ as a build of its own: React, Monaco
// and GraphiQL never enter the app's chunks, and the app's chunks stay as they were (one
// build with both pages would split the app into chunks shared with GraphiQL).
const graphiql: UserConfig['build'] = {
  emptyOutDir: false,
  // Third-party code only, and ~20 MB of maps: none.
  sourcemap: false,
  // Monaco's editor and its language workers are large; they load on this page only.
  chunkSizeWarningLimit: 2500,
  rolldownOptions: {
    input: 'graphiql.html',
    onwarn(warning, warn) {
      // React libraries' "use client" directives: meaningless in a browser-only bundle.
      if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
      warn(warning);
    },
  },
};

export default defineConfig(({ mode }) => ({
  plugins: [svelte(), fontsAsFiles(), precompress()],
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
    ...(mode === 'graphiql' ? graphiql : {}),
  },
  test: {
    include: ['tests/unit/**/*.test.ts'],
    environment: 'node',
  },
}));
