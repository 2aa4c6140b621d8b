#!/usr/bin/env bash
# The agents people run, installed fresh from their registries, each run under `till run`
# against the offline mock provider, with a PASS/FAIL line per check.
#
#   scripts/agents.sh                     install into a temp prefix, build, check, clean up
#   AGENTS_PREFIX=DIR scripts/agents.sh   install into (or reuse) DIR/node, DIR/venv and DIR/llm
#   AGENTS_PREFIX=DIR scripts/agents.sh --install   only install (scripts/test.sh does this
#                                         while the tests build, then runs the checks)
#   AGENT_TIMEOUT=SECS                    per agent run (default 180)
#
# Needs cargo, node/npm (Node 20+), python3 with venv, tmux (for the interactive Claude Code
# check), and the npm and PyPI registries; no provider API is contacted. It installs Claude
# Code, Codex CLI, Gemini CLI, OpenCode and Qwen Code with `npm install --prefix`, aider and
# LangChain (OpenAI and Anthropic) into a venv and llm (with llm-anthropic) into another,
# builds till and till-mock, starts the mock with a recognisable root key, stores that key for openai,
# anthropic and gemini in a throwaway TILL_HOME (file store), and runs each agent
# non-interactively. For each run it checks that
#   - the agent printed the mock's answer and exited 0,
#   - the ledger's token counts equal the usage the mock reported (GET /_mock/usage),
#   - the mock saw the root key on every request and no till_ key anywhere,
#   - the agent's environment (read from /proc/PID/environ while it ran) holds no root key,
#   - till recorded no denial and raised no alert (with default models, also under --budget).
# Claude Code, Codex CLI, Gemini CLI, OpenCode and Qwen Code also run under
# `--sandbox --net proxy` (Linux), with their throwaway HOME writable there.
# Then it starts Claude Code interactively in tmux and checks that it reaches its prompt
# without asking about the API key, with a throwaway HOME (your own settings are untouched).
# A run under --budget whose only trouble is a model missing from the price table (charged its
# provider's highest prices, so refused) is a SKIP naming the model, not a FAIL.
# Exit status: 0 when no check failed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
started=$(date +%s)

install_only=false
case "${1:-}" in
  "") ;;
  --install)
    install_only=true
    if [ -z "${AGENTS_PREFIX:-}" ]; then
      echo "agents.sh: --install keeps the agents in AGENTS_PREFIX; set it to a directory" >&2
      exit 2
    fi
    ;;
  *)
    echo "agents.sh: unknown argument '$1' (the only one is --install)" >&2
    exit 2
    ;;
esac

for tool in cargo npm node python3 curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "agents.sh: $tool is not installed" >&2
    exit 1
  fi
done

node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  echo "agents.sh: Node $node_major is too old; Gemini CLI needs Node 20 or later" >&2
  exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/till-agents.XXXXXX")"
