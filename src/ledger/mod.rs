//! The ledger: till's SQLite database of metadata and usage. Never key material.
//!
//! It holds root-key metadata (provider, fingerprint, added and rotated times), child-key
//! metadata and revocations, and later request rows and counters. WAL mode, a busy timeout so
//! several till processes can share it, and numbered migrations kept in `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;

/// Schema steps, applied in order; the index + 1 is the `user_version` after each.
const MIGRATIONS: &[&str] = &[
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
];

pub mod counters;
pub mod query;
pub mod writer;

/// An open ledger connection.
pub struct Ledger {
    conn: Connection,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

/// Metadata of a stored root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootKeyMeta {
    pub provider: String,
    /// First 8 hex digits of SHA-256 of the key.
    pub fingerprint: String,
    pub added_at: u64,
    pub rotated_at: Option<u64>,
}

/// First 8 hex digits of SHA-256 of a key: enough to tell keys apart, useless to an attacker.
pub fn fingerprint(key: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    hex::encode(&digest[..4])
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            crate::config::create_private_dir(dir)?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the ledger at {}", path.display()))?;
        Self::init(conn).with_context(|| format!("cannot prepare the ledger at {}", path.display()))
    }

    /// An in-memory ledger (tests and benchmarks).
    pub fn open_in_memory() -> anyhow::Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> anyhow::Result<Self> {
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            anyhow::bail!(
                "the ledger is from a newer till (schema {version}, this till knows {})",
                MIGRATIONS.len()
            );
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(step)
                .with_context(|| format!("migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        Ok(Self { conn })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Records that a root key for `provider` was stored (first time: added; again: rotated).
    pub fn record_root_key(
        &self,
        provider: &str,
        fingerprint: &str,
        now: u64,
    ) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO root_keys (provider, fingerprint, added_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(provider) DO UPDATE SET fingerprint = ?2, rotated_at = ?3
             WHERE fingerprint <> ?2",
            params![provider, fingerprint, now as i64],
        )?;
        Ok(())
    }

    pub fn remove_root_key(&self, provider: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM root_keys WHERE provider = ?1", [provider])?
            > 0)
    }

    pub fn root_key(&self, provider: &str) -> anyhow::Result<Option<RootKeyMeta>> {
        Ok(self
            .conn
            .query_row(
                "SELECT provider, fingerprint, added_at, rotated_at FROM root_keys WHERE provider = ?1",
                [provider],
                row_to_root,
            )
            .optional()?)
    }

    pub fn root_keys(&self) -> anyhow::Result<Vec<RootKeyMeta>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT provider, fingerprint, added_at, rotated_at FROM root_keys ORDER BY provider",
        )?;
        let rows = stmt.query_map([], row_to_root)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Metadata of a child key made by `till key create` or `till run` (never the key itself: the
/// final tag is not stored, only what is needed to show, revoke and re-derive it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyMeta {
    /// Hex SHA-256 of the key's final tag.
    pub binding: String,
    pub name: Option<String>,
    pub kid: String,
    /// The scope in command-line syntax.
    pub scope: String,
    /// The encoded token body without its tag (nonce and caveats), hex.
    pub body: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub parent: Option<String>,
    pub session: Option<String>,
    pub revoked_at: Option<u64>,
}

/// Mint key metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MintMeta {
    pub kid: String,
    pub created_at: u64,
    pub retired_at: Option<u64>,
    pub valid_until: Option<u64>,
}

