//! Reaching a consumer group's coordinator: `FindCoordinator` on any broker, the answer cached
//! until the coordinator moves, and calls retried while it does (NOT_COORDINATOR, a broker that
//! died, a coordinator being chosen) with backoff, up to the request timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::Channel;
use parking_lot::Mutex;
use strata_proto::group_client::GroupClient;
use strata_proto::{ErrorCode, FindCoordinatorRequest};

use crate::error::{Error, Result};
use crate::metadata::Cluster;

#[derive(Debug)]
pub(crate) struct GroupCalls {
    cluster: Arc<Cluster>,
    group: String,
    address: Mutex<Option<String>>,
}

impl GroupCalls {
    pub(crate) fn new(cluster: Arc<Cluster>, group: &str) -> GroupCalls {
        GroupCalls {
            cluster,
            group: group.to_string(),
            address: Mutex::new(None),
        }
    }

    /// The coordinator's address, asking a broker when it is not known.
    async fn coordinator(&self) -> Result<String> {
        if let Some(a) = self.address.lock().clone() {
            return Ok(a);
        }
        let request = FindCoordinatorRequest {
            group: self.group.clone(),
        };
        let found = on_any_broker(&self.cluster, |mut c| {
            let r = request.clone();
            async move { c.find_coordinator(r).await }
        })
        .await?
        .address;
        *self.address.lock() = Some(found.clone());
        Ok(found)
    }

    /// Calls the coordinator, finding it again and retrying while it moves or is unreachable.
    pub(crate) async fn call<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut(GroupClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut backoff = Duration::from_millis(50);
        let deadline = tokio::time::Instant::now() + self.cluster.config().request_timeout;
        loop {
            let result = async {
                let address = self.coordinator().await?;
                let client = self.cluster.conns().group(&address).await?;
                call(client)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| self.cluster.conns().error(s, &address))
            }
            .await;
            match result {
                Err(e) if moved(&e) && tokio::time::Instant::now() + backoff < deadline => {
                    tracing::debug!(group = %self.group, error = %e, "looking for the group coordinator again");
                    *self.address.lock() = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }
}

/// Runs a `Group` call on the first broker that answers it (bootstrap brokers first); a
/// broker that cannot be reached or answers with a retriable error passes it on to the next.
pub(crate) async fn on_any_broker<T, F, Fut>(cluster: &Cluster, mut call: F) -> Result<T>
where
    F: FnMut(GroupClient<Channel>) -> Fut,
    Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    let mut last = None;
    for address in cluster.any_broker_addresses() {
        let client = match cluster.conns().group(&address).await {
            Ok(c) => c,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match call(client).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(status) => {
                let err = cluster.conns().error(status, &address);
                if !err.is_retriable() {
                    return Err(err);
                }
                last = Some(err);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::InvalidInput("no broker address given".into())))
}

/// Errors after which the coordinator should be looked up again.
fn moved(e: &Error) -> bool {
    matches!(e, Error::Unreachable { .. } | Error::Timeout { .. })
        || e.code()
            .is_some_and(|c| c.needs_coordinator_lookup() || c == ErrorCode::LeaderNotAvailable)
}
