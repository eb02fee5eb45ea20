//! `strata serve`: one broker of a cluster, with metadata in etcd.
//!
//! Every setting comes from (first wins) a flag, a `STRATA_*` environment variable, the TOML
//! file named by `--config`, or the default.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use strata_broker::{Broker, BrokerConfig};
use strata_coordinator::{EtcdCoordinator, EtcdOptions};

use crate::parse;

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// This broker's id, unique in the cluster.
    #[arg(long, env = "STRATA_ID")]
    pub id: Option<i32>,
    /// Address to serve gRPC on (host:port).
    #[arg(long, env = "STRATA_LISTEN")]
    pub listen: Option<String>,
    /// Address other brokers and clients use to reach this one (default: --listen).
    #[arg(long, env = "STRATA_ADVERTISE")]
    pub advertise: Option<String>,
    /// Where logs live.
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// etcd endpoints, comma-separated (http://host:port, https://host:port or host:port).
    #[arg(long, env = "STRATA_ETCD", value_delimiter = ',')]
    pub etcd: Option<Vec<String>>,
    /// TLS to etcd: the CA that signed etcd's certificate (endpoints are then https).
    #[arg(long, env = "STRATA_ETCD_CA", value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's --client-cert-auth; reloaded when the file changes.
    #[arg(long, env = "STRATA_ETCD_CERT", value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert.
    #[arg(long, env = "STRATA_ETCD_KEY", value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// Cluster name: the etcd key prefix is /strata/<cluster>/.
    #[arg(long, env = "STRATA_CLUSTER")]
    pub cluster: Option<String>,
    /// Rack (availability zone), for rack-aware replica placement.
    #[arg(long, env = "STRATA_RACK")]
    pub rack: Option<String>,
    /// How long a dead broker stays registered, e.g. 6s.
    #[arg(long, env = "STRATA_SESSION_TIMEOUT", value_parser = parse::duration)]
    pub session_timeout: Option<Duration>,
    /// A follower not caught up for this long leaves the ISR, e.g. 30s.
    #[arg(long, env = "STRATA_REPLICA_LAG_TIME_MAX", value_parser = parse::duration)]
    pub replica_lag_time_max: Option<Duration>,
    /// How often leadership moves back to preferred replicas, e.g. 30s.
    #[arg(long, env = "STRATA_LEADER_REBALANCE_INTERVAL", value_parser = parse::duration)]
    pub leader_rebalance_interval: Option<Duration>,
    /// The controller evens out replicas and leaders across live brokers on its own, at the
    /// leader rebalance interval, whenever no reassignment is under way (off by default; the
    /// same moves as `strata cluster balance`). A new broker then gets partitions by itself.
    #[arg(long, env = "STRATA_AUTO_BALANCE")]
    pub auto_balance: bool,
    /// On SIGTERM, wait at most this long for the controller to move this broker's
    /// leaderships before stopping (controlled shutdown), e.g. 15s; 0s stops at once.
    #[arg(long, env = "STRATA_CONTROLLED_SHUTDOWN_TIMEOUT", value_parser = parse::duration)]
    pub controlled_shutdown_timeout: Option<Duration>,
    /// A producer id not heard from for this long is forgotten by each partition (Kafka's
    /// producer.id.expiration.ms; its next write must start again at sequence 0), e.g. 1d.
    #[arg(long, env = "STRATA_PRODUCER_ID_EXPIRATION", value_parser = parse::duration)]
    pub producer_id_expiration: Option<Duration>,
    /// Object store of the remote tier: s3://BUCKET/PREFIX (or file:///DIR). Without it,
    /// nothing is tiered.
    #[arg(long, env = "STRATA_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// S3 endpoint, e.g. http://127.0.0.1:4566 for LocalStack (credentials: AWS_* variables).
    #[arg(long, env = "STRATA_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default us-east-1).
    #[arg(long, env = "STRATA_S3_REGION")]
    pub s3_region: Option<String>,
    /// Retention runs when it is due (a segment sealed, the oldest one expired); one held back
    /// by the high watermark or by segments not yet tiered is looked at again after this, e.g.
    /// 30s (Kafka's log.retention.check.interval.ms).
    #[arg(long, env = "STRATA_RETENTION_CHECK_INTERVAL", value_parser = parse::duration)]
    pub retention_check_interval: Option<Duration>,
    /// Unlisted segment objects (a crashed upload's leftovers) are deleted once this old by the
    /// store's clock, e.g. 10m; an upload abandons its manifest write after half of it.
    #[arg(long, env = "STRATA_REMOTE_SCRUB_GRACE", value_parser = parse::duration)]
    pub remote_scrub_grace: Option<Duration>,
    /// How often leaders scrub their partitions' remote logs, e.g. 10m.
    #[arg(long, env = "STRATA_REMOTE_SCRUB_INTERVAL", value_parser = parse::duration)]
    pub remote_scrub_interval: Option<Duration>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off when not given).
    #[arg(long, env = "STRATA_METRICS", value_name = "HOST:PORT")]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub security: super::security::SecurityArgs,
    /// TOML file with any of the settings above (keys as the flags, with _ for -).
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The limits `strata serve` and `strata dev` share.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct LimitArgs {
    /// Most partition replicas this broker hosts; lowered at start to what its open-files
    /// limit and vm.max_map_count allow (default 10000).
    #[arg(long, env = "STRATA_MAX_PARTITIONS_PER_BROKER")]
    pub max_partitions_per_broker: Option<u32>,
    /// Shortest session timeout a group member may ask for (Kafka's
    /// group.min.session.timeout.ms), e.g. 6s.
    #[arg(long, env = "STRATA_GROUP_MIN_SESSION_TIMEOUT", value_parser = parse::duration)]
    pub group_min_session_timeout: Option<Duration>,
    /// How much metadata history the controller keeps before compacting etcd, e.g. 1h.
    #[arg(long, env = "STRATA_METADATA_HISTORY", value_parser = parse::duration)]
    pub metadata_history: Option<Duration>,
    /// Most client and peer connections the broker holds at once (Kafka's max.connections);
    /// the next is closed as it is accepted, with a warning in the log (default 4096).
    #[arg(long, env = "STRATA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Partitions this broker uploads to the object store at once (default 4); each upload
    /// streams its segment with at most two 8 MiB parts in flight.
    #[arg(long, env = "STRATA_REMOTE_UPLOAD_CONCURRENCY")]
    pub remote_upload_concurrency: Option<usize>,
    /// Bytes one ranged GET of a replay from the object store fetches
    /// (remote.fetch.chunk.bytes, default 16MiB, between 64KiB and 256MiB), e.g. 32MiB;
    /// remote reads hold at most four such chunks in memory at once.
    #[arg(long, env = "STRATA_REMOTE_FETCH_CHUNK_BYTES", value_parser = parse::size)]
    pub remote_fetch_chunk_bytes: Option<usize>,
}

