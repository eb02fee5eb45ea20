//! The security flags `strata dev` and `strata serve` share: TLS files, authentication modes,
//! super users, the bootstrap admin, and the plaintext guard.

use anyhow::bail;
use std::net::SocketAddr;
use std::path::PathBuf;
use strata_broker::security::{AuthModes, SecurityConfig};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct SecurityArgs {
    /// Serve TLS with this certificate (PEM, chain first); reloaded when the file changes.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA whose client certificates are trusted (mTLS users, and every broker: CN Broker:ID).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// How callers authenticate: none, password, mtls or password,mtls (needs TLS).
    #[arg(long, default_value = "none", value_parser = AuthModes::parse)]
    pub auth: AuthModes,
    /// Authorization: none (every authenticated caller may do everything) or acl (the ACLs
    /// decide; with no ACL a principal may do nothing but super users everything).
    #[arg(long, default_value = "none")]
    pub authorizer: String,
    /// A principal allowed everything (repeatable), e.g. User:admin.
    #[arg(long = "super-user", value_name = "User:NAME")]
    pub super_users: Vec<String>,
    /// Creates user "admin", a super user, with the password in this file when no user exists.
    #[arg(long, value_name = "FILE")]
    pub bootstrap_admin_password_file: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address (only on a network you trust).
    #[arg(long)]
    pub allow_plaintext: bool,
}

impl SecurityArgs {
    /// The broker's security config, after checking it can work on `listen`.
    pub fn config(&self, listen: SocketAddr, multi_broker: bool) -> anyhow::Result<SecurityConfig> {
        let acl_authorizer = match self.authorizer.as_str() {
            "none" => false,
            "acl" => true,
            other => bail!("--authorizer {other:?} is not valid; use none or acl"),
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(strata_proto::tls::ServerFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            }),
            (None, None) => {
                if self.tls_client_ca.is_some() {
                    bail!("--tls-client-ca needs --tls-cert and --tls-key (client certificates travel over TLS)");
                }
                None
            }
            (Some(_), None) => bail!("--tls-cert needs --tls-key"),
            (None, Some(_)) => bail!("--tls-key needs --tls-cert"),
        };
        if tls.is_none() && !listen.ip().is_loopback() && !self.allow_plaintext {
            bail!("refusing to serve plaintext on {listen}: anyone who can reach it could read and change every topic; give --tls-cert and --tls-key, or --allow-plaintext on a network you trust");
        }
        let bootstrap_admin_password = match &self.bootstrap_admin_password_file {
            Some(file) => Some(crate::connect::read_password(file)?),
            None => None,
        };
        if bootstrap_admin_password.is_some() && !self.auth.password {
            bail!("--bootstrap-admin-password-file needs --auth password (or password,mtls)");
        }
        let config = SecurityConfig {
            tls,
            auth: self.auth,
            super_users: self.super_users.clone(),
            bootstrap_admin_password,
            acl_authorizer,
        };
        config.check(multi_broker).map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}
