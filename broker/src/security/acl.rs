//! Kafka's ACL model, as a pure rule: who may do what to which resource.
//!
//! An entry names a principal (`User:NAME`, or `User:*` for every user), a resource pattern
//! (a topic, a group or the cluster; a literal name, a name prefix, or `*`), an operation and
//! allow or deny. A call is allowed when some entry allows it and none denies it (deny wins);
//! with no matching entry it is denied (`allow.everyone.if.no.acl.found=false`). As in Kafka,
//! READ, WRITE, DELETE and ALTER imply DESCRIBE, and ALTER_CONFIGS implies DESCRIBE_CONFIGS;
//! ALL matches every operation. Super users never reach this rule.
//!
//! Storage (etcd, watched) and the per-call checks build on this module.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum PatternType {
    Literal,
    Prefixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    AlterConfigs,
    DescribeConfigs,
    ClusterAction,
}

impl Operation {
    pub const NAMES: &'static str =
        "all, read, write, create, delete, alter, describe, alter_configs, describe_configs, cluster_action";

    pub fn parse(s: &str) -> Result<Operation, String> {
        Ok(match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "all" => Operation::All,
            "read" => Operation::Read,
            "write" => Operation::Write,
            "create" => Operation::Create,
            "delete" => Operation::Delete,
            "alter" => Operation::Alter,
            "describe" => Operation::Describe,
            "alter_configs" => Operation::AlterConfigs,
            "describe_configs" => Operation::DescribeConfigs,
            "cluster_action" => Operation::ClusterAction,
            _ => {
                return Err(format!(
                    "operation {s:?} is not valid; use one of {}",
                    Operation::NAMES
                ))
            }
        })
    }

    /// Whether an entry for `self` covers a request for `wanted`.
    fn covers(self, wanted: Operation) -> bool {
        self == Operation::All
            || self == wanted
            || (wanted == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Allow,
    Deny,
}

/// One ACL entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct AclEntry {
    /// `User:NAME` or `User:*`.
    pub principal: String,
    pub resource: ResourceType,
    pub pattern: PatternType,
    /// The topic or group name (or prefix); `*` matches every name; `kafka-cluster` for the
    /// cluster.
    pub name: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclEntry {
    fn matches(
        &self,
        principal: &str,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && self.resource == resource
            && self.operation.covers(operation)
            && match self.pattern {
                PatternType::Literal => self.name == name || self.name == "*",
                PatternType::Prefixed => name.starts_with(&self.name),
            }
    }
}

/// Whether `principal` may do `operation` to the resource, by `entries`: deny wins, and no
/// matching entry denies.
pub fn allows(
    entries: &[AclEntry],
    principal: &str,
    operation: Operation,
    resource: ResourceType,
    name: &str,
) -> bool {
    let mut allowed = false;
    for e in entries {
        if e.matches(principal, operation, resource, name) {
            match e.permission {
                Permission::Deny => return false,
                Permission::Allow => allowed = true,
            }
        }
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        principal: &str,
        resource: ResourceType,
        pattern: PatternType,
        name: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclEntry {
        AclEntry {
            principal: principal.into(),
            resource,
            pattern,
            name: name.into(),
            operation,
            permission,
        }
    }

    #[test]
    fn deny_wins_no_entry_denies_and_read_implies_describe() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::*;
        let acls = vec![
            entry("User:bob", Topic, Literal, "orders", Write, Allow),
            entry("User:carol", Topic, Prefixed, "orders", Read, Allow),
            entry("User:carol", Topic, Literal, "orders-secret", Read, Deny),
            entry("User:*", Group, Literal, "*", Read, Allow),
            entry("User:dave", Topic, Literal, "*", All, Allow),
            entry("User:dave", Topic, Literal, "audit", Delete, Deny),
        ];
        assert!(allows(&acls, "User:bob", Write, Topic, "orders"));
        assert!(
            allows(&acls, "User:bob", Describe, Topic, "orders"),
            "write implies describe"
        );
        assert!(
            !allows(&acls, "User:bob", Read, Topic, "orders"),
            "a write-only user cannot read"
        );
        assert!(!allows(&acls, "User:bob", Delete, Topic, "orders"));
        assert!(
            !allows(&acls, "User:bob", Write, Topic, "payments"),
            "another topic: no entry, denied"
        );
        assert!(
            allows(&acls, "User:carol", Read, Topic, "orders-eu"),
            "prefixed"
        );
        assert!(
            !allows(&acls, "User:carol", Read, Topic, "orders-secret"),
            "deny wins"
        );
        assert!(
            !allows(&acls, "User:carol", Read, Topic, "order"),
            "a prefix longer than the name"
        );
        assert!(
            allows(&acls, "User:erin", Read, Group, "any-group"),
            "User:* and *"
        );
        assert!(
            allows(&acls, "User:dave", Delete, Topic, "orders"),
            "ALL covers delete"
        );
        assert!(!allows(&acls, "User:dave", Delete, Topic, "audit"));
        assert!(
            !allows(&acls, "User:dave", Create, Cluster, "kafka-cluster"),
            "a topic entry is not a cluster entry"
        );
        assert_eq!(Operation::parse("Alter-Configs"), Ok(AlterConfigs));
        assert!(Operation::parse("rea")
            .unwrap_err()
            .contains("use one of all, read"));
    }
}
