#!/usr/bin/env bash
# `make dev`: the whole platform on this machine, behind the real router and edge.
#   tools -> build flick -> compose the supergraph -> build the web app -> flick serve
#   (subgraphs on 8081-8084 and 8086) -> flick web (8085) -> hive-router (4000) -> Traefik (8080,
#   metrics/ping on 8090)
# Ctrl-C (or any child exiting) stops every child, by PID.
#
# env: CARGO_TARGET_DIR (default /var/cache/flick/target), FLICK_BIN (default
#      $CARGO_TARGET_DIR/debug/flick), FLICK_DATA_DIR (default ./data; logs in its logs/),
#      FLICK_DEV_BUILD=0 skips `cargo build`, FLICK_WEB=0 skips the web app (no Node.js
#      needed), FLICK_TOOLS_DIR.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLICK_ROOT"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/flick/target}
export FLICK_BIN=${FLICK_BIN:-$CARGO_TARGET_DIR/debug/flick}
export FLICK_DATA_DIR=${FLICK_DATA_DIR:-./data}
LOG_DIR=$FLICK_DATA_DIR/logs
SUBGRAPH_PORTS=(8081 8082 8083 8084 8086)
WEB_PORT=8085 # flick web: the web app's files, behind the edge's `/`
EDGE=http://127.0.0.1:8080

# Ports must be free before anything starts: a half-started second stack is confusing.
for port in 8080 8090 4000 "${SUBGRAPH_PORTS[@]}" "$WEB_PORT"; do
  if tcp_open 127.0.0.1 "$port"; then
    die "127.0.0.1:$port is already in use (another make dev running?)"
  fi
done

"$FLICK_ROOT/scripts/tools.sh"
"$FLICK_ROOT/scripts/models.sh"

if [ "${FLICK_DEV_BUILD:-1}" != 0 ]; then
  log "cargo build -p flick --bin flick (target: $CARGO_TARGET_DIR)"
  cargo build -p flick --bin flick
fi
[ -x "$FLICK_BIN" ] || die "no flick binary at $FLICK_BIN"

"$FLICK_ROOT/scripts/supergraph.sh"
# The web app is built against the composed schema (its operations are checked there).
[ "${FLICK_WEB:-1}" = 0 ] || WEB_DIST=$("$FLICK_ROOT/scripts/web.sh")

mkdir -p "$LOG_DIR"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The mesh secret: the edge sets it beside the identity it vouches for and the services
# ignore x-user-id without it (Traefik reads FLICK_MESH_SECRET, flick identity.mesh_secret).
export FLICK_MESH_SECRET=${FLICK_MESH_SECRET:-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')}
export FLICK_IDENTITY__MESH_SECRET=$FLICK_MESH_SECRET

# flick: its output goes to the terminal, prefixed. $! is flick itself (env execs it; not sed).
flick_env
"${FLICK_ENV[@]}" "$FLICK_BIN" serve > >(sed -u 's/^/flick   | /') 2>&1 &
started flick $!
health=()
for port in "${SUBGRAPH_PORTS[@]}"; do health+=("http://127.0.0.1:$port/healthz"); done
wait_ready flick "$!" 120 - "${health[@]}"
log "subgraphs healthy on ${SUBGRAPH_PORTS[*]}"

if [ -n "${WEB_DIST:-}" ]; then
  "${FLICK_ENV[@]}" "$FLICK_BIN" web --dir "$WEB_DIST" --listen "127.0.0.1:$WEB_PORT" >"$LOG_DIR/web.log" 2>&1 &
  started web $!
  wait_ready web "$!" 30 "$LOG_DIR/web.log" "http://127.0.0.1:$WEB_PORT/"
fi

ROUTER_CONFIG_FILE_PATH=$FLICK_ROOT/supergraph/router.yaml \
  "$FLICK_TOOLS_DIR/bin/hive_router" >"$LOG_DIR/router.log" 2>&1 &
started hive-router $!
wait_ready hive-router "$!" 30 "$LOG_DIR/router.log" http://127.0.0.1:4000/readiness

"$FLICK_TOOLS_DIR/bin/traefik" --configFile=deploy/traefik/traefik.yml >"$LOG_DIR/traefik.log" 2>&1 &
started traefik $!
traefik_pid=$!
wait_ready traefik "$traefik_pid" 30 "$LOG_DIR/traefik.log" http://127.0.0.1:8090/ping
# /ping answers before the file provider's routers are loaded (until then every route is a 404),
# so the stack is up only once a query goes through the edge.
wait_for traefik "$traefik_pid" 30 "$LOG_DIR/traefik.log" "route through the edge" edge_routes "$EDGE"

cat <<EOF

  Flick dev stack is up
    web app (edge)    $EDGE/              ${WEB_DIST:-not served (FLICK_WEB=0)}
    GraphQL (edge)    $EDGE/graphql        queries, mutations; subscriptions over SSE or WebSocket
    REST (edge)       $EDGE/auth/...  $EDGE/user/...  $EDGE/video/...  $EDGE/activity/heartbeat
    router direct     http://127.0.0.1:4000/graphql   (Laboratory UI in a browser)
    subgraphs         http://127.0.0.1:{8081..8084,8086}/graphql  accounts media transcoder recommender activity
                      /healthz /readyz /metrics on each
    edge metrics      http://127.0.0.1:8090/metrics  (ping: /ping)
    logs              flick: here;  router: $LOG_DIR/router.log;  traefik: $LOG_DIR/traefik.log;  web: $LOG_DIR/web.log
    check it          scripts/smoke.sh
  Ctrl-C stops everything.

EOF

# Run until a child exits or we are interrupted.
rc=0
wait -n -p died "${PIDS[@]}" || rc=$?
if [ -n "${died:-}" ]; then
  warn "${NAME_OF[$died]} (pid $died) exited with status $rc; stopping the stack"
  case ${NAME_OF[$died]} in
    hive-router) tail -20 "$LOG_DIR/router.log" >&2 ;;
    traefik) tail -20 "$LOG_DIR/traefik.log" >&2 ;;
  esac
  exit 1
fi
