//! Who may call this broker: TLS on the listener and to peers, principals from passwords or
//! certificates, and the users kept in the metadata.
//!
//! - `listener`: accepts connections (TLS or plaintext), refusing the wrong protocol at once.
//! - `authn`: a tower layer that turns each call's connection and `authorization` header into a
//!   [`Principal`] in the request's extensions, or answers UNAUTHENTICATED; it also keeps the
//!   Replica service to brokers.
//! - `passwords`: argon2id hashing and checking, a cache of checked credentials, and the
//!   per-source limit on failed attempts.
//! - `users`: user records in the metadata (`security/users/NAME`), cached on every broker.
//! - `acl`: Kafka's ACL rule (deny wins, no entry denies).
//! - `acls`: ACL entries in the metadata (`security/acls/...`), cached on every broker.
//! - `latest`: the cache both users and ACLs reload into (a slow read never wins).
//! - `service`: the Security gRPC service (whoami, users, ACLs).
//! - `audit`: the audit events (target `strata::audit`) of every change, naming the principal.
//!
//! Invariants: when authentication is on, no handler runs without a principal the layer
//! established, and only `Broker:ID` principals reach the Replica service. With
//! `--authorizer acl`, every handler calls [`Security::authorize`] (or filters its answer with
//! [`Security::allowed`]) before it reads or changes anything, by the table in
//! docs/security.md.

pub mod acl;
pub mod acls;
pub mod audit;
pub mod authn;
mod latest;
pub mod listener;
pub mod passwords;
pub mod principal;
pub mod service;
pub mod users;

use std::sync::Arc;

use strata_proto::tls::{ClientFiles, Reloading, ServerFiles};

pub use acl::{Operation, ResourceType};
pub use principal::{AuthenticatedBy, Principal};

use crate::error::{BrokerError, Result};

/// How callers authenticate (`--auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthModes {
    /// `authorization: Basic ...` checked against the user records.
    pub password: bool,
    /// A client certificate's CN names the user.
    pub mtls: bool,
}

impl AuthModes {
    /// Parses `none`, `password`, `mtls` or `password,mtls`.
    pub fn parse(s: &str) -> std::result::Result<AuthModes, String> {
        let mut modes = AuthModes::default();
        for part in s.split(',').map(str::trim) {
            match part {
                "none" if s.trim() == "none" => {}
                "password" => modes.password = true,
                "mtls" => modes.mtls = true,
                other => {
                    return Err(format!(
                        "--auth {other:?} is not valid; use none, password, mtls or password,mtls"
                    ))
                }
            }
        }
        Ok(modes)
    }

    pub fn any(&self) -> bool {
        self.password || self.mtls
    }
}

impl std::fmt::Display for AuthModes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.password, self.mtls) {
            (false, false) => f.write_str("none"),
            (true, false) => f.write_str("password"),
            (false, true) => f.write_str("mtls"),
            (true, true) => f.write_str("password,mtls"),
        }
    }
}

/// The broker's security settings.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// TLS on the listener; `None`: plaintext.
    pub tls: Option<ServerFiles>,
    pub auth: AuthModes,
    /// `User:NAME` principals allowed everything.
    pub super_users: Vec<String>,
    /// Creates user `admin` (a super user) with this password when no user exists yet.
    pub bootstrap_admin_password: Option<String>,
    /// `--authorizer acl`: every call is checked against the ACLs.
    pub acl_authorizer: bool,
}

impl SecurityConfig {
    /// What this broker presents to its peers and trusts them with: its own certificate and
    /// key, and the client CA (which signs every broker's certificate).
    pub fn peer_files(&self) -> Option<ClientFiles> {
        let tls = self.tls.as_ref()?;
        Some(ClientFiles {
            ca: tls.client_ca.clone()?,
            identity: Some((tls.cert.clone(), tls.key.clone())),
        })
    }

    /// Refuses combinations that cannot work, with the reason.
    pub fn check(&self, multi_broker: bool) -> std::result::Result<(), String> {
        if self.auth.any() && self.tls.is_none() {
            return Err(format!(
                "--auth {} needs TLS (--tls-cert and --tls-key): passwords and certificates must not cross the network in the clear",
                self.auth
            ));
        }
        if let Some(tls) = &self.tls {
            if self.auth.mtls && tls.client_ca.is_none() {
                return Err("--auth mtls needs --tls-client-ca: the CA whose client certificates the broker trusts".into());
            }
            if multi_broker && tls.client_ca.is_none() {
                return Err("brokers with TLS authenticate to each other by certificate: give --tls-client-ca, the CA that signed every broker's certificate (CN Broker:ID)".into());
            }
        }
        for name in &self.super_users {
            principal::Principal::parse_user(name)?;
        }
        if self.acl_authorizer && !self.auth.any() {
            return Err("--authorizer acl needs --auth password or mtls: ACLs name authenticated users, and every caller would be User:ANONYMOUS".into());
        }
        Ok(())
    }
}

/// The security state every service shares.
#[derive(Debug)]
pub struct Security {
    pub config: SecurityConfig,
    pub server_tls: Option<Arc<Reloading<strata_proto::tls::ServerTls>>>,
    pub peer_tls: Option<Arc<Reloading<rustls::ClientConfig>>>,
    pub users: users::Users,
    pub acls: acls::Acls,
    pub passwords: passwords::Passwords,
}

