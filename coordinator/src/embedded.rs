//! The embedded single-node store behind `strata dev`.
//!
//! State is a map of keys to values and revisions, held in memory and persisted to one JSON
//! file in the data directory after every commit (write to a temporary file, fsync, rename,
//! fsync the directory), so a commit that returned survives `kill -9` and power loss, and a
//! crash mid-write leaves the previous state. Metadata writes are rare (topic create, config
//! change), so rewriting the whole file is cheap.
//!
//! Registrations and elections ([`live`]) live in memory only: there is one process, so they
//! end with it. Registered keys share the key space and the revision counter with persisted
//! keys; a commit that writes a registered key takes it over (the registration is lost), as a
//! put without lease does in etcd.

mod live;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

use crate::{Coordinator, CoordinatorError, Expect, Lease, Op, Result, Versioned, Watch, Write};

const STATE_FILE: &str = "metadata.json";
const FORMAT_VERSION: u32 = 1;

/// A [`Coordinator`] for one node, persisted under a directory.
#[derive(Debug, Clone)]
pub struct EmbeddedCoordinator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cluster: String,
    path: PathBuf,
    store: Mutex<Store>,
    /// Every change, for watches.
    changes: broadcast::Sender<crate::Event>,
    elections: Mutex<live::Elections>,
    next_id: AtomicU64,
}

/// Persisted keys and registered (in-memory) keys; a key is in at most one of them.
#[derive(Debug)]
struct Store {
    state: State,
    live: live::Registered,
}

impl Store {
    fn get(&self, key: &str) -> Option<Versioned> {
        match self.state.keys.get(key) {
            Some(e) => Some(Inner::versioned(e)),
            None => self.live.get(key),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    version: u32,
    revision: i64,
    keys: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    revision: i64,
    /// The value as text when it is UTF-8 (all of Strata's values are JSON), hex otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
}

impl Entry {
    fn new(value: &Bytes, revision: i64) -> Entry {
        match std::str::from_utf8(value) {
            Ok(s) => Entry {
                revision,
                text: Some(s.to_string()),
                hex: None,
            },
            Err(_) => Entry {
                revision,
                text: None,
                hex: Some(value.iter().map(|b| format!("{b:02x}")).collect()),
            },
        }
    }

    fn value(&self) -> Option<Bytes> {
        if let Some(t) = &self.text {
            return Some(Bytes::from(t.clone()));
        }
        let hex = self.hex.as_ref()?;
        if hex.len() % 2 != 0 {
            return None;
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()
            .map(Bytes::from)
    }
}

impl EmbeddedCoordinator {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>, cluster: impl Into<String>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            CoordinatorError::io(format!("creating metadata directory {}", dir.display()), e)
        })?;
        let path = dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                let state: State =
                    serde_json::from_slice(&bytes).map_err(|e| CoordinatorError::Corrupt {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                if state.version != FORMAT_VERSION {
                    return Err(CoordinatorError::Corrupt {
                        path: path.display().to_string(),
                        reason: format!(
                            "format version {} is not one this build reads ({FORMAT_VERSION})",
                            state.version
                        ),
                    });
                }
                if let Some((key, _)) = state.keys.iter().find(|(_, e)| e.value().is_none()) {
                    return Err(CoordinatorError::Corrupt {
                        path: path.display().to_string(),
                        reason: format!("key {key:?} has no readable value"),
                    });
                }
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                version: FORMAT_VERSION,
                ..State::default()
            },
            Err(e) => {
                return Err(CoordinatorError::io(
                    format!("reading {}", path.display()),
                    e,
                ))
            }
        };
        Ok(EmbeddedCoordinator {
            inner: Arc::new(Inner {
                cluster: cluster.into(),
                path,
                store: Mutex::new(Store {
                    state,
                    live: live::Registered::default(),
                }),
                changes: broadcast::channel(1024).0,
                elections: Mutex::default(),
                next_id: AtomicU64::new(1),
            }),
        })
    }
}

