#!/usr/bin/env bash
# Smoke test of a running dev stack (scripts/dev.sh) or stack (scripts/stack.sh): edge ->
# router -> subgraphs.
# usage: scripts/smoke.sh     (exit 1 if any check fails)
# env: FLICK_EDGE_URL; FLICK_SMOKE_PROCESSES, the Flick processes whose /healthz and /metrics
#      are checked, as NAME:PORT words (default: make dev's four ports; scripts/stack.sh prints
#      its own); FLICK_SMOKE_PROMETHEUS, a Prometheus URL whose targets, rules and Alertmanager
#      are checked too; FLICK_WEB=0 when the stack serves no web app.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EDGE=${FLICK_EDGE_URL:-http://127.0.0.1:8080}
# The CLI under test (`flick upload`): the dev stack's binary.
export FLICK_BIN=${FLICK_BIN:-${CARGO_TARGET_DIR:-/var/cache/flick/target}/debug/flick}
read -r -a PROCESSES <<<"${FLICK_SMOKE_PROCESSES:-accounts:8081 media:8082 transcoder:8083 recommender:8084 activity:8086}"
passed=0
failed=0

ok() { echo "ok    $*"; passed=$((passed + 1)); }
fail() { echo "FAIL  $*"; failed=$((failed + 1)); }

# GraphQL through Traefik and hive-router
want='{"data":{"__typename":"Query"}}'
got=$(curl -s -m 5 "$EDGE/graphql" -H 'content-type: application/json' \
  -d '{"query":"{ __typename }"}' || true)
if [ "$got" = "$want" ]; then ok "edge $EDGE/graphql { __typename }"; else
  fail "edge $EDGE/graphql { __typename }: want $want, got ${got:-nothing}"; fi

# The web app at the edge's `/` (flick web), unless the stack runs without it (FLICK_WEB=0):
# its page, its hashed assets cached for good, and the Content-Security-Policy it runs under.
if [ "${FLICK_WEB:-1}" != 0 ]; then
  page=$(curl -s -m 5 "$EDGE/" -w '\n%{http_code} %{content_type}' || true)
  headers=$(curl -s -m 5 -o /dev/null -D - "$EDGE/" || true)
  asset=$(grep -o 'assets/[^"]*\.js' <<<"$page" | head -n 1 || true)
  asset_cache=$(curl -s -m 5 -o /dev/null -D - "$EDGE/$asset" | grep -i '^cache-control:' | tr -d '\r' || true)
  if [[ $(tail -n 1 <<<"$page") == "200 text/html"* ]] && grep -qi "^content-security-policy: default-src 'self'" <<<"$headers" &&
    [ -n "$asset" ] && [[ $asset_cache == *immutable* ]]; then
    ok "edge serves the web app at / (page, CSP, $asset cached for good)"
  else
    fail "web app at $EDGE/: $(tail -n 1 <<<"$page"), asset ${asset:-none}, ${asset_cache:-no cache-control}"
  fi
  # A browser opening /graphql (GET, Accept: text/html) gets the web app's bundled GraphiQL
  # (web/tests/graphiql.mjs runs it in Chromium); a POST that also accepts HTML is still the
  # router's, answered in JSON.
  browser='text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
  graphiql=$(curl -s -m 5 "$EDGE/graphql" -H "Accept: $browser" -w '\n%{http_code} %{content_type}' || true)
  got=$(curl -s -m 5 "$EDGE/graphql" -H "Accept: text/html,application/json;q=0.9" -H 'content-type: application/json' \
    -d '{"query":"{ __typename }"}' -w '\n%{content_type}' || true)
  if [[ $(tail -n 1 <<<"$graphiql") == "200 text/html"* ]] && grep -q '<title>GraphiQL' <<<"$graphiql" &&
    [ "$(head -n 1 <<<"$got")" = "$want" ] && [[ $(tail -n 1 <<<"$got") == application/json* ]]; then
    ok "a browser's GET /graphql gets the web app's GraphiQL; POST /graphql still answers JSON"
  else
    fail "GraphiQL at $EDGE/graphql: $(tail -n 1 <<<"$graphiql"); POST: $(tr '\n' ' ' <<<"$got")"
  fi
fi

# The edge strips a client-sent identity: the subgraph sees an anonymous caller.
got=$(curl -s -m 5 "$EDGE/graphql" -H 'content-type: application/json' \
  -H 'X-User-Id: 0195f0a2-7c1e-7d3a-9b1e-2f8c4a6d9e01' -d '{"query":"{ me { id } }"}' || true)
