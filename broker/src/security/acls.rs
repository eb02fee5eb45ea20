//! ACL entries in the metadata and their cache on every broker.
//!
//! One key per entry, `security/acls/{resource}/{pattern}/{permission}/{operation}/{principal}/{name}`
//! (principal and name percent-encoded), holding the entry as JSON: adding an entry is a put
//! that is a no-op when the key exists, removing one a delete, so concurrent changes from
//! several admins never lose each other's entries. The cache is refreshed through the watch on
//! `security/` that also keeps the users (`users::follow`), and read on every call.
//!
//! Invariant: the cache holds only entries that passed [`AclEntry::validate`]; an unreadable
//! record is logged and ignored, never taken as an allow. Reloads go through [`Latest`].

use std::collections::HashMap;
use std::sync::Arc;

use strata_coordinator::{Coordinator, CoordinatorError, Expect};
use strata_proto::v1::AclBinding;

use super::acl::{AclEntry, Operation, PatternType, Permission, ResourceType};
use super::latest::Latest;
use crate::error::{BrokerError, Result};

pub const ACLS_PREFIX: &str = "security/acls/";
/// Most entries one call may add or remove.
pub const MAX_ENTRIES_PER_CALL: usize = 1000;

/// Bytes other than letters, digits, `.`, `_` and `-` become `%XX`, so no name can add a
/// path segment to the key.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn acl_key(e: &AclEntry) -> String {
    format!(
        "{ACLS_PREFIX}{}/{}/{}/{}/{}/{}",
        e.resource.as_str(),
        e.pattern.as_str(),
        e.permission.as_str(),
        e.operation.as_str(),
        encode(&e.principal),
        encode(&e.name)
    )
}

/// The entry a request names, validated.
pub fn from_binding(b: &AclBinding) -> std::result::Result<AclEntry, String> {
    let resource = ResourceType::parse(&b.resource_type)?;
    let entry = AclEntry {
        principal: b.principal.clone(),
        resource,
        pattern: PatternType::parse(&b.pattern_type)?,
        name: match (resource, b.resource_name.as_str()) {
            (ResourceType::Cluster, "") => super::acl::CLUSTER_NAME.to_string(),
            (_, name) => name.to_string(),
        },
        operation: Operation::parse(&b.operation)?,
        permission: Permission::parse(&b.permission)?,
    };
    entry.validate()?;
    Ok(entry)
}

pub fn to_binding(e: &AclEntry) -> AclBinding {
    AclBinding {
        principal: e.principal.clone(),
        resource_type: e.resource.as_str().into(),
        pattern_type: e.pattern.as_str().into(),
        resource_name: e.name.clone(),
        operation: e.operation.as_str().into(),
        permission: e.permission.as_str().into(),
    }
}

/// The entries of one call, validated; the error names the entry at fault.
pub fn from_bindings(bindings: &[AclBinding]) -> Result<Vec<AclEntry>> {
    if bindings.is_empty() {
        return Err(BrokerError::InvalidRequest(
            "the request names no ACL entry".into(),
        ));
    }
    if bindings.len() > MAX_ENTRIES_PER_CALL {
        return Err(BrokerError::InvalidRequest(format!(
            "{} ACL entries in one call; at most {MAX_ENTRIES_PER_CALL}",
            bindings.len()
        )));
    }
    bindings
        .iter()
        .enumerate()
        .map(|(i, b)| {
            from_binding(b)
                .map_err(|e| BrokerError::InvalidRequest(format!("ACL entry {}: {e}", i + 1)))
        })
        .collect()
}

/// The entries by principal (`User:*` under its own key).
pub type ByPrincipal = Arc<HashMap<String, Vec<AclEntry>>>;

/// Every broker's copy of the entries, indexed by principal.
#[derive(Debug, Default)]
pub struct Acls {
    current: Latest<HashMap<String, Vec<AclEntry>>>,
}

impl Acls {
    pub fn snapshot(&self) -> ByPrincipal {
        self.current.get()
    }

    /// Every entry, sorted.
    pub fn all(&self) -> Vec<AclEntry> {
        let mut all: Vec<AclEntry> = self.snapshot().values().flatten().cloned().collect();
        all.sort();
        all
    }

    /// Reads every entry from the store into the cache.
    pub async fn reload(&self, store: &dyn Coordinator) -> Result<()> {
        let ticket = self.current.ticket();
        let mut map: HashMap<String, Vec<AclEntry>> = HashMap::new();
        for (key, v) in store.list(ACLS_PREFIX).await? {
            match serde_json::from_slice::<AclEntry>(&v.value)
                .map_err(|e| e.to_string())
                .and_then(|e| e.validate().map(|()| e))
            {
                Ok(entry) => map.entry(entry.principal.clone()).or_default().push(entry),
                Err(e) => tracing::warn!(key, error = %e, "ignoring an unreadable ACL record"),
            }
        }
        self.current.install(ticket, map);
        Ok(())
    }
}

/// The entries among `map` that can apply to `principal`.
pub fn applicable<'a>(
    map: &'a HashMap<String, Vec<AclEntry>>,
    principal: &str,
) -> impl Iterator<Item = &'a AclEntry> {
    map.get(principal)
        .into_iter()
        .flatten()
        .chain(map.get("User:*").into_iter().flatten())
}

/// Stores `entries`; returns how many did not exist before.
pub async fn add(store: &dyn Coordinator, entries: &[AclEntry]) -> Result<u32> {
    let mut created = 0;
    for e in entries {
        let value = serde_json::to_vec(e).map_err(|e| BrokerError::Internal(e.to_string()))?;
        match store.put(&acl_key(e), value.into(), Expect::Absent).await {
            Ok(_) => created += 1,
            Err(CoordinatorError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(created)
}

/// Removes `entries`; returns how many existed.
pub async fn remove(store: &dyn Coordinator, entries: &[AclEntry]) -> Result<u32> {
    let mut deleted = 0;
    for e in entries {
        let key = acl_key(e);
        let Some(v) = store.get(&key).await? else {
            continue;
        };
        match store.delete(&key, Expect::Revision(v.revision)).await {
            Ok(()) => deleted += 1,
            // Removed by someone else meanwhile: gone either way.
            Err(CoordinatorError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_be_forged_by_names_and_bindings_round_trip() {
        let e = AclEntry {
            principal: "User:bob".into(),
            resource: ResourceType::Group,
            pattern: PatternType::Prefixed,
            name: "a/../b c".into(),
            operation: Operation::Read,
            permission: Permission::Deny,
        };
        assert_eq!(
            acl_key(&e),
            "security/acls/group/prefixed/deny/read/User%3Abob/a%2F..%2Fb%20c"
        );
        assert_eq!(from_binding(&to_binding(&e)).unwrap(), e);
        let err = from_bindings(&[AclBinding {
            principal: "User:bob".into(),
            resource_type: "queue".into(),
            ..Default::default()
        }])
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("ACL entry 1: resource type \"queue\""));
    }
}
