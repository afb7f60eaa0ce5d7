// Composes Flick's subgraph SDLs into a Federation v2 supergraph with @apollo/composition.
//
// usage: node supergraph/compose.mjs [--out FILE] [NAME=SDL_FILE[=URL] ...]
//   With no NAME=... arguments, composes the four Flick subgraphs from
//   supergraph/subgraphs/<name>.graphql. A subgraph's URL is, in order: the =URL part,
//   $FLICK_SUBGRAPH_URL_<NAME> (e.g. FLICK_SUBGRAPH_URL_MEDIA), or
//   http://${FLICK_SUBGRAPH_HOST:-127.0.0.1}:<port>/graphql with the ports below.
//   Without --out the supergraph goes to stdout. Exits 1 on composition errors.
//
// @apollo/composition and graphql come from $FLICK_TOOLS_DIR/composition (scripts/tools.sh
// composition). ESM ignores NODE_PATH, so they are loaded with createRequire from there.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const toolsDir = process.env.FLICK_TOOLS_DIR || "/var/cache/flick/tools";
const require = createRequire(join(toolsDir, "composition", "package.json"));

let composition, graphql;
try {
  composition = require("@apollo/composition");
  graphql = require("graphql");
} catch (err) {
  console.error(`compose: cannot load @apollo/composition from ${toolsDir}/composition: ${err.message}`);
  console.error("compose: run scripts/tools.sh composition");
  process.exit(2);
}

// The subgraphs of `flick serve` and the ports they listen on.
export const SUBGRAPHS = { accounts: 8081, media: 8082, transcoder: 8083, recommender: 8084, activity: 8086 };

function defaultUrl(name) {
  const override = process.env[`FLICK_SUBGRAPH_URL_${name.toUpperCase()}`];
  if (override) return override;
  const port = SUBGRAPHS[name];
  if (!port) throw new Error(`no URL for unknown subgraph '${name}': pass ${name}=FILE=URL`);
  return `http://${process.env.FLICK_SUBGRAPH_HOST || "127.0.0.1"}:${port}/graphql`;
}

function parseArgs(argv) {
  let out = null;
  const specs = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--out") out = argv[++i];
    else if (a === "-h" || a === "--help") {
      console.log("usage: node supergraph/compose.mjs [--out FILE] [NAME=SDL_FILE[=URL] ...]");
      process.exit(0);
    } else {
      const [name, file, ...url] = a.split("=");
      if (!name || !file) throw new Error(`bad argument '${a}': expected NAME=SDL_FILE[=URL]`);
      specs.push({ name, file, url: url.length ? url.join("=") : defaultUrl(name) });
    }
  }
  if (specs.length === 0) {
    for (const name of Object.keys(SUBGRAPHS)) {
      specs.push({ name, file: join(here, "subgraphs", `${name}.graphql`), url: defaultUrl(name) });
    }
  }
  return { out, specs };
}

function main() {
  const { out, specs } = parseArgs(process.argv.slice(2));
  const services = specs.map(({ name, file, url }) => {
    let typeDefs;
    try {
      typeDefs = graphql.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new Error(`subgraph ${name} (${file}): ${err.message}`);
    }
    return { name, url, typeDefs };
  });

  const result = composition.composeServices(services);
  for (const hint of result.hints ?? []) {
    if (process.env.FLICK_COMPOSE_HINTS) console.error(`compose: hint ${hint.definition.code}: ${hint.message}`);
  }
  if (result.errors?.length) {
    console.error(`compose: ${result.errors.length} composition error(s):`);
    for (const err of result.errors) {
      const code = err.extensions?.code ? `[${err.extensions.code}] ` : "";
      console.error(`  - ${code}${err.message}`);
    }
    process.exit(1);
  }
  const sdl = result.supergraphSdl.endsWith("\n") ? result.supergraphSdl : `${result.supergraphSdl}\n`;
  if (out) writeFileSync(out, sdl);
  else process.stdout.write(sdl);
  const hints = result.hints?.length ?? 0;
  console.error(
    `compose: composed ${services.map((s) => s.name).join(", ")}` +
      (hints ? ` (${hints} hint(s); FLICK_COMPOSE_HINTS=1 shows them)` : ""),
  );
}

try {
  main();
} catch (err) {
  console.error(`compose: ${err.message}`);
  process.exit(1);
}
