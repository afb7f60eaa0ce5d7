#!/usr/bin/env bash
# The activity service's quality-bar figures, release build, on this machine (`make bench` runs
# it), on the embedded document store (SQLite) and on the MongoDB-compatible server:
#   heartbeats   POST /activity/heartbeat at the service (one heartbeat a request, anonymous,
#                20,000 player sessions in turn, each with its next sequence number: at
#                20,000/s one heartbeat a second each, under the per-session limit of 4):
#                wrk -t1 -c32, saturated, RUNS runs, median req/s and p99; then paced at the
#                bar's 5,000/s (a fixed schedule through wrk's delay()): p99 at that rate, and how many it reached
#   analytics    the owner's Video.analytics(range: LAST_28_DAYS) (views per day, retention curve,
#                renditions) of the video all those heartbeats went to, after filling it up to
#                1,000,000 heartbeats (at most 300 s more): wrk -t1 -c8, median p50/p99, with the
#                number of heartbeats behind it; the report's watch time must equal that number. The video is never transcoded here, so
#                its curve is empty; reading it is the same one document either way.
#   history      watchHistory(first: 20) of a user with 200 entries, signed in, at the service:
#                wrk -t1 -c8, median of p50 and p99
# One process runs accounts, media and activity (media's video.created tells activity of the
# video); the load goes straight to activity's port.
# env: FLICK_BENCH_RUNS (3), FLICK_BENCH_SECONDS (10), FLICK_BENCH_BUILD=0 skips the build,
#      FLICK_BENCH_HEARTBEAT_RATE (5000), FLICK_BENCH_BACKENDS ("sqlite mongodb"),
#      FLICK_BENCH_ANALYTICS_HEARTBEATS (1000000), FLICK_BENCH_FILL_SECONDS (300).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLICK_ROOT"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/flick/target}
RUNS=${FLICK_BENCH_RUNS:-3}
DURATION=${FLICK_BENCH_SECONDS:-10}
RATE=${FLICK_BENCH_HEARTBEAT_RATE:-5000}
FILL=${FLICK_BENCH_ANALYTICS_HEARTBEATS:-1000000}
FILL_SECONDS=${FLICK_BENCH_FILL_SECONDS:-300}
ACCOUNTS=18281 MEDIA=18282 ACTIVITY=18286
command -v wrk >/dev/null || apt_install wrk
"$FLICK_ROOT/scripts/services.sh" up >/dev/null
if [ "${FLICK_BENCH_BUILD:-1}" != 0 ]; then
  log "cargo build --release -p flick"
  cargo build --release -q -p flick
fi
bin=$CARGO_TARGET_DIR/release/flick

