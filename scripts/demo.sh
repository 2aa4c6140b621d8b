#!/usr/bin/env bash
# till in one minute, offline: a mock provider, a scoped key, an agent that uses it.
#
#   scripts/demo.sh                 build, install into a temp PREFIX, run the demo, clean up
#   PREFIX=DIR scripts/demo.sh      install till and till-mock into DIR/bin and keep them
#
# Needs Rust and python3; the network only to fetch crates the first time (after that the
# build runs with --offline). It builds till and till-mock in release mode (a no-op on a
# second run), starts till-mock on a free loopback port, makes a throwaway TILL_HOME with the
# encrypted file store (TILL_STORE=file, TILL_PASSPHRASE=demo) whose openai upstream is the
# mock, stores the mock's root key with `till add openai`, and runs examples/agent.py under
#
#   till run --scope openai/gpt-4o-mini --budget 1usd -- python3 examples/agent.py
#
# The agent sees a till_… key, gets an answer from gpt-4o-mini and a 403 for gpt-4o, and till
# prints its summary. The mock and the temporary files go away on exit, whatever happens.
#
# This builds with cargo rather than ./install.sh because install.sh also writes shell
# completions under your home directory, which a demo should not do.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "demo.sh: $tool is not installed" >&2
    exit 1
  fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/till-demo.XXXXXX")"
own_prefix=0
if [ -z "${PREFIX:-}" ]; then
  PREFIX="$work/prefix"
  own_prefix=1
fi
mock_pid=""
cleanup() {
  if [ -n "$mock_pid" ] && kill -0 "$mock_pid" 2>/dev/null; then
    kill "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${NO_COLOR:-}" ] && [ -t 2 ]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
else
  step() { printf '\n== %s\n' "$*" >&2; }
fi

step "build till and till-mock (release; quick when already built)"
# The network is needed once, to fetch crates; after that everything runs offline.
if ! cargo fetch --locked --offline >/dev/null 2>&1; then
  cargo fetch --locked
fi
cargo build --release --locked --offline -p till -p till-mock --bins
target_dir="${CARGO_TARGET_DIR:-}"
if [ -z "$target_dir" ]; then
  target_dir="$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
fi
target_dir="${target_dir:-target}"
mkdir -p "$PREFIX/bin"
install -m 0755 "$target_dir/release/till" "$target_dir/release/till-mock" "$PREFIX/bin/"
export PATH="$PREFIX/bin:$PATH"
if [ "$own_prefix" = 0 ]; then echo "installed till and till-mock in $PREFIX/bin" >&2; fi

step "start the mock provider (OpenAI, Anthropic and Gemini wire formats, offline)"
till-mock --listen 127.0.0.1:0 >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
mock_url=""
for _ in $(seq 1 200); do
  mock_url="$(sed -n 's/^listening on //p' "$work/mock.out")"
  [ -n "$mock_url" ] && break
  if ! kill -0 "$mock_pid" 2>/dev/null; then break; fi
  sleep 0.05
done
if [ -z "$mock_url" ]; then
  echo "demo.sh: till-mock did not start: $(cat "$work/mock.err")" >&2
  exit 1
fi
echo "till-mock listening on $mock_url (it accepts the root key sk-mock-root)" >&2

step "a throwaway till home with the encrypted file store, pointed at the mock"
export TILL_HOME="$work/home" TILL_STORE=file TILL_PASSPHRASE=demo
unset OPENAI_API_KEY OPENAI_BASE_URL TILL_KEY TILL_PROXY_URL
mkdir -p "$TILL_HOME"
printf '[providers.openai]\nbase_url = "%s"\n' "$mock_url" >"$TILL_HOME/config.toml"
echo "TILL_HOME=$TILL_HOME" >&2
echo "\$ echo sk-mock-root | till add openai" >&2
echo sk-mock-root | till add openai

step "run an agent with a scoped child key"
echo "\$ till run --scope openai/gpt-4o-mini --budget 1usd -- python3 examples/agent.py" >&2
till run --scope openai/gpt-4o-mini --budget 1usd -- python3 examples/agent.py
