
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'till' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'till'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'till' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Store a provider''s root key in the secrets store')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Delete a provider''s root key from the secrets store')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List stored root keys (provider, fingerprint, age); never key material')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Check that till can work here: config, secrets store, keys, data directory')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Replace a provider''s root key, or the mint key, with a new one')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show stored keys, their ages, and which are due for rotation')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Run an agent with a scoped child key instead of your root keys')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Serve keys made by `till key create` on a fixed port, until interrupted')
            [CompletionResult]::new('key', 'key', [CompletionResultType]::ParameterValue, 'Create, list, inspect, narrow and revoke child keys')
            [CompletionResult]::new('log', 'log', [CompletionResultType]::ParameterValue, 'Show the requests agents made through till, newest last')
            [CompletionResult]::new('usage', 'usage', [CompletionResultType]::ParameterValue, 'Totals of requests, tokens and spend, grouped by key, model, provider or day')
            [CompletionResult]::new('prices', 'prices', [CompletionResultType]::ParameterValue, 'Show the model prices till charges budgets at, or refresh them')
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Do the one-time setup an agent needs to work under `till run`')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('manpage', 'manpage', [CompletionResultType]::ParameterValue, 'Print till''s man page (roff) to stdout')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'till;add' {
            [CompletionResult]::new('--from-env', '--from-env', [CompletionResultType]::ParameterName, 'Read the key from this environment variable instead of a prompt or stdin')
            [CompletionResult]::new('--no-verify', '--no-verify', [CompletionResultType]::ParameterName, 'Store the key without checking it against the provider')
            [CompletionResult]::new('--admin', '--admin', [CompletionResultType]::ParameterName, 'Store an admin key (OpenAI or Anthropic) that `till rotate` uses to create, delete or deactivate keys. It is never given to agents')
            [CompletionResult]::new('--replace', '--replace', [CompletionResultType]::ParameterName, 'Replace a different key already stored for the provider (without it, that is refused; `till rotate PROVIDER` replaces a key and retires the old one)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;remove' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;list' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;doctor' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the checks as JSON (a list of `{"check", "ok", "detail"}`) instead of lines; the exit code is the same (1 when any check fails)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;rotate' {
            [CompletionResult]::new('--grace', '--grace', [CompletionResultType]::ParameterName, 'How long keys signed by the old mint key keep working: 30m, 1h, 7d (default: they stop at once). With --mint or --due only')
            [CompletionResult]::new('--from-env', '--from-env', [CompletionResultType]::ParameterName, 'Read the new key from this environment variable instead of a prompt or stdin')
            [CompletionResult]::new('--mint', '--mint', [CompletionResultType]::ParameterName, 'Replace the mint key that signs child keys')
            [CompletionResult]::new('--due', '--due', [CompletionResultType]::ParameterName, 'Rotate every key older than `[rotation] max_age` that needs no person; list the rest')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'With --due: rotate without asking (needed when stdin is not a terminal). --mint asks nothing and takes it too; a provider''s rotation, which asks for the new key, does not')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the outcome as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;status' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;run' {
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'Start from a profile in config.toml ([profiles.NAME]); flags override it')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Start from a profile in config.toml ([profiles.NAME]); flags override it')
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, ''anthropic/claude-haiku-*'')')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, ''anthropic/claude-haiku-*'')')
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoint classes the key may call, comma-separated: inference (the default), models, files, batches, admin, realtime, or all')
            [CompletionResult]::new('--budget', '--budget', [CompletionResultType]::ParameterName, 'Spending ceiling for the key and every key derived from it: 5usd, $5, 0.50usd, 200ktok. Give it twice for a dollar and a token budget')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'How long the key lives: 30m, 1h, 7d')
            [CompletionResult]::new('--rpm', '--rpm', [CompletionResultType]::ParameterName, 'Requests per minute')
            [CompletionResult]::new('--tpm', '--tpm', [CompletionResultType]::ParameterName, 'Tokens per minute (counted from each request''s own token ceiling)')
            [CompletionResult]::new('--max-requests', '--max-requests', [CompletionResultType]::ParameterName, 'Total number of requests the key may make')
            [CompletionResult]::new('--max-output-tokens', '--max-output-tokens', [CompletionResultType]::ParameterName, 'Largest `max_tokens` a request may ask for; requests that ask for none are capped')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Narrow an existing key (made by `till key create`; its name, id or the key itself) instead of minting a fresh one')
            [CompletionResult]::new('--net', '--net', [CompletionResultType]::ParameterName, 'The sandbox''s network: `open` leaves it as it is (the default), `proxy` lets the agent reach this run''s proxy and nothing else')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no summary when the agent exits')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no summary when the agent exits')
            [CompletionResult]::new('--sandbox', '--sandbox', [CompletionResultType]::ParameterName, 'Run the agent in a sandbox (Linux): till''s files and credential paths hidden, writes only to the working directory, a private /tmp and `[sandbox] writable`, no keychain, no signals, tracing or memory reads of till')
            [CompletionResult]::new('--no-sandbox', '--no-sandbox', [CompletionResultType]::ParameterName, 'Run without the sandbox even when config.toml or the profile turns it on')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;serve' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address to listen on. Anything but loopback exposes the proxy to the network. `localhost:PORT` means 127.0.0.1:PORT')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;key' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Mint a child key and print it once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys made by `till key create`')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one key''s scope, expiry, spend and status')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke keys; every key narrowed from them stops working too')
            [CompletionResult]::new('attenuate', 'attenuate', [CompletionResultType]::ParameterValue, 'Narrow a key offline (no keychain needed) and print the narrower key')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Decode a key without verifying it: its scope, limits and expiry')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'till;key;create' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A name to refer to the key by')
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, ''anthropic/claude-haiku-*'')')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, ''anthropic/claude-haiku-*'')')
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoint classes the key may call, comma-separated: inference (the default), models, files, batches, admin, realtime, or all')
            [CompletionResult]::new('--budget', '--budget', [CompletionResultType]::ParameterName, 'Spending ceiling for the key and every key derived from it: 5usd, $5, 0.50usd, 200ktok. Give it twice for a dollar and a token budget')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'How long the key lives: 30m, 1h, 7d')
            [CompletionResult]::new('--rpm', '--rpm', [CompletionResultType]::ParameterName, 'Requests per minute')
            [CompletionResult]::new('--tpm', '--tpm', [CompletionResultType]::ParameterName, 'Tokens per minute (counted from each request''s own token ceiling)')
            [CompletionResult]::new('--max-requests', '--max-requests', [CompletionResultType]::ParameterName, 'Total number of requests the key may make')
            [CompletionResult]::new('--max-output-tokens', '--max-output-tokens', [CompletionResultType]::ParameterName, 'Largest `max_tokens` a request may ask for; requests that ask for none are capped')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON (key, id, scope, expiry) instead of the bare key')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;key;list' {
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Include expired and revoked keys')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;key;show' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;key;revoke' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;key;attenuate' {
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, ''anthropic/claude-haiku-*'')')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, ''anthropic/claude-haiku-*'')')
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoint classes the key may call, comma-separated: inference (the default), models, files, batches, admin, realtime, or all')
            [CompletionResult]::new('--budget', '--budget', [CompletionResultType]::ParameterName, 'Spending ceiling for the key and every key derived from it: 5usd, $5, 0.50usd, 200ktok. Give it twice for a dollar and a token budget')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'How long the key lives: 30m, 1h, 7d')
            [CompletionResult]::new('--rpm', '--rpm', [CompletionResultType]::ParameterName, 'Requests per minute')
            [CompletionResult]::new('--tpm', '--tpm', [CompletionResultType]::ParameterName, 'Tokens per minute (counted from each request''s own token ceiling)')
            [CompletionResult]::new('--max-requests', '--max-requests', [CompletionResultType]::ParameterName, 'Total number of requests the key may make')
            [CompletionResult]::new('--max-output-tokens', '--max-output-tokens', [CompletionResultType]::ParameterName, 'Largest `max_tokens` a request may ask for; requests that ask for none are capped')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;key;inspect' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;key;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Mint a child key and print it once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys made by `till key create`')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one key''s scope, expiry, spend and status')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke keys; every key narrowed from them stops working too')
            [CompletionResult]::new('attenuate', 'attenuate', [CompletionResultType]::ParameterValue, 'Narrow a key offline (no keychain needed) and print the narrower key')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Decode a key without verifying it: its scope, limits and expiry')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'till;key;help;create' {
            break
        }
        'till;key;help;list' {
            break
        }
        'till;key;help;show' {
            break
        }
        'till;key;help;revoke' {
            break
        }
        'till;key;help;attenuate' {
            break
        }
        'till;key;help;inspect' {
            break
        }
        'till;key;help;help' {
            break
        }
        'till;log' {
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Only this key (name, id or the key itself) and the keys narrowed from it')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only requests since then: a duration back from now (30m, 7d), a day (2026-11-01, from its start in UTC) or a time (2026-11-01T09:00:00Z, 2026-11-01T10:00:00+01:00)')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'How many of the newest requests to show')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'How many of the newest requests to show')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Keep printing new requests as they arrive (Ctrl-C stops)')
            [CompletionResult]::new('--follow', '--follow', [CompletionResultType]::ParameterName, 'Keep printing new requests as they arrive (Ctrl-C stops)')
            [CompletionResult]::new('--denied', '--denied', [CompletionResultType]::ParameterName, 'Only refused requests')
            [CompletionResult]::new('--alerts', '--alerts', [CompletionResultType]::ParameterName, 'Show alert events (first denials, budget marks, rate jumps, dead keys) instead')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;usage' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only requests since then: a duration back from now (7d), a day (2026-11-01, from its start in UTC) or a time (2026-11-01T09:00:00Z, 2026-11-01T10:00:00+01:00)')
            [CompletionResult]::new('--by', '--by', [CompletionResultType]::ParameterName, 'How to group the totals')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Only this key (name, id or the key itself) and the keys narrowed from it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;prices' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Fetch LiteLLM''s model price table and keep it as this machine''s copy')
            [CompletionResult]::new('reset', 'reset', [CompletionResultType]::ParameterValue, 'Delete this machine''s copy and use the table built into till again')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'till;prices;update' {
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'A file or an http(s) URL of a table in LiteLLM''s format (model_prices_and_context_window.json); LiteLLM''s repository when left out')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Keep the new table even when it lacks most of the models the table in use prices (a partial download or another file would otherwise leave them unpriced)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;prices;reset' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;prices;help' {
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Fetch LiteLLM''s model price table and keep it as this machine''s copy')
            [CompletionResult]::new('reset', 'reset', [CompletionResultType]::ParameterValue, 'Delete this machine''s copy and use the table built into till again')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'till;prices;help;update' {
            break
        }
        'till;prices;help;reset' {
            break
        }
        'till;prices;help;help' {
            break
        }
        'till;setup' {
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Say what would change without writing anything')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;completions' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;manpage' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'till;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Store a provider''s root key in the secrets store')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Delete a provider''s root key from the secrets store')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List stored root keys (provider, fingerprint, age); never key material')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Check that till can work here: config, secrets store, keys, data directory')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Replace a provider''s root key, or the mint key, with a new one')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show stored keys, their ages, and which are due for rotation')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Run an agent with a scoped child key instead of your root keys')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Serve keys made by `till key create` on a fixed port, until interrupted')
            [CompletionResult]::new('key', 'key', [CompletionResultType]::ParameterValue, 'Create, list, inspect, narrow and revoke child keys')
            [CompletionResult]::new('log', 'log', [CompletionResultType]::ParameterValue, 'Show the requests agents made through till, newest last')
            [CompletionResult]::new('usage', 'usage', [CompletionResultType]::ParameterValue, 'Totals of requests, tokens and spend, grouped by key, model, provider or day')
            [CompletionResult]::new('prices', 'prices', [CompletionResultType]::ParameterValue, 'Show the model prices till charges budgets at, or refresh them')
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Do the one-time setup an agent needs to work under `till run`')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('manpage', 'manpage', [CompletionResultType]::ParameterValue, 'Print till''s man page (roff) to stdout')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'till;help;add' {
            break
        }
        'till;help;remove' {
            break
        }
        'till;help;list' {
            break
        }
        'till;help;doctor' {
            break
        }
        'till;help;rotate' {
            break
        }
        'till;help;status' {
            break
        }
        'till;help;run' {
            break
        }
        'till;help;serve' {
            break
        }
        'till;help;key' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Mint a child key and print it once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys made by `till key create`')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one key''s scope, expiry, spend and status')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke keys; every key narrowed from them stops working too')
            [CompletionResult]::new('attenuate', 'attenuate', [CompletionResultType]::ParameterValue, 'Narrow a key offline (no keychain needed) and print the narrower key')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Decode a key without verifying it: its scope, limits and expiry')
            break
        }
        'till;help;key;create' {
            break
        }
        'till;help;key;list' {
            break
        }
        'till;help;key;show' {
            break
        }
        'till;help;key;revoke' {
            break
        }
        'till;help;key;attenuate' {
            break
        }
        'till;help;key;inspect' {
            break
        }
        'till;help;log' {
            break
        }
        'till;help;usage' {
            break
        }
        'till;help;prices' {
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Fetch LiteLLM''s model price table and keep it as this machine''s copy')
            [CompletionResult]::new('reset', 'reset', [CompletionResultType]::ParameterValue, 'Delete this machine''s copy and use the table built into till again')
            break
        }
        'till;help;prices;update' {
            break
        }
        'till;help;prices;reset' {
            break
        }
        'till;help;setup' {
            break
        }
        'till;help;completions' {
            break
        }
        'till;help;manpage' {
            break
        }
        'till;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
