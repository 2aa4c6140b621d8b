//! What the proxy holds while it runs: providers, root keys, mint keys, the revocation list,
//! rate windows, counters, and where finished requests go.
//!
//! Changes made by other till processes (a revocation, a rotated root key, a retired mint key)
//! reach a running proxy through the ledger: every request looks at the ledger's wal-index
//! header ([`CommitSignal`]), which changes when any connection commits; only then does it
//! compare SQLite's `data_version`, read the ledger's watch generation, which only changes
//! with those tables, and reload only when that moved. Commits of this process's own ledger
//! writer (request rows, alerts, settlements: nothing watched) are told apart by the headers
//! the writer saw around each of them ([`OwnCommits`]), so the proxy's own rows do not send
//! the next request to SQLite.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher as _, RandomState};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::HeaderMap;
use secrecy::{ExposeSecret as _, SecretString};

use super::errors::{ProxyError, refusal_error};
use super::limits::{RateDenial, RateLimits, RateRule};
pub use super::record::{RequestRecord, Stats, StatsSnapshot};
use crate::childkey::{Binding, Checked, Denial, Grant, Kid, Limit, Token, Verified};
use crate::ledger::Ledger;
use crate::ledger::counters::{LevelCharge, Reservation};
use crate::ledger::rates::{RateCharge, RateKind};
use crate::ledger::signal::{CommitSignal, OwnCommits};
use crate::ledger::writer::WriterHandle;
pub use crate::mint::MintEntry;
use crate::providers::Providers;
use crate::secrets::SecretStore;

/// Settings of one proxy.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// `Some(id)` for `till run` (only keys bound to this session work), `None` for `till serve`.
    pub session: Option<String>,
    pub max_body_bytes: u64,
    pub upstream_timeout: Duration,
    /// Whether the listener is on loopback (then only loopback `Host` headers are answered).
    pub loopback: bool,
    /// How long requests in flight may go on after a stop is asked for.
    pub shutdown_grace: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a keep-alive
    /// connection may sit idle between requests.
    pub header_timeout: Duration,
    /// How long a client may take to send a request body, and may go without reading any of
    /// its answer.
    pub body_timeout: Duration,
}

impl Default for ProxyOptions {
    /// The defaults of `[proxy]` in config.toml, for a `till serve` proxy.
    fn default() -> Self {
        let c = crate::config::ProxyConfig::default();
        Self {
            session: None,
            max_body_bytes: c.max_body_bytes,
            upstream_timeout: c.upstream_timeout.0,
            loopback: true,
            shutdown_grace: c.shutdown_grace.0,
            max_connections: c.max_connections,
            header_timeout: c.header_timeout.0,
            body_timeout: c.body_timeout.0,
        }
    }
}

struct RootKey {
    fingerprint: String,
    key: Arc<SecretString>,
    /// Whether the key can go in a header ([`crate::secrets::header_safe`]): one edited into
    /// the store by hand may not, and is then never sent.
    usable: bool,
}

/// A till key this proxy has verified, with the mint key it was verified against. No `Debug`:
/// it holds the key's text.
pub struct KnownKey {
    /// The key as the client sent it (a bearer secret: never shown, compared in constant time).
    text: Box<str>,
    pub mint: Arc<MintEntry>,
    pub checked: Checked,
}

/// How many verified keys are kept. A key is at most `MAX_ENCODED_LEN` (8 KB) long, so the
/// cache stays within a few MB however many keys a client makes by narrowing its own (each of
/// which verifies).
const KNOWN_KEYS: usize = 256;

/// How long a budget read waits at most for the settlements of requests that have ended
/// ([`WriterHandle::wait_settled`]): one transaction, normally well under a millisecond; a
/// ledger locked by another process for longer leaves their reservations counted.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Verified keys by a keyed hash of their text. A full cache is emptied, not evicted from:
/// a client that cycles through more keys than it holds pays the HMAC chain every time, which
/// is what every request paid before there was a cache.
#[derive(Default)]
struct KnownKeys {
    hasher: RandomState,
    /// Keyed by the hash itself ([`Passed`]): it is already a keyed SipHash.
    by_hash: HashMap<u64, Arc<KnownKey>, std::hash::BuildHasherDefault<Passed>>,
}

/// The hasher of a map whose keys are already keyed hashes: each key is its own hash.
#[derive(Default)]
struct Passed(u64);

impl std::hash::Hasher for Passed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are `u64`); anything else is folded in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Whether `a` and `b` are the same bytes, in a time that depends on their lengths alone:
/// eight bytes at a time, every byte looked at whatever differs.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    let mut diff = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        diff |= word(x) ^ word(y);
    }
    let tail = a.len() - a.len() % 8;
    for (x, y) in a[tail..].iter().zip(&b[tail..]) {
        diff |= u64::from(x ^ y);
    }
    bool::from(diff.ct_eq(&0))
}

/// A map whose entries come from the configuration and the ledger, never from a request: root
/// keys by provider, mint keys by id. A request only looks one up, which costs it one hash, so
/// these need no keyed SipHash against flooding; foldhash (randomly seeded) is several times
/// cheaper for short keys. The maps a request's text reaches (verified keys) stay SipHash.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

