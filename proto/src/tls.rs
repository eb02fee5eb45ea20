//! TLS for every Strata connection (rustls, no OpenSSL), shared by the broker and the client.
//!
//! - PEM files become rustls configs ([`server_config`], [`client_config`]); ALPN is `h2`.
//! - [`Reloading`] keeps a config built from files and rebuilds it when a file changes (polled
//!   every [`RELOAD_EVERY`]), so certificates rotate without a restart. A rebuild that fails
//!   (a half-written file, a key that does not match) keeps the config in use and says why.
//! - [`TlsConnector`] is the tonic connector for clients and brokers: TCP, then TLS with the
//!   current client config. New connections pick up rotated files; open ones keep theirs.
//! - [`describe`] turns a failed handshake into a sentence naming the likely cause.
//!
//! Invariant: no config is ever half-replaced: a reload swaps one whole, validated config.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, RootCertStore};
use tokio::net::TcpStream;

/// How often [`Reloading::watch`] looks at the files' modification times.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// A problem with a certificate, key or CA file, as a sentence naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificates in a PEM file (a chain: leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            TlsError(format!(
                "cannot read certificate file {}: {e}",
                path.display()
            ))
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError(format!(
                "certificate file {} is not valid PEM: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "certificate file {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        TlsError(format!(
            "cannot read a private key from {}: {e} (expected a PEM PRIVATE KEY)",
            path.display()
        ))
    })
}

/// The CA certificates in a PEM file, as trust roots.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| {
            TlsError(format!(
                "CA file {} holds a certificate rustls cannot use as a trust root: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// The files a TLS server (a broker's listener) is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA whose client certificates are verified when presented. Clients without a certificate
    /// are still admitted by TLS: whether they may call is the authentication layer's decision,
    /// which can then answer with a sentence instead of a bare handshake alert.
    pub client_ca: Option<PathBuf>,
}

impl ServerFiles {
    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.client_ca.clone());
        paths
    }
}

/// A server config and the verifier of client certificates it defers to.
///
/// The handshake accepts any client certificate whose holder proves its key ([`Deferred`]);
/// [`ServerTls::peer`] then judges the chain against the client CA. A refused certificate so
/// becomes a sentence in the call's answer (UNAUTHENTICATED, naming the reason) instead of a
/// TLS alert that a TLS 1.3 client only meets after its handshake, mid-request.
#[derive(Debug)]
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
}

/// What a connection's client certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCertificate {
    None,
    /// Verified against the client CA; its subject CN.
    Verified(Option<String>),
    /// Not trusted: why.
    Refused(String),
}

impl ServerTls {
    /// Judges the client certificate of an accepted connection.
    pub fn peer(&self, conn: &rustls::ServerConnection) -> PeerCertificate {
        let (Some(verifier), Some(certs)) = (&self.verifier, conn.peer_certificates()) else {
            return PeerCertificate::None;
        };
        let Some((leaf, intermediates)) = certs.split_first() else {
            return PeerCertificate::None;
        };
        let now = rustls::pki_types::UnixTime::now();
        match verifier.verify_client_cert(leaf, intermediates, now) {
            Ok(_) => PeerCertificate::Verified(subject_common_name(leaf)),
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                PeerCertificate::Refused(
                    "it is not signed by the CA the broker trusts (--tls-client-ca)".into(),
                )
            }
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )) => PeerCertificate::Refused("it has expired".into()),
            Err(e) => PeerCertificate::Refused(e.to_string()),
        }
    }
}

/// Accepts any client certificate whose holder proves its private key; the chain is judged
/// after the handshake by [`ServerTls::peer`] with the inner verifier.
#[derive(Debug)]
struct Deferred(Arc<dyn rustls::server::danger::ClientCertVerifier>);

impl rustls::server::danger::ClientCertVerifier for Deferred {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Builds the server config from `files`.
pub fn server_config(files: &ServerFiles) -> Result<ServerTls, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS setup failed: {e}")))?;
    let mut deferred = None;
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| {
                        TlsError(format!(
                            "client CA file {} is not usable: {e}",
                            ca.display()
                        ))
                    })?;
            deferred = Some(verifier.clone());
            builder.with_client_cert_verifier(Arc::new(Deferred(verifier)))
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError(format!(
            "certificate {} and key {} do not make a usable pair: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        verifier: deferred,
    })
}

