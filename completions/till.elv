
use builtin;
use str;

set edit:completion:arg-completer[till] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'till'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'till'= {
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Store a provider''s root key in the secrets store'
            cand remove 'Delete a provider''s root key from the secrets store'
            cand list 'List stored root keys (provider, fingerprint, age); never key material'
            cand doctor 'Check that till can work here: config, secrets store, keys, data directory'
            cand rotate 'Replace a provider''s root key, or the mint key, with a new one'
            cand status 'Show stored keys, their ages, and which are due for rotation'
            cand run 'Run an agent with a scoped child key instead of your root keys'
            cand serve 'Serve keys made by `till key create` on a fixed port, until interrupted'
            cand key 'Create, list, inspect, narrow and revoke child keys'
            cand log 'Show the requests agents made through till, newest last'
            cand usage 'Totals of requests, tokens and spend, grouped by key, model, provider or day'
            cand prices 'Show the model prices till charges budgets at, or refresh them'
            cand setup 'Do the one-time setup an agent needs to work under `till run`'
            cand completions 'Print a shell completion script'
            cand manpage 'Print till''s man page (roff) to stdout'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'till;add'= {
            cand --from-env 'Read the key from this environment variable instead of a prompt or stdin'
            cand --no-verify 'Store the key without checking it against the provider'
            cand --admin 'Store an admin key (OpenAI or Anthropic) that `till rotate` uses to create, delete or deactivate keys. It is never given to agents'
            cand --replace 'Replace a different key already stored for the provider (without it, that is refused; `till rotate PROVIDER` replaces a key and retires the old one)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;remove'= {
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;list'= {
            cand --json 'Print JSON instead of a table'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;doctor'= {
            cand --json 'Print the checks as JSON (a list of `{"check", "ok", "detail"}`) instead of lines; the exit code is the same (1 when any check fails)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;rotate'= {
            cand --grace 'How long keys signed by the old mint key keep working: 30m, 1h, 7d (default: they stop at once). With --mint or --due only'
            cand --from-env 'Read the new key from this environment variable instead of a prompt or stdin'
            cand --mint 'Replace the mint key that signs child keys'
            cand --due 'Rotate every key older than `[rotation] max_age` that needs no person; list the rest'
            cand --yes 'With --due: rotate without asking (needed when stdin is not a terminal). --mint asks nothing and takes it too; a provider''s rotation, which asks for the new key, does not'
            cand --json 'Print the outcome as JSON'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;status'= {
            cand --json 'Print JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;run'= {
            cand -p 'Start from a profile in config.toml ([profiles.NAME]); flags override it'
            cand --profile 'Start from a profile in config.toml ([profiles.NAME]); flags override it'
            cand -s 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, ''anthropic/claude-haiku-*'')'
            cand --scope 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, ''anthropic/claude-haiku-*'')'
            cand --endpoints 'Endpoint classes the key may call, comma-separated: inference (the default), models, files, batches, admin, realtime, or all'
            cand --budget 'Spending ceiling for the key and every key derived from it: 5usd, $5, 0.50usd, 200ktok. Give it twice for a dollar and a token budget'
            cand --ttl 'How long the key lives: 30m, 1h, 7d'
            cand --rpm 'Requests per minute'
            cand --tpm 'Tokens per minute (counted from each request''s own token ceiling)'
            cand --max-requests 'Total number of requests the key may make'
            cand --max-output-tokens 'Largest `max_tokens` a request may ask for; requests that ask for none are capped'
            cand --key 'Narrow an existing key (made by `till key create`; its name, id or the key itself) instead of minting a fresh one'
            cand --net 'The sandbox''s network: `open` leaves it as it is (the default), `proxy` lets the agent reach this run''s proxy and nothing else'
            cand -q 'Print no summary when the agent exits'
            cand --quiet 'Print no summary when the agent exits'
            cand --sandbox 'Run the agent in a sandbox (Linux): till''s files and credential paths hidden, writes only to the working directory, a private /tmp and `[sandbox] writable`, no keychain, no signals, tracing or memory reads of till'
            cand --no-sandbox 'Run without the sandbox even when config.toml or the profile turns it on'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;serve'= {
            cand --listen 'Address to listen on. Anything but loopback exposes the proxy to the network. `localhost:PORT` means 127.0.0.1:PORT'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;key'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'Mint a child key and print it once'
            cand list 'List keys made by `till key create`'
            cand show 'Show one key''s scope, expiry, spend and status'
            cand revoke 'Revoke keys; every key narrowed from them stops working too'
            cand attenuate 'Narrow a key offline (no keychain needed) and print the narrower key'
            cand inspect 'Decode a key without verifying it: its scope, limits and expiry'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'till;key;create'= {
            cand --name 'A name to refer to the key by'
            cand -s 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, ''anthropic/claude-haiku-*'')'
            cand --scope 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, ''anthropic/claude-haiku-*'')'
            cand --endpoints 'Endpoint classes the key may call, comma-separated: inference (the default), models, files, batches, admin, realtime, or all'
            cand --budget 'Spending ceiling for the key and every key derived from it: 5usd, $5, 0.50usd, 200ktok. Give it twice for a dollar and a token budget'
            cand --ttl 'How long the key lives: 30m, 1h, 7d'
            cand --rpm 'Requests per minute'
            cand --tpm 'Tokens per minute (counted from each request''s own token ceiling)'
            cand --max-requests 'Total number of requests the key may make'
            cand --max-output-tokens 'Largest `max_tokens` a request may ask for; requests that ask for none are capped'
            cand --json 'Print JSON (key, id, scope, expiry) instead of the bare key'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;key;list'= {
            cand --all 'Include expired and revoked keys'
            cand --json 'Print JSON instead of a table'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;key;show'= {
            cand --json 'Print JSON'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;key;revoke'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;key;attenuate'= {
            cand -s 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, ''anthropic/claude-haiku-*'')'
            cand --scope 'Provider, or provider/model-glob, the key may use; repeatable (openai, openai/gpt-4o-mini, ''anthropic/claude-haiku-*'')'
            cand --endpoints 'Endpoint classes the key may call, comma-separated: inference (the default), models, files, batches, admin, realtime, or all'
            cand --budget 'Spending ceiling for the key and every key derived from it: 5usd, $5, 0.50usd, 200ktok. Give it twice for a dollar and a token budget'
            cand --ttl 'How long the key lives: 30m, 1h, 7d'
            cand --rpm 'Requests per minute'
            cand --tpm 'Tokens per minute (counted from each request''s own token ceiling)'
            cand --max-requests 'Total number of requests the key may make'
            cand --max-output-tokens 'Largest `max_tokens` a request may ask for; requests that ask for none are capped'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;key;inspect'= {
            cand --json 'Print JSON'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;key;help'= {
            cand create 'Mint a child key and print it once'
            cand list 'List keys made by `till key create`'
            cand show 'Show one key''s scope, expiry, spend and status'
            cand revoke 'Revoke keys; every key narrowed from them stops working too'
            cand attenuate 'Narrow a key offline (no keychain needed) and print the narrower key'
            cand inspect 'Decode a key without verifying it: its scope, limits and expiry'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'till;key;help;create'= {
        }
        &'till;key;help;list'= {
        }
        &'till;key;help;show'= {
        }
        &'till;key;help;revoke'= {
        }
        &'till;key;help;attenuate'= {
        }
        &'till;key;help;inspect'= {
        }
        &'till;key;help;help'= {
        }
        &'till;log'= {
            cand --key 'Only this key (name, id or the key itself) and the keys narrowed from it'
            cand --since 'Only requests since then: a duration back from now (30m, 7d), a day (2026-11-01, from its start in UTC) or a time (2026-11-01T09:00:00Z, 2026-11-01T10:00:00+01:00)'
            cand -n 'How many of the newest requests to show'
            cand --limit 'How many of the newest requests to show'
            cand -f 'Keep printing new requests as they arrive (Ctrl-C stops)'
            cand --follow 'Keep printing new requests as they arrive (Ctrl-C stops)'
            cand --denied 'Only refused requests'
            cand --alerts 'Show alert events (first denials, budget marks, rate jumps, dead keys) instead'
            cand --json 'Print JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;usage'= {
            cand --since 'Only requests since then: a duration back from now (7d), a day (2026-11-01, from its start in UTC) or a time (2026-11-01T09:00:00Z, 2026-11-01T10:00:00+01:00)'
            cand --by 'How to group the totals'
            cand --key 'Only this key (name, id or the key itself) and the keys narrowed from it'
            cand --json 'Print JSON instead of a table'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;prices'= {
            cand --json 'Print JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand update 'Fetch LiteLLM''s model price table and keep it as this machine''s copy'
            cand reset 'Delete this machine''s copy and use the table built into till again'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'till;prices;update'= {
            cand --from 'A file or an http(s) URL of a table in LiteLLM''s format (model_prices_and_context_window.json); LiteLLM''s repository when left out'
            cand --force 'Keep the new table even when it lacks most of the models the table in use prices (a partial download or another file would otherwise leave them unpriced)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;prices;reset'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;prices;help'= {
            cand update 'Fetch LiteLLM''s model price table and keep it as this machine''s copy'
            cand reset 'Delete this machine''s copy and use the table built into till again'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'till;prices;help;update'= {
        }
        &'till;prices;help;reset'= {
        }
        &'till;prices;help;help'= {
        }
        &'till;setup'= {
            cand --dry-run 'Say what would change without writing anything'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;completions'= {
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;manpage'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'till;help'= {
            cand add 'Store a provider''s root key in the secrets store'
            cand remove 'Delete a provider''s root key from the secrets store'
            cand list 'List stored root keys (provider, fingerprint, age); never key material'
            cand doctor 'Check that till can work here: config, secrets store, keys, data directory'
            cand rotate 'Replace a provider''s root key, or the mint key, with a new one'
            cand status 'Show stored keys, their ages, and which are due for rotation'
            cand run 'Run an agent with a scoped child key instead of your root keys'
            cand serve 'Serve keys made by `till key create` on a fixed port, until interrupted'
            cand key 'Create, list, inspect, narrow and revoke child keys'
            cand log 'Show the requests agents made through till, newest last'
            cand usage 'Totals of requests, tokens and spend, grouped by key, model, provider or day'
            cand prices 'Show the model prices till charges budgets at, or refresh them'
            cand setup 'Do the one-time setup an agent needs to work under `till run`'
            cand completions 'Print a shell completion script'
            cand manpage 'Print till''s man page (roff) to stdout'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'till;help;add'= {
        }
        &'till;help;remove'= {
        }
        &'till;help;list'= {
        }
        &'till;help;doctor'= {
        }
        &'till;help;rotate'= {
        }
        &'till;help;status'= {
        }
        &'till;help;run'= {
        }
        &'till;help;serve'= {
        }
        &'till;help;key'= {
            cand create 'Mint a child key and print it once'
            cand list 'List keys made by `till key create`'
            cand show 'Show one key''s scope, expiry, spend and status'
            cand revoke 'Revoke keys; every key narrowed from them stops working too'
            cand attenuate 'Narrow a key offline (no keychain needed) and print the narrower key'
            cand inspect 'Decode a key without verifying it: its scope, limits and expiry'
        }
        &'till;help;key;create'= {
        }
        &'till;help;key;list'= {
        }
        &'till;help;key;show'= {
        }
        &'till;help;key;revoke'= {
        }
        &'till;help;key;attenuate'= {
        }
        &'till;help;key;inspect'= {
        }
        &'till;help;log'= {
        }
        &'till;help;usage'= {
        }
        &'till;help;prices'= {
            cand update 'Fetch LiteLLM''s model price table and keep it as this machine''s copy'
            cand reset 'Delete this machine''s copy and use the table built into till again'
        }
        &'till;help;prices;update'= {
        }
        &'till;help;prices;reset'= {
        }
        &'till;help;setup'= {
        }
        &'till;help;completions'= {
        }
        &'till;help;manpage'= {
        }
        &'till;help;help'= {
        }
    ]
    $completions[$command]
}