struct Watched {
    /// Says when nothing can have changed, so most requests skip SQLite. Declared before
    /// `ledger` so that it is dropped first (see [`CommitSignal`]).
    signal: CommitSignal,
    ledger: Ledger,
    data_version: i64,
    /// The ledger's watch generation when the sets below were read.
    generation: i64,
    /// From the ledger; a request looks its key's levels up (foldhash, as [`Map`]: what is
    /// looked up is a SHA-256 binding, and what is in it the user's revocations).
    revoked: HashSet<Binding, foldhash::fast::RandomState>,
    /// Each provider's root-key fingerprint as the ledger has it now, and `None` for a
    /// provider it named since this proxy started and names no more (`till remove` took the
    /// key). A provider the ledger never named is absent: its key was handed to the proxy
    /// directly (benchmarks do), and nothing the ledger says concerns it.
    root_fingerprints: Map<String, Option<String>>,
    /// Each mint key's end of grace as the ledger has it now (`till rotate --mint` sets it
    /// after this proxy loaded the key).
    mint_until: Map<Kid, Option<u64>>,
    /// This process's ledger writer's commits: a wal-index header that moved through these
    /// alone needs no look at SQLite (the writer writes nothing watched here).
    own: Option<Arc<OwnCommits>>,
    /// The ledger file as opened (its path, device and inode), looked at once a second: a
    /// ledger deleted or replaced under the proxy would hide every revocation made after it.
    file: Option<LedgerFile>,
}

/// The ledger's files a proxy opened (the database, its `-wal` and `-shm`), and whether they
/// are still the ones at their paths: with the write-ahead log or the shared memory deleted,
/// the proxy goes on in files no other till reads, as much as with the database deleted.
struct LedgerFile {
    files: Vec<(std::path::PathBuf, (u64, u64))>,
    /// The second they were last looked at.
    looked: u64,
    gone: bool,
}

impl LedgerFile {
    fn open(ledger: &Ledger) -> Option<Self> {
        let db = ledger.conn().path().filter(|p| !p.is_empty())?;
        let files: Vec<_> = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let path = std::path::PathBuf::from(format!("{db}{suffix}"));
                file_id(&path).map(|id| (path, id))
            })
            .collect();
        (!files.is_empty()).then(|| Self {
            files,
            looked: crate::time::now_unix(),
            gone: false,
        })
    }

    /// Whether a file at its path is no longer the one opened (looked at once a second; `now`
    /// is the time in seconds).
    fn gone(&mut self, now: u64) -> bool {
        if !self.gone && now != self.looked {
            self.looked = now;
            self.gone = self
                .files
                .iter()
                .any(|(path, id)| file_id(path) != Some(*id));
        }
        self.gone
    }
}

#[cfg(unix)]
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Elsewhere a replaced ledger is not looked for.
#[cfg(not(unix))]
fn file_id(_path: &std::path::Path) -> Option<(u64, u64)> {
    None
}

/// Whether a key stands, as far as the ledger says ([`State::standing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Stands,
    Revoked,
    /// The ledger file this proxy opened was deleted or replaced.
    LedgerGone,
}

/// Why [`State::mint_for`] refused a key's mint key: the error to answer with and, when the
/// mint key is known but retired, the mint key itself (the refusal can then name the key it
/// refuses, its signature checked with it, so that `till log --key` lists it).
pub struct MintRefused {
    pub error: ProxyError,
    pub retired: Option<Arc<MintEntry>>,
}

impl From<MintRefused> for ProxyError {
    fn from(r: MintRefused) -> Self {
        r.error
    }
}

/// The share of `[proxy] max_connections` the WebSockets of one key lineage may hold open, and
/// the share its HTTP requests in flight may hold: an open socket keeps its connection's slot
/// for as long as it lasts (an idle one until `upstream_timeout`), a request until its answer
/// ends (a trickled body, an answer left unread, a stream drained after its client left), so
/// without a share one key could hold every slot of a shared `till serve` and leave every
/// other key's requests waiting.
pub const SOCKETS_PER_LINEAGE_DIVISOR: usize = 4;

/// The WebSockets open and the HTTP requests in flight (from their key's check to their
/// answer's end, a drain included), by the binding of their key's first level (as the
/// bodies' room is shared out: no agent can grind a first level's binding, the mint key's
/// MAC). Each holds a connection's slot while it lasts, and together they are held to a
/// lineage's share of `max_connections`.
#[derive(Default)]
pub(super) struct Sockets {
    open: Mutex<Map<Binding, usize>>,
}

/// One WebSocket's or request's place in its lineage's share, given back when dropped.
pub struct Place {
    state: Arc<State>,
    lineage: Binding,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self
            .state
            .sockets
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.lineage) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.lineage);
            }
        }
    }
}

/// The proxy's shared state.
pub struct State {
    pub providers: Providers,
    pub options: ProxyOptions,
    pub stats: Stats,
    store: Option<Arc<dyn SecretStore>>,
    roots: RwLock<Map<String, RootKey>>,
    mints: RwLock<Map<Kid, Arc<MintEntry>>>,
    known: Mutex<KnownKeys>,
    watched: Mutex<Watched>,
    limits: RateLimits,
    prices: crate::pricing::live::LivePrices,
    pub(super) writer: Option<WriterHandle>,
    counters: Option<Mutex<Ledger>>,
    /// The id of this process's owner lock, written with every reservation.
    owner: String,
    pub alerts: super::alerts::Alerts,
    /// Bytes of request bodies being read, over every connection.
    pub(super) bodies: BodyBytes,
    /// WebSockets open, by lineage.
    pub(super) sockets: Sockets,
}

/// How many largest bodies (`max_body_bytes`) the proxy reads at once: with the default limit,
/// 256 MiB of bodies in all, however many connections send at the same time.
pub const BODIES_AT_ONCE: u64 = 8;

/// How many largest bodies one key's lineage (a key till made, and every key narrowed from
/// it) may have being read at once: half of [`BODIES_AT_ONCE`], 128 MiB by default.
///
/// Half, because whatever one lineage holds, every other key together is left at least as
/// much, however many connections that lineage opens: one that sends all but the last byte of
/// many large bodies stalls only its own requests (without a share it would fill the shared
/// room, and every other key's bodies would be refused until its `body_timeout`). And half
/// still lets one lineage send a largest body, or four at once, or many smaller ones; only its
/// fifth largest body at once waits. A share of one largest body would refuse an agent's
/// second large request while its first is on its way. A lineage is named by the binding of
/// its first level, which only the mint key can make: narrowing a key offline gives no new
/// share, so an agent cannot multiply its room that way.
pub const BODIES_PER_LINEAGE: u64 = BODIES_AT_ONCE / 2;