impl Ledger {
    pub fn insert_key(&self, k: &KeyMeta) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO keys (binding, name, kid, scope, caveats, created_at, expires_at, parent, session)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                k.binding,
                k.name,
                k.kid,
                k.scope,
                k.body,
                k.created_at as i64,
                k.expires_at as i64,
                k.parent,
                k.session
            ],
        )?;
        Ok(())
    }

    fn query_keys(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> anyhow::Result<Vec<KeyMeta>> {
        let sql = format!(
            "SELECT k.binding, k.name, k.kid, k.scope, k.caveats, k.created_at, k.expires_at, k.parent,
                    k.session, r.revoked_at
             FROM keys k LEFT JOIN revocations r ON r.binding = k.binding {filter}
             ORDER BY k.created_at, k.binding"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(args, |r| {
            Ok(KeyMeta {
                binding: r.get(0)?,
                name: r.get(1)?,
                kid: r.get(2)?,
                scope: r.get(3)?,
                body: r.get(4)?,
                created_at: r.get::<_, i64>(5)? as u64,
                expires_at: r.get::<_, i64>(6)? as u64,
                parent: r.get(7)?,
                session: r.get(8)?,
                revoked_at: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keys made with `till key create` (not the per-run session keys).
    pub fn keys(&self) -> anyhow::Result<Vec<KeyMeta>> {
        self.query_keys("WHERE k.session IS NULL", &[])
    }

    /// The key whose name is `name`, or whose binding starts with `id` (at least 6 hex digits).
    pub fn find_key(&self, id_or_name: &str) -> anyhow::Result<Vec<KeyMeta>> {
        let by_name = self.query_keys("WHERE k.name = ?1", &[&id_or_name])?;
        if !by_name.is_empty() {
            return Ok(by_name);
        }
        if id_or_name.len() >= 6 && id_or_name.chars().all(|c| c.is_ascii_hexdigit()) {
            let pattern = format!("{}%", id_or_name.to_ascii_lowercase());
            return self.query_keys("WHERE k.binding LIKE ?1", &[&pattern]);
        }
        Ok(Vec::new())
    }

    /// Records a revocation; `Ok(false)` when the binding was already revoked.
    pub fn revoke(&self, binding: &str, now: u64) -> anyhow::Result<bool> {
        Ok(self.conn.execute(
            "INSERT INTO revocations (binding, revoked_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![binding, now as i64],
        )? > 0)
    }

    pub fn revoked_hex(&self) -> anyhow::Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT binding FROM revocations")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn mint_keys(&self) -> anyhow::Result<Vec<MintMeta>> {
        let mut stmt = self.conn.prepare(
            "SELECT kid, created_at, retired_at, valid_until FROM mint_keys ORDER BY created_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(MintMeta {
                kid: r.get(0)?,
                created_at: r.get::<_, i64>(1)? as u64,
                retired_at: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                valid_until: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn insert_mint(&self, kid: &str, now: u64) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO mint_keys (kid, created_at) VALUES (?1, ?2)",
            params![kid, now as i64],
        )?;
        Ok(())
    }

    /// Retires every current mint key except `keep`; their keys work until `valid_until`.
    pub fn retire_mints(&self, keep: &str, now: u64, valid_until: u64) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE mint_keys SET retired_at = ?2, valid_until = ?3 WHERE kid <> ?1 AND retired_at IS NULL",
            params![keep, now as i64, valid_until as i64],
        )?;
        Ok(())
    }
}

fn row_to_root(r: &rusqlite::Row<'_>) -> rusqlite::Result<RootKeyMeta> {
    Ok(RootKeyMeta {
        provider: r.get(0)?,
        fingerprint: r.get(1)?,
        added_at: r.get::<_, i64>(2)? as u64,
        rotated_at: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_and_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite3");
        drop(Ledger::open(&path).unwrap());
        let l = Ledger::open(&path).unwrap();
        let v: i64 = l
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
    }

    #[test]
    fn root_key_added_then_rotated() {
        let l = Ledger::open_in_memory().unwrap();
        l.record_root_key("openai", "aaaa0000", 10).unwrap();
        l.record_root_key("openai", "aaaa0000", 20).unwrap();
        assert_eq!(l.root_key("openai").unwrap().unwrap().rotated_at, None);
        l.record_root_key("openai", "bbbb1111", 30).unwrap();
        let meta = l.root_key("openai").unwrap().unwrap();
        assert_eq!(
            (meta.added_at, meta.rotated_at, meta.fingerprint.as_str()),
            (10, Some(30), "bbbb1111")
        );
        assert!(l.remove_root_key("openai").unwrap());
        assert!(l.root_keys().unwrap().is_empty());
    }

    #[test]
    fn fingerprint_is_8_hex() {
        assert_eq!(fingerprint("sk-test-123").len(), 8);
        assert_ne!(fingerprint("a"), fingerprint("b"));
    }
}
