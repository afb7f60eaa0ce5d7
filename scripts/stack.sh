#!/usr/bin/env bash
# `make stack`: Flick's production topology on this machine. Every service its own process on
# the real adapters, replicas behind Traefik, the federation router, Prometheus + Alertmanager.
#
#   real services   scripts/services.sh up: PostgreSQL 18 + pgvector :5433, Redis :6379,
#                   RabbitMQ :5672, SeaweedFS S3 :9000 (database, bucket, key and queue prefixes
#                   of this stack's own: FLICK_STACK_NAME)
#   flick serve     accounts x2 :8281 :8381    media x2 :8282 :8382
#                   transcoder (uploads, playback; no transcoding) :8283   recommender :8284
#                   activity :8287 (documents on the MongoDB-compatible server, database flick_<name>)
#   flick worker    x2 (health and metrics on :8285 :8385)
#   Traefik         edge :8080 (as `make dev`), metrics/ping :8090, and the mesh: one entrypoint
#                   per service (:8191 accounts, :8192 media, :8193 transcoder, :8194
#                   recommender, :8195 activity) that the router and the services call instead of a replica;
#                   every pool health-checked on /readyz each second
#   hive-router     :4000, subgraphs through the mesh
#   Prometheus      :9090 (deploy/stack/prometheus.yml, the rules of deploy/prometheus/rules.yml)
#   Alertmanager    :9093
# Logs: one file per process under $FLICK_DATA_DIR/logs. A process that exits is started
# again a second later (its pid in $FLICK_DATA_DIR/run/NAME.pid). Ctrl-C stops every process
# this script started, by PID; the real services keep running (`make services-down` stops the
# ones services.sh started).
#
# env: FLICK_STACK_NAME (default `stack`: database flick_stack, bucket flick-stack, Redis keys
#      `stack:`, queues `stack.`, exchange stack.events), FLICK_DATA_DIR (default
#      ./data/stack), FLICK_BIN, CARGO_TARGET_DIR, FLICK_DEV_BUILD=0 skips `cargo build`,
#      FLICK_STACK_MONITORING=0 skips Prometheus and Alertmanager, FLICK_STACK_FRESH=1 starts
#      from empty state (drops the stack's database, queues and cache keys first; CI),
#      FLICK_STACK_WORKER_NICE (10) the workers' CPU priority, FLICK_WEB=0 serves no web app.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLICK_ROOT"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/flick/target}
export FLICK_BIN=${FLICK_BIN:-$CARGO_TARGET_DIR/debug/flick}
NAME=${FLICK_STACK_NAME:-stack}
[[ $NAME =~ ^[a-z][a-z0-9]{0,30}$ ]] || die "FLICK_STACK_NAME: lower-case letters and digits, starting with a letter"
DATA=${FLICK_DATA_DIR:-./data/stack}
mkdir -p "$DATA/logs"
DATA=$(cd "$DATA" && pwd)
LOG_DIR=$DATA/logs
EDGE=http://127.0.0.1:8080
MONITORING=${FLICK_STACK_MONITORING:-1}

# Processes: name -> port. Replica r of a service listens on 8<r+1>8x; the mesh on 819x.
declare -A PORT=(
  [accounts-1]=8281 [accounts-2]=8381 [media-1]=8282 [media-2]=8382
  [transcoder]=8283 [recommender]=8284 [worker-1]=8285 [worker-2]=8385 [activity]=8287
)
MESH=(8191 8192 8193 8194 8195)
WEB_PORT=8286 # flick web: the web app's files, behind the edge's `/` (FLICK_WEB=0: none)
ports=(8080 8090 4000 "${MESH[@]}" "${PORT[@]}")
[ "${FLICK_WEB:-1}" = 0 ] || ports+=("$WEB_PORT")
[ "$MONITORING" = 0 ] || ports+=(9090 9093)
for port in "${ports[@]}"; do
  tcp_open 127.0.0.1 "$port" && die "127.0.0.1:$port is already in use (make dev or another stack running?)"
done

