//! The channel to etcd when it speaks TLS: one lazily connected tonic channel per endpoint,
//! made by the caller's TLS connector (which reloads its certificate files, so a rotated client
//! certificate is used by the next connection without a restart), balanced over the endpoints
//! by power of two choices on pending requests, as etcd's own client balances.
//!
//! Invariant: every endpoint's channel carries the same connect timeout and HTTP/2 keepalive
//! as the plaintext path (`etcd.rs`), so a dead member is noticed the same way.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::util::BoxCloneSyncService;

use crate::{CoordinatorError, Result};

/// Makes the channel to one endpoint (`http://host:port`; the connector does the TLS).
pub type MakeChannel = Arc<dyn Fn(Endpoint) -> Channel + Send + Sync>;

/// Requests waiting for the balancer.
const BUFFER: usize = 1024;

/// The channel over `urls` (each `https://host:port`).
pub(crate) fn channel(
    urls: &[String],
    make: &MakeChannel,
    connect_timeout: Duration,
    keep_alive: (Duration, Duration),
) -> Result<etcd_client::Channel> {
    let mut channels = Vec::with_capacity(urls.len());
    for url in urls {
        let plain = url.replacen("https://", "http://", 1);
        let endpoint = Endpoint::from_shared(plain)
            .map_err(|e| CoordinatorError::Unavailable(format!("etcd endpoint {url}: {e}")))?
            .connect_timeout(connect_timeout)
            .http2_keep_alive_interval(keep_alive.0)
            .keep_alive_timeout(keep_alive.1)
            .keep_alive_while_idle(false);
        channels.push(make(endpoint));
    }
    if channels.len() == 1 {
        return Ok(etcd_client::Channel::Tonic(channels.remove(0)));
    }
    let balance = Balance::new(PendingRequestsDiscover::new(
        ServiceList::new(channels),
        CompleteOnResponse::default(),
    ));
    Ok(etcd_client::Channel::Custom(BoxCloneSyncService::new(
        Buffer::new(balance, BUFFER),
    )))
}
