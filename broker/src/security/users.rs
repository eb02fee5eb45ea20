//! Password users in the metadata (`security/users/NAME`, JSON `{hash, super_user}`), cached
//! on every broker and refreshed through a watch on `security/`.
//!
//! Invariant: the cache is only a shortcut. A name the cache does not know is read from the
//! store before a password is refused, so a user created on another broker works at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_coordinator::{Coordinator, CoordinatorError, Expect};
use tokio::sync::watch;

use super::latest::Latest;
use super::passwords::{self, Stored};
use super::principal::validate_user_name;
use crate::error::{BrokerError, Result};

pub const USERS_PREFIX: &str = "security/users/";
const RESYNC: Duration = Duration::from_secs(30);
const WATCH_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// PHC string of the argon2id hash.
    pub hash: String,
    /// The bootstrap admin is a super user by its record.
    #[serde(default)]
    pub super_user: bool,
}

pub fn user_key(name: &str) -> String {
    format!("{USERS_PREFIX}{name}")
}

type Known = Arc<BTreeMap<String, (UserRecord, i64)>>;

/// The cache: name -> (record, revision), reloaded through [`Latest`].
#[derive(Debug, Default)]
pub struct Users {
    known: Latest<BTreeMap<String, (UserRecord, i64)>>,
}

impl Users {
    pub fn get(&self, name: &str) -> Option<(UserRecord, i64)> {
        self.known.with(|k| k.get(name).cloned())
    }

    /// On every authorized call: looks, without copying the record.
    pub fn is_super_user(&self, name: &str) -> bool {
        self.known
            .with(|k| k.get(name).is_some_and(|(r, _)| r.super_user))
    }

    pub fn all(&self) -> Known {
        self.known.get()
    }

    /// Reads every user record from the store into the cache.
    pub async fn reload(&self, store: &dyn Coordinator) -> Result<()> {
        let ticket = self.known.ticket();
        let mut fresh = BTreeMap::new();
        for (key, v) in store.list(USERS_PREFIX).await? {
            let name = key.strip_prefix(USERS_PREFIX).unwrap_or(&key).to_string();
            match serde_json::from_slice::<UserRecord>(&v.value) {
                Ok(record) => {
                    fresh.insert(name, (record, v.revision));
                }
                Err(e) => tracing::warn!(key, error = %e, "ignoring an unreadable user record"),
            }
        }
        self.known.install(ticket, fresh);
        Ok(())
    }

    /// The record a password is checked against: the cache's, or the store's when the cache
    /// does not know the name.
    pub async fn stored(&self, store: &dyn Coordinator, name: &str) -> Result<Option<Stored>> {
        if let Some((record, revision)) = self.get(name) {
            return Ok(Some(Stored {
                hash: record.hash,
                revision,
            }));
        }
        if validate_user_name(name).is_err() {
            return Ok(None);
        }
        Ok(match store.get(&user_key(name)).await? {
            Some(v) => serde_json::from_slice::<UserRecord>(&v.value)
                .ok()
                .map(|r| Stored {
                    hash: r.hash,
                    revision: v.revision,
                }),
            None => None,
        })
    }
}

/// Creates user `name`; refused when it exists.
pub async fn create(
    store: &dyn Coordinator,
    name: &str,
    password: &str,
    super_user: bool,
) -> Result<()> {
    validate_user_name(name).map_err(BrokerError::InvalidRequest)?;
    passwords::validate_password(password).map_err(BrokerError::InvalidRequest)?;
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .map_err(|e| BrokerError::Internal(format!("hashing failed: {e}")))?
        .map_err(BrokerError::Internal)?;
    let record = serde_json::to_vec(&UserRecord { hash, super_user })
        .map_err(|e| BrokerError::Internal(e.to_string()))?;
    match store
        .put(&user_key(name), record.into(), Expect::Absent)
        .await
    {
        Ok(_) => Ok(()),
        Err(CoordinatorError::Conflict { .. }) => Err(BrokerError::DuplicateResource(format!(
            "user {name:?} already exists; delete it first to set a new password"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Deletes user `name`.
pub async fn delete(store: &dyn Coordinator, name: &str) -> Result<()> {
    let key = user_key(name);
    let Some(v) = store.get(&key).await? else {
        return Err(BrokerError::ResourceNotFound(format!(
            "user {name:?} does not exist"
        )));
    };
    match store.delete(&key, Expect::Revision(v.revision)).await {
        Ok(()) => Ok(()),
        Err(CoordinatorError::Conflict { .. }) => Err(BrokerError::ResourceNotFound(format!(
            "user {name:?} changed while being deleted; try again"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Creates the first admin (`admin`, a super user) when no user exists. Returns whether it did.
pub async fn bootstrap_admin(store: &dyn Coordinator, password: &str) -> Result<bool> {
    if !store.list(USERS_PREFIX).await?.is_empty() {
        return Ok(false);
    }
    match create(store, "admin", password, true).await {
        Ok(()) => Ok(true),
        // Another broker bootstrapped it first.
        Err(BrokerError::DuplicateResource(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Keeps the users and the ACLs in step with the store until `stop` flips: on every change
/// under `security/`, and every 30 s without one.
pub async fn follow(
    store: Arc<dyn Coordinator>,
    users: Arc<super::Security>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let mut changes = store.watch("security/", &[]).await.ok();
        if let Err(e) = users.reload(store.as_ref()).await {
            tracing::warn!(error = %e, "cannot read the users and ACLs; using the last known ones");
        }
        let Some(w) = changes.as_mut() else {
            tokio::select! {
                _ = tokio::time::sleep(WATCH_BACKOFF) => continue,
                _ = stop.changed() => return,
            }
        };
        loop {
            tokio::select! {
                changed = w.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(RESYNC) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = users.reload(store.as_ref()).await {
                tracing::warn!(error = %e, "cannot read the users and ACLs; using the last known ones");
                break;
            }
        }
    }
}
