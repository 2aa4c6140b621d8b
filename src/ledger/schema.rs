//! The ledger's schema: numbered migrations kept in `PRAGMA user_version`.

/// Schema steps, applied in order; the index + 1 is the `user_version` after each.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: root keys, child keys, revocations.
    "CREATE TABLE root_keys (
        provider     TEXT PRIMARY KEY,
        fingerprint  TEXT NOT NULL,
        added_at     INTEGER NOT NULL,
        rotated_at   INTEGER
    ) STRICT;
    CREATE TABLE keys (
        binding      TEXT PRIMARY KEY,
        name         TEXT UNIQUE,
        kid          TEXT NOT NULL,
        scope        TEXT NOT NULL,
        caveats      TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        parent       TEXT,
        session      TEXT
    ) STRICT;
    CREATE TABLE revocations (
        binding      TEXT PRIMARY KEY,
        revoked_at   INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE mint_keys (
        kid          TEXT PRIMARY KEY,
        created_at   INTEGER NOT NULL,
        retired_at   INTEGER,
        valid_until  INTEGER
    ) STRICT;",
    // 2: one row per proxied request, and alert events.
    "CREATE TABLE requests (
        id           INTEGER PRIMARY KEY,
        at           INTEGER NOT NULL,
        binding      TEXT,
        key_name     TEXT,
        session      TEXT,
        provider     TEXT NOT NULL,
        model        TEXT,
        endpoint     TEXT,
        status       INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cached_tokens INTEGER NOT NULL DEFAULT 0,
        reasoning_tokens INTEGER NOT NULL DEFAULT 0,
        cost_micros  INTEGER NOT NULL DEFAULT 0,
        latency_ms   REAL NOT NULL,
        ttfb_ms      REAL,
        denial       TEXT,
        outcome      TEXT
    ) STRICT;
    CREATE INDEX requests_at ON requests(at);
    CREATE INDEX requests_binding ON requests(binding, at);
    CREATE TABLE events (
        id           INTEGER PRIMARY KEY,
        at           INTEGER NOT NULL,
        binding      TEXT,
        session      TEXT,
        kind         TEXT NOT NULL,
        message      TEXT NOT NULL
    ) STRICT;
    CREATE INDEX events_at ON events(at);",
    // 3: budget and request counters per key level, and each request's lineage (the short
    // bindings of every level of the key that made it, so a key's log includes its descendants).
    "CREATE TABLE counters (
        binding          TEXT PRIMARY KEY,
        spent_micros     INTEGER NOT NULL DEFAULT 0,
        spent_tokens     INTEGER NOT NULL DEFAULT 0,
        reserved_micros  INTEGER NOT NULL DEFAULT 0,
        reserved_tokens  INTEGER NOT NULL DEFAULT 0,
        requests         INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    ALTER TABLE requests ADD COLUMN lineage TEXT;",
    // 4: rotation: admin keys, the provider's ids of keys till created, every rotation
    // attempt, and when the user was last told about keys past their age.
    "CREATE TABLE admin_keys (
        provider     TEXT PRIMARY KEY,
        fingerprint  TEXT NOT NULL,
        added_at     INTEGER NOT NULL,
        rotated_at   INTEGER
    ) STRICT;
    CREATE TABLE root_key_ids (
        provider     TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        key_id       TEXT NOT NULL,
        service_account_id TEXT,
        created_at   INTEGER NOT NULL,
        PRIMARY KEY (provider, fingerprint)
    ) STRICT;
    CREATE TABLE rotations (
        id           INTEGER PRIMARY KEY,
        at           INTEGER NOT NULL,
        target       TEXT NOT NULL,
        method       TEXT NOT NULL,
        ok           INTEGER NOT NULL,
        step         TEXT NOT NULL,
        message      TEXT NOT NULL,
        old_fingerprint TEXT,
        new_fingerprint TEXT,
        leftover_key_id TEXT
    ) STRICT;
    CREATE INDEX rotations_at ON rotations(at);
    CREATE TABLE notices (
        name         TEXT PRIMARY KEY,
        at           INTEGER NOT NULL
    ) STRICT;",
    // 5: a counter bumped by every change to the tables a running proxy watches
    // (revocations, root keys, mint keys). `PRAGMA data_version` changes on every commit by
    // any connection, request rows included; this tells a proxy whether it must re-read.
    "CREATE TABLE watch_generation (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        n            INTEGER NOT NULL
    ) STRICT;
    INSERT INTO watch_generation (id, n) VALUES (1, 0);
    CREATE TRIGGER revocations_ins AFTER INSERT ON revocations
        BEGIN UPDATE watch_generation SET n = n + 1; END;
    CREATE TRIGGER revocations_upd AFTER UPDATE ON revocations
        BEGIN UPDATE watch_generation SET n = n + 1; END;
    CREATE TRIGGER revocations_del AFTER DELETE ON revocations
        BEGIN UPDATE watch_generation SET n = n + 1; END;
    CREATE TRIGGER root_keys_ins AFTER INSERT ON root_keys
        BEGIN UPDATE watch_generation SET n = n + 1; END;
    CREATE TRIGGER root_keys_upd AFTER UPDATE ON root_keys
        BEGIN UPDATE watch_generation SET n = n + 1; END;
    CREATE TRIGGER root_keys_del AFTER DELETE ON root_keys
        BEGIN UPDATE watch_generation SET n = n + 1; END;
    CREATE TRIGGER mint_keys_ins AFTER INSERT ON mint_keys
        BEGIN UPDATE watch_generation SET n = n + 1; END;
    CREATE TRIGGER mint_keys_upd AFTER UPDATE ON mint_keys
        BEGIN UPDATE watch_generation SET n = n + 1; END;
    CREATE TRIGGER mint_keys_del AFTER DELETE ON mint_keys
        BEGIN UPDATE watch_generation SET n = n + 1; END;",
    // 6: every budget reservation still open, with the process that holds it and what its
    // request row needs, so reservations of a proxy that died can be settled by another till.
    "CREATE TABLE reservations (
        id           INTEGER PRIMARY KEY,
        owner        TEXT NOT NULL,
        bindings     TEXT NOT NULL,
        micros       INTEGER NOT NULL,
        tokens       INTEGER NOT NULL,
        at           INTEGER NOT NULL,
        provider     TEXT NOT NULL,
        model        TEXT,
        endpoint     TEXT,
        binding      TEXT,
        lineage      TEXT,
        session      TEXT
    ) STRICT;
    CREATE INDEX reservations_owner ON reservations(owner);",
    // 7: per-minute rate windows per key level (`rates`): the amount admitted in each second.
    "CREATE TABLE rate_windows (
        binding      TEXT NOT NULL,
        kind         TEXT NOT NULL,
        sec          INTEGER NOT NULL,
        amount       INTEGER NOT NULL,
        PRIMARY KEY (binding, kind, sec)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX rate_windows_sec ON rate_windows(sec);",
    // 8: a revoked key's lineage (`Token::lineage`), so keys narrowed from it can be told
    // revoked without the mint key.
    "ALTER TABLE revocations ADD COLUMN lineage TEXT;
    CREATE INDEX revocations_lineage ON revocations(lineage);",
    // 9: no query reads requests by binding (a key's log is matched on its lineage, which no
    // index serves), and the index cost every request's row a B-tree insert under a text key:
    // ≈ 30 % of the ledger writer's work.
    "DROP INDEX IF EXISTS requests_binding;",
];