# ---------- what the stack runs on ----------
"$FLICK_ROOT/scripts/tools.sh"
FLICK_S3_BUCKET=flick-$NAME "$FLICK_ROOT/scripts/services.sh" up
if [ "${FLICK_STACK_FRESH:-0}" != 0 ]; then
  # A run from nothing (CI): the database, this stack's queues and cache keys go
  # (objects stay in the bucket: their keys are new videos' ids, so none is seen again).
  log "fresh state for stack $NAME"
  "$FLICK_ROOT/scripts/services.sh" dropdb "flick_$NAME"
  rm -rf "$DATA/keys" "$DATA/transcode"
  if command -v rabbitmqctl >/dev/null; then
    rabbitmqctl -q list_queues name 2>/dev/null | { grep "^$NAME\." || true; } | while read -r q; do
      rabbitmqctl -q delete_queue "$q" >/dev/null
    done || warn "could not delete the queues $NAME.*"
  else
    warn "no rabbitmqctl: queues $NAME.* keep what an earlier run left in them"
  fi
  if command -v redis-cli >/dev/null; then
    redis-cli -h 127.0.0.1 --scan --pattern "$NAME:*" | xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null
  fi
  mongo_python=${FLICK_SERVICES_DIR:-/var/cache/flick/services}/mongo/venv/bin/python
  if [ -x "$mongo_python" ]; then
    "$mongo_python" -c "import pymongo, sys; pymongo.MongoClient('mongodb://127.0.0.1:27017', serverSelectionTimeoutMS=5000).drop_database(sys.argv[1])" "flick_$NAME" ||
      warn "could not drop the documents database flick_$NAME"
  else
    warn "no pymongo (services.sh's secantusdb venv): documents of an earlier run stay in flick_$NAME"
  fi
fi
"$FLICK_ROOT/scripts/services.sh" createdb "flick_$NAME"
if [ "$MONITORING" != 0 ]; then
  command -v prometheus >/dev/null || apt_install prometheus
  command -v prometheus-alertmanager >/dev/null || apt_install prometheus-alertmanager
  # RabbitMQ's own exporter (queue depths for the backlog and dead-letter alerts): best effort,
  # the broker may not be ours to change.
  if command -v rabbitmq-plugins >/dev/null && ! tcp_open 127.0.0.1 15692; then
    rabbitmq-plugins enable --quiet rabbitmq_prometheus >/dev/null 2>&1 ||
      warn "could not enable rabbitmq_prometheus: Prometheus will show RabbitMQ as down"
  fi
fi

if [ "${FLICK_DEV_BUILD:-1}" != 0 ]; then
  log "cargo build -p flick --bin flick (target: $CARGO_TARGET_DIR)"
  cargo build -p flick --bin flick
fi
[ -x "$FLICK_BIN" ] || die "no flick binary at $FLICK_BIN"
"$FLICK_ROOT/scripts/supergraph.sh"

