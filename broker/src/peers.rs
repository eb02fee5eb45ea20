//! Connections from this broker to the others: one cached channel per address.
//! Used to forward topic changes to the controller and to ask leaders for partition status.
//! With TLS, peers are reached over mTLS: this broker presents its own certificate (CN
//! `Broker:ID`) and checks theirs against the client CA; new connections pick up rotated files.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strata_proto::tls::{Reloading, TlsConnector};
use strata_proto::v1::{admin_client::AdminClient, replica_client::ReplicaClient};
use tonic::transport::{Channel, Endpoint};

use crate::error::{BrokerError, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// For a topic change forwarded to the controller: a topic of thousands of partitions takes
/// seconds to write and open (the client's own timeout is 30 s).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
pub struct Peers {
    channels: Mutex<HashMap<(String, Duration), Channel>>,
    tls: Option<Arc<Reloading<rustls::ClientConfig>>>,
}

impl Peers {
    pub fn new(tls: Option<Arc<Reloading<rustls::ClientConfig>>>) -> Self {
        Peers {
            channels: Mutex::default(),
            tls,
        }
    }

    fn channel(&self, address: &str, timeout: Duration) -> Result<Channel> {
        let key = (address.to_string(), timeout);
        if let Some(c) = self.channels.lock().get(&key) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|_| BrokerError::Internal(format!("broker address {address:?} is not valid")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .tcp_nodelay(true);
        let channel = match &self.tls {
            Some(tls) => endpoint.connect_with_connector_lazy(TlsConnector::new(tls.clone())),
            None => endpoint.connect_lazy(),
        };
        Ok(self.channels.lock().entry(key).or_insert(channel).clone())
    }

    /// The controller's Admin service, for a forwarded topic change (a longer timeout).
    pub fn controller_admin(&self, address: &str) -> Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel(address, FORWARD_TIMEOUT)?))
    }

    pub fn replica(&self, address: &str) -> Result<ReplicaClient<Channel>> {
        Ok(ReplicaClient::new(self.channel(address, REQUEST_TIMEOUT)?))
    }
}