/// The file form of [`ServeArgs`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    id: Option<i32>,
    listen: Option<String>,
    advertise: Option<String>,
    data_dir: Option<PathBuf>,
    etcd: Option<Vec<String>>,
    etcd_ca: Option<PathBuf>,
    etcd_cert: Option<PathBuf>,
    etcd_key: Option<PathBuf>,
    cluster: Option<String>,
    rack: Option<String>,
    session_timeout: Option<String>,
    replica_lag_time_max: Option<String>,
    leader_rebalance_interval: Option<String>,
    auto_balance: Option<bool>,
    controlled_shutdown_timeout: Option<String>,
    producer_id_expiration: Option<String>,
    object_store: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    retention_check_interval: Option<String>,
    remote_scrub_grace: Option<String>,
    remote_scrub_interval: Option<String>,
    metrics: Option<String>,
    max_partitions_per_broker: Option<u32>,
    group_min_session_timeout: Option<String>,
    metadata_history: Option<String>,
    max_connections: Option<usize>,
    remote_upload_concurrency: Option<usize>,
    remote_fetch_chunk_bytes: Option<String>,
}

/// The settings after merging flags, environment and file.
#[derive(Debug, PartialEq)]
pub struct ServeSettings {
    pub id: i32,
    pub listen: String,
    pub advertise: Option<String>,
    pub data_dir: PathBuf,
    pub etcd: Vec<String>,
    /// TLS to etcd, when --etcd-ca is given.
    pub etcd_tls: Option<strata_proto::tls::ClientFiles>,
    pub cluster: String,
    pub rack: Option<String>,
    pub session_timeout: Duration,
    pub replica_lag_time_max: Duration,
    pub leader_rebalance_interval: Duration,
    pub auto_balance: bool,
    pub controlled_shutdown_timeout: Duration,
    pub producer_id_expiration: Duration,
    pub object_store: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub retention_check_interval: Duration,
    pub remote_scrub_grace: Duration,
    pub remote_scrub_interval: Duration,
    pub metrics: Option<String>,
    pub max_partitions_per_broker: u32,
    pub group_min_session_timeout: Duration,
    pub metadata_history: Duration,
    pub max_connections: usize,
    pub remote_upload_concurrency: usize,
    pub remote_fetch_chunk_bytes: usize,
}