# ---------- configuration every Flick process shares ----------
export FLICK_MESH_SECRET=${FLICK_MESH_SECRET:-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')}
export FLICK_IDENTITY__MESH_SECRET=$FLICK_MESH_SECRET
export FLICK_DATA_DIR=$DATA
export FLICK_DATABASE__URL=postgres://postgres@127.0.0.1:5433/flick_$NAME
export FLICK_DATABASE__MIGRATE_ON_START=false # `flick migrate` runs once, below
export FLICK_DOCUMENTS__URL=mongodb://127.0.0.1:27017/flick_$NAME
export FLICK_CACHE__URL=redis://127.0.0.1:6379/0
export FLICK_CACHE__KEY_PREFIX=$NAME:
export FLICK_BUS__URL=amqp://guest:guest@127.0.0.1:5672/%2f
export FLICK_BUS__QUEUE_PREFIX=$NAME.
export FLICK_BUS__EXCHANGE=$NAME.events
export FLICK_STORAGE__URL=s3://flick-$NAME
export FLICK_STORAGE__S3__ENDPOINT=http://127.0.0.1:9000
export FLICK_STORAGE__S3__REGION=us-east-1
export FLICK_STORAGE__S3__ACCESS_KEY_ID=flick
export FLICK_STORAGE__S3__SECRET_ACCESS_KEY=flicksecret
export FLICK_ACCOUNTS__JWT_KEYS_DIR=$DATA/keys
export FLICK_TRANSCODER__WORK_DIR=$DATA/transcode # the workers' scratch directories
export FLICK_TELEMETRY__LOG_FORMAT=json
# Services call each other through the mesh, never a replica directly.
export FLICK_ENDPOINTS__ACCOUNTS=http://127.0.0.1:8191
export FLICK_ENDPOINTS__MEDIA=http://127.0.0.1:8192
export FLICK_ENDPOINTS__TRANSCODER=http://127.0.0.1:8193
export FLICK_ENDPOINTS__RECOMMENDER=http://127.0.0.1:8194
export FLICK_ENDPOINTS__ACTIVITY=http://127.0.0.1:8195
flick_env

log "migrations (flick_$NAME)"
"${FLICK_ENV[@]}" "$FLICK_BIN" migrate >"$LOG_DIR/migrate.log" 2>&1 || { tail -20 "$LOG_DIR/migrate.log" >&2; die "flick migrate failed"; }
# One signing key for both accounts replicas, made before either starts.
if [ -z "$(ls -A "$DATA/keys" 2>/dev/null)" ]; then
  "${FLICK_ENV[@]}" "$FLICK_BIN" keys rotate >/dev/null
fi

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# supervise NAME CMD...: runs CMD (output appended to $LOG_DIR/NAME.log) and starts it again a
# second after it exits, as an orchestrator would (`restart: unless-stopped`): a killed replica
# comes back and rejoins its pool. The current PID is in $RUN_DIR/NAME.pid (what the fault suite
# kills). TERM stops the command, then the supervisor.
RUN_DIR=$DATA/run
mkdir -p "$RUN_DIR"
supervise() {
  local name=$1
  shift
  : >"$LOG_DIR/$name.log"
  (
    child=
    trap '[ -z "$child" ] || kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM INT
    while :; do
      "$@" >>"$LOG_DIR/$name.log" 2>&1 &
      child=$!
      echo "$child" >"$RUN_DIR/$name.pid"
      rc=0
      wait "$child" || rc=$?
      printf 'stack: %s exited with status %s; starting it again in 1 s\n' "$name" "$rc" >>"$LOG_DIR/$name.log"
      sleep 1
    done
  ) &
  started "$name" $!
}
pid_of() { # NAME: the supervisor's PID
  local p
  for p in "${PIDS[@]}"; do [ "${NAME_OF[$p]}" = "$1" ] && echo "$p"; done
}
STOP_TIMEOUT=30 # cleanup: a service drains its requests before it exits

serve() { # NAME SERVICE [VAR=VALUE...]: `flick serve --services SERVICE` on NAME's port
  local name=$1 service=$2
  shift 2
  supervise "$name" "${FLICK_ENV[@]}" "$@" "FLICK_SERVER__PORTS__${service^^}=${PORT[$name]}" \
    "$FLICK_BIN" serve --services "$service"
}

serve accounts-1 accounts
serve accounts-2 accounts
serve media-1 media
serve media-2 media
serve transcoder transcoder FLICK_TRANSCODER__WORKERS=0 # uploads and playback; the workers transcode
serve recommender recommender
serve activity activity
# Workers (and the ffmpeg they run) at a lower CPU priority: in production they get their own
# nodes; on one machine their encodes would otherwise take the cores from the API's requests
# (FLICK_STACK_WORKER_NICE=0 to compare; `make chaos` measured it).
WORKER_NICE=${FLICK_STACK_WORKER_NICE:-10}
supervise worker-1 nice -n "$WORKER_NICE" "${FLICK_ENV[@]}" "$FLICK_BIN" worker --listen "127.0.0.1:${PORT[worker-1]}"
supervise worker-2 nice -n "$WORKER_NICE" "${FLICK_ENV[@]}" "$FLICK_BIN" worker --listen "127.0.0.1:${PORT[worker-2]}"
for name in "${!PORT[@]}"; do
  wait_ready "$name" "$(pid_of "$name")" 180 "$LOG_DIR/$name.log" "http://127.0.0.1:${PORT[$name]}/readyz"
done
log "flick processes ready: ${!PORT[*]}"
if [ "${FLICK_WEB:-1}" != 0 ]; then
  web_dist=$("$FLICK_ROOT/scripts/web.sh")
  supervise web "${FLICK_ENV[@]}" "$FLICK_BIN" web --dir "$web_dist" --listen "127.0.0.1:$WEB_PORT"
  wait_ready web "$(pid_of web)" 30 "$LOG_DIR/web.log" "http://127.0.0.1:$WEB_PORT/"
fi

# ---------- mesh and edge ----------
pool() { # SERVICE: its replicas' URLs, comma-separated
  local name urls=()
  for name in $(printf '%s\n' "${!PORT[@]}" | grep "^$1" | sort); do urls+=("http://127.0.0.1:${PORT[$name]}"); done
  (IFS=,; echo "${urls[*]}")
}
supervise traefik env FLICK_MESH_ROUTES=true \
  FLICK_ACCOUNTS_URL="$(pool accounts)" FLICK_MEDIA_URL="$(pool media)" \
  FLICK_TRANSCODER_URL="$(pool transcoder)" FLICK_RECOMMENDER_URL="$(pool recommender)" \
  FLICK_ACTIVITY_URL="$(pool activity)" \
  FLICK_ACCOUNTS_VERIFY_URL=http://127.0.0.1:8191 FLICK_WEB_URL="http://127.0.0.1:$WEB_PORT" \
  "$FLICK_TOOLS_DIR/bin/traefik" --configFile=deploy/stack/traefik.yml
traefik_pid=$(pid_of traefik)
wait_ready traefik "$traefik_pid" 30 "$LOG_DIR/traefik.log" http://127.0.0.1:8090/ping
for port in "${MESH[@]}"; do
  wait_for traefik "$traefik_pid" 30 "$LOG_DIR/traefik.log" "mesh route on :$port" answers_200 "http://127.0.0.1:$port/readyz"
done

# The router reaches every subgraph through the mesh: the supergraph's URLs are overridden.
{
  cat supergraph/router.yaml
  cat <<EOF

# Added by scripts/stack.sh: subgraphs through the mesh entrypoints (load-balanced replicas).
override_subgraph_urls:
  subgraphs:
    accounts: { url: http://127.0.0.1:8191/graphql }
    media: { url: http://127.0.0.1:8192/graphql }
    transcoder: { url: http://127.0.0.1:8193/graphql }
    recommender: { url: http://127.0.0.1:8194/graphql }
    activity: { url: http://127.0.0.1:8195/graphql }

# Prometheus metrics on the router's port at /metrics (deploy/stack/prometheus.yml).
telemetry:
  metrics:
    exporters:
      - kind: prometheus
        enabled: true
        path: /metrics
EOF
} >"$DATA/router.yaml"
supervise router env ROUTER_CONFIG_FILE_PATH="$DATA/router.yaml" \
  SUPERGRAPH_FILE_PATH="$FLICK_ROOT/supergraph/supergraph.graphql" "$FLICK_TOOLS_DIR/bin/hive_router"
wait_ready router "$(pid_of router)" 30 "$LOG_DIR/router.log" http://127.0.0.1:4000/readiness
wait_for traefik "$traefik_pid" 30 "$LOG_DIR/traefik.log" "route through the edge" edge_routes "$EDGE"

# ---------- monitoring ----------
if [ "$MONITORING" != 0 ]; then
  supervise prometheus prometheus --config.file=deploy/stack/prometheus.yml \
    --storage.tsdb.path="$DATA/prometheus" --storage.tsdb.retention.time=2d --web.listen-address=127.0.0.1:9090
  supervise alertmanager prometheus-alertmanager --config.file=deploy/stack/alertmanager.yml \
    --storage.path="$DATA/alertmanager" --web.listen-address=127.0.0.1:9093 --cluster.listen-address=
  wait_ready alertmanager "$(pid_of alertmanager)" 30 "$LOG_DIR/alertmanager.log" http://127.0.0.1:9093/-/ready
  wait_ready prometheus "$(pid_of prometheus)" 60 "$LOG_DIR/prometheus.log" http://127.0.0.1:9090/-/ready
fi

cat <<EOF

  Flick stack is up ($NAME)
    web app (edge)    $EDGE/
    GraphQL (edge)    $EDGE/graphql        REST: $EDGE/auth/...  /user/...  /video/...
    router            http://127.0.0.1:4000/graphql   subgraphs through the mesh :8191-8195
    accounts          :8281 :8381    media :8282 :8382    transcoder :8283    recommender :8284    activity :8287
    workers           :8285 :8385 (health, metrics)      edge metrics http://127.0.0.1:8090/metrics
    monitoring        Prometheus http://127.0.0.1:9090   Alertmanager http://127.0.0.1:9093 $([ "$MONITORING" != 0 ] || echo '(off)')
    data              $FLICK_DATABASE__URL, s3://flick-$NAME, logs in $LOG_DIR
    check it          FLICK_SMOKE_PROCESSES="$(for n in $(printf '%s\n' "${!PORT[@]}" | grep -v worker | sort); do printf '%s:%s ' "$n" "${PORT[$n]}"; done)" scripts/smoke.sh
  Ctrl-C stops everything it started.

EOF

# Run until interrupted; a supervisor that exits (it should not) stops the stack.
rc=0
wait -n -p died "${PIDS[@]}" || rc=$?
if [ -n "${died:-}" ]; then
  warn "the supervisor of ${NAME_OF[$died]} (pid $died) exited with status $rc; stopping the stack"
  exit 1
fi