prefix="${AGENTS_PREFIX:-$work/prefix}"
timeout_s="${AGENT_TIMEOUT:-180}"
mock_pid=""
tmux_session="till-agents-$$"
cleanup() {
  tmux kill-session -t "$tmux_session" >/dev/null 2>&1 || true
  if [ -n "$mock_pid" ] && kill -0 "$mock_pid" 2>/dev/null; then
    kill "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failures=0
passes=0
skips=0
pass() { passes=$((passes + 1)); printf 'PASS  %s\n' "$*"; }
fail() { failures=$((failures + 1)); printf 'FAIL  %s\n' "$*"; }
step() { printf '\n== %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
step "install the agents from their registries into $prefix"
# npm and the two venvs are fetched at once: the time is the registries', not this machine's.
mkdir -p "$prefix/node"
bin="$prefix/node/node_modules/.bin"
install_node() {
  if [ ! -x "$bin/qwen" ] || [ -z "${AGENTS_PREFIX:-}" ]; then
    timeout 900 npm install --prefix "$prefix/node" --no-audit --no-fund --loglevel=error \
      @anthropic-ai/claude-code@latest @openai/codex@latest @google/gemini-cli@latest \
      opencode-ai@latest @qwen-code/qwen-code@latest >&2 ||
      { echo "agents.sh: npm install failed" >&2; return 1; }
  fi
  # Claude Code's postinstall puts the native binary in place; npm may have skipped it.
  if ! timeout 60 "$bin/claude" --version >/dev/null 2>&1; then
    (cd "$prefix/node/node_modules/@anthropic-ai/claude-code" && timeout 120 node install.cjs) >&2
  fi
}
install_venv() { # DIR PROGRAM PACKAGE...
  local dir="$1" program="$2"
  shift 2
  [ -x "$dir/bin/$program" ] && return 0
  python3 -m venv "$dir" &&
    timeout 900 "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" >&2 ||
    { echo "agents.sh: pip install $* failed" >&2; return 1; }
}
install_node &
node_job=$!
install_venv "$prefix/venv" aider aider-chat langchain-openai langchain-anthropic &
venv_job=$!
# llm in a venv of its own: aider pins the SDKs, and llm-anthropic needs newer ones.
install_venv "$prefix/llm" llm llm llm-anthropic &
llm_job=$!
installed=0
for job in "$node_job" "$venv_job" "$llm_job"; do
  wait "$job" || installed=1
done
[ "$installed" = 0 ] || exit 1
for v in "claude --version" "codex --version" "gemini --version" "opencode --version" \
  "qwen --version"; do
  echo "  $(timeout 60 "$bin"/$v 2>/dev/null | head -1)" >&2
done
echo "  aider $("$prefix/venv/bin/aider" --version 2>/dev/null | awk '{print $NF}')" >&2
echo "  $("$prefix/llm/bin/llm" --version 2>/dev/null)" >&2
if [ "$install_only" = true ]; then
  echo "agents.sh: installed in $((($(date +%s) - started))) s" >&2
  exit 0
fi

# ---------------------------------------------------------------------------------------------
step "build till and till-mock"
cargo build --locked -q -p till -p till-mock --bins || exit 1
target="${CARGO_TARGET_DIR:-$repo/target}"
export PATH="$target/debug:$bin:$prefix/venv/bin:$PATH"

step "start the mock and a throwaway till home"
root="sk-mock-ROOT-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
till-mock --listen 127.0.0.1:0 --key "$root" >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
mock=""
for _ in $(seq 1 200); do
  mock="$(sed -n 's/^listening on //p' "$work/mock.out")"
  [ -n "$mock" ] && break
  sleep 0.05
done
[ -n "$mock" ] || { echo "agents.sh: till-mock did not start: $(cat "$work/mock.err")" >&2; exit 1; }
export TILL_HOME="$work/till" TILL_STORE=file TILL_PASSPHRASE=agents
mkdir -p "$TILL_HOME"
printf '[providers.%s]\nbase_url = "%s"\n' openai "$mock" anthropic "$mock" gemini "$mock" \
  >"$TILL_HOME/config.toml"
for p in openai anthropic gemini; do
  echo "$root" | till add "$p" --no-verify >/dev/null 2>&1 || { echo "till add $p failed" >&2; exit 1; }
done
unset OPENAI_API_KEY OPENAI_BASE_URL ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN ANTHROPIC_BASE_URL \
  GEMINI_API_KEY GOOGLE_API_KEY GOOGLE_GEMINI_BASE_URL TILL_KEY TILL_PROXY_URL
# Agents get a home of their own: their settings, logins and caches stay out of yours.
export HOME="$work/home" DISABLE_AUTOUPDATER=1 \
  NO_UPDATE_NOTIFIER=1 AIDER_CHECK_UPDATE=false AIDER_ANALYTICS=false NO_COLOR=1
mkdir -p "$HOME/project" "$work/dump"
# Under --sandbox, /tmp is private: the agents' HOME, their wrappers, the environment dumps and
# the install prefix (all under $work unless AGENTS_PREFIX is elsewhere) are listed writable,
# so they are there too.
mkdir -p "$work/ihome"
printf '[sandbox]\nwritable = ["%s", "%s", "%s", "%s", "%s"]\n' \
  "$HOME" "$work/wrap" "$work/dump" "$work/ihome" "$prefix" \
  >>"$TILL_HOME/config.toml"
till setup gemini >/dev/null 2>&1 || { echo "till setup gemini failed" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Each agent runs through a wrapper of the same name (so till recognises it) that saves the
# environment till built for it and execs the real program; a watcher also samples
# /proc/PID/environ of every process of the run, so a root key set anywhere below till is seen.
mkdir -p "$work/wrap"
wrap() {
  local real; real="$(command -v "$1")" || { echo "agents.sh: $1 not found" >&2; return 1; }
  local w; w="$work/wrap/$(basename "$1")"
  printf '#!/bin/sh\nenv >"$ENV_DUMP"\nexec "%s" "$@"\n' "$real" >"$w"
  chmod +x "$w"
  echo "$w"
}

ledger_rows() { till log --json -n 100000 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

# check NAME [till run args] -- CMD ARGS…
check() {
  local name="$1"; shift
  local targs=()
  while [ "$1" != "--" ]; do targs+=("$1"); shift; done
  shift
  curl -s -X DELETE "$mock/_mock/requests" >/dev/null
  local before; before=$(ledger_rows)
  local out="$work/$name.out" err="$work/$name.err" envf="$work/dump/$name.env"
  rm -f "$envf" "$work/$name.procenv"
  local t0; t0=$(date +%s)
  local program; program="$(wrap "$1")" || { fail "$name: $1 not installed"; return; }
  shift
  (cd "$HOME/project" && ENV_DUMP="$envf" timeout "$timeout_s" \
    till run "${targs[@]}" -- "$program" "$@" </dev/null >"$out" 2>"$err") &
  local run_pid=$!
  # Sample the environment of every process in the run while it lasts.
  while kill -0 "$run_pid" 2>/dev/null; do
    for pid in $(pgrep -s 0 2>/dev/null); do
      { tr '\0' '\n' <"/proc/$pid/environ" | grep -F "$root" >>"$work/$name.procenv" &&
        echo "pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline")" >>"$work/$name.procenv"; } 2>/dev/null
    done
    sleep 0.2
  done
  wait "$run_pid"; local code=$?
  local secs=$(( $(date +%s) - t0 ))
  local ok=1 why=()
  [ "$code" = 0 ] || { ok=0; why+=("exit $code"); }
  grep -q "Hello from the mock" "$out" || { ok=0; why+=("no answer"); }
  local verdict=0
  python3 - "$mock" "$root" "$before" "$envf" "$work/$name.procenv" "$err" >"$work/$name.why" 2>"$work/$name.note" <<'PY' || verdict=$?
import json, os, subprocess, sys, urllib.request
mock, root, before, envf, procenv, errf = sys.argv[1:7]
problems = []
reqs = json.load(urllib.request.urlopen(mock + "/_mock/requests"))
usage = json.load(urllib.request.urlopen(mock + "/_mock/usage"))
if not reqs:
    problems.append("the mock saw no request")
for r in reqs:
    text = json.dumps(r)
    if "till_" in text:
        problems.append("a till_ key reached the mock")
    auth = " ".join(r["headers"].get(h, "") for h in ("authorization", "x-api-key", "x-goog-api-key"))
    if root not in auth:
        problems.append(f"{r['method']} {r['path']} without the root key")
rows = json.loads(subprocess.run(["till", "log", "--json", "-n", "100000"], capture_output=True, text=True).stdout)
rows = rows[int(before):]
denied = [r for r in rows if r["denial"]]
if denied:
    problems.append("denials: " + ", ".join(f"{r['denial']}" for r in denied))
tin = sum(r["input_tokens"] for r in rows)
tout = sum(r["output_tokens"] for r in rows)
if (tin, tout) != (usage["input_tokens"], usage["output_tokens"]):
    problems.append(f"ledger {tin}/{tout} tokens, mock {usage['input_tokens']}/{usage['output_tokens']}")
if len(rows) != usage["answers"]:
    problems.append(f"ledger {len(rows)} rows, mock {usage['answers']} answers")
if not os.path.exists(envf):
    problems.append("the agent's environment was not captured")
else:
    env = open(envf).read()
    if root in env:
        problems.append("a root key in the agent's environment")
    if "till_" not in env:
        problems.append("no till_ key in the agent's environment")
if os.path.exists(procenv) and os.path.getsize(procenv):
    problems.append("a root key in a process environment: " + open(procenv).read()[:200])
alerts = [l.strip() for l in open(errf) if "alert:" in l]
# A model missing from the price table is the table's gap, not the agent's: said, not failed.
for a in alerts:
    if "has no price for" in a:
        print("note: " + a.split("alert: ", 1)[1][:120], file=sys.stderr)
priceless = [a.split("has no price for ", 1)[1].split(";")[0] for a in alerts if "has no price for" in a]
alerts = [a for a in alerts if "has no price for" not in a and "first `budget` denial" not in a]
if alerts:
    problems.append("alert: " + alerts[0][:200])
# Under a budget, a model the price table lacks is charged its provider's highest prices and
# may not fit at all: that is the table's gap, reported as SKIP with the model's name.
if priceless and denied and all(r["denial"] == "budget" for r in denied):
    print(f"no price for {', '.join(sorted(set(priceless)))} in the price table, so the budget charges the provider's highest prices")
    sys.exit(3)
print("; ".join(problems))
sys.exit(1 if problems else 0)
PY
  local cmdline="till run ${targs[*]} -- $(basename "$program") $*"
  cmdline="${cmdline//  / }"
  if [ "$verdict" = 3 ]; then
    skips=$((skips + 1))
    printf 'SKIP  %s (%ss): %s: %s\n' "$name" "$secs" "$cmdline" "$(cat "$work/$name.why")"
    return
  fi
  [ "$verdict" = 0 ] || { ok=0; why+=("$(cat "$work/$name.why")"); }
  if [ "$ok" = 1 ]; then
    pass "$name (${secs}s): $cmdline"
    sed 's/^/      /' "$work/$name.note"
  else
    fail "$name (${secs}s): $cmdline: ${why[*]}"
    sed 's/^/      /' "$err" | tail -15
  fi
}

# ---------------------------------------------------------------------------------------------
step "agents, non-interactive"
check claude -- claude -p "say hi"
check claude-budget --budget 1usd -- claude -p "say hi"
check codex -- codex exec --skip-git-repo-check "say hi"
check codex-budget --budget 1usd -- codex exec --skip-git-repo-check "say hi"
check gemini -- gemini --skip-trust -p "say hi"
check gemini-budget --budget 1usd -- gemini --skip-trust -p "say hi"
# OpenCode (through the AI SDK, which reads the same variables) also asks a small model of the
# provider for the session's title.
check opencode-openai -- opencode run -m openai/gpt-4o-mini "say hi"
check opencode-anthropic-budget --budget 1usd -- opencode run -m anthropic/claude-haiku-4-5 "say hi"
# Qwen Code (Gemini CLI's fork for OpenAI's API) needs its auth type chosen to run headless.
check qwen -- qwen --auth-type openai -m gpt-4o-mini -p "say hi"
check qwen-budget --budget 1usd -- qwen --auth-type openai -m gpt-4o-mini -p "say hi"
check aider-openai -- aider --model openai/gpt-4o-mini --message "say hi" --yes --no-git \
  --no-check-update --no-show-model-warnings --no-analytics --no-pretty --no-stream
check aider-anthropic -- aider --model anthropic/claude-haiku-4-5 --message "say hi" --yes \
  --no-git --no-check-update --no-show-model-warnings --no-analytics --no-pretty
cat >"$work/lc_openai.py" <<'EOF'
from langchain_openai import ChatOpenAI
print(ChatOpenAI(model="gpt-4o-mini").invoke("say hi").content)
for chunk in ChatOpenAI(model="gpt-4o-mini", stream_usage=True).stream("say hi"):
    print(chunk.content, end="")
print()
EOF
cat >"$work/lc_anthropic.py" <<'EOF'
from langchain_anthropic import ChatAnthropic
print(ChatAnthropic(model="claude-haiku-4-5").invoke("say hi").content)
for chunk in ChatAnthropic(model="claude-haiku-4-5").stream("say hi"):
    print(chunk.content if isinstance(chunk.content, str) else "", end="")
print()
EOF
check langchain-openai -- "$prefix/venv/bin/python" "$work/lc_openai.py"
check langchain-anthropic -- "$prefix/venv/bin/python" "$work/lc_anthropic.py"
# Simon Willison's `llm` (streams by default), its default OpenAI model and the llm-anthropic
# plugin's Claude, whose name for the model is dated: hence the glob.
check llm-openai -- "$prefix/llm/bin/llm" "say hi"
check llm-openai-budget --budget 1usd -- "$prefix/llm/bin/llm" -m gpt-4o-mini --no-stream "say hi"
check llm-anthropic-budget --scope 'anthropic/claude-haiku-4-5*' --budget 1usd -- \
  "$prefix/llm/bin/llm" -m claude-haiku-4.5 "say hi"
if [ "$(uname -s)" = Linux ]; then
  step "agents, non-interactive, in the sandbox"
  check claude-sandbox --sandbox --net proxy -- claude -p "say hi"
  check codex-sandbox --sandbox --net proxy -- codex exec --skip-git-repo-check "say hi"
  check gemini-sandbox --sandbox --net proxy -- gemini --skip-trust -p "say hi"
  check opencode-sandbox --sandbox --net proxy -- opencode run -m openai/gpt-4o-mini "say hi"
  check qwen-sandbox --sandbox --net proxy -- qwen --auth-type openai -m gpt-4o-mini -p "say hi"
fi

# ---------------------------------------------------------------------------------------------
# interactive NAME [till run args]: Claude Code in tmux, with a HOME of its own.
interactive() {
  local name="$1"; shift
  local ihome="$work/ihome/$name"
  mkdir -p "$ihome/project"
  # A user who has used Claude Code before: onboarding done, this folder trusted.
  printf '{"hasCompletedOnboarding":true,"theme":"dark","projects":{"%s":{"hasTrustDialogAccepted":true}}}\n' \
    "$ihome/project" >"$ihome/.claude.json"
  curl -s -X DELETE "$mock/_mock/requests" >/dev/null
  local before; before=$(ledger_rows)
  local cmdline="till run $* -- claude"
  cmdline="${cmdline//  / }"
  tmux new-session -d -s "$tmux_session" -x 160 -y 50 \
    "cd '$ihome/project' && HOME='$ihome' PATH='$PATH' TILL_HOME='$TILL_HOME' TILL_STORE=file TILL_PASSPHRASE=agents DISABLE_AUTOUPDATER=1 till run $* -- claude 2>'$work/$name.tmux.err'; sleep 600"
  local screen="" state="timeout"
  for _ in $(seq 1 120); do
    sleep 0.5
    screen="$(tmux capture-pane -p -t "$tmux_session" 2>/dev/null)"
    if grep -qi "custom API key\|use this API key" <<<"$screen"; then state="asked"; break; fi
    # The input line: an empty `❯` prompt, followed by a space or a no-break space (the hints
    # under it differ between versions).
    if grep -qE '^❯.{0,3}$|\? for shortcuts' <<<"$screen"; then state="prompt"; break; fi
  done
  if [ "$state" = prompt ]; then
    tmux send-keys -t "$tmux_session" "say hi"
    sleep 0.5
    tmux send-keys -t "$tmux_session" Enter
    for _ in $(seq 1 60); do
      sleep 0.5
      screen="$(tmux capture-pane -p -t "$tmux_session")"
      grep -q "Hello from the mock" <<<"$screen" && { state="answered"; break; }
    done
    tmux send-keys -t "$tmux_session" C-c
    sleep 0.3
    tmux send-keys -t "$tmux_session" C-c
    sleep 2
  fi
  tmux kill-session -t "$tmux_session" >/dev/null 2>&1
  local denials
  denials=$(till log --json -n 100000 | python3 -c "import json,sys; r=json.load(sys.stdin); print(sum(1 for x in r[$before:] if x['denial']))")
  if [ "$state" = answered ] && [ "$denials" = 0 ] && ! grep -q "alert:" "$work/$name.tmux.err" 2>/dev/null; then
    pass "$name: $cmdline (reached its prompt with no API-key question, answered, no denial or alert)"
  else
    fail "$name: $cmdline: $state, $denials denials, $(grep -c 'alert:' "$work/$name.tmux.err" 2>/dev/null) alerts"
    sed 's/^/      /' <<<"$screen" | grep -v '^\s*$' | tail -20
  fi
  if python3 -c "import json,sys; a=json.load(open(sys.argv[1])); sys.exit(0 if 'customApiKeyResponses' not in a else 1)" "$ihome/.claude.json"; then
    pass "$name: no API-key approval stored in ~/.claude.json"
  else
    fail "$name: ~/.claude.json records an API-key approval"
  fi
}

step "Claude Code, interactive, in tmux"
if command -v tmux >/dev/null 2>&1; then
  interactive claude-interactive
  if [ "$(uname -s)" = Linux ]; then
    interactive claude-interactive-sandbox --sandbox --net proxy
  fi
else
  fail "claude-interactive: tmux is not installed"
fi

elapsed=$(( $(date +%s) - started ))
printf '\n%d passed, %d failed, %d skipped in %d s\n' "$passes" "$failures" "$skips" "$elapsed"
[ "$failures" = 0 ]
