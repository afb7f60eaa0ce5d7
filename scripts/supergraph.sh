#!/usr/bin/env bash
# Writes each subgraph's SDL (from `$FLICK_BIN sdl <name>`, offline) to
# supergraph/subgraphs/<name>.graphql and composes supergraph/supergraph.graphql.
#
# usage: scripts/supergraph.sh [--check]
#   --check  compose into a temporary directory; fail when the checked-in files differ
#
# env: FLICK_BIN (default ${CARGO_TARGET_DIR:-/var/cache/flick/target}/debug/flick),
#      FLICK_SUBGRAPH_HOST / FLICK_SUBGRAPH_URL_<NAME> (URLs written in the supergraph;
#      the checked-in one uses 127.0.0.1: override at run time with the router's
#      override_subgraph_urls instead), FLICK_TOOLS_DIR.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUBGRAPHS=(accounts media transcoder recommender activity)
FLICK_BIN=${FLICK_BIN:-${CARGO_TARGET_DIR:-/var/cache/flick/target}/debug/flick}
SG=$FLICK_ROOT/supergraph

check=false
case ${1:-} in
  --check) check=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

[ -x "$FLICK_BIN" ] || die "no flick binary at $FLICK_BIN (build it: cargo build -p flick --bin flick, or set FLICK_BIN)"
"$FLICK_ROOT/scripts/tools.sh" composition >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/subgraphs"

args=()
flick_env
for name in "${SUBGRAPHS[@]}"; do
  "${FLICK_ENV[@]}" "$FLICK_BIN" sdl "$name" >"$tmp/subgraphs/$name.graphql" ||
    die "'$FLICK_BIN sdl $name' failed"
  [ -s "$tmp/subgraphs/$name.graphql" ] || die "'$FLICK_BIN sdl $name' printed nothing"
  args+=("$name=$tmp/subgraphs/$name.graphql")
done

if ! node "$SG/compose.mjs" --out "$tmp/supergraph.graphql" "${args[@]}" 2>"$tmp/compose.err"; then
  cat "$tmp/compose.err" >&2
  die "composition failed"
fi

files=("${SUBGRAPHS[@]/#/subgraphs/}")
files=("${files[@]/%/.graphql}" supergraph.graphql)

if $check; then
  stale=()
  for f in "${files[@]}"; do
    if ! cmp -s "$tmp/$f" "$SG/$f"; then
      stale+=("supergraph/$f")
      if [ -f "$SG/$f" ]; then
        diff -u "$SG/$f" "$tmp/$f" --label "supergraph/$f (checked in)" --label "supergraph/$f (from $FLICK_BIN)" | head -40 >&2 || true
      fi
    fi
  done
  if [ ${#stale[@]} -gt 0 ]; then
    die "stale: ${stale[*]} differ from what the code produces; run make supergraph"
  fi
  log "supergraph is up to date (${SUBGRAPHS[*]})"
else
  mkdir -p "$SG/subgraphs"
  changed=0
  for f in "${files[@]}"; do
    if ! cmp -s "$tmp/$f" "$SG/$f"; then
      cp "$tmp/$f" "$SG/$f"
      log "wrote supergraph/$f"
      changed=$((changed + 1))
    fi
  done
  [ "$changed" -gt 0 ] || log "supergraph unchanged (${SUBGRAPHS[*]})"
fi
