#!/usr/bin/env bash
# Builds till in release mode and installs it with its completions and man page.
#
#   ./install.sh                 install under ~/.local (bin, share/man, completions)
#   ./install.sh --prefix DIR    install under DIR
#   ./install.sh --with-mock     also install till-mock (the offline mock provider)
#   ./install.sh --uninstall     remove what an install put there
#
# Idempotent: running it again replaces the same files. Completions go where each shell
# looks by default for a user: bash-completion's user dir, a zsh fpath dir under the prefix,
# and fish's user completions dir.
set -euo pipefail

prefix="${HOME}/.local"
action=install
with_mock=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --with-mock) with_mock=1; shift ;;
    --uninstall) action=uninstall; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

bin_dir="$prefix/bin"
man_dir="$prefix/share/man/man1"
bash_dir="${XDG_DATA_HOME:-$HOME/.local/share}/bash-completion/completions"
zsh_dir="$prefix/share/zsh/site-functions"
fish_dir="${XDG_CONFIG_HOME:-$HOME/.config}/fish/completions"
files=(
  "$bin_dir/till"
  "$bin_dir/till-mock"
  "$man_dir/till.1"
  "$bash_dir/till"
  "$zsh_dir/_till"
  "$fish_dir/till.fish"
)

if [ "$action" = uninstall ]; then
  for f in "${files[@]}"; do
    if [ -e "$f" ]; then rm -f "$f" && echo "removed $f"; fi
  done
  echo "till uninstalled (your keys, config and ledger are left in place; \`till remove\` deletes keys)"
  exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install.sh: cargo is not installed." >&2
  echo "hint: install Rust from https://rustup.rs (then open a new shell) and run ./install.sh again" >&2
  exit 1
fi

cd "$(dirname "$0")"
pkgs=(-p till)
if [ "$with_mock" = 1 ]; then pkgs+=(-p till-mock); fi
cargo build --release --locked "${pkgs[@]}" --bins
target_dir="${CARGO_TARGET_DIR:-target}"

mkdir -p "$bin_dir" "$man_dir" "$bash_dir" "$zsh_dir" "$fish_dir"
install -m 0755 "$target_dir/release/till" "$bin_dir/till"
if [ "$with_mock" = 1 ]; then install -m 0755 "$target_dir/release/till-mock" "$bin_dir/till-mock"; fi
"$bin_dir/till" manpage > "$man_dir/till.1"
"$bin_dir/till" completions bash > "$bash_dir/till"
"$bin_dir/till" completions zsh > "$zsh_dir/_till"
"$bin_dir/till" completions fish > "$fish_dir/till.fish"

echo "installed till $("$bin_dir/till" --version | cut -d' ' -f2) to $bin_dir/till"
case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) echo "note: $bin_dir is not on your PATH; add it: export PATH=\"$bin_dir:\$PATH\"" ;;
esac
echo "zsh: make sure $zsh_dir is on your \$fpath (fpath+=($zsh_dir))"
