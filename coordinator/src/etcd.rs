//! The [`Coordinator`] backed by etcd (v3 API), for clusters.
//!
//! Every key lives under `/strata/<cluster>/`; elections under `/strata/<cluster>/elections/`
//! through etcd's election service. A [`Versioned::revision`] is the key's `mod_revision`, and a
//! commit is one etcd transaction: [`Expect::Absent`] compares `create_revision == 0`,
//! [`Expect::Revision`] compares `mod_revision`, [`Expect::Any`] compares nothing.
//!
//! Invariant: every call to etcd is bounded by [`EtcdOptions::request_timeout`], so nothing
//! hangs while etcd is down; failures are [`CoordinatorError::Unavailable`] naming the
//! endpoints. The only calls without a bound are streams that are meant to wait (a watch, a
//! campaign); HTTP/2 keepalive pings break them when the connection dies. Leases are in
//! `etcd_lease.rs`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, TxnOp, TxnOpResponse,
    WatchOptions,
};

use crate::etcd_channel::MakeChannel;
use crate::metrics::EtcdOp;
use crate::{
    etcd_lease, Coordinator, CoordinatorError, Event, Expect, Lease, Op, Result, Versioned, Watch,
    Write,
};

/// How often an idle stream's connection is pinged. etcd refuses pings more often than every
/// 5 s (`--grpc-keepalive-min-time`) with a GOAWAY.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Keys per page of a listing (a few hundred KiB of metadata; the client's answer limit is 4 MiB).
const LIST_PAGE: i64 = 1000;

/// How to reach etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Bound on establishing a connection, and on the first call that checks etcd answers.
    pub connect_timeout: Duration,
    /// Bound on every call to etcd.
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// A [`Coordinator`] on an etcd cluster. Cheap to clone (one shared connection).
#[derive(Clone)]
pub struct EtcdCoordinator {
    shared: Arc<Shared>,
}

/// What the store and its background tasks (watches, keepalives) share.
pub(crate) struct Shared {
    pub(crate) client: Client,
    cluster: String,
    /// `/strata/<cluster>/`.
    root: String,
    /// The endpoints, comma-separated, for messages.
    endpoints: String,
    pub(crate) options: EtcdOptions,
}

impl std::fmt::Debug for EtcdCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCoordinator")
            .field("endpoints", &self.shared.endpoints)
            .field("cluster", &self.shared.cluster)
            .finish()
    }
}

impl EtcdCoordinator {
    /// Connects to etcd at `endpoints` (`http://host:port` or `host:port`) and checks that it
    /// answers within `options.connect_timeout`.
    pub async fn connect(
        endpoints: &[String],
        cluster: &str,
        options: EtcdOptions,
    ) -> Result<EtcdCoordinator> {
        Self::connect_with(endpoints, cluster, options, None).await
    }

