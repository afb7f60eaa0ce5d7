#!/usr/bin/env bash
# `make chaos`: the load and fault suite on the production topology (scripts/stack.sh on
# release binaries). Each scenario runs goose's virtual users through the edge
# (crates/load: anonymous viewers, signed-in users, uploaders) while a fault is injected, then
# checks every acknowledged write against the database and the API; it prints its figures and
# the suite ends with one table (ARCHITECTURE.md keeps it).
#
#   mixed     load only: zero failures by the platform, zero lost writes
#   replica   SIGKILL media-2 and accounts-2 20 s in: failures only within 3 s of the kill
#             (in flight, or sent before Traefik's health check took them out); they restart
#   broker    RabbitMQ down 30 s: no request fails; every event reaches its consumers once
#   cache     Redis down 30 s: no request fails; a token revoked meanwhile is refused by every
#             replica; counts converge
#   database  PostgreSQL down 5 s: requests fail fast (no timeouts), recovery within 10 s of
#             its return, without restarting Flick
#   worker    SIGKILL a worker mid-job ten times, each on another upload: every video READY, each job
#             completed exactly once, every rendition once, each killed job running again
#             within 15 s (its lease lapses), no scratch directory left
#
# usage: scripts/chaos.sh [SCENARIO...]   (default: all, in the order above)
# env: FLICK_CHAOS_USERS (200), FLICK_CHAOS_SECONDS (60), FLICK_CHAOS_RUNS (1; 3 for medians),
#      FLICK_CHAOS_BUILD=0 skips `cargo build --release`, FLICK_DATA_DIR (./data/chaos).
# A scenario that fails its condition makes the script exit 1 (after the others ran).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLICK_ROOT"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/flick/target}
USERS=${FLICK_CHAOS_USERS:-200}
RUN_TIME=${FLICK_CHAOS_SECONDS:-60}
RUNS=${FLICK_CHAOS_RUNS:-1}
DATA=${FLICK_DATA_DIR:-./data/chaos}
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
STACK_DATA=$DATA/stack
SUMMARY=$DATA/summary.jsonl
LOAD=$CARGO_TARGET_DIR/release/flick-load
DATABASE_URL=postgres://postgres@127.0.0.1:5433/flick_chaos
all=(mixed replica broker cache database worker)
scenarios=("$@")
[ $# -gt 0 ] || scenarios=("${all[@]}")
for s in "${scenarios[@]}"; do
  [[ " ${all[*]} " == *" $s "* ]] || die "unknown scenario $s (one of: ${all[*]})"
done
command -v psql >/dev/null || apt_install postgresql-client

if [ "${FLICK_CHAOS_BUILD:-1}" != 0 ]; then
  log "cargo build --release -p flick -p flick-load (target: $CARGO_TARGET_DIR)"
  cargo build --release -p flick -p flick-load
fi

# ---------- the stack, on release binaries ----------
log "starting the stack (log: $DATA/stack.log)"
# No web app: the load calls the API only (and the suite needs no Node.js).
FLICK_STACK_NAME=chaos FLICK_DATA_DIR=$STACK_DATA FLICK_STACK_FRESH=1 FLICK_DEV_BUILD=0 FLICK_WEB=0 \
  FLICK_BIN=$CARGO_TARGET_DIR/release/flick FLICK_STACK_MONITORING=${FLICK_CHAOS_MONITORING:-0} \
  FLICK_GRAPHQL_RATE=100000 FLICK_GRAPHQL_BURST=100000 FLICK_AUTH_RATE=100000 FLICK_AUTH_BURST=100000 \
  scripts/stack.sh >"$DATA/stack.log" 2>&1 &
stack=$!
started stack "$stack"
STOP_TIMEOUT=60
on_exit() {
  cleanup
  # An interrupted outage leaves its service down: bring every service back.
  scripts/services.sh up >/dev/null 2>&1 || warn "scripts/services.sh up failed after the suite"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
wait_banner "$DATA/stack.log" "$stack" 900 'Flick stack is up' || die "the stack did not come up"
log "stack is up"

clip() { # NAME SECONDS SIZE: a test clip (H.264 + AAC)
  [ -s "$DATA/$1" ] || ffmpeg -nostdin -v error -y -f lavfi -i "testsrc2=size=$3:rate=30" -f lavfi -i sine=frequency=440 \
    -t "$2" -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac "$DATA/$1"
}
clip short.mp4 3 640x360
clip long.mp4 20 1280x720

pid_of_process() { cat "$STACK_DATA/run/$1.pid"; }

# load LABEL [FLICK-LOAD ARGS...]: the mixed load in the background ($load_pid), its output in
# $DATA/LABEL.log; returns once the virtual users are starting.
load() {
  local label=$1
  shift
  : >"$DATA/$label.faults"
  "$LOAD" mixed --label "$label" --users "$USERS" --run-time "$RUN_TIME" --clip "$DATA/short.mp4" \
    --database-url "$DATABASE_URL" --summary "$SUMMARY" --faults "$DATA/$label.faults" "$@" \
    >"$DATA/$label.log" 2>&1 &
  load_pid=$!
  until grep -q 'users for' "$DATA/$label.log"; do
    kill -0 "$load_pid" 2>/dev/null || { cat "$DATA/$label.log" >&2; return 1; }
    sleep 0.2
  done
}

# finish LABEL: waits for the load; its report on stdout; false when the scenario failed.
finish() {
  local rc=0
  wait "$load_pid" || rc=$?
  cat "$DATA/$1.log"
  return "$rc"
}

# The processes the suite kills, and their health ports (scripts/stack.sh's).
declare -A PORT=([accounts-2]=8381 [media-2]=8382 [worker-1]=8285 [worker-2]=8385)

# ready_again NAME OLD_PID: seconds until NAME runs as a new process that answers /readyz.
ready_again() {
  local name=$1 old=$2 port=${PORT[$1]} start=$SECONDS
  wait_until 60 "$name to come back" bash -c \
    "[ \"\$(cat '$STACK_DATA/run/$name.pid')\" != $old ] && [ \"\$(curl -s -o /dev/null -m 1 -w '%{http_code}' http://127.0.0.1:$port/readyz)\" = 200 ]"
  echo $((SECONDS - start))
}

# The mixed load also says where the machine's CPU went (the latency it adds is queueing
# when the cores are saturated) and where a request's time went, hop by hop.
HOPS=(router=http://127.0.0.1:4000/metrics)
for process in accounts-1:8281 accounts-2:8381 media-1:8282 media-2:8382 transcoder:8283 recommender:8284; do
  HOPS+=("${process%:*}=http://127.0.0.1:${process#*:}/metrics")
done
scenario_mixed() {
  local start rc=0
  load mixed || return 1
  start=$(now_ms)
  python3 scripts/cpu_profile.py snapshot >"$DATA/cpu.before"
  python3 scripts/latency_hops.py snapshot "${HOPS[@]}" >"$DATA/hops.before"
  until grep -q 'load done' "$DATA/mixed.log" || ! kill -0 "$load_pid" 2>/dev/null; do sleep 0.2; done
  python3 scripts/cpu_profile.py snapshot >"$DATA/cpu.after"
  python3 scripts/latency_hops.py snapshot "${HOPS[@]}" >"$DATA/hops.after"
  local wall=$((($(now_ms) - start) / 1000))
  finish mixed || rc=1
  python3 scripts/cpu_profile.py report "$DATA/cpu.before" "$DATA/cpu.after" "$wall"
  python3 scripts/latency_hops.py report "$DATA/hops.before" "$DATA/hops.after"
  return "$rc"
}

scenario_replica() {
  load replica --tolerate-ms 3000 || return 1
  sleep 20
  local media accounts at
  media=$(pid_of_process media-2)
  accounts=$(pid_of_process accounts-2)
  at=$(now_ms)
  kill -KILL "$media" "$accounts"
  echo "kill-media-2+accounts-2 $at $at" >>"$DATA/replica.faults"
  log "killed media-2 ($media) and accounts-2 ($accounts)"
  log "media-2 back and ready after $(ready_again media-2 "$media") s, accounts-2 after $(ready_again accounts-2 "$accounts") s"
  finish replica
}

scenario_broker() {
  load broker || return 1
  sleep 15
  scripts/services.sh outage rabbitmq 30 >>"$DATA/broker.faults"
  finish broker
}

scenario_cache() {
  load cache || return 1
  sleep 15
  scripts/services.sh outage redis 30 >>"$DATA/cache.faults" &
  local outage=$! rc=0
  sleep 8 # Redis is down by now (a shutdown takes well under a second)
  "$LOAD" revoke-check --tries 20 | tee "$DATA/revoke.log" || rc=1
  wait "$outage"
  finish cache || rc=1
  return "$rc"
}

scenario_database() {
  load database --tolerate-ms 10000 || return 1
  sleep 20
  scripts/services.sh outage postgres 5 >>"$DATA/database.faults"
  finish database
}

current_job() { # WORKER: the video of the job it started last (from its JSON log)
  grep '"transcode started"' "$STACK_DATA/logs/$1.log" | tail -n 1 |
    python3 -c 'import json, sys; line = sys.stdin.read().strip(); print(json.loads(line).get("video.id", "") if line else "")'
}

scenario_worker() {
  local kills=0 worker pid deadline rc=0
  : >"$DATA/worker.kills"
  "$LOAD" uploads --count 12 --clip "$DATA/long.mp4" --database-url "$DATABASE_URL" --summary "$SUMMARY" \
    >"$DATA/worker.log" 2>&1 &
  load_pid=$!
  # Ten times: wait until a worker runs ffmpeg (mid-job) on a job no kill has hit yet, SIGKILL
  # it, wait until it is back. One kill per job ("across uploads"): a job whose worker dies
  # job_attempts (3) times is failed as poison by design (flick's worker tests).
  local -A killed_jobs=()
  local job
  while [ "$kills" -lt 10 ]; do
    deadline=$((SECONDS + 120))
    pid=
    until [ -n "$pid" ]; do
      for worker in worker-1 worker-2; do
        if pgrep -P "$(pid_of_process "$worker")" ffmpeg >/dev/null; then
          job=$(current_job "$worker")
          [ -n "$job" ] && [ -z "${killed_jobs[$job]:-}" ] || continue
          killed_jobs[$job]=1
          pid=$(pid_of_process "$worker")
          break
        fi
      done
      if [ -z "$pid" ]; then
        { kill -0 "$load_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; } || break 2
        sleep 0.1
      fi
    done
    kill -KILL "$pid"
    echo "$worker $(now_ms)" >>"$DATA/worker.kills"
    kills=$((kills + 1))
    log "kill $kills: $worker (pid $pid) mid-job; back after $(ready_again "$worker" "$pid") s"
  done
  wait "$load_pid" || rc=$?
  cat "$DATA/worker.log"
  [ "$kills" -eq 10 ] || { warn "only $kills workers were caught mid-job"; rc=1; }
  # A dead job's scratch directory goes when its worker restarts (or another starts a job).
  local left
  left=$(find "$STACK_DATA/transcode" -mindepth 1 -maxdepth 1 -name 'flick-job-*' 2>/dev/null | wc -l)
  if [ "$left" -eq 0 ]; then echo "ok    no scratch directory left"; else
    echo "FAIL  $left scratch directories left in $STACK_DATA/transcode"; rc=1; fi
  # No job stuck: each killed job runs again once its lease lapses (job_lease_seconds, 10).
  local takeovers
  takeovers=$(python3 scripts/chaos_takeovers.py "$DATA/worker.kills" "$STACK_DATA/logs")
  if python3 -c 'import json,sys; t=json.loads(sys.argv[1])["takeover_s"]; sys.exit(not t or None in t or max(t) > 15)' "$takeovers"; then
    echo "ok    every killed job ran again within 15 s: $takeovers"
  else
    echo "FAIL  a killed job was not taken over within 15 s: $takeovers"
    rc=1
  fi
  echo "{\"label\":\"worker-kills\",\"kills\":$kills,\"scratch_left\":$left,${takeovers:1:-1}}" >>"$SUMMARY"
  return "$rc"
}

: >"$SUMMARY"
failed=()
for s in "${scenarios[@]}"; do
  for run in $(seq "$RUNS"); do
    log "scenario $s (run $run of $RUNS)"
    "scenario_$s" || failed+=("$s#$run")
  done
done

python3 scripts/chaos_table.py "$SUMMARY"
if [ ${#failed[@]} -gt 0 ]; then
  warn "failed: ${failed[*]}"
  exit 1
fi
log "every scenario held"