/// The bytes of request bodies being read at once, and their bounds, so that clients that each
/// send all but the last byte of a large body cannot make the proxy hold more memory than
/// [`BODIES_AT_ONCE`] largest bodies, nor one key's lineage more than its share of that
/// ([`BODIES_PER_LINEAGE`]).
#[derive(Debug)]
pub(super) struct BodyBytes {
    /// What all bodies being read may hold together.
    limit: u64,
    /// What the bodies of one lineage may hold together.
    share: u64,
    /// Held under one short lock: the total and each lineage's part change together.
    held: Mutex<HeldBodies>,
}

#[derive(Debug, Default)]
struct HeldBodies {
    total: u64,
    /// The bytes each lineage holds, by the binding of its first level. A lineage that holds
    /// nothing has no entry, so the map has at most an entry per body being read, and once it
    /// has grown to the bodies read at once it allocates no more. foldhash, unlike the maps
    /// keyed by any binding: a first level's binding is the mint key's MAC, which no agent can
    /// grind (narrowing makes only later levels), so there is no flood to key the hash against.
    by_lineage: Map<Binding, u64>,
}

/// Which bound a body being read found no room under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoRoom {
    /// The bodies being read hold all the proxy reads at once ([`BODIES_AT_ONCE`]).
    All,
    /// The bodies of the key's lineage hold its share ([`BODIES_PER_LINEAGE`]).
    Lineage,
}

impl BodyBytes {
    fn new(max_body_bytes: u64) -> Self {
        Self {
            limit: max_body_bytes.saturating_mul(BODIES_AT_ONCE),
            share: max_body_bytes.saturating_mul(BODIES_PER_LINEAGE),
            held: Mutex::default(),
        }
    }

    /// The bytes all bodies being read may hold together.
    pub(super) fn limit(&self) -> u64 {
        self.limit
    }

    /// The bytes the bodies of one lineage may hold together.
    pub(super) fn share(&self) -> u64 {
        self.share
    }

    /// A hold of no bytes yet for a body of `lineage` (the binding of its key's first level),
    /// given back when dropped.
    pub(super) fn hold(&self, lineage: Binding) -> BodyHold<'_> {
        BodyHold {
            pool: self,
            lineage,
            n: 0,
        }
    }

    /// Takes `more` bytes for `lineage`; nothing is taken when that would pass its share
    /// ([`NoRoom::Lineage`], told first: it is that key's own doing) or the bound of all bodies.
    pub(super) fn take(&self, lineage: Binding, more: u64) -> Result<(), NoRoom> {
        if more == 0 {
            return Ok(());
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let held = &mut *held;
        let mine = held.by_lineage.entry(lineage);
        let was = match &mine {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(_) => 0,
        };
        let now = was
            .checked_add(more)
            .filter(|&n| n <= self.share)
            .ok_or(NoRoom::Lineage)?;
        let total = held
            .total
            .checked_add(more)
            .filter(|&t| t <= self.limit)
            .ok_or(NoRoom::All)?;
        held.total = total;
        match mine {
            Entry::Occupied(mut e) => *e.get_mut() = now,
            Entry::Vacant(e) => {
                e.insert(now);
            }
        }
        Ok(())
    }

    /// Gives back `n` bytes `lineage` took before.
    pub(super) fn give(&self, lineage: Binding, n: u64) {
        if n == 0 {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let held = &mut *held;
        held.total = held.total.saturating_sub(n);
        if let Entry::Occupied(mut e) = held.by_lineage.entry(lineage) {
            match e.get().checked_sub(n) {
                Some(left) if left > 0 => *e.get_mut() = left,
                _ => {
                    e.remove();
                }
            }
        }
    }
}

/// Bytes one body being read holds of the [`BodyBytes`].
pub(super) struct BodyHold<'a> {
    pool: &'a BodyBytes,
    lineage: Binding,
    n: u64,
}

impl<'a> BodyHold<'a> {
    /// The room this hold takes from.
    pub(super) fn pool(&self) -> &'a BodyBytes {
        self.pool
    }

    /// Grows the hold to `n` bytes; nothing is taken when that would pass a bound.
    pub(super) fn grow_to(&mut self, n: u64) -> Result<(), NoRoom> {
        if n <= self.n {
            return Ok(());
        }
        self.pool.take(self.lineage, n - self.n)?;
        self.n = n;
        Ok(())
    }
}

impl Drop for BodyHold<'_> {
    fn drop(&mut self) {
        self.pool.give(self.lineage, self.n);
    }
}

impl BodyHold<'_> {
    /// The bytes held so far, kept by a hold that owns its way back to `state`'s room.
    pub(super) fn keep(mut self, state: &Arc<State>) -> HeldBody {
        let n = std::mem::take(&mut self.n);
        HeldBody {
            state: Arc::clone(state),
            lineage: self.lineage,
            n,
        }
    }
}

/// Bytes of the room for request bodies kept past the body's read: the body and the trees
/// parsed from it, until the request has gone upstream.
pub struct HeldBody {
    state: Arc<State>,
    lineage: Binding,
    n: u64,
}

impl HeldBody {
    /// Takes `more` bytes besides; nothing is taken when that would pass a bound.
    pub(super) fn grow(&mut self, more: u64) -> Result<(), NoRoom> {
        self.state.bodies.take(self.lineage, more)?;
        self.n += more;
        Ok(())
    }

