//! The flags every client command shares: where the brokers are, TLS, and credentials.

use anyhow::{bail, Context};
use std::path::PathBuf;

use crate::DEFAULT_BROKERS;

#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Broker addresses (host:port, comma-separated).
    #[arg(long, env = "STRATA_BROKERS", default_value = DEFAULT_BROKERS, value_delimiter = ',')]
    pub brokers: Vec<String>,
    /// CA certificate (PEM) that signed the brokers' certificates: connect with TLS.
    #[arg(long, env = "STRATA_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS; needs --tls-key and --tls-ca.
    #[arg(long, env = "STRATA_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "STRATA_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// User name for password authentication; needs --password-file.
    #[arg(long, env = "STRATA_USER")]
    pub user: Option<String>,
    /// File holding the password (its first line).
    #[arg(long, env = "STRATA_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

impl ConnectArgs {
    pub fn client_config(&self) -> anyhow::Result<strata_client::ClientConfig> {
        let mut config =
            strata_client::ClientConfig::new(self.brokers.iter().map(|b| b.trim().to_string()));
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            (Some(_), None) => bail!("--tls-cert needs --tls-key (the certificate's private key)"),
            (None, Some(_)) => bail!("--tls-key needs --tls-cert"),
        };
        config.tls = match (&self.tls_ca, identity) {
            (Some(ca), identity) => Some(strata_proto::tls::ClientFiles {
                ca: ca.clone(),
                identity,
            }),
            (None, Some(_)) => {
                bail!("--tls-cert needs --tls-ca: the CA that signed the brokers' certificates")
            }
            (None, None) => None,
        };
        config.credentials = match (&self.user, &self.password_file) {
            (Some(user), Some(file)) => Some(strata_client::Credentials {
                user: user.clone(),
                password: read_password(file)?,
            }),
            (None, None) => None,
            (Some(_), None) => bail!("--user needs --password-file (or STRATA_PASSWORD_FILE)"),
            (None, Some(_)) => bail!("--password-file needs --user (or STRATA_USER)"),
        };
        Ok(config)
    }
}

/// The first line of `file`, without its line ending.
pub fn read_password(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the password file {}", file.display()))?;
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        bail!("the password file {} is empty", file.display());
    }
    Ok(password)
}