impl Inner {
    fn commit(&self, writes: &[Write]) -> Result<i64> {
        let mut store = self.store.lock();
        for w in writes {
            let current = store.get(&w.key).map(|v| v.revision);
            let ok = match (w.expect, current) {
                (Expect::Any, _) => true,
                (Expect::Absent, None) => true,
                (Expect::Revision(r), Some(c)) => r == c,
                _ => false,
            };
            if !ok {
                return Err(CoordinatorError::Conflict {
                    key: w.key.clone(),
                    reason: match (w.expect, current) {
                        (Expect::Absent, Some(_)) => "it exists already".to_string(),
                        (Expect::Revision(_), None) => "it no longer exists".to_string(),
                        (Expect::Revision(r), Some(c)) => {
                            format!("expected revision {r}, found {c}")
                        }
                        _ => "condition failed".to_string(),
                    },
                });
            }
        }
        let mut next = store.state.clone();
        next.revision += 1;
        let revision = next.revision;
        for w in writes {
            match &w.op {
                Op::Put(v) => {
                    next.keys.insert(w.key.clone(), Entry::new(v, revision));
                }
                Op::Delete => {
                    next.keys.remove(&w.key);
                }
                Op::Check => {}
            }
        }
        self.persist(&next)?;
        store.state = next;
        for w in writes.iter().filter(|w| w.op != Op::Check) {
            store.live.take_over(&w.key);
            let value = match &w.op {
                Op::Put(v) => Some(v.clone()),
                _ => None,
            };
            let _ = self.changes.send(crate::Event {
                key: w.key.clone(),
                revision,
                value,
            });
        }
        Ok(revision)
    }

    fn persist(&self, state: &State) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| CoordinatorError::Corrupt {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        let ctx = |what: &str| format!("{what} {}", tmp.display());
        let mut f =
            std::fs::File::create(&tmp).map_err(|e| CoordinatorError::io(ctx("creating"), e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| CoordinatorError::io(ctx("writing"), e))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| CoordinatorError::io(format!("replacing {}", self.path.display()), e))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| CoordinatorError::io(format!("syncing {}", dir.display()), e))?;
        }
        Ok(())
    }

    fn versioned(entry: &Entry) -> Versioned {
        Versioned {
            value: entry.value().unwrap_or_default(),
            revision: entry.revision,
        }
    }
}

#[async_trait]
impl Coordinator for EmbeddedCoordinator {
    fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        Ok(self.inner.store.lock().get(key))
    }

    async fn revision(&self) -> Result<i64> {
        Ok(self.inner.store.lock().state.revision)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>> {
        let store = self.inner.store.lock();
        let mut keys: Vec<(String, Versioned)> = store
            .state
            .keys
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.clone(), Inner::versioned(e)))
            .chain(store.live.list(prefix))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(keys)
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<i64> {
        let inner = self.inner.clone();
        // The commit fsyncs: keep it off the async workers.
        tokio::task::spawn_blocking(move || inner.commit(&writes))
            .await
            .map_err(|e| {
                CoordinatorError::Unavailable(format!("metadata commit task failed: {e}"))
            })?
    }

    async fn watch(&self, prefix: &str, except: &[&str]) -> Result<Watch> {
        Ok(live::watch(&self.inner.changes, prefix, except))
    }

    /// The key lives until the lease is released or dropped; `ttl` does not apply (one process).
    async fn register(&self, key: &str, value: Bytes, _ttl: Duration) -> Result<Lease> {
        live::register(&self.inner, key, value)
    }

    async fn campaign(&self, election: &str, value: Bytes, _ttl: Duration) -> Result<Lease> {
        live::campaign(&self.inner, election, value).await
    }

    async fn leader(&self, election: &str) -> Result<Option<Bytes>> {
        Ok(live::leader(&self.inner, election))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedCoordinator::open(dir.path(), "test").unwrap();
        crate::conformance::run_all(&store).await;
        let before = store.list("").await.unwrap();
        assert!(!before.is_empty(), "the scenarios leave keys behind");
        drop(store);
        let reopened = EmbeddedCoordinator::open(dir.path(), "test").unwrap();
        assert_eq!(reopened.list("").await.unwrap(), before);
    }

    #[test]
    fn a_damaged_state_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let err = EmbeddedCoordinator::open(dir.path(), "test").unwrap_err();
        assert!(err.to_string().contains("corrupt metadata"), "{err}");
    }

    #[tokio::test]
    async fn binary_values_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedCoordinator::open(dir.path(), "test").unwrap();
        let value = Bytes::from_static(&[0xff, 0x00, 0x80]);
        store
            .put("bin", value.clone(), Expect::Absent)
            .await
            .unwrap();
        drop(store);
        let reopened = EmbeddedCoordinator::open(dir.path(), "test").unwrap();
        assert_eq!(reopened.get("bin").await.unwrap().unwrap().value, value);
    }
}
