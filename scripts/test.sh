#!/usr/bin/env bash
# The test command: formatting, lints, and every test against a real Secret Service.
#
# Starts a private D-Bus session with an unlocked gnome-keyring-daemon when no Secret Service
# is reachable (scripts/with-keyring.sh), installs the Python SDKs the agent tests drive, then
# runs `cargo fmt --check`, `cargo clippy -D warnings`, `cargo test` and scripts/agents.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CI:-}" = true ]; then
  export PROPTEST_CASES="${PROPTEST_CASES:-10000}"
else
  export PROPTEST_CASES="${PROPTEST_CASES:-1000}"
fi

if [ -f tests/python/requirements.txt ]; then
  if ! python3 -c 'import openai, anthropic' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  fi
fi

# The agents are fetched from their registries while the tests build (minutes of network
# waiting that would otherwise follow them); the checks themselves run last.
agents_job=""
if [ "${TILL_SKIP_AGENTS:-}" != 1 ]; then
  agents_prefix="${AGENTS_PREFIX:-$(mktemp -d "${TMPDIR:-/tmp}/till-agents-prefix.XXXXXX")}"
  agents_log="$(mktemp "${TMPDIR:-/tmp}/till-agents-install.XXXXXX")"
  # A process group of its own (set -m), so that a failure before the checks stops npm and pip.
  set -m
  AGENTS_PREFIX="$agents_prefix" scripts/agents.sh --install >"$agents_log" 2>&1 &
  agents_job=$!
  set +m
  cleanup() {
    kill -- "-$agents_job" 2>/dev/null || true
    rm -f "$agents_log"
    [ -n "${AGENTS_PREFIX:-}" ] || rm -rf "$agents_prefix"
  }
  trap cleanup EXIT
fi

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
scripts/with-keyring.sh cargo test --workspace --locked --all-targets
# The real agents from their registries against the mock (a few minutes; needs the npm and
# PyPI registries). TILL_SKIP_AGENTS=1 leaves them out, e.g. offline.
if [ -n "$agents_job" ]; then
  echo "== scripts/agents.sh"
  if ! wait "$agents_job"; then
    cat "$agents_log" >&2
    exit 1
  fi
  cat "$agents_log" >&2
  AGENTS_PREFIX="$agents_prefix" scripts/agents.sh
fi