/// The files a TLS client (a CLI command, a broker calling a peer) is built from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientFiles {
    /// CA that signed the brokers' certificates.
    pub ca: PathBuf,
    /// Client certificate and key, for mTLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientFiles {
    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.ca.clone()];
        if let Some((cert, key)) = &self.identity {
            paths.push(cert.clone());
            paths.push(key.clone());
        }
        paths
    }
}

/// Builds the client config from `files`.
pub fn client_config(files: &ClientFiles) -> Result<rustls::ClientConfig, TlsError> {
    let roots = load_roots(&files.ca)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots);
    let mut config = match &files.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| {
                TlsError(format!(
                    "client certificate {} and key {} do not make a usable pair: {e}",
                    cert.display(),
                    key.display()
                ))
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A config built from files, rebuilt when they change.
pub struct Reloading<T> {
    what: &'static str,
    files: Vec<PathBuf>,
    build: Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>,
    current: RwLock<Arc<T>>,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("files", &self.files)
            .finish()
    }
}

impl Reloading<ServerTls> {
    pub fn server(files: ServerFiles) -> Result<Arc<Self>, TlsError> {
        let paths = files.paths();
        Reloading::new("server TLS", paths, move || server_config(&files))
    }
}

impl Reloading<rustls::ClientConfig> {
    pub fn client(files: ClientFiles) -> Result<Arc<Self>, TlsError> {
        let paths = files.paths();
        Reloading::new("client TLS", paths, move || client_config(&files))
    }
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Builds the config once (failing with the reason) and keeps `build` for reloads.
    pub fn new(
        what: &'static str,
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, TlsError> {
        let first = build()?;
        Ok(Arc::new(Reloading {
            what,
            files,
            build: Box::new(build),
            current: RwLock::new(Arc::new(first)),
        }))
    }

    /// The config new connections use.
    pub fn current(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Rebuilds from the files now; on failure keeps the config in use.
    fn reload(&self) -> Result<(), TlsError> {
        let fresh = (self.build)()?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// Watches the files (on the current tokio runtime) until the last handle to `self` is
    /// dropped; a change rebuilds the config.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me: Weak<Self> = Arc::downgrade(self);
        let files = self.files.clone();
        tokio::spawn(async move {
            let mut seen = stamps(&files).await;
            loop {
                tokio::time::sleep(every).await;
                let Some(this) = me.upgrade() else { return };
                let now = stamps(&files).await;
                if now == seen {
                    continue;
                }
                seen = now;
                let what = this.what;
                match tokio::task::spawn_blocking(move || this.reload()).await {
                    Ok(Ok(())) => tracing::info!(what, files = ?files, "reloaded TLS files"),
                    Ok(Err(e)) => {
                        tracing::warn!(what, error = %e, "the TLS files changed but do not load; keeping the ones in use")
                    }
                    Err(e) => tracing::warn!(what, error = %e, "reloading TLS files failed"),
                }
            }
        })
    }
}

async fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        out.push(
            tokio::fs::metadata(f)
                .await
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len()))),
        );
    }
    out
}

/// The tonic connector for TLS channels: `Endpoint::connect_with_connector(TlsConnector)`.
/// The endpoint's URI stays `http://host:port`; this connector does the TLS, verifying the
/// broker's certificate against `host` (a DNS name or an IP address).
#[derive(Clone, Debug)]
pub struct TlsConnector {
    config: Arc<Reloading<rustls::ClientConfig>>,
    peer: Peer,
}

impl TlsConnector {
    /// A connector to brokers.
    pub fn new(config: Arc<Reloading<rustls::ClientConfig>>) -> Self {
        Self::to(config, BROKER)
    }

    /// A connector to `peer`, whose failures name it.
    pub fn to(config: Arc<Reloading<rustls::ClientConfig>>, peer: Peer) -> Self {
        TlsConnector { config, peer }
    }
}

pub type TlsIo = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tonic::codegen::Service<tonic::codegen::http::Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let config = self.config.current();
        let peer = self.peer;
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = match host.parse::<IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(host.clone()).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{host:?} is not a valid TLS server name"),
                    )
                })?,
            };
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| io::Error::new(e.kind(), describe(&e, &host, peer)))?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

/// A lazily connected channel to `peer` at `endpoint` (`http://host:port`) over TLS with
/// `config`.
pub fn lazy_channel(
    config: Arc<Reloading<rustls::ClientConfig>>,
    peer: Peer,
    endpoint: tonic::transport::Endpoint,
) -> tonic::transport::Channel {
    endpoint.connect_with_connector_lazy(TlsConnector::to(config, peer))
}

