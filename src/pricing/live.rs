//! The price table a running proxy charges at, read again when its sources change.
//!
//! A proxy that runs for days (`till serve`) would otherwise charge at the prices it started
//! with: a price added to config.toml for a model it charges at its provider's highest price,
//! or a table fetched by `till prices update`, would count only after a restart. Once a second
//! at most, and only when a request asks for a price, the two files' sizes and modification
//! times are compared with those of the last read; when one changed, the table is read again.
//! A config.toml that no longer reads leaves the table as it was (the caller is told once).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use crate::config::{Config, Paths};

use super::Prices;

/// The table in force and, when it came from files, where to look for changes.
pub struct LivePrices {
    current: RwLock<Arc<Prices>>,
    source: Option<Source>,
}

struct Source {
    paths: Paths,
    /// The second (Unix time) the files were last looked at.
    looked: AtomicU64,
    /// What the files were when the table in force was read (or last failed to be).
    seen: Mutex<[Stamp; 2]>,
}

/// The most a running proxy reads of config.toml or the price table (the fetched table is
/// ≈ 0.2 MiB).
const MAX_BYTES: u64 = 16 << 20;

/// A file as `stat` describes it; `None` when there is none.
type Stamp = Option<Stat>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    modified: Option<SystemTime>,
    len: u64,
    regular: bool,
}

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().map(|m| Stat {
        modified: m.modified().ok(),
        len: m.len(),
        regular: m.is_file(),
    })
}

/// A change to the table, for the proxy to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reread {
    /// The table was read again.
    Read,
    /// A source changed and could not be read: the table in force stays.
    Failed(String),
}

impl LivePrices {
    /// A table that never changes (tests, and proxies without files).
    pub fn fixed(prices: Prices) -> Self {
        Self {
            current: RwLock::new(Arc::new(prices)),
            source: None,
        }
    }

    /// `prices`, as read from config.toml and the user's copy under `paths` just now; read
    /// again when either changes.
    pub fn watching(prices: Prices, paths: Paths) -> Self {
        let seen = [stamp(&paths.config_file), stamp(&super::user_copy(&paths))];
        Self {
            current: RwLock::new(Arc::new(prices)),
            source: Some(Source {
                paths,
                looked: AtomicU64::new(crate::time::now_unix()),
                seen: Mutex::new(seen),
            }),
        }
    }

    /// The table in force at `now`, and what changed about it when this call read it again.
    pub fn get(&self, now: u64) -> (Arc<Prices>, Option<Reread>) {
        let reread = self.source.as_ref().and_then(|s| self.look(s, now));
        let current = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (current, reread)
    }

    fn look(&self, source: &Source, now: u64) -> Option<Reread> {
        let looked = source.looked.load(Ordering::Relaxed);
        if now <= looked
            || source
                .looked
                .compare_exchange(looked, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        // Another thread reading them now is not waited for.
        let mut seen = source.seen.try_lock().ok()?;
        let paths = &source.paths;
        let files = [paths.config_file.clone(), super::user_copy(paths)];
        let stamps = [stamp(&files[0]), stamp(&files[1])];
        if stamps == *seen {
            return None;
        }
        *seen = stamps;
        // Only regular files of a sane size are read: a FIFO would block the proxy's thread
        // on its open, and `/dev/zero` behind a link would be read for ever.
        for (file, stat) in files.iter().zip(stamps).filter_map(|(f, s)| Some((f, s?))) {
            if !stat.regular {
                return Some(Reread::Failed(format!(
                    "{} is not a regular file",
                    file.display()
                )));
            }
            if stat.len > MAX_BYTES {
                return Some(Reread::Failed(format!(
                    "{} is larger than {} MiB",
                    file.display(),
                    MAX_BYTES >> 20
                )));
            }
        }
        let read = Config::load(&paths.config_file).and_then(|c| Prices::load(paths, &c));
        match read {
            Ok(prices) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(prices);
                Some(Reread::Read)
            }
            Err(e) => Some(Reread::Failed(format!("{e:#}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths {
            config_file: dir.join("config.toml"),
            data_dir: dir.join("data"),
        }
    }

    fn output_price(p: &Prices, model: &str) -> Option<f64> {
        p.lookup("openai", model)
            .filter(|p| p.source != super::super::PriceSource::ProviderMax)
            .map(|p| p.price.output)
    }

    #[test]
    fn a_price_added_to_config_counts_from_the_next_second() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        std::fs::write(&paths.config_file, "").unwrap();
        let live = LivePrices::watching(Prices::from_config(&Config::default()), paths.clone());
        let t = crate::time::now_unix();
        let (p, _) = live.get(t);
        assert_eq!(output_price(&p, "my-model"), None);

        std::fs::write(
            &paths.config_file,
            "[prices.\"openai/my-model\"]\ninput = 1.0\noutput = 7.0\n",
        )
        .unwrap();
        // Looked at once a second: the same second as the last look reads nothing.
        let (p, reread) = live.get(t);
        assert_eq!((output_price(&p, "my-model"), reread), (None, None));
        let (p, reread) = live.get(t + 1);
        assert_eq!(reread, Some(Reread::Read));
        assert_eq!(output_price(&p, "my-model"), Some(7.0));
        // Unchanged files are not read again.
        assert_eq!(live.get(t + 2).1, None);
    }

    #[test]
    fn a_config_that_no_longer_reads_keeps_the_table_and_says_so_once() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        std::fs::write(
            &paths.config_file,
            "[prices.\"openai/my-model\"]\ninput = 1.0\noutput = 7.0\n",
        )
        .unwrap();
        let config = Config::load(&paths.config_file).unwrap();
        let live = LivePrices::watching(Prices::load(&paths, &config).unwrap(), paths.clone());
        std::fs::write(&paths.config_file, "[prices.\"openai/my-model\"\n").unwrap();
        let (p, reread) = live.get(u64::MAX / 2);
        assert!(
            matches!(&reread, Some(Reread::Failed(why)) if why.contains("config.toml")),
            "{reread:?}"
        );
        assert_eq!(output_price(&p, "my-model"), Some(7.0));
        assert_eq!(live.get(u64::MAX / 2 + 1).1, None, "said once");
    }

    /// A FIFO in config.toml's place is not opened (the proxy's thread waited on its open for
    /// a writer, and every other thread on the lock it held).
    #[cfg(unix)]
    #[test]
    fn a_config_that_is_no_regular_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        std::fs::write(&paths.config_file, "").unwrap();
        let live = LivePrices::watching(Prices::from_config(&Config::default()), paths.clone());
        std::fs::remove_file(&paths.config_file).unwrap();
        let fifo = std::ffi::CString::new(paths.config_file.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let (_, reread) = live.get(u64::MAX / 2);
        assert!(
            matches!(&reread, Some(Reread::Failed(why)) if why.contains("is not a regular file")),
            "{reread:?}"
        );
    }

    #[test]
    fn a_fixed_table_never_looks() {
        let live = LivePrices::fixed(Prices::builtin());
        assert_eq!(live.get(u64::MAX).1, None);
    }
}
