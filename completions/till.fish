# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_till_global_optspecs
    string join \n h/help V/version
end

function __fish_till_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_till_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_till_using_subcommand
    set -l cmd (__fish_till_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c till -n "__fish_till_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_needs_command" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_needs_command" -f -a "add" -d 'Store a provider\'s root key in the secrets store'
complete -c till -n "__fish_till_needs_command" -f -a "remove" -d 'Delete a provider\'s root key from the secrets store'
complete -c till -n "__fish_till_needs_command" -f -a "list" -d 'List stored root keys (provider, fingerprint, age); never key material'
complete -c till -n "__fish_till_needs_command" -f -a "doctor" -d 'Check that till can work here: config, secrets store, keys, data directory'
complete -c till -n "__fish_till_needs_command" -f -a "rotate" -d 'Replace a provider\'s root key, or the mint key, with a new one'
complete -c till -n "__fish_till_needs_command" -f -a "status" -d 'Show stored keys, their ages, and which are due for rotation'
complete -c till -n "__fish_till_needs_command" -f -a "run" -d 'Run an agent with a scoped child key instead of your root keys'
complete -c till -n "__fish_till_needs_command" -f -a "serve" -d 'Serve keys made by `till key create` on a fixed port, until interrupted'
complete -c till -n "__fish_till_needs_command" -f -a "key" -d 'Create, list, inspect, narrow and revoke child keys'
complete -c till -n "__fish_till_needs_command" -f -a "log" -d 'Show the requests agents made through till, newest last'
complete -c till -n "__fish_till_needs_command" -f -a "usage" -d 'Totals of requests, tokens and spend, grouped by key, model, provider or day'
complete -c till -n "__fish_till_needs_command" -f -a "prices" -d 'Show the model prices till charges budgets at, or refresh them'
complete -c till -n "__fish_till_needs_command" -f -a "setup" -d 'Do the one-time setup an agent needs to work under `till run`'
complete -c till -n "__fish_till_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c till -n "__fish_till_needs_command" -f -a "manpage" -d 'Print till\'s man page (roff) to stdout'
complete -c till -n "__fish_till_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c till -n "__fish_till_using_subcommand add" -l from-env -d 'Read the key from this environment variable instead of a prompt or stdin' -r
complete -c till -n "__fish_till_using_subcommand add" -l no-verify -d 'Store the key without checking it against the provider'
complete -c till -n "__fish_till_using_subcommand add" -l admin -d 'Store an admin key (OpenAI or Anthropic) that `till rotate` uses to create, delete or deactivate keys. It is never given to agents'
complete -c till -n "__fish_till_using_subcommand add" -l replace -d 'Replace a different key already stored for the provider (without it, that is refused; `till rotate PROVIDER` replaces a key and retires the old one)'
complete -c till -n "__fish_till_using_subcommand add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand add" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand remove" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand list" -l json -d 'Print JSON instead of a table'
complete -c till -n "__fish_till_using_subcommand list" -s h -l help -d 'Print help'
complete -c till -n "__fish_till_using_subcommand list" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand doctor" -l json -d 'Print the checks as JSON (a list of `{"check", "ok", "detail"}`) instead of lines; the exit code is the same (1 when any check fails)'
complete -c till -n "__fish_till_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c till -n "__fish_till_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand rotate" -l grace -d 'How long keys signed by the old mint key keep working: 30m, 1h, 7d (default: they stop at once). With --mint or --due only' -r
complete -c till -n "__fish_till_using_subcommand rotate" -l from-env -d 'Read the new key from this environment variable instead of a prompt or stdin' -r
complete -c till -n "__fish_till_using_subcommand rotate" -l mint -d 'Replace the mint key that signs child keys'
complete -c till -n "__fish_till_using_subcommand rotate" -l due -d 'Rotate every key older than `[rotation] max_age` that needs no person; list the rest'
complete -c till -n "__fish_till_using_subcommand rotate" -l yes -d 'With --due: rotate without asking (needed when stdin is not a terminal). --mint asks nothing and takes it too; a provider\'s rotation, which asks for the new key, does not'
complete -c till -n "__fish_till_using_subcommand rotate" -l json -d 'Print the outcome as JSON'
complete -c till -n "__fish_till_using_subcommand rotate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand rotate" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand status" -l json -d 'Print JSON instead of a table'
complete -c till -n "__fish_till_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand status" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand run" -s p -l profile -d 'Start from a profile in config.toml ([profiles.NAME]); flags override it' -r
complete -c till -n "__fish_till_using_subcommand run" -s s -l scope -d 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, \'anthropic/claude-haiku-*\')' -r -f
complete -c till -n "__fish_till_using_subcommand run" -l endpoints -d 'Endpoint classes the key may call, comma-separated: inference (the default), models, files, batches, admin, realtime, or all' -r -f
complete -c till -n "__fish_till_using_subcommand run" -l budget -d 'Spending ceiling for the key and every key derived from it: 5usd, $5, 0.50usd, 200ktok. Give it twice for a dollar and a token budget' -r
complete -c till -n "__fish_till_using_subcommand run" -l ttl -d 'How long the key lives: 30m, 1h, 7d' -r
complete -c till -n "__fish_till_using_subcommand run" -l rpm -d 'Requests per minute' -r
complete -c till -n "__fish_till_using_subcommand run" -l tpm -d 'Tokens per minute (counted from each request\'s own token ceiling)' -r
complete -c till -n "__fish_till_using_subcommand run" -l max-requests -d 'Total number of requests the key may make' -r
complete -c till -n "__fish_till_using_subcommand run" -l max-output-tokens -d 'Largest `max_tokens` a request may ask for; requests that ask for none are capped' -r
complete -c till -n "__fish_till_using_subcommand run" -l key -d 'Narrow an existing key (made by `till key create`; its name, id or the key itself) instead of minting a fresh one' -r -f
complete -c till -n "__fish_till_using_subcommand run" -l net -d 'The sandbox\'s network: `open` leaves it as it is (the default), `proxy` lets the agent reach this run\'s proxy and nothing else' -r -f -a "open\t'The network as it is outside the sandbox'
proxy\t'Only this run\'s proxy'"
complete -c till -n "__fish_till_using_subcommand run" -s q -l quiet -d 'Print no summary when the agent exits'
complete -c till -n "__fish_till_using_subcommand run" -l sandbox -d 'Run the agent in a sandbox (Linux): till\'s files and credential paths hidden, writes only to the working directory, a private /tmp and `[sandbox] writable`, no keychain, no signals, tracing or memory reads of till'
complete -c till -n "__fish_till_using_subcommand run" -l no-sandbox -d 'Run without the sandbox even when config.toml or the profile turns it on'
complete -c till -n "__fish_till_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand run" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand serve" -l listen -d 'Address to listen on. Anything but loopback exposes the proxy to the network. `localhost:PORT` means 127.0.0.1:PORT' -r
complete -c till -n "__fish_till_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand serve" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand key; and not __fish_seen_subcommand_from create list show revoke attenuate inspect help" -s h -l help -d 'Print help'
complete -c till -n "__fish_till_using_subcommand key; and not __fish_seen_subcommand_from create list show revoke attenuate inspect help" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand key; and not __fish_seen_subcommand_from create list show revoke attenuate inspect help" -f -a "create" -d 'Mint a child key and print it once'
complete -c till -n "__fish_till_using_subcommand key; and not __fish_seen_subcommand_from create list show revoke attenuate inspect help" -f -a "list" -d 'List keys made by `till key create`'
complete -c till -n "__fish_till_using_subcommand key; and not __fish_seen_subcommand_from create list show revoke attenuate inspect help" -f -a "show" -d 'Show one key\'s scope, expiry, spend and status'
complete -c till -n "__fish_till_using_subcommand key; and not __fish_seen_subcommand_from create list show revoke attenuate inspect help" -f -a "revoke" -d 'Revoke keys; every key narrowed from them stops working too'
complete -c till -n "__fish_till_using_subcommand key; and not __fish_seen_subcommand_from create list show revoke attenuate inspect help" -f -a "attenuate" -d 'Narrow a key offline (no keychain needed) and print the narrower key'
complete -c till -n "__fish_till_using_subcommand key; and not __fish_seen_subcommand_from create list show revoke attenuate inspect help" -f -a "inspect" -d 'Decode a key without verifying it: its scope, limits and expiry'
complete -c till -n "__fish_till_using_subcommand key; and not __fish_seen_subcommand_from create list show revoke attenuate inspect help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create" -l name -d 'A name to refer to the key by' -r -f
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create" -s s -l scope -d 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, \'anthropic/claude-haiku-*\')' -r -f
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create" -l endpoints -d 'Endpoint classes the key may call, comma-separated: inference (the default), models, files, batches, admin, realtime, or all' -r -f
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create" -l budget -d 'Spending ceiling for the key and every key derived from it: 5usd, $5, 0.50usd, 200ktok. Give it twice for a dollar and a token budget' -r
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create" -l ttl -d 'How long the key lives: 30m, 1h, 7d' -r
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create" -l rpm -d 'Requests per minute' -r
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create" -l tpm -d 'Tokens per minute (counted from each request\'s own token ceiling)' -r
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create" -l max-requests -d 'Total number of requests the key may make' -r
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create" -l max-output-tokens -d 'Largest `max_tokens` a request may ask for; requests that ask for none are capped' -r
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create" -l json -d 'Print JSON (key, id, scope, expiry) instead of the bare key'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from list" -l all -d 'Include expired and revoked keys'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from list" -l json -d 'Print JSON instead of a table'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from show" -l json -d 'Print JSON'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from attenuate" -s s -l scope -d 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, \'anthropic/claude-haiku-*\')' -r -f
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from attenuate" -l endpoints -d 'Endpoint classes the key may call, comma-separated: inference (the default), models, files, batches, admin, realtime, or all' -r -f
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from attenuate" -l budget -d 'Spending ceiling for the key and every key derived from it: 5usd, $5, 0.50usd, 200ktok. Give it twice for a dollar and a token budget' -r
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from attenuate" -l ttl -d 'How long the key lives: 30m, 1h, 7d' -r
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from attenuate" -l rpm -d 'Requests per minute' -r
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from attenuate" -l tpm -d 'Tokens per minute (counted from each request\'s own token ceiling)' -r
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from attenuate" -l max-requests -d 'Total number of requests the key may make' -r
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from attenuate" -l max-output-tokens -d 'Largest `max_tokens` a request may ask for; requests that ask for none are capped' -r
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from attenuate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from attenuate" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from inspect" -l json -d 'Print JSON'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from inspect" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "create" -d 'Mint a child key and print it once'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "list" -d 'List keys made by `till key create`'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one key\'s scope, expiry, spend and status'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke keys; every key narrowed from them stops working too'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "attenuate" -d 'Narrow a key offline (no keychain needed) and print the narrower key'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "inspect" -d 'Decode a key without verifying it: its scope, limits and expiry'
complete -c till -n "__fish_till_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c till -n "__fish_till_using_subcommand log" -l key -d 'Only this key (name, id or the key itself) and the keys narrowed from it' -r -f
complete -c till -n "__fish_till_using_subcommand log" -l since -d 'Only requests since then: a duration back from now (30m, 7d), a day (2026-11-01, from its start in UTC) or a time (2026-11-01T09:00:00Z, 2026-11-01T10:00:00+01:00)' -r
complete -c till -n "__fish_till_using_subcommand log" -s n -l limit -d 'How many of the newest requests to show' -r
complete -c till -n "__fish_till_using_subcommand log" -s f -l follow -d 'Keep printing new requests as they arrive (Ctrl-C stops)'
complete -c till -n "__fish_till_using_subcommand log" -l denied -d 'Only refused requests'
complete -c till -n "__fish_till_using_subcommand log" -l alerts -d 'Show alert events (first denials, budget marks, rate jumps, dead keys) instead'
complete -c till -n "__fish_till_using_subcommand log" -l json -d 'Print JSON instead of a table'
complete -c till -n "__fish_till_using_subcommand log" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand log" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand usage" -l since -d 'Only requests since then: a duration back from now (7d), a day (2026-11-01, from its start in UTC) or a time (2026-11-01T09:00:00Z, 2026-11-01T10:00:00+01:00)' -r
complete -c till -n "__fish_till_using_subcommand usage" -l by -d 'How to group the totals' -r -f -a "key\t''
model\t''
provider\t''
day\t''"
complete -c till -n "__fish_till_using_subcommand usage" -l key -d 'Only this key (name, id or the key itself) and the keys narrowed from it' -r -f
complete -c till -n "__fish_till_using_subcommand usage" -l json -d 'Print JSON instead of a table'
complete -c till -n "__fish_till_using_subcommand usage" -s h -l help -d 'Print help'
complete -c till -n "__fish_till_using_subcommand usage" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand prices; and not __fish_seen_subcommand_from update reset help" -l json -d 'Print JSON instead of a table'
complete -c till -n "__fish_till_using_subcommand prices; and not __fish_seen_subcommand_from update reset help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand prices; and not __fish_seen_subcommand_from update reset help" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand prices; and not __fish_seen_subcommand_from update reset help" -a "update" -d 'Fetch LiteLLM\'s model price table and keep it as this machine\'s copy'
complete -c till -n "__fish_till_using_subcommand prices; and not __fish_seen_subcommand_from update reset help" -a "reset" -d 'Delete this machine\'s copy and use the table built into till again'
complete -c till -n "__fish_till_using_subcommand prices; and not __fish_seen_subcommand_from update reset help" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c till -n "__fish_till_using_subcommand prices; and __fish_seen_subcommand_from update" -l from -d 'A file or an http(s) URL of a table in LiteLLM\'s format (model_prices_and_context_window.json); LiteLLM\'s repository when left out' -r
complete -c till -n "__fish_till_using_subcommand prices; and __fish_seen_subcommand_from update" -l force -d 'Keep the new table even when it lacks most of the models the table in use prices (a partial download or another file would otherwise leave them unpriced)'
complete -c till -n "__fish_till_using_subcommand prices; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand prices; and __fish_seen_subcommand_from update" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand prices; and __fish_seen_subcommand_from reset" -s h -l help -d 'Print help'
complete -c till -n "__fish_till_using_subcommand prices; and __fish_seen_subcommand_from reset" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand prices; and __fish_seen_subcommand_from help" -f -a "update" -d 'Fetch LiteLLM\'s model price table and keep it as this machine\'s copy'
complete -c till -n "__fish_till_using_subcommand prices; and __fish_seen_subcommand_from help" -f -a "reset" -d 'Delete this machine\'s copy and use the table built into till again'
complete -c till -n "__fish_till_using_subcommand prices; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c till -n "__fish_till_using_subcommand setup" -l dry-run -d 'Say what would change without writing anything'
complete -c till -n "__fish_till_using_subcommand setup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand setup" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c till -n "__fish_till_using_subcommand completions" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand manpage" -s h -l help -d 'Print help'
complete -c till -n "__fish_till_using_subcommand manpage" -s V -l version -d 'Print version'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "add" -d 'Store a provider\'s root key in the secrets store'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "remove" -d 'Delete a provider\'s root key from the secrets store'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "list" -d 'List stored root keys (provider, fingerprint, age); never key material'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "doctor" -d 'Check that till can work here: config, secrets store, keys, data directory'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "rotate" -d 'Replace a provider\'s root key, or the mint key, with a new one'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "status" -d 'Show stored keys, their ages, and which are due for rotation'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "run" -d 'Run an agent with a scoped child key instead of your root keys'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "serve" -d 'Serve keys made by `till key create` on a fixed port, until interrupted'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "key" -d 'Create, list, inspect, narrow and revoke child keys'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "log" -d 'Show the requests agents made through till, newest last'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "usage" -d 'Totals of requests, tokens and spend, grouped by key, model, provider or day'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "prices" -d 'Show the model prices till charges budgets at, or refresh them'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "setup" -d 'Do the one-time setup an agent needs to work under `till run`'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "completions" -d 'Print a shell completion script'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "manpage" -d 'Print till\'s man page (roff) to stdout'
complete -c till -n "__fish_till_using_subcommand help; and not __fish_seen_subcommand_from add remove list doctor rotate status run serve key log usage prices setup completions manpage help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c till -n "__fish_till_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "create" -d 'Mint a child key and print it once'
complete -c till -n "__fish_till_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "list" -d 'List keys made by `till key create`'
complete -c till -n "__fish_till_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "show" -d 'Show one key\'s scope, expiry, spend and status'
complete -c till -n "__fish_till_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "revoke" -d 'Revoke keys; every key narrowed from them stops working too'
complete -c till -n "__fish_till_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "attenuate" -d 'Narrow a key offline (no keychain needed) and print the narrower key'
complete -c till -n "__fish_till_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "inspect" -d 'Decode a key without verifying it: its scope, limits and expiry'
complete -c till -n "__fish_till_using_subcommand help; and __fish_seen_subcommand_from prices" -f -a "update" -d 'Fetch LiteLLM\'s model price table and keep it as this machine\'s copy'
complete -c till -n "__fish_till_using_subcommand help; and __fish_seen_subcommand_from prices" -f -a "reset" -d 'Delete this machine\'s copy and use the table built into till again'

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
