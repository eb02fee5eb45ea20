//! Starting, serving and stopping one broker.
//!
//! [`Broker::start`] locks the data directory, registers the broker under a lease, and opens
//! the replicas the metadata assigns to it. While serving, background tasks follow the
//! metadata, campaign for (and run) the controller, keep the registration, and do housekeeping. [`Broker::serve`] takes a bound listener and a shutdown future (so
//! tests bind port 0 and stop cleanly); on shutdown it stops accepting requests, lets running
//! ones finish, stops background work and closes every log cleanly (flush, clean marker).

use std::fs::File;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use strata_coordinator::{Coordinator, CoordinatorError, Lease};
use strata_log::Clock;
use strata_proto::v1::{
    admin_server::AdminServer, log_server::LogServer, replica_server::ReplicaServer,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::limits::{self, Deadline};
use crate::metadata::{BrokerRecord, MetadataStore};
use crate::peers::Peers;
use crate::replicas::ReplicaManager;
use crate::service::{AdminService, LogService, ReplicaService};
use crate::state::BrokerState;

/// HTTP/2 flow-control windows: large enough that one stream can carry a multi-MiB batch
/// without waiting for window updates on loopback or a LAN.
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

pub struct Broker {
    state: Arc<BrokerState>,
    registration: Lease,
    /// Held for the broker's lifetime: one process per data directory.
    _lock: File,
}

impl Broker {
    /// Locks the data directory, registers the broker (waiting out the lease of a crashed
    /// predecessor with the same id), and applies the current metadata to the local replicas.
    pub async fn start(
        config: BrokerConfig,
        coordinator: Arc<dyn Coordinator>,
        clock: Arc<dyn Clock>,
    ) -> Result<Broker> {
        let lock = lock_data_dir(&config)?;
        let metadata = MetadataStore::new(coordinator);
        let incarnation = new_incarnation();
        let capacity = crate::capacity::of_this_process(config.max_partitions_per_broker);
        tracing::info!(partitions = capacity.replicas, set_by = %capacity.set_by, "partition replicas this broker can host");
        let me = BrokerRecord {
            id: config.broker_id,
            address: config.advertised_address.clone(),
            rack: config.rack.clone(),
            incarnation,
            disk_id: crate::disk_id::load_or_create(&config.data_dir)?,
            max_partitions: capacity.replicas,
            max_partitions_why: capacity.set_by.clone(),
        };
        tracing::info!(broker = config.broker_id, incarnation, disk_id = %me.disk_id, "registering");
        let registration = register(&metadata, &me, config.session_ttl).await?;
        let tier = match &config.tier {
            Some(t) => Some(crate::tier::Tier::open(
                t.clone(),
                metadata.cluster(),
                config.data_dir.join("remote-cache"),
                clock.clone(),
            )?),
            None => None,
        };
        if let Some(tier) = &tier {
            if let crate::tier::StoreCheck::Unreachable(why) = tier.check().await? {
                tracing::warn!(reason = %why, "the object store does not answer; serving local data, tiering starts once it answers");
            }
        }
        let replicas = ReplicaManager::new(
            config.broker_id,
            incarnation,
            config.logs_dir(),
            config.topic_defaults.clone(),
            clock.clone(),
        );
        let security = Arc::new(crate::security::Security::new(config.security.clone())?);
        if let Some(password) = &config.security.bootstrap_admin_password {
            if crate::security::users::bootstrap_admin(metadata.store().as_ref(), password).await? {
                tracing::info!(target: "strata::audit", user = "admin", "no user existed: created the bootstrap admin (a super user)");
            }
        }
        security.reload(metadata.store().as_ref()).await?;
        let groups = crate::groups::GroupCoordinator::new(
            config.broker_id,
            metadata.store().clone(),
            config.groups.clone(),
        );
        let state = Arc::new(BrokerState {
            config,
            incarnation,
            registration: me,
            metadata,
            replicas,
            clock,
            peers: Peers::new(security.peer_tls.clone()),
            security,
            is_controller: AtomicBool::new(false),
            controller_fence: Default::default(),
            replication_throttle: Default::default(),
            sync_lock: tokio::sync::Mutex::new(()),
            fetchers: Default::default(),
            fetch_sessions: crate::replication::FetchSessions::new(incarnation),
            isr_joiners: Default::default(),
            topic_changes: Default::default(),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            tier,
            groups,
        });
        state.sync().await?;
        state
            .replicas
            .remove_orphans(&state.replicas.snapshot())
            .await?;
        tracing::info!(
            broker = state.config.broker_id,
            address = %state.config.advertised_address,
            topics = state.replicas.local_topics().len(),
            data_dir = %state.config.data_dir.display(),
            "broker started"
        );
        Ok(Broker {
            state,
            registration,
            _lock: lock,
        })
    }

    pub fn state(&self) -> &Arc<BrokerState> {
        &self.state
    }

    /// Serves gRPC on `listener` until `shutdown` completes, then stops background work,
    /// closes every log cleanly and gives up the registration and any controller role.
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
        })
        .max_decoding_message_size(limits::MAX_CONTROL_REQUEST)
        .max_encoding_message_size(limits::MAX_CONTROL_ANSWER);
        // Replica fetches carry records like consumer fetches.
        let replica = ReplicaServer::new(ReplicaService {
            state: state.clone(),
        })
        .max_decoding_message_size(limits::MAX_CONTROL_REQUEST)
        .max_encoding_message_size(state.config.max_fetch_bytes + 1024 * 1024);
        let group = strata_proto::v1::group_server::GroupServer::new(
            crate::groups::service::GroupService {
                state: state.clone(),
            },
        )
        .max_decoding_message_size(limits::MAX_CONTROL_REQUEST)
        .max_encoding_message_size(limits::MAX_CONTROL_ANSWER);
        // A JoinGroup may wait its whole rebalance timeout.
        let group_deadline = state.groups.config().max_rebalance_timeout + Duration::from_secs(60);
        let slots = limits::ConnectionSlots::new(state.config.max_connections);
        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks = [
            tokio::spawn(crate::housekeeping::run(state.clone(), stop_rx.clone())),
            tokio::spawn(crate::cluster::follow_metadata(
                state.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(crate::control::controller::run(
                state.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(crate::tier::run(state.clone(), stop_rx.clone())),
            tokio::spawn(crate::groups::run(state.clone(), stop_rx.clone())),
            tokio::spawn(crate::security::users::follow(
                state.metadata.store().clone(),
                state.security.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(crate::replication::manage_isr(
                state.clone(),
                stop_rx.clone(),
            )),
        ];
        let registration = tokio::spawn(keep_registered(state.clone(), self.registration, stop_rx));
        wait_for_leaderships(&state).await;
        // Past the connection limit a connection is closed as it is accepted; TLS handshakes
        // run in their own tasks (`security::listener`).
        let incoming =
            crate::security::listener::incoming(listener, slots, state.security.server_tls.clone());
        state.security.watch_files();
        let security = strata_proto::v1::security_server::SecurityServer::new(
            crate::security::service::SecurityService {
                state: state.clone(),
            },
        )
        .max_decoding_message_size(limits::MAX_CONTROL_REQUEST)
        .max_encoding_message_size(limits::MAX_CONTROL_ANSWER);
        // Controlled shutdown: keep serving until the leaderships have moved.
        let shutdown = {
            let state = state.clone();
            async move {
                shutdown.await;
                crate::control::shutdown::run(&state).await;
            }
        };
        let served = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_concurrent_streams(limits::MAX_STREAMS_PER_CONNECTION)
            .layer(crate::security::authn::AuthLayer::new(
                state.security.clone(),
                state.metadata.store().clone(),
            ))
            .add_service(Deadline::new(log, limits::LOG_DEADLINE))
            .add_service(Deadline::new(admin, limits::ADMIN_DEADLINE))
            .add_service(Deadline::new(replica, limits::REPLICA_DEADLINE))
            .add_service(Deadline::new(group, group_deadline))
            .add_service(Deadline::new(security, limits::ADMIN_DEADLINE))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        let _ = stop_tx.send(true);
        for task in tasks {
            let _ = task.await;
        }
        state.fetchers.stop_all();
        let closed = state.replicas.close_all().await;
        // Only now, with the controller stopped and the logs closed, does the broker leave: if
        // it released its registration while its own controller ran, that controller would take
        // its partitions offline on the way out (and bring them back at the next start).
        if let Ok(Some(lease)) = registration.await {
            if let Err(e) = lease.release().await {
                tracing::warn!(error = %e, "releasing the broker registration failed");
            }
        }
        tracing::info!(
            broker = state.config.broker_id,
            "broker stopped; logs closed"
        );
        served.map_err(|e| BrokerError::Internal(format!("gRPC server failed: {e}")))?;
        closed
    }
}

/// Waits (bounded by two sessions) until the controller has re-elected, in this incarnation,
/// every partition the metadata still says this broker leads: a restarted broker never leads
/// at its old epoch, so until then its partitions would answer NOT_LEADER. Requests that arrive
/// meanwhile wait in the listener's backlog instead.
async fn wait_for_leaderships(state: &BrokerState) {
    let deadline = tokio::time::Instant::now() + state.config.session_ttl * 2;
    let me = state.config.broker_id;
    let mut logged = false;
    loop {
        let stale = state
            .replicas
            .local_topics()
            .iter()
            .flat_map(|t| t.partitions.values())
            .filter(|p| {
                let s = p.state();
                s.leader == me && s.leader_incarnation != state.incarnation
            })
            .count();
        if stale == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(partitions = stale, "the controller has not re-elected this broker's partitions since its restart; serving without them");
            return;
        }
        if !logged {
            tracing::info!(partitions = stale, "waiting for the controller to re-elect the partitions this broker led before its restart");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A number unique to this run of the broker process (its registration's incarnation): the
/// wall clock in microseconds, which a restart always moves on.
fn new_incarnation() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as i64)
}

/// Registers the broker. A conflict may be the lease of this broker's own crashed predecessor:
/// wait until it expires (a little over one TTL); after that the id belongs to a live broker.
async fn register(metadata: &MetadataStore, me: &BrokerRecord, ttl: Duration) -> Result<Lease> {
    let deadline = tokio::time::Instant::now() + ttl + ttl / 2 + Duration::from_secs(1);
    let mut logged = false;
    loop {
        match metadata.register_broker(me, ttl).await {
            Ok(lease) => return Ok(lease),
            Err(BrokerError::Metadata(CoordinatorError::Conflict { .. }))
                if tokio::time::Instant::now() < deadline =>
            {
                if !logged {
                    tracing::info!(
                        broker = me.id,
                        "broker id is registered; waiting for an earlier registration to expire"
                    );
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(BrokerError::Metadata(CoordinatorError::Conflict { .. })) => {
                let holder = metadata
                    .brokers()
                    .await?
                    .into_iter()
                    .find(|b| b.id == me.id);
                let at = holder
                    .map(|b| format!(" at {}", b.address))
                    .unwrap_or_default();
                return Err(BrokerError::InvalidRequest(format!(
                    "broker id {} is already registered by a live broker{at}; give each broker its own --id",
                    me.id
                )));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Keeps the registration: if its lease is ever lost (etcd lost it), registers again.
/// Returns the registration when told to stop, for the caller to release once everything else
/// has stopped.
async fn keep_registered(
    state: Arc<BrokerState>,
    mut lease: Lease,
    mut stop: watch::Receiver<bool>,
) -> Option<Lease> {
    let me = state.registration.clone();
    loop {
        tokio::select! {
            _ = lease.lost() => {}
            _ = stop.changed() => return Some(lease),
        }
        tracing::warn!(
            broker = me.id,
            "broker registration lost; registering again"
        );
        loop {
            let attempt = tokio::select! {
                r = register(&state.metadata, &me, state.config.session_ttl) => r,
                _ = stop.changed() => return None,
            };
            match attempt {
                Ok(new) => {
                    lease = new;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "registering again failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
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
