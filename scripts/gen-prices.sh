#!/usr/bin/env bash
# Regenerates data/prices.toml from LiteLLM's model price table (MIT licensed).
#
#   scripts/gen-prices.sh                 # the table shipped in the newest litellm on PyPI
#   scripts/gen-prices.sh FILE.json       # a copy of model_prices_and_context_window.json
#
# The conversion is till's own (`till prices update --from …`, src/pricing/litellm.rs, which
# also adds what data/prices-supplement.toml has and the table lacks), run against a throwaway
# TILL_HOME; its result replaces data/prices.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
  json=$1
  source_name=$(basename "$json")
else
  python3 -m pip download --quiet --disable-pip-version-check --no-deps litellm -d "$work/wheel"
  wheel=$(ls "$work"/wheel/litellm-*.whl)
  version=$(basename "$wheel" | cut -d- -f2)
  python3 - "$wheel" "$work/prices.json" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    data = z.read("litellm/model_prices_and_context_window_backup.json")
open(sys.argv[2], "wb").write(data)
PY
  json=$work/prices.json
  source_name="litellm $version (PyPI), model_prices_and_context_window_backup.json"
fi

cargo build --quiet --locked --bin till
till=${CARGO_TARGET_DIR:-target}/debug/till
TILL_HOME=$work/home "$till" prices update --force --from "$json" >/dev/null 2>&1
# Name the source by what it is, not by the temporary path it was read from.
python3 - "$work/home/data/prices.toml" "$source_name" <<'PY'
import re, sys
path, name = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r'^source = "LiteLLM model price table, [^;"]*', 'source = "LiteLLM model price table: ' + name.replace('"', ''), text, count=1, flags=re.M)
open(path, "w").write(text)
PY
cp "$work/home/data/prices.toml" data/prices.toml
echo "data/prices.toml: $(grep -c ' = {' data/prices.toml) prices from $source_name"
