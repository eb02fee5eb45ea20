//! Connections from this broker to the others: one cached channel per address.
//! Used to forward topic creation to the controller and to ask leaders for partition status.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use strata_proto::v1::{admin_client::AdminClient, replica_client::ReplicaClient};
use tonic::transport::{Channel, Endpoint};

use crate::error::{BrokerError, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    fn channel(&self, address: &str) -> Result<Channel> {
        if let Some(c) = self.channels.lock().get(address) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|_| BrokerError::Internal(format!("broker address {address:?} is not valid")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(self
            .channels
            .lock()
            .entry(address.to_string())
            .or_insert(channel)
            .clone())
    }

    pub fn admin(&self, address: &str) -> Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel(address)?))
    }

    pub fn replica(&self, address: &str) -> Result<ReplicaClient<Channel>> {
        Ok(ReplicaClient::new(self.channel(address)?))
    }
}