    /// The room this hold takes from.
    pub(super) fn pool(&self) -> &BodyBytes {
        &self.state.bodies
    }
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        self.state.bodies.give(self.lineage, self.n);
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl State {
    /// A proxy over `providers` with `roots` (provider → root key) and `mints`.
    pub fn new(
        providers: Providers,
        options: ProxyOptions,
        ledger: Ledger,
        store: Option<Arc<dyn SecretStore>>,
        roots: Vec<(String, SecretString)>,
        mints: Vec<MintEntry>,
    ) -> anyhow::Result<Self> {
        let roots = roots
            .into_iter()
            .map(|(p, key)| {
                let fingerprint = crate::ledger::fingerprint(key.expose_secret());
                let usable = crate::secrets::header_safe(key.expose_secret());
                (
                    p,
                    RootKey {
                        fingerprint,
                        key: Arc::new(key),
                        usable,
                    },
                )
            })
            .collect();
        let mints = mints
            .into_iter()
            .map(|m| (m.key.kid(), Arc::new(m)))
            .collect();
        let mut watched = Watched {
            signal: CommitSignal::none(),
            ledger,
            data_version: -1,
            generation: -1,
            revoked: HashSet::default(),
            root_fingerprints: Map::default(),
            mint_until: Map::default(),
            own: None,
            file: None,
        };
        watched.file = LedgerFile::open(&watched.ledger);
        refresh(&mut watched)?;
        watched.signal = CommitSignal::open(watched.ledger.conn());
        Ok(Self {
            providers,
            bodies: BodyBytes::new(options.max_body_bytes),
            options,
            stats: Stats::default(),
            store,
            roots: RwLock::new(roots),
            mints: RwLock::new(mints),
            known: Mutex::new(KnownKeys::default()),
            watched: Mutex::new(watched),
            limits: RateLimits::default(),
            prices: crate::pricing::live::LivePrices::fixed(crate::pricing::Prices::builtin()),
            writer: None,
            owner: String::new(),
            counters: None,
            alerts: super::alerts::Alerts::default(),
            sockets: Sockets::default(),
        })
    }

    /// The most memory the tree parsed from one request body (or WebSocket message) may take:
    /// what one key's bodies may hold at once ([`BODIES_PER_LINEAGE`] × `max_body_bytes`).
    pub fn tree_room(&self) -> usize {
        usize::try_from(self.bodies.share()).unwrap_or(usize::MAX)
    }

    /// The most WebSockets and requests in flight one key lineage may hold: a quarter of
    /// `max_connections` (all of them under `till run`).
    pub fn sockets_per_lineage(&self) -> usize {
        // `till run` serves one agent's keys (its session's, one lineage): there is no other
        // key to keep slots for.
        if self.options.session.is_some() {
            return self.options.max_connections.max(1);
        }
        (self.options.max_connections / SOCKETS_PER_LINEAGE_DIVISOR).max(1)
    }

    /// A place for one more request of `lineage` in flight, or a refusal when its requests
    /// hold their share of the connections (a quarter of `max_connections`, as WebSockets):
    /// one key trickling bodies, keeping answers unread or leaving streams to drain would
    /// otherwise hold every slot of a shared proxy while other keys' requests wait.
    pub(super) fn hold_request(self: &Arc<Self>, lineage: Binding) -> Result<Place, ProxyError> {
        self.take_place(lineage).map_err(|n| {
            ProxyError::new(
                429,
                "concurrency",
                format!(
                    "this key and the keys narrowed from it have {n} requests in flight and WebSockets open, as many as one key may ({}: a quarter of [proxy] max_connections, so that one key cannot hold every connection of a shared proxy); wait for one to end",
                    self.sockets_per_lineage()
                ),
            )
        })
    }

    /// A place for one more WebSocket of `lineage`, or a refusal when it holds its share.
    pub(super) fn hold_socket(self: &Arc<Self>, lineage: Binding) -> Result<Place, ProxyError> {
        self.take_place(lineage).map_err(|n| {
            ProxyError::new(
                429,
                "sockets",
                format!(
                    "this key and the keys narrowed from it have {n} WebSockets open and requests in flight, as many as one key may ({}: a quarter of [proxy] max_connections, so that one key cannot hold every connection of a shared proxy); close one first",
                    self.sockets_per_lineage()
                ),
            )
        })
    }

    /// One more place of `lineage`, or how many it holds when that is its share already.
    fn take_place(self: &Arc<Self>, lineage: Binding) -> Result<Place, usize> {
        let share = self.sockets_per_lineage();
        let mut open = self.sockets.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(lineage).or_insert(0);
        if *n >= share {
            return Err(*n);
        }
        *n += 1;
        Ok(Place {
            state: Arc::clone(self),
            lineage,
        })
    }

    /// Prices requests with `prices` (built-ins and config overrides), which never change.
    #[must_use]
    pub fn with_prices(self, prices: crate::pricing::Prices) -> Self {
        self.with_live_prices(crate::pricing::live::LivePrices::fixed(prices))
    }

    /// Prices requests with `prices`, read again when config.toml or the table changes.
    #[must_use]
    pub fn with_live_prices(mut self, prices: crate::pricing::live::LivePrices) -> Self {
        self.prices = prices;
        self
    }

    /// The price table in force (read again first when its files changed, once a second at
    /// most; a change that does not read is an alert, and the table stays as it was).
    pub fn prices(&self) -> Arc<crate::pricing::Prices> {
        let (prices, reread) = self.prices.get(crate::time::now_unix());
        if let Some(crate::pricing::live::Reread::Failed(why)) = reread {
            self.alerts.prices_unread(self, &why);
        }
        prices
    }

    /// The price a request for `provider/model` is charged at; a model the table does not
    /// list costs the provider's highest price, which is announced once per model.
    pub fn price(&self, provider: &str, model: &str) -> Option<crate::pricing::Price> {
        if model.is_empty() {
            return None;
        }
        let priced = self.prices().lookup(provider, model)?;
        if priced.source == crate::pricing::PriceSource::ProviderMax {
            self.alerts
                .unlisted_price(self, provider, model, &priced.price);
        }
        Some(priced.price)
    }

    /// Records every finished request, settles budgets and stores alert events through
    /// `writer`; `counters` is a ledger connection for budget reservations.
    #[must_use]
    pub fn with_ledger(mut self, writer: WriterHandle, counters: Ledger) -> Self {
        if let Ok(w) = self.watched.get_mut() {
            w.own = Some(writer.own_commits());
        }
        self.writer = Some(writer);
        self.counters = Some(Mutex::new(counters));
        self
    }

    /// Records `owner` (see [`crate::ledger::owner`]) as the holder of this proxy's budget
    /// reservations, so they are settled if this process dies with some open.
    #[must_use]
    pub fn with_owner(mut self, owner: &str) -> Self {
        self.owner = owner.to_string();
        self
    }

    /// Prints alerts on stderr as they happen (`till run`, `till serve`).
    #[must_use]
    pub fn print_alerts(mut self, on: bool) -> Self {
        self.alerts.print = on;
        self
    }

    /// Reserves the request's worst-case cost on every level with a budget or request ceiling.
    pub async fn reserve(
        self: &Arc<Self>,
        grant: &Grant,
        provider: &str,
        model: Option<&str>,
        prompt: crate::pricing::PromptBound,
        max_output: u64,
        record: &RequestRecord,
    ) -> Result<Option<Reservation>, ProxyError> {
        let mut levels: Vec<LevelCharge> = Vec::new();
        for l in &grant.limits {
            let binding = l.binding.to_string();
            let i = match levels.iter().position(|c| c.binding == binding) {
                Some(i) => i,
                None => {
                    levels.push(LevelCharge {
                        binding,
                        budget_micros: None,
                        budget_tokens: None,
                        max_requests: None,
                    });
                    levels.len() - 1
                }
            };
            let c = &mut levels[i];
            match l.limit {
                Limit::BudgetUsd(v) => {
                    c.budget_micros = Some(c.budget_micros.map_or(v, |o| o.min(v)))
                }
                Limit::BudgetTokens(v) => {
                    c.budget_tokens = Some(c.budget_tokens.map_or(v, |o| o.min(v)))
                }
                Limit::MaxRequests(v) => {
                    c.max_requests = Some(c.max_requests.map_or(v, |o| o.min(v)))
                }
                _ => {}
            }
        }
        levels.retain(|c| {
            c.budget_micros.is_some() || c.budget_tokens.is_some() || c.max_requests.is_some()
        });
        if levels.is_empty() {
            return Ok(None);
        }
        let tokens = prompt.tokens.saturating_add(max_output);
        let micros = if levels.iter().any(|l| l.budget_micros.is_some()) {
            let model = model.unwrap_or("");
            match self.price(provider, model) {
                Some(price) => price.reserve_micros(prompt, max_output),
                None if model.is_empty() => 0,
                None => {
                    // The entry to add is suggested only for a model a person could type.
                    let fix = if crate::childkey::is_model_name(model) {
                        format!(
                            "; add one to config.toml: [prices.\"{provider}/{model}\"] input = 1.0, output = 4.0 (USD per million tokens)"
                        )
                    } else {
                        String::new()
                    };
                    return Err(ProxyError::new(
                        403,
                        "no_price",
                        format!(
                            "this key has a dollar budget but till knows no price for {provider}/{model}{fix}"
                        ),
                    ));
                }
            }
        } else {
            0
        };
        let this = Arc::clone(self);
        let hold = record.hold(&self.owner, self.options.session.as_deref());
        let outcome = tokio::task::spawn_blocking(move || {
            let counters = this.counters.as_ref()?;
            this.wait_settled();
            let mut ledger = counters.lock().unwrap_or_else(|e| e.into_inner());
            Some(ledger.reserve(&levels, micros, tokens, &hold))
        })
        .await
        .ok()
        .flatten();
        match outcome {
            None => Ok(None),
            Some(Err(e)) => Err(ProxyError::new(
                503,
                "ledger",
                format!("till could not update its budget counters: {e:#}"),
            )),
            Some(Ok(Ok(reservation))) => {
                for g in &reservation.gauges {
                    self.alerts
                        .budget_fill(self, &g.binding, g.fraction_after(0, 0), record.root);
                }
                Ok(Some(reservation))
            }
            Some(Ok(Err(refusal))) => Err(refusal_error(&refusal)),
        }
    }

    /// Waits for the settlements of the requests that have ended to be written (on a blocking
    /// thread): an answer's settlement is queued before its last bytes go out, and the agent's
    /// next request, sent the moment it has read them, must find it written.
    fn wait_settled(&self) {
        if let Some(w) = &self.writer {
            w.wait_settled(SETTLE_WAIT);
        }
    }

    /// What the key's tightest budgets have left, in micro-dollars and in tokens (`None`
    /// where no level has that kind of budget), counting what requests in flight hold.
    pub async fn budget_left(
        self: &Arc<Self>,
        grant: &Grant,
    ) -> Result<(Option<u64>, Option<u64>), ProxyError> {
        let budgets: Vec<(String, Limit)> = grant
            .limits
            .iter()
            .filter(|l| matches!(l.limit, Limit::BudgetUsd(_) | Limit::BudgetTokens(_)))
            .map(|l| (l.binding.to_string(), l.limit))
            .collect();
        if budgets.is_empty() {
            return Ok((None, None));
        }
        let this = Arc::clone(self);
        let read = tokio::task::spawn_blocking(move || {
            let Some(counters) = this.counters.as_ref() else {
                return Ok((None, None));
            };
            this.wait_settled();
            let ledger = counters.lock().unwrap_or_else(|e| e.into_inner());
            let (mut usd, mut tokens) = (None::<u64>, None::<u64>);
            for (binding, limit) in &budgets {
                let c = ledger.counter(binding)?.unwrap_or_default();
                match *limit {
                    Limit::BudgetUsd(b) => {
                        let left = b.saturating_sub(c.spent_micros + c.reserved_micros);
                        usd = Some(usd.map_or(left, |u| u.min(left)));
                    }
                    Limit::BudgetTokens(b) => {
                        let left = b.saturating_sub(c.spent_tokens + c.reserved_tokens);
                        tokens = Some(tokens.map_or(left, |t| t.min(left)));
                    }
                    _ => {}
                }
            }
            anyhow::Ok((usd, tokens))
        })
        .await;
        match read {
            Ok(Ok(left)) => Ok(left),
            Ok(Err(e)) => Err(ProxyError::new(
                503,
                "ledger",
                format!("till could not read its budget counters: {e:#}"),
            )),
            Err(_) => Err(ProxyError::new(
                503,
                "ledger",
                "till could not read its budget counters",
            )),
        }
    }

    pub(crate) fn writer(&self) -> Option<&WriterHandle> {
        self.writer.as_ref()
    }

    /// Whether `value` contains any root key this proxy holds (keys shorter than 8 characters
    /// are not matched, to avoid removing unrelated values).
    pub fn holds_root_value(&self, value: &str) -> bool {
        let Ok(roots) = self.roots.read() else {
            return true;
        };
        roots
            .values()
            .any(|r| crate::secrets::holds_secret(value, &r.key))
    }

    /// Whether the `Host` header names this proxy (loopback names only on a loopback bind).
    ///
    /// A page in a browser can make requests to a loopback port under a name it controls
    /// (DNS rebinding); refusing every `Host` that is not a loopback literal or `localhost`
    /// stops that. A request without `Host` (HTTP/1.0) cannot be rebound and is answered.
    pub fn host_allowed(&self, headers: &HeaderMap) -> bool {
        if !self.options.loopback {
            return true;
        }
        let mut hosts = headers.get_all(http::header::HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            // None at all is fine; two are ambiguous.
            return headers.get(http::header::HOST).is_none();
        };
        host.to_str().is_ok_and(is_loopback_host)
    }

    /// Whether a browser's `Origin`, when the request carries one, is a page of this machine's
    /// loopback: a page of another site (or `null`, a sandboxed frame or a file) may not use
    /// the proxy, as it could with a key it was given (a simple cross-site POST needs no
    /// preflight). No `Origin` (every SDK and agent) is fine; two are ambiguous.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        if !self.options.loopback {
            return true;
        }
        let mut origins = headers.get_all(http::header::ORIGIN).iter();
        match (origins.next(), origins.next()) {
            (None, _) => true,
            (Some(origin), None) => origin.to_str().is_ok_and(|o| {
                o.strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"))
                    .is_some_and(is_loopback_host)
            }),
            _ => false,
        }
    }

    /// The mint key that signed `token` (loading one created by another till process if
    /// needed), refused once its grace period has ended. The caller verifies the chain with it.
    pub async fn mint_for(&self, token: &Token, now: u64) -> Result<Arc<MintEntry>, MintRefused> {
        let kid = token.kid();
        let loaded = || self.mints.read().ok().and_then(|m| m.get(&kid).cloned());
        let mut entry = loaded();
        if entry.is_none() {
            self.load_mint(kid).await;
            entry = loaded();
        }
        let entry = entry.ok_or_else(|| {
            let d = Denial::UnknownKid {
                kid: kid.to_string(),
            };
            MintRefused {
                error: ProxyError::new(d.status(), d.kind(), d.to_string()),
                retired: None,
            }
        })?;
        let retired_since_load = self.watched.lock().ok().and_then(|mut w| {
            let _ = refresh(&mut w);
            w.mint_until.get(&kid).copied()
        });
        if let Some(until) = retired_since_load.unwrap_or(entry.valid_until)
            && now >= until
        {
            return Err(MintRefused {
                error: ProxyError::new(
                    401,
                    "retired_mint",
                    format!(
                        "this key was signed by a retired mint key (the keys it signed stopped working at {}); start the `till run` again (it mints a new key), or get a new key from `till key create`",
                        crate::time::rfc3339(until)
                    ),
                ),
                retired: Some(entry),
            });
        }
        Ok(entry)
    }

    /// The key `text` as this proxy verified it before, if it did. The caller still asks
    /// [`State::mint_for`] whether its mint key stands, and uses the entry only when that is
    /// the mint key it was verified against.
    pub fn known_key(&self, text: &str) -> Option<Arc<KnownKey>> {
        let known = self.known.lock().ok()?;
        let hash = known.hasher.hash_one(text);
        known
            .by_hash
            .get(&hash)
            .filter(|k| same_bytes(k.text.as_bytes(), text.as_bytes()))
            .cloned()
    }

    /// Keeps a key that has just been verified for its next request, and hands it back.
    pub fn remember_key(
        &self,
        text: &str,
        mint: Arc<MintEntry>,
        checked: Checked,
    ) -> Arc<KnownKey> {
        let entry = Arc::new(KnownKey {
            text: text.into(),
            mint,
            checked,
        });
        if let Ok(mut known) = self.known.lock() {
            let hash = known.hasher.hash_one(text);
            if known.by_hash.len() >= KNOWN_KEYS && !known.by_hash.contains_key(&hash) {
                known.by_hash.clear();
            }
            known.by_hash.insert(hash, Arc::clone(&entry));
        }
        entry
    }

    async fn load_mint(&self, kid: Kid) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let loaded = {
            let Ok(w) = self.watched.lock() else { return };
            crate::mint::load(&w.ledger, store.as_ref(), &kid.to_string())
        };
        if let Ok(Some(entry)) = loaded
            && let Ok(mut m) = self.mints.write()
        {
            m.insert(kid, Arc::new(entry));
        }
    }

    /// Whether any level of the key has been revoked (reloads the list when the ledger
    /// changed): [`Standing::Revoked`]; or, should the ledger file this proxy opened have been
    /// deleted or replaced (looked at once a second of `now`), [`Standing::LedgerGone`] for
    /// every key, since revocations made since then are not in the file it reads.
    pub fn standing(&self, verified: &Verified, now: u64) -> Standing {
        let Ok(mut w) = self.watched.lock() else {
            return Standing::Revoked;
        };
        if w.file.as_mut().is_some_and(|f| f.gone(now)) {
            return Standing::LedgerGone;
        }
        let _ = refresh(&mut w);
        if verified
            .level_bindings()
            .iter()
            .any(|b| w.revoked.contains(b))
        {
            Standing::Revoked
        } else {
            Standing::Stands
        }
    }

    /// Applies the key's per-minute limits, in the ledger (shared with every till process)
    /// when this proxy has a ledger connection, else in memory. Keys without an rpm or tpm
    /// caveat cost nothing here.
    pub async fn admit(self: &Arc<Self>, grant: &Grant, tokens: u64) -> Result<(), ProxyError> {
        let mut rules = Vec::new();
        for l in &grant.limits {
            match l.limit {
                Limit::Rpm(n) => rules.push(RateRule {
                    binding: l.binding,
                    tokens: false,
                    limit: u64::from(n),
                }),
                Limit::Tpm(n) => rules.push(RateRule {
                    binding: l.binding,
                    tokens: true,
                    limit: n,
                }),
                _ => {}
            }
        }
        if rules.is_empty() {
            return Ok(());
        }
        let verdict = if self.counters.is_some() {
            let charges: Vec<RateCharge> = rules
                .iter()
                .map(|r| RateCharge {
                    binding: r.binding.to_string(),
                    kind: if r.tokens {
                        RateKind::Tokens
                    } else {
                        RateKind::Requests
                    },
                    limit: r.limit,
                })
                .collect();
            let this = Arc::clone(self);
            let outcome = tokio::task::spawn_blocking(move || {
                let counters = this.counters.as_ref()?;
                let mut ledger = counters.lock().unwrap_or_else(|e| e.into_inner());
                Some(ledger.admit_rates(&charges, tokens, crate::time::now_unix()))
            })
            .await
            .ok()
            .flatten();
            match outcome {
                Some(Ok(v)) => v,
                // A limit that could not be checked refuses: the key asked for a ceiling.
                Some(Err(e)) => {
                    return Err(ProxyError::new(
                        503,
                        "ledger",
                        format!("till could not update its rate windows: {e:#}"),
                    ));
                }
                None => {
                    return Err(ProxyError::new(
                        503,
                        "ledger",
                        "till could not check this key's rate windows",
                    ));
                }
            }
        } else {
            self.limits.admit(&rules, tokens)
        };
        verdict.map_err(|d| match d {
            RateDenial::Rpm { limit, retry_after } => ProxyError::new(
                429,
                "rpm",
                format!("this key allows {} per minute; wait {retry_after} s or widen it with `--rpm N` (on `till run`, or a new key from `till key create`)", crate::format::plural(limit, "request", "requests")),
            )
            .retry_after(retry_after),
            RateDenial::Tpm { limit, asked, retry_after } => ProxyError::new(
                429,
                "tpm",
                format!("this key allows {limit} tokens per minute and this request may use {asked}; wait {retry_after} s, lower max_tokens, or widen it with `--tpm N` (on `till run`, or a new key from `till key create`)"),
            )
            .retry_after(retry_after),
        })
    }

    /// The current root key for `provider`, re-read from the store when the ledger says it
    /// was rotated since it was loaded, and none at all once the ledger says it was removed.
    ///
    /// The ledger itself is not re-read here: [`State::standing`] did that moments earlier
    /// for the same request, and each read is a SQLite read transaction on the hot path.
    pub async fn root_key(&self, provider: &str) -> Result<Arc<SecretString>, ProxyError> {
        let mut unusable = false;
        let stale = match self.held_root(provider) {
            HeldRoot::Current(key) => return Ok(key),
            HeldRoot::Unusable => return Err(unusable_root_key(provider)),
            HeldRoot::Removed => {
                self.forget_root(provider);
                return Err(no_root_key(provider));
            }
            HeldRoot::Stale(Some(key)) => Some(key),
            HeldRoot::Stale(None) => {
                unusable = true;
                None
            }
            HeldRoot::Missing => None,
        };
        // Missing or rotated: read it from the store.
        if let Some(store) = self.store.clone() {
            let name = crate::secrets::root_secret_name(provider);
            match tokio::task::spawn_blocking(move || store.get(&name)).await {
                Ok(Ok(Some(key))) => return self.keep_root(provider, key),
                // The store has none: a rotated key that was then removed. The key held is
                // not the ledger's, so it is not sent.
                Ok(Ok(None)) => {
                    self.forget_root(provider);
                    return Err(no_root_key(provider));
                }
                // A store that cannot be read now (a locked keychain) leaves the key held in
                // use rather than stopping every request.
                Ok(Err(_)) | Err(_) => {}
            }
        }
        stale.ok_or_else(|| {
            if unusable {
                unusable_root_key(provider)
            } else {
                no_root_key(provider)
            }
        })
    }

    /// The root key this proxy holds for `provider`, judged by what the ledger last said.
    fn held_root(&self, provider: &str) -> HeldRoot {
        // Nothing takes these two locks in the other order.
        let watched = self.watched.lock().ok();
        let named = watched
            .as_ref()
            .and_then(|w| w.root_fingerprints.get(provider));
        let wanted = match named {
            Some(None) => return HeldRoot::Removed,
            Some(Some(fingerprint)) => Some(fingerprint),
            None => None,
        };
        let roots = self.roots.read().ok();
        match roots.as_ref().and_then(|r| r.get(provider)) {
            None => HeldRoot::Missing,
            // One the ledger names another in place of is read again first: `till add
            // --replace`, which the unusable key's answer advises, puts a usable one there.
            Some(k) if wanted.is_none_or(|w| *w == k.fingerprint) => {
                if k.usable {
                    HeldRoot::Current(k.key.clone())
                } else {
                    HeldRoot::Unusable
                }
            }
            Some(k) => HeldRoot::Stale(k.usable.then(|| k.key.clone())),
        }
    }

    /// Holds `key` as `provider`'s root key from now on; an error when it cannot go in a
    /// header (held all the same, so the store is not read again for every request).
    fn keep_root(
        &self,
        provider: &str,
        key: SecretString,
    ) -> Result<Arc<SecretString>, ProxyError> {
        let fingerprint = crate::ledger::fingerprint(key.expose_secret());
        let usable = crate::secrets::header_safe(key.expose_secret());
        let key = Arc::new(key);
        if let Ok(mut r) = self.roots.write() {
            r.insert(
                provider.to_string(),
                RootKey {
                    fingerprint,
                    key: key.clone(),
                    usable,
                },
            );
        }
        if usable {
            Ok(key)
        } else {
            Err(unusable_root_key(provider))
        }
    }

    /// Lets go of `provider`'s root key, so that a key stored later is read from the store.
    fn forget_root(&self, provider: &str) {
        if let Ok(mut r) = self.roots.write() {
            r.remove(provider);
        }
    }
}

