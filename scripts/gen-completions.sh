#!/usr/bin/env bash
# Regenerates completions/ from the binary (a test fails when they drift).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --bin till
bin=${CARGO_TARGET_DIR:-target}/debug/till
$bin completions bash > completions/till.bash
$bin completions zsh > completions/_till
$bin completions fish > completions/till.fish
$bin completions powershell > completions/_till.ps1
$bin completions elvish > completions/till.elv
echo "completions/ regenerated"
