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

mod schema;
use schema::MIGRATIONS;

pub mod counters;
pub mod owner;
pub mod query;
pub mod rates;
pub mod signal;
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
    #[serde(serialize_with = "crate::time::json::serialize")]
    pub added_at: u64,
    #[serde(serialize_with = "crate::time::json::option::serialize")]
    pub rotated_at: Option<u64>,
}

/// First 8 hex digits of SHA-256 of a key: enough to tell keys apart, useless to an attacker.
pub fn fingerprint(key: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    hex::encode(&digest[..4])
}

/// How long a write waits for another process's write to end.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// Whether `e` is SQLite's "database is locked" (busy).
fn is_busy(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::DatabaseBusy
        )
    })
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            crate::config::create_private_dir(dir)?;
        }
        // Several till processes opening the ledger at once (five `till add` started together)
        // can find it busy where SQLite calls no busy handler (the WAL's recovery after the
        // last connection closed, the journal mode's check): tried again for as long as a busy
        // write waits.
        let started = std::time::Instant::now();
        loop {
            let conn = Connection::open(path)
                .with_context(|| format!("cannot open the ledger at {}", path.display()))?;
            match Self::init(conn) {
                Err(e) if is_busy(&e) && started.elapsed() < BUSY_WAIT => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                done => {
                    return done.with_context(|| {
                        format!("cannot prepare the ledger at {}", path.display())
                    });
                }
            }
        }
    }

    /// An in-memory ledger (tests and benchmarks).
    pub fn open_in_memory() -> anyhow::Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> anyhow::Result<Self> {
        conn.busy_timeout(BUSY_WAIT)?;
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
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

    /// Takes the provider's root key out of the ledger, with the provider ids of every key of
    /// it recorded (`till remove` never deletes a key at the provider).
    pub fn remove_root_key(&self, provider: &str) -> anyhow::Result<bool> {
        let removed = self
            .conn
            .execute("DELETE FROM root_keys WHERE provider = ?1", [provider])?;
        self.conn
            .execute("DELETE FROM root_key_ids WHERE provider = ?1", [provider])?;
        Ok(removed > 0)
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

/// [`Ledger::narrowed_use`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarrowedUse {
    pub requests: u64,
    pub cost_micros: u64,
    pub tokens: u64,
    pub first_at: u64,
    pub last_at: u64,
    /// The short bindings of its levels, the created or minted one first.
    pub levels: Vec<String>,
    /// The revoked binding (its own or an ancestor's) and when.
    pub revoked: Option<(String, u64)>,
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
    /// How to re-derive the key with the mint key: JSON of its nonce (hex) and scope flags.
    /// Never the tag.
    pub body: String,
    pub created_at: u64,
    pub expires_at: u64,
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

impl MintMeta {
    /// Whether keys signed by this mint key work at `now`: it is current, or retired with a
    /// grace that has not ended.
    pub fn signs_keys_at(&self, now: u64) -> bool {
        self.retired_at.is_none() || self.valid_until.is_some_and(|u| u > now)
    }
}

impl Ledger {
    /// Records a created key, in one statement only while the mint key that signed it is
    /// current: `false`, and nothing recorded, when `till rotate --mint` retired it after the
    /// key was signed (the key would be dead, or die with the grace, before it was shown).
    pub fn insert_key(&self, k: &KeyMeta) -> anyhow::Result<bool> {
        let inserted = self.conn.execute(
            "INSERT INTO keys (binding, name, kid, scope, caveats, created_at, expires_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
             WHERE EXISTS (SELECT 1 FROM mint_keys WHERE kid = ?3 AND retired_at IS NULL)",
            params![
                k.binding,
                k.name,
                k.kid,
                k.scope,
                k.body,
                k.created_at as i64,
                k.expires_at as i64,
            ],
        )?;
        Ok(inserted == 1)
    }

    /// Removes a key that was never handed out (its text could not be written): nothing can
    /// have used it, and its name is free again.
    pub fn forget_unshown_key(&self, binding: &str) -> anyhow::Result<()> {
        self.conn
            .execute("DELETE FROM keys WHERE binding = ?1", params![binding])?;
        Ok(())
    }

    /// Gives key `binding` the name `name`.
    pub fn rename_key(&self, binding: &str, name: &str) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE keys SET name = ?2 WHERE binding = ?1",
            params![binding, name],
        )?;
        Ok(())
    }

    fn query_keys(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> anyhow::Result<Vec<KeyMeta>> {
        let sql = format!(
            "SELECT k.binding, k.name, k.kid, k.scope, k.caveats, k.created_at, k.expires_at,
                    r.revoked_at
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
                revoked_at: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keys made with `till key create` (session keys of `till run` are never stored).
    pub fn keys(&self) -> anyhow::Result<Vec<KeyMeta>> {
        self.query_keys("", &[])
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

    /// The ids (bindings) of keys that made requests, starting with the hex `prefix` (at
    /// least 6 digits): the keys narrowed from created ones (a `till run`'s, a sub-agent's),
    /// which `till log` shows by id and no other table lists. At most two: one is an answer.
    pub fn requesting_bindings(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        if prefix.len() < 6 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let low = prefix.to_ascii_lowercase();
        // A range, so the (binding, at) index serves it.
        let high = format!("{low}g");
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT binding FROM requests WHERE binding >= ?1 AND binding < ?2 LIMIT 2",
        )?;
        let rows = stmt.query_map(params![low, high], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What the ledger knows of a key that made requests but was never created (a run's, a
    /// sub-agent's): its requests, what they cost, when, the short bindings of its levels
    /// (the created or minted one first), and its revocation or an ancestor's (the revoked
    /// binding and when).
    pub fn narrowed_use(&self, binding: &str) -> anyhow::Result<NarrowedUse> {
        let (requests, cost_micros, tokens, first_at, last_at, lineage) = self.conn.query_row(
            "SELECT count(*), coalesce(sum(cost_micros), 0),
                    coalesce(sum(input_tokens + output_tokens), 0),
                    coalesce(min(at), 0), coalesce(max(at), 0), max(lineage)
             FROM requests WHERE binding = ?1",
            [binding],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                    r.get::<_, i64>(4)? as u64,
                    r.get::<_, Option<String>>(5)?,
                ))
            },
        )?;
        let levels: Vec<String> = lineage
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let mut revoked = None;
        let mut stmt = self.conn.prepare_cached(
            "SELECT binding, revoked_at FROM revocations WHERE binding >= ?1 AND binding < ?2",
        )?;
        for short in levels.iter().map(String::as_str).chain([binding]) {
            let found = stmt
                .query_row(params![short, format!("{short}g")], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .optional()?;
            if found.is_some() {
                revoked = found;
                break;
            }
        }
        Ok(NarrowedUse {
            requests,
            cost_micros,
            tokens,
            first_at,
            last_at,
            levels,
            revoked,
        })
    }

    /// Records a revocation; `Ok(false)` when the binding was already revoked. `lineage` is
    /// the revoked key's [`Token::lineage`](crate::childkey::Token::lineage) when its text
    /// was given.
    pub fn revoke(&self, binding: &str, lineage: Option<&str>, now: u64) -> anyhow::Result<bool> {
        Ok(self.conn.execute(
            "INSERT INTO revocations (binding, revoked_at, lineage) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![binding, now as i64, lineage],
        )? > 0)
    }

    /// The revocation of `binding`, or of a key whose lineage is one of `lineages` (the
    /// lineages of a key's levels, first level first): the earliest such level's binding and
    /// time, and the index into `lineages` (`None` for `binding` itself).
    pub fn revocation_of(
        &self,
        binding: &str,
        lineages: &[String],
    ) -> anyhow::Result<Option<(String, u64, Option<usize>)>> {
        for (i, l) in lineages.iter().enumerate() {
            let found = self
                .conn
                .prepare_cached("SELECT binding, revoked_at FROM revocations WHERE lineage = ?1")?
                .query_row([l], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .optional()?;
            if let Some((b, at)) = found {
                return Ok(Some((b, at, Some(i))));
            }
        }
        Ok(self
            .conn
            .prepare_cached("SELECT revoked_at FROM revocations WHERE binding = ?1")?
            .query_row([binding], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|at| (binding.to_string(), at as u64, None)))
    }

    /// The key made by `till key create` with mint key `kid` and `nonce` (hex): the created
    /// key every key narrowed from it descends from.
    pub fn created_key_by_nonce(&self, kid: &str, nonce: &str) -> anyhow::Result<Option<KeyMeta>> {
        Ok(self
            .query_keys(
                "WHERE k.kid = ?1 AND json_extract(k.caveats, '$.nonce') = ?2",
                &[&kid, &nonce],
            )?
            .pop())
    }

    /// How many times the watched tables (revocations, root keys, mint keys) have changed.
    pub fn watch_generation(&self) -> anyhow::Result<i64> {
        Ok(self
            .conn
            .prepare_cached("SELECT n FROM watch_generation WHERE id = 1")?
            .query_row([], |r| r.get(0))?)
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

    /// Records `kid` as the first current mint key, in one statement: `false`, and nothing
    /// recorded, when another process recorded a current one first.
    pub fn insert_first_mint(&self, kid: &str, now: u64) -> anyhow::Result<bool> {
        let inserted = self.conn.execute(
            "INSERT INTO mint_keys (kid, created_at)
             SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM mint_keys WHERE retired_at IS NULL)",
            params![kid, now as i64],
        )?;
        Ok(inserted == 1)
    }

    /// Retires every mint key except `keep`: their keys work until `valid_until`, or until an
    /// earlier rotation's end, whichever comes first (a rotation without grace after a leak
    /// ends the grace an earlier rotation gave too).
    pub fn retire_mints(&self, keep: &str, now: u64, valid_until: u64) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE mint_keys SET retired_at = COALESCE(retired_at, ?2),
                 valid_until = MIN(COALESCE(valid_until, ?3), ?3)
             WHERE kid <> ?1",
            params![keep, now as i64, valid_until as i64],
        )?;
        Ok(())
    }
}

/// One rotation attempt, as `till rotate` records it (never key material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationRow {
    pub at: u64,
    /// A provider name, or `mint` for the mint key.
    pub target: String,
    /// `admin` (created through the provider's admin API), `guided` (a person pasted the new
    /// key) or `mint`.
    pub method: String,
    pub ok: bool,
    /// The step that failed, or `done`.
    pub step: String,
    pub message: String,
    pub old_fingerprint: Option<String>,
    pub new_fingerprint: Option<String>,
    /// A key a failed rotation created at the provider and could not delete.
    pub leftover_key_id: Option<String>,
}

/// The provider's ids for a root key a rotation made through an admin API (with the service
/// account till made for it) or found there to delete (without).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootKeyIds {
    pub key_id: String,
    pub service_account_id: Option<String>,
}

/// A provider key whose ids the ledger holds, under the fingerprint of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedKeyIds {
    pub fingerprint: String,
    pub ids: RootKeyIds,
    pub recorded_at: u64,
}

