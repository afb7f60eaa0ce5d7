#!/usr/bin/env bash
# A/B of two flick binaries on the signed-in feed, straight at media's /graphql (no edge, no
# router, so their noise stays out): the binaries take turns (ROUNDS rounds, each a fresh
# `flick serve --services accounts,media` on one PostgreSQL database and Redis), 64 users'
# tokens, three saturated wrk runs per turn; prints req/s and flick's CPU per request
# (/proc ticks). Compare only within one run of this script (hosts drift over minutes).
#
#   scripts/bench-feed-ab.sh BASE_BINARY NEW_BINARY
#   env: ROUNDS (3), SECS per run (8), FLICK_BENCH_VIDEOS (10000)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLICK_ROOT"
[ $# = 2 ] && [ -x "$1" ] && [ -x "$2" ] || die "usage: $0 BASE_BINARY NEW_BINARY"
bins=("$1" "$2")
if ! command -v wrk >/dev/null; then
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
fi
"$FLICK_ROOT/scripts/services.sh" up >/dev/null
flick_env
db=flick_feed_ab
psql -q -h 127.0.0.1 -p 5433 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
data=$(mktemp -d /tmp/flick-feed-ab.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$data"' EXIT
export FLICK_DATABASE__URL=postgres://postgres@127.0.0.1:5433/$db FLICK_CACHE__URL=redis://127.0.0.1:6379/
export FLICK_TELEMETRY__LOG_LEVEL=warn FLICK_DATA_DIR=$data
"${FLICK_ENV[@]}" "$2" seed --videos "${FLICK_BENCH_VIDEOS:-10000}" --users 200 | tail -1 | sed 's/^/bench: /'
# media's part of the bench's signed-in feed, as the router asks it
body='{"query":"{ feed(first: 20) { edges { node { id title owner { id } likeCount viewerHasLiked } } } }"}'
http_ok() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ]; }
registered=0
for round in $(seq "${ROUNDS:-3}"); do
  for side in 0 1; do
    name=$([ $side = 0 ] && echo base || echo new)
    "${FLICK_ENV[@]}" "${bins[$side]}" serve --services accounts,media >"$data/$name-$round.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do http_ok http://127.0.0.1:8082/healthz && http_ok http://127.0.0.1:8081/healthz && break; sleep 0.1; done
    # Tokens live 15 minutes: each turn logs the users in afresh.
    : >"$data/tokens"
    for i in $(seq 64); do
      [ $registered = 1 ] || curl -sf http://127.0.0.1:8081/auth/register -H 'content-type: application/json' \
        -d "{\"email\":\"ab$i@example.com\",\"username\":\"ab$i\",\"password\":\"correct horse battery\",\"display_name\":\"AB $i\"}" >/dev/null
      curl -sf http://127.0.0.1:8081/auth/login -H 'content-type: application/json' \
        -d "{\"login\":\"ab$i\",\"password\":\"correct horse battery\"}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' >>"$data/tokens"
    done
    registered=1
    {
      echo 'tokens = {'
      sed 's/.*/  "&",/' "$data/tokens"
      echo '}'
      echo 'wrk.method = "POST"'
      echo 'wrk.headers["Content-Type"] = "application/json"'
      printf 'wrk.body = [==[%s]==]\n' "$body"
      echo 'local n = 0'
      echo 'request = function() n = n + 1; wrk.headers["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]; return wrk.format() end'
    } >"$data/feed.lua"
    check=$(curl -s http://127.0.0.1:8082/graphql -H 'content-type: application/json' \
      -H "Authorization: Bearer $(head -1 "$data/tokens")" -d "$body")
    grep -q '"viewerHasLiked":false' <<<"$check" || die "$name: the signed-in feed failed: $check"
    wrk -t1 -c64 -d3s -s "$data/feed.lua" http://127.0.0.1:8082/graphql >/dev/null # warm-up
    for run in 1 2 3; do
      t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      out=$(wrk -t1 -c64 -d"${SECS:-8}s" -s "$data/feed.lua" http://127.0.0.1:8082/graphql)
      t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$out")
      rps=$(sed -n 's/^Requests\/sec: *//p' <<<"$out")
      errors=$(sed -n 's/.*Non-2xx or 3xx responses: //p' <<<"$out")
      ms=$(python3 -c "import os; print(f'{($t1 - $t0) * 1000 / os.sysconf(\"SC_CLK_TCK\") / $requests:.3f}')")
      echo "bench: $name round $round run $run: $rps req/s, flick $ms ms CPU per request, non-2xx ${errors:-0}" |
        tee -a "$data/runs"
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
  done
done
python3 - "$data/runs" <<'PY'
import re, statistics, sys
rows = [re.match(r"bench: (\w+) .*: ([\d.]+) req/s, flick ([\d.]+) ms", l) for l in open(sys.argv[1])]
for side in ("base", "new"):
    got = [(float(m.group(2)), float(m.group(3))) for m in rows if m and m.group(1) == side]
    print(f"bench: {side}: median {statistics.median(r for r, _ in got):.0f} req/s, "
          f"flick {statistics.median(c for _, c in got):.3f} ms CPU per request ({len(got)} runs)")
PY