impl Security {
    /// Loads the TLS files (failing with the file at fault); users are loaded by [`users::follow`].
    pub fn new(config: SecurityConfig) -> Result<Security> {
        let invalid = |e: strata_proto::tls::TlsError| BrokerError::InvalidConfig(e.0);
        let server_tls = match &config.tls {
            Some(files) => Some(Reloading::server(files.clone()).map_err(invalid)?),
            None => None,
        };
        let peer_tls = match config.peer_files() {
            Some(files) => Some(Reloading::client(files).map_err(invalid)?),
            None => None,
        };
        Ok(Security {
            config,
            server_tls,
            peer_tls,
            users: users::Users::default(),
            acls: acls::Acls::default(),
            passwords: passwords::Passwords::new(),
        })
    }

    /// Starts watching the TLS files for rotation (on the current runtime).
    pub fn watch_files(&self) {
        if let Some(tls) = &self.server_tls {
            tls.watch(strata_proto::tls::RELOAD_EVERY);
        }
        if let Some(tls) = &self.peer_tls {
            tls.watch(strata_proto::tls::RELOAD_EVERY);
        }
    }

    /// Reads the users and the ACLs from the store into their caches.
    pub async fn reload(&self, store: &dyn strata_coordinator::Coordinator) -> Result<()> {
        self.users.reload(store).await?;
        self.acls.reload(store).await
    }

    /// Whether `principal` may do anything.
    pub fn is_super_user(&self, principal: &Principal) -> bool {
        match principal {
            Principal::Broker(_) => true,
            Principal::User(name) => {
                self.config
                    .super_users
                    .iter()
                    .any(|s| s.strip_prefix("User:") == Some(name.as_str()))
                    || self.users.is_super_user(name)
            }
            Principal::Anonymous => !self.config.auth.any(),
        }
    }
}

impl Security {
    /// Whether `principal` may do `operation` to the resource: always without the ACL
    /// authorizer and for super users; otherwise by the ACLs.
    pub fn allowed(
        &self,
        principal: &Principal,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> bool {
        self.by_acls(principal, |acls, who| {
            acl::allows(acls::applicable(acls, who), who, operation, resource, name)
        })
    }

    /// True without the ACL authorizer and for super users; otherwise `rule` decides, given
    /// the cached entries and the principal's name.
    fn by_acls(
        &self,
        principal: &Principal,
        rule: impl FnOnce(&std::collections::HashMap<String, Vec<acl::AclEntry>>, &str) -> bool,
    ) -> bool {
        if !self.config.acl_authorizer || self.is_super_user(principal) {
            return true;
        }
        rule(&self.acls.snapshot(), &principal.to_string())
    }

    /// [`Security::authorize`] for the caller of `request`; without the ACL authorizer it does
    /// not even look at the caller (the produce and fetch paths pay one branch).
    pub fn authorize_request<T>(
        &self,
        request: &tonic::Request<T>,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> Result<()> {
        if !self.config.acl_authorizer {
            return Ok(());
        }
        self.authorize(service::principal_of(request), operation, resource, name)
    }

    /// [`Security::allowed`], or the error Kafka gives (TOPIC_, GROUP_ or
    /// CLUSTER_AUTHORIZATION_FAILED) with a sentence naming the grant that is missing.
    pub fn authorize(
        &self,
        principal: &Principal,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> Result<()> {
        if self.allowed(principal, operation, resource, name) {
            return Ok(());
        }
        tracing::debug!(target: "strata::audit", %principal, operation = operation.as_str(), resource = resource.as_str(), name, "denied by the ACLs");
        let op = operation.as_str();
        Err(match resource {
            ResourceType::Topic => BrokerError::TopicAuthorizationFailed(format!(
                "{principal} may not {op} topic {name:?}: no ACL allows it (an admin can grant it: strata acl add --principal {principal} --topic {name} --operation {op})"
            )),
            ResourceType::Group => BrokerError::GroupAuthorizationFailed(format!(
                "{principal} may not {op} group {name:?}: no ACL allows it (an admin can grant it: strata acl add --principal {principal} --group {name} --operation {op})"
            )),
            ResourceType::Cluster => BrokerError::ClusterAuthorizationFailed(format!(
                "{principal} may not {op} the cluster: no ACL allows it (an admin can grant it: strata acl add --principal {principal} --cluster --operation {op})"
            )),
        })
    }

    /// Whether `principal` may do `operation` to some resource of type `resource` (InitProducerId:
    /// WRITE on any topic).
    pub fn authorize_some(
        &self,
        principal: &Principal,
        operation: Operation,
        resource: ResourceType,
    ) -> Result<()> {
        if self.by_acls(principal, |acls, who| {
            acl::allows_some(acls::applicable(acls, who), who, operation, resource)
        }) {
            return Ok(());
        }
        let op = operation.as_str();
        Err(BrokerError::ClusterAuthorizationFailed(format!(
            "{principal} may not {op} any {}: no ACL allows it (an admin can grant it: strata acl add --principal {principal} --{} NAME --operation {op})",
            resource.as_str(),
            resource.as_str()
        )))
    }
}
