//! `strata dev`: one broker, embedded metadata under the data directory, nothing to install.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use strata_broker::{Broker, BrokerConfig};
use strata_coordinator::EmbeddedCoordinator;

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Where logs and metadata live.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./strata-data")]
    pub data_dir: PathBuf,
    /// Address to serve gRPC on.
    #[arg(long, env = "STRATA_LISTEN", default_value = crate::DEFAULT_BROKERS)]
    pub listen: String,
}

pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    raise_open_files_limit();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    // Clients must be told an address they can dial: not 0.0.0.0.
    let advertised = if local.ip().is_unspecified() {
        format!("127.0.0.1:{}", local.port())
    } else {
        local.to_string()
    };
    let coordinator = EmbeddedCoordinator::open(args.data_dir.join("metadata"), "dev")
        .context("cannot open the embedded metadata store")?;
    let config = BrokerConfig::new(0, &args.data_dir, advertised.clone());
    let broker = Broker::start(config, Arc::new(coordinator), strata_log::clock::system())
        .await
        .context("cannot start the broker")?;
    eprintln!(
        "strata dev: broker 0 listening on {advertised} (data in {}); Ctrl-C stops it",
        args.data_dir.display()
    );
    broker.serve(listener, super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
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
