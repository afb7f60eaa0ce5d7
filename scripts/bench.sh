#!/usr/bin/env bash
# `make bench`: load figures of the quality bars, measured on this machine against a release
# build, load generator (wrk) on the same machine, loopback only, bounded in time.
#
#   token_verify  GET /user/token_verify with a valid token, revocation checked in Redis:
#                 wrk -t1 -c64 -d10s, three runs, median req/s and p99
#                 and paced at 16,000 req/s (wrk delay() schedule, see paced): p99 at the bar's rate
#   login         POST /auth/login (argon2id, OWASP cost): wrk -t1 -c8 -d10s
#   feed          the api.md feed query through Traefik + hive-router + flick on PostgreSQL +
#                 Redis with 10,000 seeded videos: wrk -t1 -c64, three runs, median; then the
#                 same from 64 logged-in users (each subgraph verifies the token, no shared
#                 answers at the router); each also paced at the bar's 1,500 req/s (wrk delay()
#                 schedule): p99 at that rate; and the CPU each process spends per request
#                 (one more saturated run of each, /proc deltas: scripts/cpu_profile.py; the
#                 signed-in one also at the paced rate and straight at the router)
#   video page    a signed-in video page (video, owner, counts, first comments, related) paced
#                 at 500 req/s from the 64 users, after `flick recommender backfill` indexed
#                 the seeded videos; and its CPU per request saturated
#   alone         the signed-in feed and the video page from one connection, one request at
#                 a time: what one viewer waits on a quiet platform (p50 / p99)
#   transcoder    scripts/bench-transcode.sh: the 720p ladder vs ffmpeg baselines, a 1 GiB tus upload
#   recommender   scripts/bench-recommender.sh: embeddings/s (batch 32), related(first: 10) on 100k vectors
#   activity      scripts/bench-activity.sh: player heartbeats/s at the service and a history page, on
#                 SQLite and on the MongoDB-compatible server
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLICK_ROOT"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/flick/target}
RUNS=${FLICK_BENCH_RUNS:-3}
DURATION=${FLICK_BENCH_SECONDS:-10}
PORT=18081
BASE=http://127.0.0.1:$PORT

if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian)"
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
fi
"$FLICK_ROOT/scripts/services.sh" up >/dev/null
if [ "${FLICK_BENCH_BUILD:-1}" != 0 ]; then
  log "cargo build --release -p flick"
  cargo build --release -q -p flick
fi
bin=$CARGO_TARGET_DIR/release/flick

data=$(mktemp -d /tmp/flick-bench.XXXXXX)
flick_env
"${FLICK_ENV[@]}" FLICK_DATA_DIR="$data" FLICK_CACHE__URL=redis://127.0.0.1:6379/ \
  FLICK_TELEMETRY__LOG_LEVEL=warn FLICK_SERVER__PORTS__ACCOUNTS=$PORT \
  FLICK_ACCOUNTS__LOGIN_FAILURES_PER_ADDRESS=1000000 FLICK_ACCOUNTS__LOGIN_FAILURES_PER_ACCOUNT=1000000 \
  FLICK_ACCOUNTS__LOGIN_FAILURES_PER_ACCOUNT_ADDRESS=1000000 \
  "$bin" serve --services accounts >"$data/flick.log" 2>&1 &
pid=$!
trap 'kill_pid $pid flick 10; rm -rf "$data"' EXIT
for _ in $(seq 100); do [ "$(http_code $BASE/healthz)" = 200 ] && break; sleep 0.1; done

name="bench$(date +%s)"
curl -sf "$BASE/auth/register" -H 'content-type: application/json' \
  -d "{\"email\":\"$name@example.com\",\"username\":\"$name\",\"password\":\"correct horse battery\",\"display_name\":\"Bench\"}" >/dev/null
token=$(curl -sf "$BASE/auth/login" -H 'content-type: application/json' \
  -d "{\"login\":\"$name\",\"password\":\"correct horse battery\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$BASE/user/token_verify")" = 200 ] ||
  die "token_verify does not accept the bench token"

# wrk's summary → "req/s p99_ms"
parse() {
  python3 -c '
import re, sys
text = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", text)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"{rps:.0f} {p99:.2f} {errors.group(1) if errors else 0}")'
}