if [ "$got" = '{"data":{"me":null}}' ]; then ok "edge strips client X-User-Id"; else
  fail "edge strips client X-User-Id: got ${got:-nothing}"; fi

# A bad token identifies nobody: the subgraph that gets it (the edge leaves /graphql's tokens to
# the subgraphs) answers UNAUTHENTICATED instead of data, even beside an identity header.
got=$(curl -s -m 5 "$EDGE/graphql" -H 'content-type: application/json' -H 'Authorization: Bearer not-a-token' \
  -H 'X-User-Id: 0195f0a2-7c1e-7d3a-9b1e-2f8c4a6d9e01' -d '{"query":"{ me { id } }"}' || true)
if python3 -c 'import json,sys; d=json.loads(sys.argv[1]); e=d["errors"][0]
assert (d.get("data") or {}).get("me") is None and e["message"] == "invalid token"
assert all(x["extensions"]["code"] == "UNAUTHENTICATED" for x in d["errors"])' "$got" 2>/dev/null
then ok "a bad token on /graphql: UNAUTHENTICATED, no identity"; else fail "a bad token on /graphql: ${got:-nothing}"; fi

# CORS: a browser on an allowed origin gets its preflight answered at the edge (never reaching
# ForwardAuth) and may read answers; another origin gets no CORS headers.
allowed=${FLICK_CORS_ORIGINS:-http://localhost:3000}
allowed=${allowed%%,*}
pre=$(curl -s -i -m 5 -X OPTIONS "$EDGE/graphql" -H "Origin: $allowed" -H 'Access-Control-Request-Method: POST' \
  -H 'Access-Control-Request-Headers: authorization, content-type' || true)
if grep -qi "^access-control-allow-origin: $allowed" <<<"$pre" && grep -qi '^access-control-allow-headers:.*authorization' <<<"$pre" &&
  grep -q '^HTTP/1.1 200' <<<"$pre"; then ok "CORS preflight from $allowed answered at the edge"; else
  fail "CORS preflight from $allowed: $(head -1 <<<"$pre")"; fi
got=$(curl -s -i -m 5 "$EDGE/graphql" -H "Origin: $allowed" -H 'content-type: application/json' -d '{"query":"{ __typename }"}' || true)
if grep -qi "^access-control-allow-origin: $allowed" <<<"$got"; then ok "CORS: $allowed may read GraphQL answers"; else
  fail "CORS: no Access-Control-Allow-Origin for $allowed"; fi
got=$(curl -s -i -m 5 -X OPTIONS "$EDGE/graphql" -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: POST' || true)
if ! grep -qi '^access-control-allow-origin:' <<<"$got"; then ok "CORS: other origins are not allowed"; else
  fail "CORS: https://evil.example was allowed"; fi

# /auth is routed to accounts (its JSON error body, not Traefik's plain 404).
got=$(curl -s -m 5 "$EDGE/auth/nothing-here" || true)
if grep -q '"NOT_FOUND"' <<<"$got"; then ok "edge routes /auth to accounts"; else
  fail "edge /auth: got ${got:-nothing}"; fi

# ---------- accounts through the edge ----------
json_field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get(sys.argv[1]) or "")' "$1" 2>/dev/null || true; }
post_json() { curl -s -m 10 "$EDGE$1" -H 'content-type: application/json' "${@:3}" -d "$2" || true; }
name="smoke$(date +%s%N | tail -c 9)"
user_id=$(post_json /auth/register "{\"email\":\"$name@example.com\",\"username\":\"$name\",\"password\":\"correct horse battery\",\"display_name\":\"Smoke\"}" | json_field id)
if [ -n "$user_id" ]; then ok "register through the edge"; else fail "register through the edge"; fi
tokens=$(post_json /auth/login "{\"login\":\"$name\",\"password\":\"correct horse battery\"}")
access=$(json_field access_token <<<"$tokens")
refresh=$(json_field refresh_token <<<"$tokens")
if [ -n "$access" ] && [ -n "$refresh" ]; then ok "login through the edge"; else fail "login through the edge: $tokens"; fi

code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$EDGE/user/profile" || true)
if [ "$code" = 401 ]; then ok "no token on a protected route: 401"; else fail "no token on /user/profile: HTTP $code"; fi

me=$(curl -s -m 5 "$EDGE/graphql" -H 'content-type: application/json' -H "Authorization: Bearer $access" \
  -d '{"query":"{ me { id } }"}' || true)
if [ "$me" = "{\"data\":{\"me\":{\"id\":\"$user_id\"}}}" ]; then ok "a valid token reaches the subgraph as X-User-Id"; else
  fail "me with a valid token: got ${me:-nothing}"; fi

# A write through the edge, then a query joining media and accounts in the router.
created=$(curl -s -m 10 "$EDGE/graphql" -H 'content-type: application/json' -H "Authorization: Bearer $access" \
  -d '{"query":"mutation { createVideo(input: {title: \"Smoke clip\", tags: [\"Smoke\"]}) { video { id status } } }"}' || true)
if grep -q '"status":"AWAITING_UPLOAD"' <<<"$created"; then ok "createVideo through the edge"; else fail "createVideo: ${created:-nothing}"; fi
dash=$(curl -s -m 10 "$EDGE/graphql" -H 'content-type: application/json' -H "Authorization: Bearer $access" \
  -d '{"query":"{ dashboard { videos { title owner { id displayName } } } }"}' || true)
if [ "$dash" = "{\"data\":{\"dashboard\":{\"videos\":[{\"title\":\"Smoke clip\",\"owner\":{\"id\":\"$user_id\",\"displayName\":\"Smoke\"}}]}}}" ]; then
  ok "media and accounts joined by the router (owner { displayName })"; else fail "dashboard across subgraphs: ${dash:-nothing}"; fi
feed=$(curl -s -m 10 "$EDGE/graphql" -H 'content-type: application/json' \
  -d '{"query":"{ feed(first: 5) { edges { node { id title owner { displayName } likeCount } } } }"}' || true)
if grep -q '"feed":{"edges":' <<<"$feed"; then ok "feed query through the edge"; else fail "feed: ${feed:-nothing}"; fi

# GraphQL errors through the edge say what went wrong: a subgraph's message and code arrive
# unchanged (the router masks nothing but the `service` extension), the router's own errors
# carry theirs, and no internal detail (address, SQL, stack trace, the masked placeholder) shows.
# error_is LABEL BODY CODE MESSAGE-PART [EXTENSION]: the first error has CODE, its message
# contains MESSAGE-PART, and EXTENSION (if given) is among its extensions.
error_is() {
  local verdict
  verdict=$(python3 -c '
import json, re, sys
body, code, part, ext = sys.argv[1:5]
try:
    err = json.loads(body)["errors"][0]
except Exception:
    print("no GraphQL error"); sys.exit()
exts = err.get("extensions") or {}
leak = re.search(r"Unexpected error|127\.0\.0\.1|localhost|[a-z0-9]:\d{4,5}\b|SELECT |sqlx|panicked|\.rs:\d", body)
if exts.get("code") != code: print("code %r, want %r" % (exts.get("code"), code))
elif part not in err.get("message", ""): print("message %r lacks %r" % (err.get("message"), part))
elif ext and ext not in exts: print("no extensions.%s" % ext)
elif "service" in exts: print("extensions.service names the subgraph")
elif leak: print("internal detail %r" % leak.group(0))
else: print("ok")
' "$2" "$3" "$4" "${5:-}")
  if [ "$verdict" = ok ]; then ok "GraphQL error: $1 ($3)"; else fail "GraphQL error: $1: $verdict in ${2:-nothing}"; fi
}
gql() { curl -s -m 10 "$EDGE/graphql" -H 'content-type: application/json' "${@:2}" -d "$1" || true; }
error_is "a subgraph refuses an anonymous write" \
  "$(gql '{"query":"mutation { updateVideo(id: \"x\", input: {title: \"a\"}) { id } }"}')" UNAUTHENTICATED "login required"
error_is "a subgraph's validation names the field" \
  "$(gql '{"query":"mutation { createVideo(input: {title: \"\"}) { video { id } } }"}' -H "Authorization: Bearer $access")" \
  BAD_USER_INPUT "invalid video" fields
error_is "the router validates the query (code: the rule broken)" "$(gql '{"query":"{ noSuchField }"}')" FieldsOnCorrectType noSuchField
error_is "the router parses the query" "$(gql '{"query":"{ feed("}')" GRAPHQL_PARSE_FAILED ""
# A subgraph that cannot be reached, on a second router with the same configuration whose
# recommender points at a closed port.
router_cfg=$(mktemp --suffix=.yaml)
{ sed '/^http:/,/^$/d' "$FLICK_ROOT/supergraph/router.yaml"
  printf 'http:\n  host: 127.0.0.1\n  port: 4099\noverride_subgraph_urls:\n  subgraphs:\n    recommender:\n      url: http://127.0.0.1:9/graphql\n'
} >"$router_cfg"
ROUTER_CONFIG_FILE_PATH=$router_cfg SUPERGRAPH_FILE_PATH=$FLICK_ROOT/supergraph/supergraph.graphql \
  "$FLICK_TOOLS_DIR/bin/hive_router" >"$router_cfg.log" 2>&1 &
router_pid=$!
if wait_until 30 "the second router" curl -sf -o /dev/null -m 1 http://127.0.0.1:4099/readiness; then
  error_is "a subgraph is unreachable" "$(curl -s -m 10 http://127.0.0.1:4099/graphql -H 'content-type: application/json' \
    -d '{"query":"{ recommendedForMe { id } }"}' || true)" SUBREQUEST_HTTP_ERROR "Failed to send request to subgraph"
else fail "the second router did not start: $(tail -3 "$router_cfg.log")"; fi
kill "$router_pid" 2>/dev/null || true
wait "$router_pid" 2>/dev/null || true
rm -f "$router_cfg" "$router_cfg.log"

# Upload -> transcode -> playback through the edge (its own ok/FAIL lines count here).
upload_out=$(python3 "$(dirname "${BASH_SOURCE[0]}")/e2e_upload.py" "$access" 2>&1) || true
echo "$upload_out"
passed=$((passed + $(grep -c '^ok ' <<<"$upload_out" || true)))
failed=$((failed + $(grep -c '^FAIL ' <<<"$upload_out" || true)))
grep -q '^ok  .*ffprobe 240p' <<<"$upload_out" || fail "upload to playback did not reach the last check"

# Identity over WebSockets and subscriptions' lifetime (its own ok/FAIL lines count here).
security_out=$(python3 "$(dirname "${BASH_SOURCE[0]}")/e2e_security.py" 2>&1) || true
echo "$security_out"
passed=$((passed + $(grep -c '^ok ' <<<"$security_out" || true)))
failed=$((failed + $(grep -c '^FAIL ' <<<"$security_out" || true)))
grep -q '^ok  .*SSE subscription' <<<"$security_out" || fail "the security checks did not reach the last one"

for internal in /user/token_verify /user/list; do
  code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$EDGE$internal" -H "Authorization: Bearer $access" || true)
  if [ "$code" = 403 ]; then ok "internal $internal is closed at the edge"; else fail "$internal from outside: HTTP $code"; fi
done

# Refresh-token reuse revokes the family.
rotated=$(post_json /auth/refresh "{\"refresh_token\":\"$refresh\"}")
new_refresh=$(json_field refresh_token <<<"$rotated")
reuse=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$EDGE/auth/refresh" -H 'content-type: application/json' -d "{\"refresh_token\":\"$refresh\"}" || true)
after=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$EDGE/auth/refresh" -H 'content-type: application/json' -d "{\"refresh_token\":\"$new_refresh\"}" || true)
if [ -n "$new_refresh" ] && [ "$reuse" = 401 ] && [ "$after" = 401 ]; then ok "refresh-token reuse revokes the family"; else
  fail "refresh reuse: rotated=${new_refresh:+yes} reuse=$reuse newest=$after"; fi

# Logout: the same token is refused at once.
tokens=$(post_json /auth/login "{\"login\":\"$name\",\"password\":\"correct horse battery\"}")
access=$(json_field access_token <<<"$tokens")
code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' -X POST "$EDGE/auth/logout" -H "Authorization: Bearer $access" || true)
after=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$EDGE/user/profile" -H "Authorization: Bearer $access" || true)
graphql_after=$(curl -s -m 5 "$EDGE/graphql" -H 'content-type: application/json' \
  -H "Authorization: Bearer $access" -d '{"query":"{ me { id } }"}' || true)
if [ "$code" = 204 ] && [ "$after" = 401 ] && grep -q '"token revoked"' <<<"$graphql_after"; then
  ok "after logout the token is refused at once (401 on REST, token revoked on /graphql)"; else
  fail "logout: HTTP $code, then $after and ${graphql_after:-nothing}"; fi

code=$(http_code http://127.0.0.1:4000/health)
if [ "$code" = 200 ]; then ok "router /health"; else fail "router /health: HTTP $code"; fi
code=$(http_code http://127.0.0.1:8090/ping)
if [ "$code" = 200 ]; then ok "traefik /ping"; else fail "traefik /ping: HTTP $code"; fi

for sg in "${PROCESSES[@]}"; do
  name=${sg%%:*}
  base=http://127.0.0.1:${sg##*:}
  code=$(http_code "$base/healthz")
  if [ "$code" = 200 ]; then ok "$name $base/healthz"; else fail "$name $base/healthz: HTTP $code"; fi
  metrics=$(curl -s -m 5 "$base/metrics" || true)
  if grep -q '^http_requests_total' <<<"$metrics"; then ok "$name /metrics has http_requests_total"; else
    fail "$name $base/metrics: no http_requests_total"; fi
  # Recorded with http_requests_total by the same middleware: one without the other is a bug.
  if grep -q '^http_request_duration_seconds' <<<"$metrics"; then ok "$name /metrics has http_request_duration_seconds"; else
    fail "$name $base/metrics: http_requests_total without http_request_duration_seconds"; fi
done

# Monitoring (the stack): every target scraped, the project's rules loaded, alerts delivered.
if [ -n "${FLICK_SMOKE_PROMETHEUS:-}" ]; then
  prom=$FLICK_SMOKE_PROMETHEUS
  # The first scrape of each target comes within one interval (5 s) of Prometheus starting.
  flick_targets_up() {
    curl -s -m 5 "$prom/api/v1/targets?state=active" | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
flick = [t for t in targets if t["labels"]["job"] in ("flick", "router", "traefik")]
sys.exit(0 if flick and all(t["health"] == "up" for t in flick) else 1)'
  }
  if wait_until 30 "Prometheus to scrape every Flick process" flick_targets_up; then
    ok "Prometheus scrapes every Flick process, the router and the edge"
  else fail "Prometheus: a Flick, router or edge target is not up ($prom/targets)"; fi
  rules=$(curl -s -m 5 "$prom/api/v1/rules" | python3 -c 'import json,sys; print(sum(len(g["rules"]) for g in json.load(sys.stdin)["data"]["groups"]))' 2>/dev/null || echo 0)
  if [ "$rules" -gt 0 ]; then ok "Prometheus has the project's $rules rules loaded"; else fail "Prometheus: no rules loaded"; fi
  am=$(curl -s -m 5 "$prom/api/v1/alertmanagers" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["activeAlertmanagers"]))' 2>/dev/null || echo 0)
  if [ "$am" -gt 0 ]; then ok "Prometheus sends alerts to Alertmanager"; else fail "Prometheus: no Alertmanager"; fi
fi

# The edge's per-client /graphql rate limit (FLICK_GRAPHQL_RATE a second, bursts of
# FLICK_GRAPHQL_BURST; Traefik's defaults 100 and 200): a burst of three times what one second
# allows gets some 429s, then the bucket refills. Last, so no other check meets the limit.
rate=${FLICK_GRAPHQL_RATE:-100}
burst=${FLICK_GRAPHQL_BURST:-200}
if [ "$((rate + burst))" -gt 2000 ]; then
  echo "note  /graphql rate limit raised to $rate/s (burst $burst): burst check skipped"
else
  # One curl with parallel transfers: fast enough to outrun the refill on a loaded host.
  codes=$(for _ in $(seq $(((rate + burst) * 3))); do printf 'url = "%s/graphql"\noutput = "/dev/null"\n' "$EDGE"; done |
    curl -s -Z --parallel-max 32 -m 10 -H 'content-type: application/json' -d '{"query":"{ __typename }"}' \
      -w '%{http_code}\n' -K - 2>/dev/null || true)
  limited=$(grep -c '^429$' <<<"$codes" || true)
  served=$(grep -c '^200$' <<<"$codes" || true)
  if [ "$limited" -gt 0 ] && [ "$served" -gt 0 ]; then
    ok "a /graphql burst past the edge's rate limit: $served answered, $limited got 429"
  else fail "rate limit burst: $served answered, $limited got 429 ($(sort <<<"$codes" | uniq -c | tr '\n' ' '))"; fi
  edge_ok() { [ "$(http_code "$EDGE/graphql" -H 'content-type: application/json' -d '{"query":"{ __typename }"}')" = 200 ]; }
  if wait_until 10 "the /graphql rate limit to refill" edge_ok; then ok "/graphql answers again once the bucket refills"; else
    fail "/graphql still refused 10 s after the burst"; fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
