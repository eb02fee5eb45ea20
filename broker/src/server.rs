//! Starting, serving and stopping one broker.
//!
//! [`Broker::start`] locks the data directory, registers the broker, and opens the logs of every
//! topic in the metadata. [`Broker::serve`] takes a bound listener and a shutdown future (so
//! tests bind port 0 and stop cleanly); on shutdown it stops accepting requests, lets running
//! ones finish, stops background work and closes every log cleanly (flush, clean marker).

use std::fs::File;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use strata_coordinator::Coordinator;
use strata_log::Clock;
use strata_proto::v1::{admin_server::AdminServer, log_server::LogServer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::metadata::{BrokerRecord, MetadataStore};
use crate::partition::blocking;
use crate::replicas::ReplicaManager;
use crate::service::{AdminService, LogService};
use crate::state::BrokerState;

/// HTTP/2 flow-control windows: large enough that one stream can carry a multi-MiB batch
/// without waiting for window updates on loopback or a LAN.
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

pub struct Broker {
    state: Arc<BrokerState>,
    /// Held for the broker's lifetime: one process per data directory.
    _lock: File,
}

impl Broker {
    pub async fn start(
        config: BrokerConfig,
        coordinator: Arc<dyn Coordinator>,
        clock: Arc<dyn Clock>,
    ) -> Result<Broker> {
        let lock = lock_data_dir(&config)?;
        let metadata = MetadataStore::new(coordinator);
        metadata
            .register_broker(&BrokerRecord {
                id: config.broker_id,
                address: config.advertised_address.clone(),
                rack: config.rack.clone(),
            })
            .await?;
        let replicas = ReplicaManager::new(
            config.logs_dir(),
            config.topic_defaults.clone(),
            clock.clone(),
        );
        let topics = metadata.topics().await?;
        for topic in &topics {
            let states = metadata.partitions(&topic.value.name).await?;
            let states = states.into_iter().map(|s| s.value).collect();
            replicas.open_topic(topic.value.clone(), states).await?;
        }
        replicas
            .remove_orphans(topics.iter().map(|t| t.value.clone()).collect())
            .await?;
        tracing::info!(broker = config.broker_id, topics = topics.len(), data_dir = %config.data_dir.display(), "broker started");
        Ok(Broker {
            state: Arc::new(BrokerState {
                config,
                metadata,
                replicas,
                clock,
            }),
            _lock: lock,
        })
    }

    pub fn state(&self) -> &Arc<BrokerState> {
        &self.state
    }

    /// Serves gRPC on `listener` until `shutdown` completes, then closes every log cleanly.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let state = self.state.clone();
        let max = state.config.max_request_bytes;
        let log = LogServer::new(LogService {
            state: state.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(state.config.max_fetch_bytes + 1024 * 1024);
        let admin = AdminServer::new(AdminService {
            state: state.clone(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let housekeeping = tokio::spawn(housekeeping(state.clone(), stop_rx));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let served = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .add_service(log)
            .add_service(admin)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        let _ = stop_tx.send(true);
        let _ = housekeeping.await;
        let closed = state.replicas.close_all().await;
        tracing::info!(
            broker = state.config.broker_id,
            "broker stopped; logs closed"
        );
        served.map_err(|e| BrokerError::Internal(format!("gRPC server failed: {e}")))?;
        closed
    }
}

fn lock_data_dir(config: &BrokerConfig) -> Result<File> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        BrokerError::Internal(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    let path = dir.join(".lock");
    let file = File::create(&path)
        .map_err(|e| BrokerError::Internal(format!("cannot create {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(BrokerError::Internal(format!(
            "data directory {} is in use by another Strata process",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(BrokerError::Internal(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// Rolls by segment.ms, flushes by flush.ms and applies retention, until told to stop.
async fn housekeeping(state: Arc<BrokerState>, mut stop: watch::Receiver<bool>) {
    let tick = state.config.housekeeping_interval;
    let retention_every = state.config.retention_check_interval.as_millis().max(1) as u64;
    let mut last_retention = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        let retention = last_retention.elapsed() >= Duration::from_millis(retention_every);
        if retention {
            last_retention = tokio::time::Instant::now();
        }
        let topics = state.replicas.topics();
        let outcome = blocking(move || {
            for t in &topics {
                for p in &t.partitions {
                    if let Err(e) = p.housekeeping(retention) {
                        // A partition removed meanwhile is not an error worth a warning.
                        if !matches!(e, BrokerError::UnknownTopic(_)) {
                            tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "housekeeping failed");
                        }
                    }
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "housekeeping task failed");
        }
    }
}