# wrk's latency distribution → "p50 ms / p99 ms"
parse_latency() {
  python3 -c '
import re, sys
text = sys.stdin.read()
def ms(q):
    m = re.search(q + r"%\s+([\d.]+)(us|ms|s)\b", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
p50, p99 = ms("50"), ms("99")
print(f"{p50:.2f} ms / {p99:.2f} ms")'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# paced RATE SCRIPT: SCRIPT with requests leaving on a fixed schedule of RATE per second across
# all connections (wrk's delay() hook; a slot missed because every connection is busy is dropped,
# so a rate the stack cannot hold shows as fewer req/s). Latency is from send to answer.
FEED_RATE=${FLICK_BENCH_FEED_RATE:-1500}
paced() {
  wrk_fixed_schedule "$1"
  cat "$2"
}

# runs NAME WRK_ARGS...: $RUNS runs of `wrk -t1 -c64 -d$DURATION --latency WRK_ARGS...`, each
# logged → "median_req/s median_p99_ms non-2xx_in_all"
runs() {
  local name=$1 lines=() line i
  shift
  for i in $(seq "$RUNS"); do
    line=$(wrk -t1 -c64 -d"${DURATION}s" --latency "$@" | parse)
    log "$name run $i: $line (req/s, p99 ms, non-2xx)" >&2
    lines+=("$line")
  done
  printf '%s %s %s\n' "$(printf '%s\n' "${lines[@]}" | awk '{print $1}' | median)" \
    "$(printf '%s\n' "${lines[@]}" | awk '{print $2}' | median)" "$(printf '%s\n' "${lines[@]}" | awk '{s += $3} END {print s}')"
}

# paced_runs SCRIPT NAME [URL]: `runs` of a paced SCRIPT (default URL: GraphQL at the edge)
paced_runs() { runs "$2 paced," -s "$1" "${3:-http://127.0.0.1:8080/graphql}"; }

# as_users BODY: a wrk script POSTing the GraphQL request BODY, each request as the next of the
# users whose access tokens are in $data/tokens
as_users() {
  echo 'tokens = {'
  sed 's/.*/  "&",/' "$data/tokens"
  echo '}'
  echo 'wrk.method = "POST"'
  echo 'wrk.headers["Content-Type"] = "application/json"'
  printf 'wrk.body = [==[%s]==]\n' "$1"
  cat <<'LUA'
local n = 0
request = function()
  n = n + 1
  wrk.headers["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]
  return wrk.format()
end
LUA
}

# cpu_per_request NAME WRK_ARGS...: one saturated run, and the CPU time each process spent
# per request meanwhile (Traefik, hive-router, flick, PostgreSQL, ..., wrk itself)
cpu_per_request() {
  local name=$1 out start requests
  shift
  python3 scripts/cpu_profile.py snapshot >"$data/cpu.before"
  start=$(python3 -c 'import time; print(time.time())')
  out=$(wrk -t1 -c64 -d"${DURATION}s" --latency "$@")
  python3 scripts/cpu_profile.py snapshot >"$data/cpu.after"
  requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$out")
  echo "bench: CPU per request, $name ($(parse <<<"$out" | awk '{print $1 " req/s, p99 " $2 " ms"}')):"
  python3 scripts/cpu_profile.py report "$data/cpu.before" "$data/cpu.after" \
    "$(python3 -c "import time; print(time.time() - $start)")" "$requests" | sed 's/^/bench:   /'
}

saturated=$(runs token_verify -H "Authorization: Bearer $token" "$BASE/user/token_verify")
read -r rps p99 _ <<<"$saturated"

echo "wrk.headers[\"Authorization\"] = \"Bearer $token\"" >"$data/verify.lua"
paced 16000 "$data/verify.lua" >"$data/verify-paced.lua"
fixed=$(paced_runs "$data/verify-paced.lua" token_verify "$BASE/user/token_verify")

cat >"$data/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"login":"$name","password":"correct horse battery"}'
LUA
login=$(wrk -t1 -c8 -d"${DURATION}s" --latency -s "$data/login.lua" "$BASE/auth/login" | parse)

echo
echo "bench: token_verify (valid token, revocation in Redis, 1 thread, 64 connections, ${DURATION}s x $RUNS)"
echo "bench:   median ${rps} req/s, p99 ${p99} ms   [bar: >= 16000 req/s, p99 <= 2 ms]"
echo "bench:   paced at 16000 req/s: $(awk '{print "median " $1 " req/s, p99 " $2 " ms, non-2xx " $3}' <<<"$fixed")"
echo "bench: login (argon2id m=19MiB t=2 p=1, 8 connections, ${DURATION}s)"
echo "bench:   $(awk '{print $1 " req/s, p99 " $2 " ms, non-2xx " $3}' <<<"$login")"

# ---------- feed through the edge on PostgreSQL + Redis ----------
kill_pid $pid flick 10
trap 'rm -rf "$data"' EXIT
PSQL="psql -q -h 127.0.0.1 -p 5433 -U postgres"
$PSQL -c 'DROP DATABASE IF EXISTS flick_bench WITH (FORCE)' -c 'CREATE DATABASE flick_bench' >/dev/null
export FLICK_DATABASE__URL=postgres://postgres@127.0.0.1:5433/flick_bench
export FLICK_CACHE__URL=redis://127.0.0.1:6379/ FLICK_TELEMETRY__LOG_LEVEL=warn
"${FLICK_ENV[@]}" "$bin" seed --videos "${FLICK_BENCH_VIDEOS:-10000}" --users 200 | sed 's/^/bench: /'
# The edge limits /graphql per client address (deploy/traefik/dynamic.yml); wrk is one address.
FLICK_GRAPHQL_RATE=${FLICK_GRAPHQL_RATE:-1000000} FLICK_GRAPHQL_BURST=${FLICK_GRAPHQL_BURST:-1000000} \
  FLICK_BIN=$bin FLICK_DEV_BUILD=0 FLICK_DATA_DIR=$data/dev scripts/dev.sh >"$data/dev.log" 2>&1 &
dev=$!
trap 'rc=$?; kill -TERM $dev 2>/dev/null; wait $dev 2>/dev/null || true; rm -rf "$data"; exit $rc' EXIT
wait_dev_stack "$data/dev.log" "$dev" 120
cat >"$data/feed.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"query":"{ feed(first: 20) { edges { node { id title owner { displayName } likeCount } } } }"}'
LUA
check=$(curl -s http://127.0.0.1:8080/graphql -H 'content-type: application/json' -d "$(sed -n 's/^wrk.body = .\(.*\).$/\1/p' "$data/feed.lua")")
grep -q '"displayName"' <<<"$check" || { tail -20 "$data/dev.log"; die "feed query failed: $check"; }
curl -s -o /dev/null http://127.0.0.1:8080/graphql -H 'content-type: application/json' -d '{"query":"{ __typename }"}'
saturated=$(runs feed -s "$data/feed.lua" http://127.0.0.1:8080/graphql)
read -r rps p99 _ <<<"$saturated"
paced "$FEED_RATE" "$data/feed.lua" >"$data/feed-paced.lua"
anon_paced=$(paced_runs "$data/feed-paced.lua" feed)

# The same query from 64 different logged-in users: every request's token is verified (by
# media, the subgraph the query reaches), and the router's dedupe (keyed by the caller's
# token) cannot share answers between them.
for i in $(seq 64); do
  u="feed${i}x$(date +%s)"
  curl -sf http://127.0.0.1:8081/auth/register -H 'content-type: application/json' \
    -d "{\"email\":\"$u@example.com\",\"username\":\"$u\",\"password\":\"correct horse battery\",\"display_name\":\"Viewer $i\"}" >/dev/null
  curl -sf http://127.0.0.1:8081/auth/login -H 'content-type: application/json' \
    -d "{\"login\":\"$u\",\"password\":\"correct horse battery\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
done >"$data/tokens"
[ "$(wc -l <"$data/tokens")" = 64 ] || die "could not log the 64 feed viewers in"
as_users '{"query":"{ feed(first: 20) { edges { node { id title owner { displayName } likeCount viewerHasLiked } } } }"}' >"$data/feed-users.lua"
saturated=$(runs "feed (64 users)" -s "$data/feed-users.lua" http://127.0.0.1:8080/graphql)
read -r urps up99 uerr <<<"$saturated"
paced "$FEED_RATE" "$data/feed-users.lua" >"$data/feed-users-paced.lua"
users_paced=$(paced_runs "$data/feed-users-paced.lua" "feed (64 users)")
anon_cpu=$(cpu_per_request "anonymous feed, saturated" -s "$data/feed.lua" http://127.0.0.1:8080/graphql)
users_cpu=$(cpu_per_request "feed from 64 users, saturated" -s "$data/feed-users.lua" http://127.0.0.1:8080/graphql)
# Where a signed-in request's time goes: the same load at the bar's rate (a partly idle machine
# costs more per request: wake-ups, cold caches) and saturated straight at the router (the edge's
# own share, and what sharing 2 cores with one more process costs the others).
users_paced_cpu=$(cpu_per_request "feed from 64 users, paced at $FEED_RATE req/s" -s "$data/feed-users-paced.lua" http://127.0.0.1:8080/graphql)
users_router_cpu=$(cpu_per_request "feed from 64 users, saturated, at the router (no edge)" -s "$data/feed-users.lua" http://127.0.0.1:4000/graphql)

# A signed-in video page: what the web app's watch page asks in one query. `related` needs the
# seeded videos embedded: the backfill does it (the recommender's own path for a new index).
log "indexing the seeded videos for related (flick recommender backfill)"
"${FLICK_ENV[@]}" "$bin" recommender backfill --media-url http://127.0.0.1:8082 | tail -1 | sed 's/^/bench: /'
video_id=$(curl -s http://127.0.0.1:8080/graphql -H 'content-type: application/json' \
  -d '{"query":"{ feed(first: 1) { edges { node { id } } } }"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["feed"]["edges"][0]["node"]["id"])')
page_query='query($id: ID!) { video(id: $id) { id title description tags category viewCount likeCount commentCount viewerHasLiked owner { id displayName subscriberCount viewerIsSubscribed } comments(first: 20) { edges { node { id body createdAt author { id displayName } } } pageInfo { hasNextPage endCursor } } related(first: 10) { id title viewCount owner { displayName } } } }'
page_body=$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1], "variables": {"id": sys.argv[2]}}))' "$page_query" "$video_id")
page_check=$(curl -s http://127.0.0.1:8080/graphql -H 'content-type: application/json' \
  -H "Authorization: Bearer $(head -1 "$data/tokens")" -d "$page_body")
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert "errors" not in d and len(d["data"]["video"]["related"]) == 10, d' \
  "$page_check" || die "the video page query failed: $page_check"
as_users "$page_body" >"$data/video-page.lua"
PAGE_RATE=${FLICK_BENCH_PAGE_RATE:-500}
paced "$PAGE_RATE" "$data/video-page.lua" >"$data/video-page-paced.lua"
page_paced=$(paced_runs "$data/video-page-paced.lua" "video page (64 users)")
page_cpu=$(cpu_per_request "video page from 64 users, saturated" -s "$data/video-page.lua" http://127.0.0.1:8080/graphql)
# One viewer alone on a quiet platform: one connection, each request after the last answer.
page_alone=$(wrk -t1 -c1 -d"${DURATION}s" --latency -s "$data/video-page.lua" http://127.0.0.1:8080/graphql | parse_latency)
feed_alone=$(wrk -t1 -c1 -d"${DURATION}s" --latency -s "$data/feed-users.lua" http://127.0.0.1:8080/graphql | parse_latency)
echo "bench: feed(first: 20) with owner { displayName } likeCount, Traefik -> hive-router -> media + accounts,"
echo "bench:   PostgreSQL + Redis, ${FLICK_BENCH_VIDEOS:-10000} videos, 64 connections"
echo "bench:   anonymous, the bar's query (quality-bars.md)   [bar: >= 1500 req/s, p99 <= 25 ms]"
echo "bench:   anonymous at a paced $FEED_RATE req/s: $(awk '{print "median " $1 " req/s, p99 " $2 " ms, non-2xx " $3}' <<<"$anon_paced")"
echo "bench:   anonymous, saturated: median ${rps} req/s, p99 ${p99} ms"
echo "bench:   the same from 64 logged-in users (token verified by media, no shared answers at the router),"
echo "bench:   + viewerHasLiked:"
echo "bench:   at a paced $FEED_RATE req/s: $(awk '{print "median " $1 " req/s, p99 " $2 " ms, non-2xx " $3}' <<<"$users_paced")"
echo "bench:   saturated: median ${urps} req/s, p99 ${up99} ms, non-2xx ${uerr}"
echo "bench: a signed-in video page (video, owner, counts, 20 comments, related(first: 10)) from the 64 users"
echo "bench:   at a paced $PAGE_RATE req/s: $(awk '{print "median " $1 " req/s, p99 " $2 " ms, non-2xx " $3}' <<<"$page_paced")"
echo "bench: one viewer alone (1 connection, one request at a time), p50 / p99:"
echo "bench:   signed-in feed $feed_alone; video page $page_alone"
echo "$anon_cpu"
echo "$users_cpu"
echo "$users_paced_cpu"
echo "$users_router_cpu"
echo "$page_cpu"

# FLICK_BENCH_API_ONLY=1: token_verify, login and the feed only (a before/after check of a
# request-path change), without the transcoder's and recommender's long sections.
[ "${FLICK_BENCH_API_ONLY:-0}" = 1 ] && exit 0

# ---------- transcoder: ladder vs ffmpeg baselines, 1 GiB tus upload vs direct multipart ----------
kill -TERM "$dev" 2>/dev/null || true # the dev stack is not needed
wait "$dev" 2>/dev/null || true
scripts/bench-transcode.sh

# ---------- recommender: embedding throughput, related() latency and recall with 100k vectors ----------
scripts/bench-recommender.sh

# ---------- activity: heartbeat ingest and a history page, on both document stores ----------
FLICK_BENCH_BUILD=0 scripts/bench-activity.sh