impl Ledger {
    /// Puts a root key's row back exactly as it was (undoing a rotation that failed later).
    pub fn restore_root_key(&self, meta: &RootKeyMeta) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO root_keys (provider, fingerprint, added_at, rotated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(provider) DO UPDATE SET fingerprint = ?2, added_at = ?3, rotated_at = ?4",
            params![
                meta.provider,
                meta.fingerprint,
                meta.added_at as i64,
                meta.rotated_at.map(|v| v as i64)
            ],
        )?;
        Ok(())
    }

    /// Records that an admin key for `provider` was stored (first time: added; again: rotated).
    pub fn record_admin_key(
        &self,
        provider: &str,
        fingerprint: &str,
        now: u64,
    ) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO admin_keys (provider, fingerprint, added_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(provider) DO UPDATE SET fingerprint = ?2, rotated_at = ?3
             WHERE fingerprint <> ?2",
            params![provider, fingerprint, now as i64],
        )?;
        Ok(())
    }

    pub fn admin_keys(&self) -> anyhow::Result<Vec<RootKeyMeta>> {
        let mut stmt = self.conn.prepare(
            "SELECT provider, fingerprint, added_at, rotated_at FROM admin_keys ORDER BY provider",
        )?;
        let rows = stmt.query_map([], row_to_root)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn admin_key(&self, provider: &str) -> anyhow::Result<Option<RootKeyMeta>> {
        Ok(self
            .conn
            .query_row(
                "SELECT provider, fingerprint, added_at, rotated_at FROM admin_keys WHERE provider = ?1",
                [provider],
                row_to_root,
            )
            .optional()?)
    }

    /// Remembers the provider's ids for the root key with `fingerprint`.
    pub fn record_root_key_ids(
        &self,
        provider: &str,
        fingerprint: &str,
        ids: &RootKeyIds,
        now: u64,
    ) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO root_key_ids (provider, fingerprint, key_id, service_account_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                provider,
                fingerprint,
                ids.key_id,
                ids.service_account_id,
                now as i64
            ],
        )?;
        Ok(())
    }

    /// The provider's ids for the root key with `fingerprint`, when till created it.
    pub fn root_key_ids(
        &self,
        provider: &str,
        fingerprint: &str,
    ) -> anyhow::Result<Option<RootKeyIds>> {
        Ok(self
            .conn
            .query_row(
                "SELECT key_id, service_account_id FROM root_key_ids
                 WHERE provider = ?1 AND fingerprint = ?2",
                [provider, fingerprint],
                |r| {
                    Ok(RootKeyIds {
                        key_id: r.get(0)?,
                        service_account_id: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Every key of `provider` whose ids are recorded, oldest first: the stored key's, and any
    /// a rotation made or meant to delete and did not get to (it was killed).
    pub fn recorded_key_ids(&self, provider: &str) -> anyhow::Result<Vec<RecordedKeyIds>> {
        let mut stmt = self.conn.prepare(
            "SELECT fingerprint, key_id, service_account_id, created_at FROM root_key_ids
             WHERE provider = ?1 ORDER BY created_at, fingerprint",
        )?;
        let rows = stmt.query_map([provider], |r| {
            Ok(RecordedKeyIds {
                fingerprint: r.get(0)?,
                ids: RootKeyIds {
                    key_id: r.get(1)?,
                    service_account_id: r.get(2)?,
                },
                recorded_at: r.get::<_, i64>(3)?.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn forget_root_key_ids(&self, provider: &str, fingerprint: &str) -> anyhow::Result<()> {
        self.conn.execute(
            "DELETE FROM root_key_ids WHERE provider = ?1 AND fingerprint = ?2",
            [provider, fingerprint],
        )?;
        Ok(())
    }

    /// Appends one rotation attempt.
    pub fn record_rotation(&self, row: &RotationRow) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO rotations (at, target, method, ok, step, message, old_fingerprint,
                                    new_fingerprint, leftover_key_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.at as i64,
                row.target,
                row.method,
                row.ok,
                row.step,
                row.message,
                row.old_fingerprint,
                row.new_fingerprint,
                row.leftover_key_id
            ],
        )?;
        Ok(())
    }

    /// Rotation attempts, newest first, at most `limit`.
    pub fn rotations(&self, limit: u32) -> anyhow::Result<Vec<RotationRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT at, target, method, ok, step, message, old_fingerprint, new_fingerprint,
                    leftover_key_id
             FROM rotations ORDER BY at DESC, id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| {
            Ok(RotationRow {
                at: r.get::<_, i64>(0)? as u64,
                target: r.get(1)?,
                method: r.get(2)?,
                ok: r.get(3)?,
                step: r.get(4)?,
                message: r.get(5)?,
                old_fingerprint: r.get(6)?,
                new_fingerprint: r.get(7)?,
                leftover_key_id: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the notice `name` was last given, if ever.
    pub fn notice_at(&self, name: &str) -> anyhow::Result<Option<u64>> {
        Ok(self
            .conn
            .query_row("SELECT at FROM notices WHERE name = ?1", [name], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(|v| v as u64))
    }

    pub fn set_notice(&self, name: &str, now: u64) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO notices (name, at) VALUES (?1, ?2)",
            params![name, now as i64],
        )?;
        Ok(())
    }

    /// Forgets a mint key that never went into use (undoing a failed mint rotation).
    pub fn delete_mint(&self, kid: &str) -> anyhow::Result<()> {
        self.conn
            .execute("DELETE FROM mint_keys WHERE kid = ?1", [kid])?;
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
mod tests;
