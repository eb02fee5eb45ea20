//! `strata dev`: one broker, embedded metadata under the data directory, nothing to install.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use strata_broker::{Broker, BrokerConfig};
use strata_coordinator::EmbeddedCoordinator;
use tokio::net::TcpListener;

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Where logs and metadata live.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./strata-data")]
    pub data_dir: PathBuf,
    /// Address to serve gRPC on.
    #[arg(long, env = "STRATA_LISTEN", default_value = crate::DEFAULT_BROKERS)]
    pub listen: String,
    /// Object store of the remote tier (default: file://<data-dir>/tier, on local disk).
    #[arg(long, env = "STRATA_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// S3 endpoint for an s3:// object store, e.g. http://127.0.0.1:4566 (LocalStack).
    #[arg(long, env = "STRATA_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default us-east-1).
    #[arg(long, env = "STRATA_S3_REGION")]
    pub s3_region: Option<String>,
    /// Retention runs when it is due (a segment sealed, the oldest one expired); one held back
    /// by the high watermark or by segments not yet tiered is looked at again after this, e.g.
    /// 30s (Kafka's log.retention.check.interval.ms).
    #[arg(long, env = "STRATA_RETENTION_CHECK_INTERVAL", default_value = "30s", value_parser = crate::parse::duration)]
    pub retention_check_interval: std::time::Duration,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off when not given).
    #[arg(long, env = "STRATA_METRICS", value_name = "HOST:PORT")]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub limits: super::serve::LimitArgs,
    #[command(flatten)]
    pub security: super::security::SecurityArgs,
}

pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    raise_open_files_limit();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let metrics = bind_metrics(args.metrics.as_deref()).await?;
    let local = listener.local_addr()?;
    // Clients must be told an address they can dial: not 0.0.0.0.
    let advertised = if local.ip().is_unspecified() {
        format!("127.0.0.1:{}", local.port())
    } else {
        local.to_string()
    };
    let coordinator = EmbeddedCoordinator::open(args.data_dir.join("metadata"), "dev")
        .context("cannot open the embedded metadata store")?;
    let mut config = BrokerConfig::new(0, &args.data_dir, advertised.clone());
    config.security = args.security.config(local, false)?;
    // Tiering is on by default, to the local filesystem: the remote tier works with nothing
    // installed, and topics are tiered unless they say otherwise.
    let store = match args.object_store {
        Some(url) => url,
        None => {
            let dir = args.data_dir.join("tier");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            format!("file://{}", std::fs::canonicalize(&dir)?.display())
        }
    };
    let mut tier = strata_broker::tier::TierConfig::new(store);
    match args.limits.remote_upload_concurrency {
        Some(0) => anyhow::bail!("--remote-upload-concurrency must be at least 1"),
        Some(n) => tier.upload_concurrency = n,
        None => {}
    }
    if let Some(bytes) = args.limits.remote_fetch_chunk_bytes {
        tier.fetch_chunk_bytes =
            strata_broker::tier::check_fetch_chunk_bytes(bytes).map_err(anyhow::Error::msg)?;
    }
    tier.options.endpoint = args.s3_endpoint;
    tier.options.region = args.s3_region;
    config.tier = Some(tier);
    config.topic_defaults.remote_storage = true;
    config.retention_check_interval = args.retention_check_interval;
    if let Some(max) = args.limits.max_partitions_per_broker {
        config.max_partitions_per_broker = max;
    }
    if let Some(min) = args.limits.group_min_session_timeout {
        config.groups.min_session_timeout = min;
    }
    if let Some(keep) = args.limits.metadata_history {
        config.metadata_history = keep;
    }
    if let Some(max) = args.limits.max_connections {
        if max == 0 {
            anyhow::bail!("--max-connections must be at least 1");
        }
        config.max_connections = max;
    }
    let config_security_note = (config.security.tls.is_some(), config.security.auth);
    let broker = Broker::start(config, Arc::new(coordinator), strata_log::clock::system())
        .await
        .context("cannot start the broker")?;
    eprintln!(
        "strata dev: broker 0 listening on {advertised}{} (data in {}){}; Ctrl-C stops it",
        tls_note(&config_security_note),
        args.data_dir.display(),
        metrics_note(metrics.as_ref())
    );
    serve_until_signal(broker, listener, metrics).await?;
    Ok(ExitCode::SUCCESS)
}

/// " with TLS, auth password" for the startup line.
pub fn tls_note(&(tls, auth): &(bool, strata_broker::security::AuthModes)) -> String {
    match (tls, auth.any()) {
        (false, _) => " (plaintext)".to_string(),
        (true, false) => " (TLS)".to_string(),
        (true, true) => format!(" (TLS, auth {auth})"),
    }
}

/// Binds the listener of `--metrics HOST:PORT`, if given, before anything else starts.
pub async fn bind_metrics(addr: Option<&str>) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr} (--metrics)"))?;
    Ok(Some(listener))
}

/// ", metrics on http://ADDR/metrics" for the startup line.
pub fn metrics_note(metrics: Option<&TcpListener>) -> String {
    metrics
        .and_then(|l| l.local_addr().ok())
        .map(|a| format!(", metrics on http://{a}/metrics"))
        .unwrap_or_default()
}

/// Serves the broker, and its metrics endpoint if there is one, until Ctrl-C or SIGTERM.
pub async fn serve_until_signal(
    broker: Broker,
    listener: TcpListener,
    metrics: Option<TcpListener>,
) -> anyhow::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(());
    let endpoint = metrics.map(|l| {
        let mut stopped = stopped.clone();
        // Ends when the signal came or the broker stopped anyway (the sender is dropped).
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        tokio::spawn(strata_broker::metrics_http::serve(
            l,
            broker.state().clone(),
            shutdown,
        ))
    });
    let shutdown = async move {
        super::shutdown_signal().await;
        let _ = stop.send(());
    };
    let served = broker.serve(listener, shutdown).await;
    if let Some(endpoint) = endpoint {
        let _ = endpoint.await;
    }
    served?;
    Ok(())
}

/// Every partition keeps a log and two index files open: lift the soft limit on open files to
/// the hard limit, as Kafka's operations guide asks of its brokers.
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < 16_384 => tracing::warn!(
            limit = n,
            "the open-files limit is low; raise it (ulimit -n) for brokers with many partitions"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
}
