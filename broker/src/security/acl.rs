//! Kafka's ACL model, as a pure rule: who may do what to which resource.
//!
//! An entry names a principal (`User:NAME`, or `User:*` for every user), a resource pattern
//! (a topic, a group or the cluster; a literal name, a name prefix, or `*`), an operation and
//! allow or deny. A call is allowed when some entry allows it and none denies it (deny wins);
//! with no matching entry it is denied (`allow.everyone.if.no.acl.found=false`). As in Kafka,
//! READ, WRITE, DELETE and ALTER imply DESCRIBE, and ALTER_CONFIGS implies DESCRIBE_CONFIGS;
//! ALL matches every operation. Super users never reach this rule.
//!
//! Storage and the cache are in `acls`; the per-call checks in `Security::authorize`.

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

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::All => "all",
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Alter => "alter",
            Operation::Describe => "describe",
            Operation::AlterConfigs => "alter_configs",
            Operation::DescribeConfigs => "describe_configs",
            Operation::ClusterAction => "cluster_action",
        }
    }

    /// The operations an entry on `resource` may name (Kafka's table of valid operations).
    pub fn valid_for(self, resource: ResourceType) -> bool {
        use Operation::*;
        match resource {
            ResourceType::Topic => !matches!(self, ClusterAction),
            ResourceType::Group => matches!(self, All | Read | Describe | Delete),
            ResourceType::Cluster => matches!(
                self,
                All | Create | Alter | Describe | ClusterAction | AlterConfigs | DescribeConfigs
            ),
        }
    }

    /// Whether an entry for `self` covers a request for `wanted`.
    pub(crate) fn covers(self, wanted: Operation) -> bool {
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

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::Cluster => "cluster",
        }
    }

    pub fn parse(s: &str) -> Result<ResourceType, String> {
        match s {
            "topic" => Ok(ResourceType::Topic),
            "group" => Ok(ResourceType::Group),
            "cluster" => Ok(ResourceType::Cluster),
            _ => Err(format!(
                "resource type {s:?} is not valid; use topic, group or cluster"
            )),
        }
    }
}

impl PatternType {
    pub fn as_str(self) -> &'static str {
        match self {
            PatternType::Literal => "literal",
            PatternType::Prefixed => "prefixed",
        }
    }

    pub fn parse(s: &str) -> Result<PatternType, String> {
        match s {
            "literal" | "" => Ok(PatternType::Literal),
            "prefixed" => Ok(PatternType::Prefixed),
            _ => Err(format!(
                "pattern type {s:?} is not valid; use literal or prefixed"
            )),
        }
    }
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Allow => "allow",
            Permission::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Result<Permission, String> {
        match s {
            "allow" | "" => Ok(Permission::Allow),
            "deny" => Ok(Permission::Deny),
            _ => Err(format!("permission {s:?} is not valid; use allow or deny")),
        }
    }
}

