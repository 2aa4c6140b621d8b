#!/usr/bin/env bash
# till's proxy beside nginx: the same requests straight to a static upstream, through an nginx
# reverse proxy that only overwrites `Authorization`, and through `till serve`.
#
#   scripts/bench-nginx.sh [--rounds 3] [--seconds 10] [--quick] [--json FILE] [--no-build]
#                          [--tests 1MB,rate50,...] [--only nginx,till] [--compare OTHER_TILL]
#
# --compare measures a second till binary (say, a copy of the release build before a change)
# as target `till-b` in the same rounds (given again, `till-c`, …): the way to see what one
# change is worth on a machine whose load moves between runs.
#
# Installs what is missing (oha with `cargo install oha --locked`, nginx with apt-get), builds
# till, till-mock and the streaming probe (examples/stream_probe.rs) in release mode, then runs
# scripts/bench_nginx.py, which starts everything on 127.0.0.1, measures in interleaved rounds
# and prints the tables (medians of the rounds, ratios to nginx). Everything it starts is
# stopped and its temporary directory removed on exit. See BENCHMARKS.md for a run.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
args=()
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    *) args+=("$a") ;;
  esac
done

if ! command -v oha >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/oha" ]; then
  echo "bench-nginx.sh: installing oha (cargo install oha --locked)" >&2
  cargo install oha --locked
fi
export PATH="$HOME/.cargo/bin:$PATH"

nginx_bin="$(command -v nginx || true)"
[ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx
if [ -z "$nginx_bin" ]; then
  echo "bench-nginx.sh: installing nginx (apt-get)" >&2
  sudo_cmd=""
  [ "$(id -u)" != 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq nginx-light || $sudo_cmd apt-get install -y -qq nginx
  nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
fi

if [ "$build" = 1 ]; then
  cargo build --release --locked -p till -p till-mock --bins --example stream_probe
fi
target_dir="${CARGO_TARGET_DIR:-target}"

exec python3 scripts/bench_nginx.py \
  --till "$target_dir/release/till" \
  --probe "$target_dir/release/examples/stream_probe" \
  --nginx "$nginx_bin" \
  ${args[@]+"${args[@]}"}
