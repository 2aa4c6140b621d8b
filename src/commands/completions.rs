//! `till completions SHELL` and the hidden `till manpage`: generated from the clap definitions,
//! so they never drift from the real command line (a test compares them with `completions/`).

use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell as CShell;

use crate::cli::{Cli, CompletionsArgs, Shell};

pub fn run(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let shell = match args.shell {
        Shell::Bash => CShell::Bash,
        Shell::Zsh => CShell::Zsh,
        Shell::Fish => CShell::Fish,
        Shell::Powershell => CShell::PowerShell,
        Shell::Elvish => CShell::Elvish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "till", &mut out);
    let script = with_values(shell, String::from_utf8(out)?);
    crate::output::data(&script)?;
    Ok(ExitCode::SUCCESS)
}

pub fn manpage() -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    crate::output::data(&String::from_utf8(out)?)?;
    Ok(ExitCode::SUCCESS)
}

/// The generated script, made to offer what till knows where clap's generators write fixed
/// values only: the active keys' names after `--key` and for `till key show` and `till key
/// revoke`, providers and the price table's models after `--scope`, config.toml's profiles
/// after `--profile`, the built-in and config.toml providers for `till add`, and the providers with a
/// stored root key for `till remove` and `till rotate`, each read with `TILL_COMPLETE=WHAT
/// till` (the ledger and config.toml, never the keychain). Never after a `--` (what follows is
/// the agent's command line); elsewhere the generated script answers.
fn with_values(shell: CShell, script: String) -> String {
    match shell {
        CShell::Bash => script + BASH,
        // The generated function is renamed, and `_till` (what `compdef` and the autoloaded
        // file call) becomes the one that looks at the word's place first; the generated
        // file's last lines, which call `_till`, move after it.
        CShell::Zsh => {
            script
                .replacen("\n_till() {\n", "\n_till_generated() {\n", 1)
                .replacen(ZSH_TAIL, "", 1)
                + ZSH
                + ZSH_TAIL
        }
        CShell::Fish => script + FISH,
        _ => script,
    }
}

const BASH: &str = r#"
# What the word being completed is, where till knows the values: `keys` (after --key, and for
# `till key show` and `till key revoke`), `scopes` (after --scope), `profiles` (after
# --profile), `providers` (for `till add`) or `stored` (providers with a stored key, for
# `till remove` and `till rotate`). Nothing after --, where the agent's
# command line begins.
_till_place() {
    local prev="${COMP_WORDS[COMP_CWORD-1]}" i args=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        [[ ${COMP_WORDS[i]} == -- ]] && return
        [[ ${COMP_WORDS[i]} == -* ]] || args+=("${COMP_WORDS[i]}")
    done
    if [[ $prev == --key || ( ${args[0]} == key && ( $prev == show && ${#args[@]} -eq 2 ||
        ${args[1]} == revoke && $prev != -* ) ) ]]; then
        echo keys
    elif [[ $prev == --scope || $prev == -s ]]; then
        echo scopes
    elif [[ $prev == --profile || $prev == -p ]]; then
        echo profiles
    elif [[ $prev == add && ${#args[@]} -eq 1 ]]; then
        echo providers
    elif [[ ( $prev == remove || $prev == rotate ) && ${#args[@]} -eq 1 ]]; then
        echo stored
    fi
}

_till_complete() {
    local cur="${COMP_WORDS[COMP_CWORD]}" place
    place=$(_till_place)
    if [[ -n $place && $cur != -* ]]; then
        # Each value is data: `compgen -W` would expand a `$(…)` in one.
        local value
        COMPREPLY=()
        while IFS= read -r value; do
            [[ $value == "$cur"* ]] && COMPREPLY+=("$value")
        done < <(TILL_COMPLETE=$place command till 2>/dev/null)
        return 0
    fi
    _till "$@"
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _till_complete -o nosort -o bashdefault -o default till
else
    complete -F _till_complete -o bashdefault -o default till
fi
"#;

const ZSH: &str = r#"
# What the word being completed is, where till knows the values: `keys` (after --key, and for
# `till key show` and `till key revoke`), `scopes` (after --scope), `profiles` (after
# --profile), `providers` (for `till add`) or `stored` (providers with a stored key, for
# `till remove` and `till rotate`). Nothing after --, where the agent's
# command line begins.
_till_place() {
    local -a args
    local i prev=${words[CURRENT-1]}
    for ((i = 2; i < CURRENT; i++)); do
        [[ ${words[i]} == -- ]] && return
        [[ ${words[i]} == -* ]] || args+=("${words[i]}")
    done
    if [[ $prev == --key || ( ${args[1]} == key && ( $prev == show && ${#args} -eq 2 ||
        ${args[2]} == revoke && $prev != -* ) ) ]]; then
        print keys
    elif [[ $prev == --scope || $prev == -s ]]; then
        print scopes
    elif [[ $prev == --profile || $prev == -p ]]; then
        print profiles
    elif [[ $prev == add && ${#args} -eq 1 ]]; then
        print providers
    elif [[ ( $prev == remove || $prev == rotate ) && ${#args} -eq 1 ]]; then
        print stored
    fi
}

_till() {
    local place=$(_till_place)
    if [[ -n $place && ${words[CURRENT]} != -* ]]; then
        local -a values
        values=(${(f)"$(TILL_COMPLETE=$place command till 2>/dev/null)"})
        compadd -a values
        return
    fi
    _till_generated "$@"
}

"#;

/// The last lines of clap's zsh script: run when the file is autoloaded, else register.
const ZSH_TAIL: &str = r#"if [ "$funcstack[1]" = "_till" ]; then
    _till "$@"
else
    compdef _till till
fi
"#;

const FISH: &str = r#"
# Whether the word being completed is WHAT, where till knows the values: `keys` (after --key,
# and for `till key show` and `till key revoke`), `providers` (for `till add`) or `stored`
# (providers with a stored key, for `till remove` and `till rotate`). Never after --, where the
# agent's command line begins. (`--scope` and `--profile` values are the options' own, below.)
function __fish_till_place
    set -l tokens (commandline -opc)
    contains -- -- $tokens; and return 1
    set -l prev $tokens[-1]
    set -l args
    for t in $tokens[2..-1]
        string match -q -- '-*' $t; or set -a args $t
    end
    switch $argv[1]
        case keys
            test "$args[1]" = key; or return 1
            test "$prev" = show -a (count $args) -eq 2; and return 0
            test "$args[2]" = revoke; and not string match -q -- '-*' $prev
        case providers
            test "$prev" = add -a (count $args) -eq 1
        case stored
            contains -- "$prev" remove rotate; and test (count $args) -eq 1
    end
end
for what in keys providers stored
    complete -c till -n "__fish_till_place $what" -f -a "(env TILL_COMPLETE=$what till 2>/dev/null)"
end
for sub in run log usage
    complete -c till -n "__fish_till_using_subcommand $sub; and not contains -- -- (commandline -opc)" -l key -x -a "(env TILL_COMPLETE=keys till 2>/dev/null)"
end
for where in "__fish_till_using_subcommand run" "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create attenuate"
    complete -c till -n "$where; and not contains -- -- (commandline -opc)" -s s -l scope -x -a "(env TILL_COMPLETE=scopes till 2>/dev/null)"
end
complete -c till -n "__fish_till_using_subcommand run; and not contains -- -- (commandline -opc)" -s p -l profile -x -a "(env TILL_COMPLETE=profiles till 2>/dev/null)"
"#;