/// What a proxy holds for a provider's root key, against the ledger.
enum HeldRoot {
    /// The key the ledger names (or one it has never named anything for).
    Current(Arc<SecretString>),
    /// A key the ledger names another in place of: rotated since it was read (`None` when it
    /// was one no header can carry).
    Stale(Option<Arc<SecretString>>),
    /// Nothing held.
    Missing,
    /// The ledger named a key and names none now: `till remove`.
    Removed,
    /// A key no header can carry.
    Unusable,
}

/// The answer when the stored root key cannot go in a header (edited by hand).
fn unusable_root_key(provider: &str) -> ProxyError {
    ProxyError::new(
        503,
        "root_key_unusable",
        format!(
            "the stored {provider} key has a character no HTTP header can carry (a line break, a space, a letter outside ASCII), so nothing was sent; store it again with `till add {provider} --replace`"
        ),
    )
}

/// The answer when no root key is there to forward with.
fn no_root_key(provider: &str) -> ProxyError {
    ProxyError::new(
        503,
        "no_root_key",
        format!("till has no {provider} key to forward with; run `till add {provider}`"),
    )
}

/// Whether a `Host` value names this machine's loopback: `localhost` (any case, optionally
/// with a trailing dot), an IPv4 address in 127.0.0.0/8, or `[::1]`, each with an optional
/// numeric port. Names are compared whole, so `127.evil.com` and `localhost.evil.com` are not
/// loopback.
fn is_loopback_host(host: &str) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let port_ok = |port: Option<&str>| {
        port.is_none_or(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
        })
    };
    // What nearly every client sends, read without the address parsers below.
    if let Some(port) = host.strip_prefix("127.0.0.1:") {
        return port_ok(Some(port));
    }
    if let Some(v6) = host.strip_prefix('[') {
        let Some((addr, rest)) = v6.split_once(']') else {
            return false;
        };
        let port = match rest {
            "" => None,
            _ => match rest.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        return port_ok(port) && addr.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback());
    }
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if !port_ok(port) {
        return false;
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    bare.eq_ignore_ascii_case("localhost")
        || name.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// Brings the watched sets up to date with the ledger. Runs on every request: the wal-index
/// header says when nothing was committed since the last look, which is most of the time.
fn refresh(w: &mut Watched) -> anyhow::Result<()> {
    if !w.signal.maybe_changed_besides(w.own.as_deref()) {
        return Ok(());
    }
    let reloaded = reload(w);
    if reloaded.is_err() {
        w.signal.forget();
    }
    reloaded
}

fn reload(w: &mut Watched) -> anyhow::Result<()> {
    // A cached statement skips SQLite's parser each time.
    let version: i64 = w
        .ledger
        .conn()
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?;
    if version == w.data_version {
        return Ok(());
    }
    // Something committed; most commits are request rows and counters, which change nothing
    // watched here. The generation says whether a watched table did.
    let generation = w.ledger.watch_generation()?;
    if generation == w.generation {
        w.data_version = version;
        return Ok(());
    }
    w.revoked = w
        .ledger
        .revoked_hex()?
        .iter()
        .filter_map(|h| h.parse().ok())
        .collect();
    follow_root_keys(&mut w.root_fingerprints, w.ledger.root_keys()?);
    w.mint_until = w
        .ledger
        .mint_keys()?
        .into_iter()
        .filter_map(|m| Some((m.kid.parse().ok()?, m.valid_until)))
        .collect();
    w.data_version = version;
    w.generation = generation;
    Ok(())
}

/// Takes the ledger's root keys as the fingerprints to compare with, keeping as `None` every
/// provider it named before and names no more: a key removed while this proxy runs, which it
/// must stop using, where a key the ledger never named is one it was handed directly.
fn follow_root_keys(
    fingerprints: &mut Map<String, Option<String>>,
    stored: Vec<crate::ledger::RootKeyMeta>,
) {
    for fingerprint in fingerprints.values_mut() {
        *fingerprint = None;
    }
    for meta in stored {
        fingerprints.insert(meta.provider, Some(meta.fingerprint));
    }
}

#[cfg(test)]
mod tests;
