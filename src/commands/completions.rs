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
    let script = with_key_names(shell, String::from_utf8(out)?);
    crate::output::data(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// The generated script, made to offer the active keys' names (from
/// `TILL_COMPLETE=keys till`, which reads the ledger, never the keychain) for `--key` and for
/// `till key show` and `till key revoke`: clap's generators write fixed values only. Never
/// after a `--` (what follows is the agent's command line).
fn with_key_names(shell: CShell, script: String) -> String {
    match shell {
        CShell::Bash => script + BASH_KEYS,
        // The generated function is renamed, and `_till` (what `compdef` and the autoloaded
        // file call) becomes the one that looks for a key's place first; the generated file's
        // last lines, which call `_till`, move after it.
        CShell::Zsh => {
            script
                .replacen("\n_till() {\n", "\n_till_generated() {\n", 1)
                .replacen(ZSH_TAIL, "", 1)
                + ZSH_KEYS
                + ZSH_TAIL
        }
        CShell::Fish => script + FISH_KEYS,
        _ => script,
    }
}

const BASH_KEYS: &str = r#"
# The active keys' names where a key is asked for: after --key, and for `till key show` and
# `till key revoke` (never after --, where the agent's command line begins).
_till_keys() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" i args=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        [[ ${COMP_WORDS[i]} == -- ]] && { _till "$@"; return; }
        [[ ${COMP_WORDS[i]} == -* ]] || args+=("${COMP_WORDS[i]}")
    done
    if [[ $cur != -* ]] && [[ $prev == --key ||
        ( ${args[0]} == key && ( ${args[1]} == revoke || ( ${args[1]} == show && ${#args[@]} -eq 2 ) ) ) ]]; then
        COMPREPLY=( $(compgen -W "$(TILL_COMPLETE=keys command till 2>/dev/null)" -- "$cur") )
        return 0
    fi
    _till "$@"
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _till_keys -o nosort -o bashdefault -o default till
else
    complete -F _till_keys -o bashdefault -o default till
fi
"#;

const ZSH_KEYS: &str = r#"
# The active keys' names where a key is asked for: after --key, and for `till key show` and
# `till key revoke` (never after --, where the agent's command line begins).
_till() {
    local -a args
    local i
    for ((i = 2; i < CURRENT; i++)); do
        [[ ${words[i]} == -- ]] && { _till_generated "$@"; return; }
        [[ ${words[i]} == -* ]] || args+=("${words[i]}")
    done
    if [[ ${words[CURRENT]} != -* ]] && [[ ${words[CURRENT-1]} == --key ||
        ( ${args[1]} == key && ( ${args[2]} == revoke || ( ${args[2]} == show && ${#args} -eq 2 ) ) ) ]]; then
        local -a keys
        keys=(${(f)"$(TILL_COMPLETE=keys command till 2>/dev/null)"})
        compadd -a keys
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

const FISH_KEYS: &str = r#"
# The active keys' names where a key is asked for: after --key, and for `till key show` and
# `till key revoke` (never after --, where the agent's command line begins).
function __fish_till_key_place
    set -l args (commandline -opc)
    contains -- -- $args; and return 1
    set -e args[1]
    set -l words
    for a in $args
        string match -q -- '-*' $a; or set -a words $a
    end
    test "$words[1]" = key; or return 1
    test "$words[2]" = revoke; and return 0
    test "$words[2]" = show; and test (count $words) -eq 2
end
complete -c till -n __fish_till_key_place -f -a "(env TILL_COMPLETE=keys till 2>/dev/null)"
for sub in run log usage
    complete -c till -n "__fish_till_using_subcommand $sub; and not contains -- -- (commandline -opc)" -l key -x -a "(env TILL_COMPLETE=keys till 2>/dev/null)"
end
"#;

pub fn manpage() -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    crate::output::data(&String::from_utf8(out)?)?;
    Ok(ExitCode::SUCCESS)
}