/// Who is at the other end of a TLS connection, for the sentences of [`describe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// "the broker", "etcd".
    pub name: &'static str,
    /// The flag naming the CA this side trusts.
    pub ca_flag: &'static str,
    /// Where the peer is told which client CA to trust.
    pub client_ca: &'static str,
    /// What to do when the peer serves plaintext.
    pub plaintext_hint: &'static str,
}

pub const BROKER: Peer = Peer {
    name: "the broker",
    ca_flag: "--tls-ca",
    client_ca: "--tls-client-ca",
    plaintext_hint: "connect without --tls-ca",
};

pub const ETCD: Peer = Peer {
    name: "etcd",
    ca_flag: "--etcd-ca",
    client_ca: "etcd's --trusted-ca-file",
    plaintext_hint: "give its endpoint as http:// without --etcd-ca",
};

/// A failed TLS handshake as a sentence for the client side, naming the likely cause.
pub fn describe(error: &io::Error, host: &str, peer: Peer) -> String {
    let Peer {
        name,
        ca_flag,
        plaintext_hint,
        ..
    } = peer;
    let rustls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer => format!("TLS handshake failed: {name}'s certificate is not signed by the CA this client trusts ({ca_flag})"),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!("TLS handshake failed: {name}'s certificate has expired"),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!("TLS handshake failed: {name}'s certificate is not valid yet (check the clocks)"),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!("TLS handshake failed: {name}'s certificate is not valid for {host:?} (its subjectAltName must name the address clients use)"),
            other => format!("TLS handshake failed: {name}'s certificate was refused ({other:?})"),
        },
        Some(rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)) => format!("TLS handshake failed: {name} refused TLS on this port (protocol_version): it serves plaintext here, or supports no TLS version this client offers; {plaintext_hint}"),
        Some(rustls::Error::AlertReceived(alert)) => describe_alert(&format!("{alert:?}"), peer),
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => format!("TLS handshake failed: {name} did not answer in TLS; it may serve plaintext ({plaintext_hint})"),
        Some(other) => format!("TLS handshake failed: {other}"),
        None if error.kind() == io::ErrorKind::UnexpectedEof || error.kind() == io::ErrorKind::ConnectionReset => format!("TLS handshake failed: {name} closed the connection; it may serve plaintext ({plaintext_hint}), or refused this client's certificate"),
        None => format!("TLS handshake failed: {error}"),
    }
}

/// A fatal alert the peer sent after the handshake (TLS 1.3 judges the client's certificate
/// there), from its name as rustls prints it, as a sentence.
pub fn describe_alert(alert: &str, peer: Peer) -> String {
    let Peer {
        name, client_ca, ..
    } = peer;
    match alert {
        "UnknownCA" | "BadCertificate" | "CertificateExpired" | "CertificateUnknown"
        | "CertificateRequired" | "DecryptError" => format!("TLS failed: {name} refused this client's certificate ({alert}): it is missing, not signed by a CA {name} trusts ({client_ca}), or has expired"),
        other => format!("TLS failed: {name} sent the alert {other}"),
    }
}

/// The first byte of a TLS connection: a handshake record.
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// The subject's common name (CN) of a DER certificate already verified by rustls.
pub fn subject_common_name(cert: &[u8]) -> Option<String> {
    let (_, certificate, _) = der(cert, 0x30)?;
    let (_, mut tbs, _) = der(certificate, 0x30)?;
    if tbs.first() == Some(&0xA0) {
        tbs = next(tbs)?.2;
    }
    // serial, signature algorithm, issuer, validity; then the subject.
    for _ in 0..4 {
        tbs = next(tbs)?.2;
    }
    let (_, mut subject, _) = der(tbs, 0x30)?;
    while !subject.is_empty() {
        let (_, mut set, rest) = der(subject, 0x31)?;
        subject = rest;
        while !set.is_empty() {
            let (_, attribute, rest) = der(set, 0x30)?;
            set = rest;
            let (_, oid, value) = der(attribute, 0x06)?;
            if oid == [0x55, 0x04, 0x03] {
                let (tag, text, _) = next(value)?;
                // UTF8String, PrintableString, IA5String, TeletexString
                if matches!(tag, 0x0C | 0x13 | 0x16 | 0x14) {
                    return String::from_utf8(text.to_vec()).ok();
                }
            }
        }
    }
    None
}

/// The next DER element: (tag, contents, what follows).
fn next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

fn der(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    let element = next(input)?;
    (element.0 == tag).then_some(element)
}

#[cfg(any(test, feature = "test-pki"))]
pub mod pki;
#[cfg(test)]
mod tests;