/// The name every cluster entry carries, as in Kafka.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// Longest resource name or prefix in an entry.
pub const MAX_RESOURCE_NAME_LEN: usize = 255;

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
    /// Refuses an entry that could never mean what its writer wants, with the reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.principal != "User:*" {
            super::principal::Principal::parse_user(&self.principal)?;
        }
        if !self.operation.valid_for(self.resource) {
            return Err(format!(
                "operation {} does not apply to a {} (see docs/security.md for the operations of each resource)",
                self.operation.as_str(),
                self.resource.as_str()
            ));
        }
        match self.resource {
            ResourceType::Cluster => {
                if self.name != CLUSTER_NAME || self.pattern != PatternType::Literal {
                    return Err(format!(
                        "a cluster entry names the literal resource {CLUSTER_NAME:?}, not {:?}",
                        self.name
                    ));
                }
            }
            ResourceType::Topic | ResourceType::Group => {
                if self.name.is_empty() || self.name.len() > MAX_RESOURCE_NAME_LEN {
                    return Err(format!(
                        "a {} name or prefix must have 1 to {MAX_RESOURCE_NAME_LEN} characters",
                        self.resource.as_str()
                    ));
                }
                if self.name.chars().any(char::is_control) {
                    return Err(format!(
                        "{} name {:?} holds a control character",
                        self.resource.as_str(),
                        self.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// `allow User:bob write topic orders`, as logs and the CLI show an entry.
    pub fn describe(&self) -> String {
        let pattern = match self.pattern {
            PatternType::Literal => String::new(),
            PatternType::Prefixed => " prefix".into(),
        };
        let name = match self.resource {
            ResourceType::Cluster => String::new(),
            _ => format!(" {}", self.name),
        };
        format!(
            "{} {} {} {}{pattern}{name}",
            self.permission.as_str(),
            self.principal,
            self.operation.as_str(),
            self.resource.as_str()
        )
    }

    /// Allows carry their implications (READ allows DESCRIBE); denies do not, as in Kafka:
    /// denying READ leaves DESCRIBE to the allows.
    fn applies_to(&self, operation: Operation) -> bool {
        match self.permission {
            Permission::Allow => self.operation.covers(operation),
            Permission::Deny => self.operation == Operation::All || self.operation == operation,
        }
    }

    fn matches(
        &self,
        principal: &str,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && self.resource == resource
            && self.applies_to(operation)
            && match self.pattern {
                PatternType::Literal => self.name == name || self.name == "*",
                PatternType::Prefixed => name.starts_with(&self.name),
            }
    }
}

/// Whether `principal` may do `operation` to the resource, by `entries`: deny wins, and no
/// matching entry denies.
pub fn allows<'a>(
    entries: impl IntoIterator<Item = &'a AclEntry>,
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

/// Whether `principal` may do `operation` to at least one resource of type `resource`, by
/// Kafka's `authorizeByResourceType` (InitProducerId: WRITE on any topic): some allowed name
/// or prefix survives the denies. A deny of `*` or of the empty prefix blocks everything; an
/// allowed literal falls to a deny of the same literal or of a prefix it starts with; an
/// allowed prefix falls to a deny of a prefix it starts with.
pub fn allows_some<'a>(
    entries: impl IntoIterator<Item = &'a AclEntry>,
    principal: &str,
    operation: Operation,
    resource: ResourceType,
) -> bool {
    let (mut allow_literals, mut allow_prefixes) = (Vec::new(), Vec::new());
    let (mut deny_literals, mut deny_prefixes) = (Vec::new(), Vec::new());
    for e in entries {
        if !((e.principal == principal || e.principal == "User:*")
            && e.resource == resource
            && e.applies_to(operation))
        {
            continue;
        }
        match (e.permission, e.pattern) {
            (Permission::Deny, PatternType::Literal) if e.name == "*" => return false,
            (Permission::Deny, PatternType::Prefixed) if e.name.is_empty() => return false,
            (Permission::Deny, PatternType::Literal) => deny_literals.push(e.name.as_str()),
            (Permission::Deny, PatternType::Prefixed) => deny_prefixes.push(e.name.as_str()),
            (Permission::Allow, PatternType::Literal) => allow_literals.push(e.name.as_str()),
            (Permission::Allow, PatternType::Prefixed) => allow_prefixes.push(e.name.as_str()),
        }
    }
    let dominated = |name: &str| deny_prefixes.iter().any(|p| name.starts_with(p));
    allow_literals.contains(&"*")
        || allow_prefixes.iter().any(|p| !dominated(p))
        || allow_literals
            .iter()
            .any(|l| !deny_literals.contains(l) && !dominated(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_that_cannot_mean_anything_are_refused() {
        let mut e = AclEntry {
            principal: "User:bob".into(),
            resource: ResourceType::Group,
            pattern: PatternType::Literal,
            name: "g".into(),
            operation: Operation::Write,
            permission: Permission::Allow,
        };
        assert!(e
            .validate()
            .unwrap_err()
            .contains("does not apply to a group"));
        e.operation = Operation::Read;
        assert!(e.validate().is_ok());
        e.principal = "bob".into();
        assert!(e.validate().unwrap_err().contains("User:NAME"));
        e.principal = "User:*".into();
        e.resource = ResourceType::Cluster;
        e.operation = Operation::Alter;
        assert!(e.validate().unwrap_err().contains("kafka-cluster"));
        e.name = CLUSTER_NAME.into();
        assert!(e.validate().is_ok());
        assert_eq!(e.describe(), "allow User:* alter cluster");
    }

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
            allows(&acls, "User:carol", Describe, Topic, "orders-secret"),
            "a deny of read does not deny describe"
        );
        assert!(
            !allows(&acls, "User:dave", Create, Cluster, "kafka-cluster"),
            "a topic entry is not a cluster entry"
        );
        assert!(allows_some(&acls, "User:bob", Write, Topic));
        assert!(!allows_some(&acls, "User:carol", Write, Topic));
        let mut denied = acls.clone();
        denied.push(entry("User:bob", Topic, Literal, "orders", Write, Deny));
        assert!(
            !allows_some(&denied, "User:bob", Write, Topic),
            "the one allowed literal is denied"
        );
        let mut prefixed = vec![entry("User:eve", Topic, Prefixed, "orders-", Write, Allow)];
        assert!(allows_some(&prefixed, "User:eve", Write, Topic));
        prefixed.push(entry("User:eve", Topic, Prefixed, "orders", Write, Deny));
        assert!(
            !allows_some(&prefixed, "User:eve", Write, Topic),
            "a shorter denied prefix covers the allowed one"
        );
        prefixed.push(entry("User:eve", Topic, Literal, "audit", Write, Allow));
        assert!(allows_some(&prefixed, "User:eve", Write, Topic));
        prefixed.push(entry("User:*", Topic, Literal, "*", Write, Deny));
        assert!(!allows_some(&prefixed, "User:eve", Write, Topic));
        assert_eq!(Operation::parse("Alter-Configs"), Ok(AlterConfigs));
        assert!(Operation::parse("rea")
            .unwrap_err()
            .contains("use one of all, read"));
    }
}