parse() { # wrk's summary → "req/s p99_ms non2xx"
  python3 -c '
import re, sys
text = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
def pct(p):
    m = re.search(p + r"%\s+([\d.]+)(us|ms|s)\b", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text) or re.search(r"refused heartbeats: ([1-9]\d*)", text)
total = int(re.search(r"(\d+) requests in", text).group(1))
p50, p99 = pct("50"), pct("99")
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {errors.group(1) if errors else 0} {total}")'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The heartbeat script: session i of 20,000 (a random prefix per run: sessions of an earlier run
# have seen higher sequence numbers), its sequence number the round. PACE (requests/s across
# all connections, 0: as fast as possible).
heartbeat_lua() {
  cat <<LUA
local video, pace, connections = "$1", $2, $3
local sessions, n = 20000, 0
local prefix = "$(printf '%08x' $((RANDOM * 32768 + RANDOM)))" -- new sessions each run
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
request = function()
  local i = n % sessions
  n = n + 1
  local body = string.format('{"heartbeats":[{"videoId":"%s","sessionId":"%s%06d","sequence":%d,"positionSeconds":%d,"watchedSeconds":1.0,"rendition":"720p"}]}',
    video, prefix, i, math.floor(n / sessions) + 1, math.floor(n / sessions) % 500)
  return wrk.format(nil, "/activity/heartbeat", nil, body)
end
-- Every answer is read: a heartbeat the service refused (the batch answers 200 with the
-- item's error) counts as an error, never as throughput.
local threads = {}
function setup(thread) table.insert(threads, thread) end
refused = 0
response = function(status, headers, body)
  if status ~= 200 or not string.find(body, '"applied":true', 1, true) then refused = refused + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("refused") end
  io.write(string.format("refused heartbeats: %d\n", n))
end
LUA
  # Paced: requests on a fixed schedule of PACE a second (as scripts/bench.sh paces).
  [ "$2" = 0 ] || wrk_fixed_schedule "$2"
}

run_backend() { # NAME DOCUMENTS_URL
  local backend=$1 url=$2 data token video lua out runs=() p99s=() rps p99 beats=0 port
  for port in $ACCOUNTS $MEDIA $ACTIVITY; do
    tcp_open 127.0.0.1 "$port" && die "127.0.0.1:$port is in use (a leftover bench process?): the load would go there"
  done
  data=$(mktemp -d /tmp/flick-bench-activity.XXXXXX)
  flick_env
  "${FLICK_ENV[@]}" FLICK_DATA_DIR="$data" FLICK_TELEMETRY__LOG_LEVEL=warn FLICK_DOCUMENTS__URL="$url" \
    FLICK_SERVER__PORTS__ACCOUNTS=$ACCOUNTS FLICK_SERVER__PORTS__MEDIA=$MEDIA FLICK_SERVER__PORTS__ACTIVITY=$ACTIVITY \
    "$bin" serve --services accounts,media,activity >"$data/flick.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do [ "$(http_code "http://127.0.0.1:$ACTIVITY/readyz")" = 200 ] && break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null || { tail -20 "$data/flick.log" >&2; die "flick exited"; }
  local name="bench$RANDOM$RANDOM"
  curl -sf "http://127.0.0.1:$ACCOUNTS/auth/register" -H 'content-type: application/json' \
    -d "{\"email\":\"$name@example.com\",\"username\":\"$name\",\"password\":\"correct horse battery\",\"display_name\":\"Bench\"}" >/dev/null
  token=$(curl -sf "http://127.0.0.1:$ACCOUNTS/auth/login" -H 'content-type: application/json' \
    -d "{\"login\":\"$name\",\"password\":\"correct horse battery\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  video=$(curl -sf "http://127.0.0.1:$MEDIA/graphql" -H 'content-type: application/json' -H "authorization: Bearer $token" \
    -d '{"query":"mutation { createVideo(input: {title: \"Bench\", visibility: PUBLIC}) { video { id } } }"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["createVideo"]["video"]["id"])')
  # Known to activity once media's event arrived.
  local known=0
  for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$ACTIVITY/activity/heartbeat" -H 'content-type: application/json' \
      -d "{\"heartbeats\":[{\"videoId\":\"$video\",\"sessionId\":\"warmup$RANDOM$RANDOM\",\"sequence\":1,\"positionSeconds\":0,\"watchedSeconds\":0}]}" |
      grep -q '"applied":true'; then
      known=1
      break
    fi
    sleep 0.1
  done
  [ "$known" = 1 ] || die "$backend: the activity service never learned of the bench video"
  lua=$data/heartbeat.lua
  for _ in $(seq "$RUNS"); do
    heartbeat_lua "$video" 0 32 >"$lua"
    out=$(wrk -t1 -c32 -d"${DURATION}s" --latency -s "$lua" "http://127.0.0.1:$ACTIVITY" | parse)
    runs+=("$(cut -d' ' -f1 <<<"$out")")
    p99s+=("$(cut -d' ' -f3 <<<"$out")")
    [ "$(cut -d' ' -f4 <<<"$out")" = 0 ] || die "$backend: $(cut -d' ' -f4 <<<"$out") heartbeats refused: the figure would be wrong"
    beats=$((beats + $(cut -d' ' -f5 <<<"$out")))
  done
  rps=$(printf '%s\n' "${runs[@]}" | median)
  p99=$(printf '%s\n' "${p99s[@]}" | median)
  heartbeat_lua "$video" "$RATE" 32 >"$lua"
  out=$(wrk -t1 -c32 -d"${DURATION}s" --latency -s "$lua" "http://127.0.0.1:$ACTIVITY" | parse)
  [ "$(cut -d' ' -f4 <<<"$out")" = 0 ] || die "$backend: $(cut -d' ' -f4 <<<"$out") paced heartbeats refused"
  printf 'activity heartbeats (%s): saturated %s/s (runs: %s), p99 %s ms; paced at %s/s: reached %s/s, p99 %s ms\n' \
    "$backend" "$rps" "${runs[*]}" "$p99" "$RATE" "$(cut -d' ' -f1 <<<"$out")" "$(cut -d' ' -f3 <<<"$out")"
  beats=$((beats + $(cut -d' ' -f5 <<<"$out")))

  # Fill the video up to FILL heartbeats (the bar's 1,000,000) at full speed, within FILL_SECONDS.
  local fill_left=$((FILL - beats)) fill_seconds
  if [ "$fill_left" -gt 0 ]; then
    fill_seconds=$(python3 -c "import math,sys; print(max(1, min(int(sys.argv[3]), math.ceil(int(sys.argv[1]) / max(float(sys.argv[2]), 1.0)))))" "$fill_left" "$rps" "$FILL_SECONDS")
    heartbeat_lua "$video" 0 32 >"$lua"
    out=$(wrk -t1 -c32 -d"${fill_seconds}s" --latency -s "$lua" "http://127.0.0.1:$ACTIVITY" | parse)
    [ "$(cut -d' ' -f4 <<<"$out")" = 0 ] || die "$backend: $(cut -d' ' -f4 <<<"$out") heartbeats refused while filling"
    beats=$((beats + $(cut -d' ' -f5 <<<"$out")))
  fi

  # The owner's analytics of that video: what every heartbeat above added up to.
  local user_id
  user_id=$(curl -sf "http://127.0.0.1:$ACCOUNTS/user/profile" -H "authorization: Bearer $token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  python3 -c 'import json, sys; q = "{ _entities(representations: [{__typename: \"Video\", id: \"%s\"}]) { ... on Video { analytics(range: LAST_28_DAYS) { views watchSeconds averageViewSeconds days { day views watchSeconds } retention { percent share } renditions { rendition share } } } } }" % sys.argv[1]; print(json.dumps({"query": q}))' "$video" >"$data/analytics.json"
  cat >"$data/analytics.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-user-id"] = "$user_id"
wrk.body = io.open("$data/analytics.json"):read("*a")
LUA
  curl -sf "http://127.0.0.1:$ACTIVITY/graphql" -H 'content-type: application/json' -H "x-user-id: $user_id" \
    -d @"$data/analytics.json" | grep -q '"days":\[{' ||
    warn "$backend: the analytics query did not answer its days"
  # Each heartbeat reported 1 s watched (under the clock bound): the report's watch time is the
  # number of heartbeats applied, none lost by the aggregates summed in memory
  local reported
  reported=$(curl -sf "http://127.0.0.1:$ACTIVITY/graphql" -H 'content-type: application/json' -H "x-user-id: $user_id" \
    -d @"$data/analytics.json" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["data"]["_entities"][0]["analytics"]["watchSeconds"]))')
  # (wrk stops counting with up to 32 requests in flight per run, which the service still applies.)
  local slack=$((32 * (RUNS + 2)))
  [ "$reported" -ge "$beats" ] && [ "$reported" -le $((beats + slack)) ] ||
    die "$backend: analytics report $reported s watched for $beats heartbeats of 1 s"
  local ap50=() ap99=()
  for _ in $(seq "$RUNS"); do
    out=$(wrk -t1 -c8 -d"${DURATION}s" --latency -s "$data/analytics.lua" "http://127.0.0.1:$ACTIVITY/graphql" | parse)
    ap50+=("$(cut -d' ' -f2 <<<"$out")")
    ap99+=("$(cut -d' ' -f3 <<<"$out")")
  done
  printf 'activity analytics (%s): a video with %s heartbeats, views per day + retention + renditions: p50 %s ms, p99 %s ms (medians of %s runs)\n' \
    "$backend" "$beats" "$(printf '%s\n' "${ap50[@]}" | median)" "$(printf '%s\n' "${ap99[@]}" | median)" "$RUNS"

  # A signed-in user's history page: 200 videos watched, one heartbeat each.
  local ids=()
  for i in $(seq 200); do
    ids+=("$(curl -sf "http://127.0.0.1:$MEDIA/graphql" -H 'content-type: application/json' -H "authorization: Bearer $token" \
      -d "{\"query\":\"mutation { createVideo(input: {title: \\\"History $i\\\", visibility: PUBLIC}) { video { id } } }\"}" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["createVideo"]["video"]["id"])')")
  done
  for id in "${ids[@]}"; do
    for _ in $(seq 50); do
      curl -sf "http://127.0.0.1:$ACTIVITY/activity/heartbeat" -H 'content-type: application/json' -H "x-user-id: $user_id" \
        -d "{\"heartbeats\":[{\"videoId\":\"$id\",\"sessionId\":\"h$id\",\"sequence\":1,\"positionSeconds\":12,\"watchedSeconds\":1}]}" |
        grep -q '"applied":true' && break
      sleep 0.1
    done
  done
  cat >"$data/history.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-user-id"] = "$user_id"
wrk.body = '{"query":"{ watchHistory(first: 20) { edges { cursor node { video { id } positionSeconds watchedFraction updatedAt } } pageInfo { hasNextPage endCursor } } }"}'
LUA
  local p50s=() hp99s=()
  for _ in $(seq "$RUNS"); do
    out=$(wrk -t1 -c8 -d"${DURATION}s" --latency -s "$data/history.lua" "http://127.0.0.1:$ACTIVITY/graphql" | parse)
    p50s+=("$(cut -d' ' -f2 <<<"$out")")
    hp99s+=("$(cut -d' ' -f3 <<<"$out")")
  done
  printf 'activity history page (%s): watchHistory(first: 20) of 200 entries, p50 %s ms, p99 %s ms (medians of %s runs)\n' \
    "$backend" "$(printf '%s\n' "${p50s[@]}" | median)" "$(printf '%s\n' "${hp99s[@]}" | median)" "$RUNS"
  kill_pid "$pid" flick 30
  pid=
  rm -rf "$data"
  if [ -n "$url" ] && [ -x "$FLICK_SERVICES_DIR/mongo/venv/bin/python" ]; then
    "$FLICK_SERVICES_DIR/mongo/venv/bin/python" -c "import pymongo, sys; pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000).drop_database(sys.argv[1].rsplit('/', 1)[1])" "$url" ||
      warn "could not drop $url"
  fi
}

pid=
trap '[ -z "$pid" ] || kill_pid "$pid" flick 30' EXIT
for backend in ${FLICK_BENCH_BACKENDS:-sqlite mongodb}; do
  case $backend in
    sqlite) run_backend sqlite "" ;;
    mongodb) run_backend mongodb "mongodb://127.0.0.1:27017/flick_bench_$(date +%s)" ;;
    *) die "unknown backend $backend (sqlite, mongodb)" ;;
  esac
done