    /// [`EtcdCoordinator::connect`], over TLS when `tls` is given: then every endpoint must be
    /// `https://host:port` (a bare `host:port` is taken as https), and `tls` makes each
    /// endpoint's channel. Without `tls`, an `https://` endpoint is refused with a sentence.
    pub async fn connect_with(
        endpoints: &[String],
        cluster: &str,
        options: EtcdOptions,
        tls: Option<MakeChannel>,
    ) -> Result<EtcdCoordinator> {
        if endpoints.is_empty() {
            return Err(CoordinatorError::Unavailable(
                "no etcd endpoints were given".to_string(),
            ));
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("{scheme}://{e}")
                }
            })
            .collect();
        let joined = urls.join(",");
        for url in &urls {
            match (url.split("://").next(), tls.is_some()) {
                (Some("http"), false) | (Some("https"), true) => {}
                (Some("https"), false) => {
                    return Err(CoordinatorError::Unavailable(format!(
                        "etcd endpoint {url} speaks TLS: give the CA that signed its certificate (--etcd-ca)"
                    )))
                }
                (Some("http"), true) => {
                    return Err(CoordinatorError::Unavailable(format!(
                        "etcd endpoint {url} is plaintext but TLS to etcd was asked for (--etcd-ca): write it https://"
                    )))
                }
                _ => {
                    return Err(CoordinatorError::Unavailable(format!(
                        "etcd endpoint {url} is not valid: write http://host:port or https://host:port"
                    )))
                }
            }
        }
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_keep_alive(PING_INTERVAL, options.request_timeout)
            .with_keep_alive_while_idle(false);
        let connecting = async {
            match &tls {
                None => Client::connect(&urls, Some(connect)).await,
                Some(make) => {
                    let channel = crate::etcd_channel::channel(
                        &urls,
                        make,
                        options.connect_timeout,
                        (PING_INTERVAL, options.request_timeout),
                    )
                    .map_err(|e| etcd_client::Error::InvalidArgs(e.to_string()))?;
                    Client::from_channel(channel, Some(connect)).await
                }
            }
        };
        let client = match tokio::time::timeout(options.connect_timeout, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(CoordinatorError::Unavailable(format!(
                    "etcd at {joined}: cannot connect: {}",
                    describe(&e)
                )))
            }
            Err(_) => {
                return Err(CoordinatorError::Unavailable(format!(
                    "etcd at {joined}: no connection within {:?}",
                    options.connect_timeout
                )))
            }
        };
        let shared = Arc::new(Shared {
            client,
            cluster: cluster.to_string(),
            root: format!("/strata/{cluster}/"),
            endpoints: joined,
            options,
        });
        // Over TLS the channel fails over one endpoint at a time: a member down at start-up
        // costs one attempt, so each endpoint gets one.
        let attempts = if tls.is_some() { urls.len() } else { 1 };
        let mut kv = shared.client.kv_client();
        let mut failure = String::new();
        for _ in 0..attempts {
            let probe = kv.get(
                shared.key(""),
                Some(GetOptions::new().with_prefix().with_count_only()),
            );
            match tokio::time::timeout(options.connect_timeout, probe).await {
                Ok(Ok(_)) => return Ok(EtcdCoordinator { shared }),
                Ok(Err(e)) => {
                    let why = describe(&e);
                    let closed = ["broken pipe", "connection reset", "connection closed"]
                        .iter()
                        .any(|c| why.contains(c));
                    // TLS 1.3 judges the client certificate after the client's handshake: etcd
                    // answers a missing or untrusted one with an alert or by closing.
                    let refused = [
                        "BadCertificate",
                        "CertificateRequired",
                        "UnknownCA",
                        "CertificateUnknown",
                        "CertificateExpired",
                    ]
                    .iter()
                    .any(|a| why.contains(&format!("fatal alert: {a}")));
                    let hint = match (closed || refused, tls.is_some()) {
                        (false, _) => "",
                        (true, true) => " (etcd refused this broker after the TLS handshake: with --client-cert-auth it needs a client certificate signed by a CA it trusts, --etcd-cert and --etcd-key)",
                        (true, false) => " (etcd closed the connection: if it serves TLS, give its endpoint as https:// with --etcd-ca)",
                    };
                    failure = format!("the first request failed: {why}{hint}");
                }
                Err(_) => {
                    failure = format!(
                        "no answer within {:?}; is etcd running there?",
                        options.connect_timeout
                    )
                }
            }
        }
        Err(shared.unavailable(failure))
    }
}

impl Shared {
    /// The etcd key of a store key.
    pub(crate) fn key(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.root).into_bytes()
    }

    /// The etcd election name of an election.
    pub(crate) fn election(&self, election: &str) -> Vec<u8> {
        format!("{}elections/{election}", self.root).into_bytes()
    }

    pub(crate) fn unavailable(&self, reason: impl std::fmt::Display) -> CoordinatorError {
        CoordinatorError::Unavailable(format!("etcd at {}: {reason}", self.endpoints))
    }

    pub(crate) fn failed(&self, what: &str, e: &etcd_client::Error) -> CoordinatorError {
        self.unavailable(format!("{what} failed: {}", describe(e)))
    }

    /// Runs one call to etcd within the request timeout, and records its latency as `op`.
    pub(crate) async fn call<T>(
        &self,
        op: EtcdOp,
        what: &str,
        call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        let start = std::time::Instant::now();
        let answer = tokio::time::timeout(self.options.request_timeout, call).await;
        op.record(start.elapsed(), matches!(answer, Ok(Ok(_))));
        match answer {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.failed(what, &e)),
            Err(_) => Err(self.unavailable(format!(
                "{what} got no answer within {:?}",
                self.options.request_timeout
            ))),
        }
    }

    pub(crate) fn strip<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(key).ok()?.strip_prefix(&self.root)
    }
}