pub fn settings(args: ServeArgs) -> anyhow::Result<ServeSettings> {
    let file: ServeFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => ServeFile::default(),
    };
    let duration = |flag: Option<Duration>, file: Option<String>, key: &str, default: u64| match (
        flag, file,
    ) {
        (Some(d), _) => Ok(d),
        (None, Some(s)) => {
            parse::duration(&s).map_err(|e| anyhow::anyhow!("{key} in the config file: {e}"))
        }
        (None, None) => Ok(Duration::from_secs(default)),
    };
    let retention_check_interval = duration(
        args.retention_check_interval,
        file.retention_check_interval,
        "retention_check_interval",
        30,
    )?;
    let remote_scrub_grace = duration(
        args.remote_scrub_grace,
        file.remote_scrub_grace,
        "remote_scrub_grace",
        600,
    )?;
    let remote_scrub_interval = duration(
        args.remote_scrub_interval,
        file.remote_scrub_interval,
        "remote_scrub_interval",
        600,
    )?;
    let session_timeout = duration(
        args.session_timeout,
        file.session_timeout,
        "session_timeout",
        6,
    )?;
    let replica_lag_time_max = duration(
        args.replica_lag_time_max,
        file.replica_lag_time_max,
        "replica_lag_time_max",
        30,
    )?;
    let leader_rebalance_interval = duration(
        args.leader_rebalance_interval,
        file.leader_rebalance_interval,
        "leader_rebalance_interval",
        30,
    )?;
    let controlled_shutdown_timeout = duration(
        args.controlled_shutdown_timeout,
        file.controlled_shutdown_timeout,
        "controlled_shutdown_timeout",
        15,
    )?;
    let producer_id_expiration = duration(
        args.producer_id_expiration,
        file.producer_id_expiration,
        "producer_id_expiration",
        24 * 60 * 60,
    )?;
    let group_min_session_timeout = duration(
        args.limits.group_min_session_timeout,
        file.group_min_session_timeout,
        "group_min_session_timeout",
        6,
    )?;
    let metadata_history = duration(
        args.limits.metadata_history,
        file.metadata_history,
        "metadata_history",
        60 * 60,
    )?;
    let max_partitions_per_broker = args
        .limits
        .max_partitions_per_broker
        .or(file.max_partitions_per_broker)
        .unwrap_or(strata_broker::capacity::DEFAULT_MAX_PARTITIONS);
    let max_connections = args
        .limits
        .max_connections
        .or(file.max_connections)
        .unwrap_or(strata_broker::limits::MAX_CONNECTIONS);
    if max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    let remote_upload_concurrency = args
        .limits
        .remote_upload_concurrency
        .or(file.remote_upload_concurrency)
        .unwrap_or(strata_broker::tier::DEFAULT_UPLOAD_CONCURRENCY);
    if remote_upload_concurrency == 0 {
        bail!("--remote-upload-concurrency must be at least 1");
    }
    let remote_fetch_chunk_bytes = match (
        args.limits.remote_fetch_chunk_bytes,
        file.remote_fetch_chunk_bytes,
    ) {
        (Some(b), _) => b,
        (None, Some(s)) => parse::size(&s)
            .map_err(|e| anyhow::anyhow!("remote_fetch_chunk_bytes in the config file: {e}"))?,
        (None, None) => strata_tiering::remote_log::DEFAULT_FETCH_CHUNK_BYTES,
    };
    let remote_fetch_chunk_bytes =
        strata_broker::tier::check_fetch_chunk_bytes(remote_fetch_chunk_bytes)
            .map_err(anyhow::Error::msg)?;
    let Some(id) = args.id.or(file.id) else {
        bail!("--id is required (or STRATA_ID, or id in the config file)");
    };
    if id < 0 {
        bail!("--id must be 0 or more, got {id}");
    }
    let Some(data_dir) = args.data_dir.or(file.data_dir) else {
        bail!("--data-dir is required (or STRATA_DATA_DIR, or data_dir in the config file)");
    };
    let etcd = args.etcd.or(file.etcd).unwrap_or_default();
    let etcd: Vec<String> = etcd
        .into_iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if etcd.is_empty() {
        bail!("--etcd is required (or STRATA_ETCD, or etcd in the config file): where the cluster's metadata lives");
    }
    if session_timeout < Duration::from_secs(2) {
        bail!("--session-timeout must be at least 2s (etcd's smallest lease)");
    }
    let etcd_identity = match (
        args.etcd_cert.or(file.etcd_cert),
        args.etcd_key.or(file.etcd_key),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => bail!("--etcd-cert needs --etcd-key"),
        (None, Some(_)) => bail!("--etcd-key needs --etcd-cert"),
    };
    let etcd_tls = match (args.etcd_ca.or(file.etcd_ca), etcd_identity) {
        (Some(ca), identity) => Some(strata_proto::tls::ClientFiles { ca, identity }),
        (None, None) => None,
        (None, Some(_)) => {
            bail!("--etcd-cert needs --etcd-ca: the CA that signed etcd's certificate")
        }
    };
    Ok(ServeSettings {
        id,
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:7092".to_string()),
        advertise: args.advertise.or(file.advertise),
        data_dir,
        etcd,
        etcd_tls,
        cluster: args
            .cluster
            .or(file.cluster)
            .unwrap_or_else(|| "strata".to_string()),
        rack: args.rack.or(file.rack),
        session_timeout,
        replica_lag_time_max,
        leader_rebalance_interval,
        auto_balance: args.auto_balance || file.auto_balance.unwrap_or(false),
        controlled_shutdown_timeout,
        producer_id_expiration,
        object_store: args.object_store.or(file.object_store),
        s3_endpoint: args.s3_endpoint.or(file.s3_endpoint),
        s3_region: args.s3_region.or(file.s3_region),
        retention_check_interval,
        remote_scrub_grace,
        remote_scrub_interval,
        metrics: args.metrics.or(file.metrics),
        max_partitions_per_broker,
        group_min_session_timeout,
        metadata_history,
        max_connections,
        remote_upload_concurrency,
        remote_fetch_chunk_bytes,
    })
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    super::dev::raise_open_files_limit();
    let security = args.security.clone();
    let s = settings(args)?;
    let listener = tokio::net::TcpListener::bind(&s.listen)
        .await
        .with_context(|| format!("cannot listen on {}", s.listen))?;
    let metrics = super::dev::bind_metrics(s.metrics.as_deref()).await?;
    let local = listener.local_addr()?;
    let advertised = match &s.advertise {
        Some(a) => a.clone(),
        None if local.ip().is_unspecified() => {
            bail!("--listen {} binds every interface; say which address others should use with --advertise HOST:PORT", s.listen)
        }
        None => local.to_string(),
    };
    let security_config = security.config(local, true)?;
    let security_note = (security_config.tls.is_some(), security_config.auth);
    let etcd_tls = match &s.etcd_tls {
        Some(files) => {
            let config = strata_proto::tls::Reloading::client(files.clone())
                .map_err(|e| anyhow::anyhow!("TLS to etcd: {e}"))?;
            config.watch(strata_proto::tls::RELOAD_EVERY);
            let make: strata_coordinator::MakeChannel = std::sync::Arc::new(move |endpoint| {
                strata_proto::tls::lazy_channel(config.clone(), strata_proto::tls::ETCD, endpoint)
            });
            Some(make)
        }
        None => None,
    };
    let coordinator =
        EtcdCoordinator::connect_with(&s.etcd, &s.cluster, EtcdOptions::default(), etcd_tls)
            .await
            .context("cannot connect to etcd")?;
    let mut config = BrokerConfig::new(s.id, &s.data_dir, advertised.clone());
    config.security = security_config;
    config.rack = s.rack.clone();
    config.session_ttl = s.session_timeout;
    config.replica_lag_time_max = s.replica_lag_time_max;
    config.leader_rebalance_interval = s.leader_rebalance_interval;
    config.auto_balance = s.auto_balance;
    config.controlled_shutdown_timeout = s.controlled_shutdown_timeout;
    config.producer_id_expiration = s.producer_id_expiration;
    config.retention_check_interval = s.retention_check_interval;
    config.max_partitions_per_broker = s.max_partitions_per_broker;
    config.groups.min_session_timeout = s.group_min_session_timeout;
    config.metadata_history = s.metadata_history;
    config.max_connections = s.max_connections;
    if let Some(url) = &s.object_store {
        let mut tier = strata_broker::tier::TierConfig::new(url.clone());
        tier.options.endpoint = s.s3_endpoint.clone();
        tier.options.region = s.s3_region.clone();
        tier.scrub_grace = s.remote_scrub_grace;
        tier.scrub_interval = s.remote_scrub_interval;
        tier.upload_concurrency = s.remote_upload_concurrency;
        tier.fetch_chunk_bytes = s.remote_fetch_chunk_bytes;
        config.tier = Some(tier);
        config.topic_defaults.remote_storage = true;
    }
    let broker = Broker::start(config, Arc::new(coordinator), strata_log::clock::system())
        .await
        .context("cannot start the broker")?;
    eprintln!(
        "strata serve: broker {} of cluster {:?} listening on {advertised}{} (etcd {}){}",
        s.id,
        s.cluster,
        super::dev::tls_note(&security_note),
        s.etcd.join(","),
        super::dev::metrics_note(metrics.as_ref())
    );
    super::dev::serve_until_signal(broker, listener, metrics).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile_dir();
        let path = dir.join("strata.toml");
        std::fs::write(&path, "id = 3\ndata_dir = \"/var/lib/strata\"\netcd = [\"127.0.0.1:2379\"]\nrack = \"a\"\nsession_timeout = \"10s\"\nmetrics = \"0.0.0.0:9644\"\n").unwrap();
        let s = settings(ServeArgs {
            config: Some(path.clone()),
            rack: Some("b".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.id, 3);
        assert_eq!(s.rack.as_deref(), Some("b"));
        assert_eq!(s.session_timeout, Duration::from_secs(10));
        assert_eq!(s.cluster, "strata");
        assert_eq!(s.listen, "127.0.0.1:7092");
        assert_eq!(s.metrics.as_deref(), Some("0.0.0.0:9644"));
        assert_eq!(s.producer_id_expiration, Duration::from_secs(24 * 60 * 60));
        std::fs::write(&path, "id = 3\nbogus = 1\n").unwrap();
        let err = settings(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("bogus"), "{err:#}");
    }

    #[test]
    fn missing_settings_are_named() {
        let err = settings(ServeArgs::default()).unwrap_err().to_string();
        assert!(err.contains("--id is required"), "{err}");
        let err = settings(ServeArgs {
            id: Some(1),
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("--etcd is required"), "{err}");
    }

    #[test]
    fn remote_fetch_chunk_bytes_is_read_and_bounded() {
        let base = || ServeArgs {
            id: Some(1),
            data_dir: Some("/tmp/x".into()),
            etcd: Some(vec!["127.0.0.1:2379".into()]),
            ..Default::default()
        };
        let s = settings(base()).unwrap();
        assert_eq!(s.remote_fetch_chunk_bytes, 16 << 20);
        let mut args = base();
        args.limits.remote_fetch_chunk_bytes = Some(parse::size("4MiB").unwrap());
        assert_eq!(settings(args).unwrap().remote_fetch_chunk_bytes, 4 << 20);
        for bad in [1024, 1 << 30] {
            let mut args = base();
            args.limits.remote_fetch_chunk_bytes = Some(bad);
            let err = settings(args).unwrap_err().to_string();
            assert!(
                err.contains("--remote-fetch-chunk-bytes is") && err.contains("between"),
                "{err}"
            );
        }
        let dir = tempfile_dir();
        let path = dir.join("chunk.toml");
        std::fs::write(&path, "remote_fetch_chunk_bytes = \"32MiB\"\n").unwrap();
        let mut args = base();
        args.config = Some(path);
        assert_eq!(settings(args).unwrap().remote_fetch_chunk_bytes, 32 << 20);
        assert!(parse::size("99999999999GiB")
            .unwrap_err()
            .contains("too large"));
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strata-serve-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
