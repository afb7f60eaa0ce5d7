#!/usr/bin/env bash
# Builds the web app (web/ -> web/dist) when it is missing or older than its sources: npm ci
# when package-lock.json changed, then `npm run build` (codegen against the supergraph,
# svelte-check, vite). `make dev` and `make stack` call it before `flick web` serves web/dist
# at the edge's `/`. FLICK_WEB=0 skips the web app (no Node.js needed then).
#
# usage: scripts/web.sh    (prints the built directory on stdout; npm's output goes to stderr)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLICK_ROOT/web"
exec 3>&1 1>&2

command -v npm >/dev/null || die "the web app needs Node.js 20.19+ and npm (apt install nodejs npm), or FLICK_WEB=0 to run without it"

# npm ci only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci (web/)"
  npm ci --no-audit --no-fund --loglevel=error
fi

# Stale when any source, the lock file or the schema the operations are checked against is
# newer than the last build.
stale() {
  [ -f dist/index.html ] || return 0
  [ -n "$(find src public index.html graphiql.html package-lock.json vite.config.* codegen.ts ../supergraph/supergraph.graphql \
    -newer dist/index.html -print -quit 2>/dev/null)" ]
}
if stale; then
  log "npm run build (web/ -> web/dist)"
  npm run build --silent
fi
echo "$FLICK_ROOT/web/dist" >&3