/// An etcd error as a phrase: gRPC statuses by their message, not their debug form.
pub(crate) fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) if !s.message().is_empty() => {
            with_causes(s.message().to_string(), std::error::Error::source(s))
        }
        other => with_causes(other.to_string(), std::error::Error::source(other)),
    }
}

/// `message` followed by each cause in `source`'s chain that adds something ("transport
/// error: TLS handshake failed: etcd's certificate has expired").
fn with_causes(
    mut message: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && text != "transport error" && !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[async_trait]
impl Coordinator for EtcdCoordinator {
    fn cluster(&self) -> &str {
        &self.shared.cluster
    }

    async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        let mut kv = self.shared.client.kv_client();
        let what = format!("reading {key:?}");
        let resp = self
            .shared
            .call(EtcdOp::Get, &what, kv.get(self.shared.key(key), None))
            .await?;
        Ok(resp.kvs().first().map(|kv| Versioned {
            value: Bytes::copy_from_slice(kv.value()),
            revision: kv.mod_revision(),
        }))
    }

    async fn revision(&self) -> Result<i64> {
        let mut kv = self.shared.client.kv_client();
        let probe = kv.get(
            self.shared.key(""),
            Some(GetOptions::new().with_prefix().with_count_only()),
        );
        let resp = self
            .shared
            .call(EtcdOp::Get, "reading the current revision", probe)
            .await?;
        resp.header()
            .map(|h| h.revision())
            .ok_or_else(|| self.shared.unavailable("an answer had no header"))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let mut kv = self.shared.client.kv_client();
        let what = format!("compacting history before revision {revision}");
        match self
            .shared
            .call(EtcdOp::Compact, &what, kv.compact(revision, None))
            .await
        {
            Ok(_) => Ok(()),
            // Another controller (or an operator) compacted as far already.
            Err(e) if e.to_string().contains("compacted") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>> {
        // In pages, all at the first page's revision: one answer for every partition of a
        // large cluster could pass the client's message size limit, and the pages together are
        // still one consistent read.
        let mut kv = self.shared.client.kv_client();
        let what = format!("listing {prefix:?}");
        let full = self.shared.key(prefix);
        let end = prefix_end(&full);
        let mut from = full;
        let mut at = 0;
        let mut out = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if at > 0 {
                options = options.with_revision(at);
            }
            let resp = self
                .shared
                .call(EtcdOp::List, &what, kv.get(from.clone(), Some(options)))
                .await?;
            if at == 0 {
                at = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            // etcd returns keys in byte order, which is the order of the stripped keys too.
            for kv in resp.kvs() {
                if let Some(key) = self.shared.strip(kv.key()) {
                    out.push((
                        key.to_string(),
                        Versioned {
                            value: Bytes::copy_from_slice(kv.value()),
                            revision: kv.mod_revision(),
                        },
                    ));
                }
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<i64> {
        let mut compares = Vec::new();
        let mut checked = Vec::new();
        let mut ops = Vec::new();
        for w in &writes {
            let key = self.shared.key(&w.key);
            match w.expect {
                Expect::Absent => {
                    compares.push(Compare::create_revision(key.clone(), CompareOp::Equal, 0))
                }
                Expect::Revision(r) => {
                    compares.push(Compare::mod_revision(key.clone(), CompareOp::Equal, r))
                }
                Expect::Any => {}
            }
            if w.expect != Expect::Any {
                checked.push(w);
            }
            match &w.op {
                Op::Put(v) => ops.push(TxnOp::put(key, v.to_vec(), None)),
                Op::Delete => ops.push(TxnOp::delete(key, None)),
                Op::Check => {}
            }
        }
        // On failure, read the checked keys in the same transaction to name the culprit.
        let reads: Vec<TxnOp> = checked
            .iter()
            .map(|w| TxnOp::get(self.shared.key(&w.key), None))
            .collect();
        let txn = etcd_client::Txn::new()
            .when(compares)
            .and_then(ops)
            .or_else(reads);
        let mut kv = self.shared.client.kv_client();
        let resp = self
            .shared
            .call(EtcdOp::Txn, "a transaction", kv.txn(txn))
            .await?;
        if !resp.succeeded() {
            return Err(conflict(&checked, &resp.op_responses()));
        }
        resp.header().map(|h| h.revision()).ok_or_else(|| {
            self.shared
                .unavailable("a transaction answer had no header")
        })
    }

    async fn watch(&self, prefix: &str, except: &[&str]) -> Result<Watch> {
        let key = self.shared.key(prefix);
        let except: Vec<Vec<u8>> = except.iter().map(|e| self.shared.key(e)).collect();
        // Watch from the revision after now, so every change after we return is reported even
        // if the watch is registered on the server a moment later.
        let mut kv = self.shared.client.kv_client();
        let what = format!("starting a watch of {prefix:?}");
        let now = self
            .shared
            .call(
                EtcdOp::Get,
                &what,
                kv.get(
                    key.clone(),
                    Some(GetOptions::new().with_prefix().with_count_only()),
                ),
            )
            .await?;
        let revision = now.header().map(|h| h.revision()).unwrap_or(0);
        let mut wc = self.shared.client.watch_client();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = self
            .shared
            .call(EtcdOp::Watch, &what, wc.watch(key, Some(options)))
            .await?;
        let (tx, watch) = Watch::channel();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let reason = loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    message = stream.message() => match message {
                        Ok(Some(resp)) if resp.canceled() => {
                            break format!("the watch was cancelled ({})", resp.cancel_reason());
                        }
                        Ok(Some(resp)) => {
                            let events: Vec<Event> = resp
                                .events()
                                .iter()
                                .filter_map(|e| {
                                    let kv = e.kv()?;
                                    if except.iter().any(|x| kv.key().starts_with(x)) {
                                        return None;
                                    }
                                    let key = shared.strip(kv.key())?.to_string();
                                    let value = match e.event_type() {
                                        EventType::Put => Some(Bytes::copy_from_slice(kv.value())),
                                        EventType::Delete => None,
                                    };
                                    Some(Event { key, revision: kv.mod_revision(), value })
                                })
                                .collect();
                            if !events.is_empty() && !tx.notify(events) {
                                return;
                            }
                        }
                        Ok(None) => break "the watch stream ended".to_string(),
                        Err(e) => break format!("the watch stream broke: {}", describe(&e)),
                    },
                }
            };
            tx.end(shared.unavailable(reason).to_string());
        });
        Ok(watch)
    }

    async fn register(&self, key: &str, value: Bytes, ttl: Duration) -> Result<Lease> {
        etcd_lease::register(&self.shared, key, value, ttl).await
    }

    async fn campaign(&self, election: &str, value: Bytes, ttl: Duration) -> Result<Lease> {
        etcd_lease::campaign(&self.shared, election, value, ttl).await
    }

    async fn leader(&self, election: &str) -> Result<Option<Bytes>> {
        etcd_lease::leader(&self.shared, election).await
    }
}

/// The conflict of a failed transaction, from the reads of its checked writes.
/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix was empty): to the end of the keyspace.
    vec![0]
}

fn conflict(checked: &[&Write], reads: &[TxnOpResponse]) -> CoordinatorError {
    for (w, read) in checked.iter().zip(reads) {
        let TxnOpResponse::Get(read) = read else {
            continue;
        };
        let current = read.kvs().first().map(|kv| kv.mod_revision());
        let reason = match (w.expect, current) {
            (Expect::Absent, Some(_)) => "it exists already".to_string(),
            (Expect::Revision(_), None) => "it no longer exists".to_string(),
            (Expect::Revision(r), Some(c)) if r != c => {
                format!("expected revision {r}, found {c}")
            }
            _ => continue,
        };
        return CoordinatorError::Conflict {
            key: w.key.clone(),
            reason,
        };
    }
    CoordinatorError::Conflict {
        key: checked.first().map(|w| w.key.clone()).unwrap_or_default(),
        reason: "condition failed".to_string(),
    }
}
