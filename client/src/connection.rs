//! One cached tonic [`Channel`] per broker address, created on first use.
//!
//! A channel is opened with the connect timeout and carries the request timeout; tonic
//! reconnects it by itself after a failure, so a channel is never replaced. This module never
//! retries: callers decide what a failure means.

use std::collections::HashMap;

use parking_lot::Mutex;
use strata_proto::admin_client::AdminClient;
use strata_proto::log_client::LogClient;
use tonic::transport::{Channel, Endpoint};

use crate::config::ClientConfig;
use crate::error::{Error, Result};

/// Generous cap on one gRPC message, both ways (a fetch answer holds whole batches).
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// HTTP/2 flow-control windows, matching the broker's: one stream can carry a multi-MiB batch
/// or fetch answer without stalling on window updates.
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// The channel cache.
#[derive(Debug)]
pub(crate) struct Connections {
    config: ClientConfig,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Connections {
    pub(crate) fn new(config: ClientConfig) -> Self {
        Connections {
            config,
            channels: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The channel to `address`, connecting when there is none yet.
    pub(crate) async fn channel(&self, address: &str) -> Result<Channel> {
        if let Some(channel) = self.channels.lock().get(address) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|_| {
                Error::InvalidInput(format!(
                    "broker address {address:?} is not valid; expected host:port"
                ))
            })?
            .connect_timeout(self.config.connect_timeout)
            .timeout(self.config.request_timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        let channel =
            match tokio::time::timeout(self.config.connect_timeout, endpoint.connect()).await {
                Ok(Ok(channel)) => channel,
                Ok(Err(e)) => return Err(Error::connect(address, &e)),
                Err(_) => {
                    return Err(Error::Unreachable {
                        address: address.to_string(),
                        reason: format!(
                            "no connection within {} ms",
                            self.config.connect_timeout.as_millis()
                        ),
                    })
                }
            };
        // Two tasks may race to connect; keep whichever landed first.
        let mut channels = self.channels.lock();
        Ok(channels
            .entry(address.to_string())
            .or_insert(channel)
            .clone())
    }

    /// A `Log` client on the channel to `address`.
    pub(crate) async fn log(&self, address: &str) -> Result<LogClient<Channel>> {
        Ok(LogClient::new(self.channel(address).await?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// An `Admin` client on the channel to `address`.
    pub(crate) async fn admin(&self, address: &str) -> Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel(address).await?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// A `Group` client on the channel to `address`.
    pub(crate) async fn group(
        &self,
        address: &str,
    ) -> Result<strata_proto::group_client::GroupClient<Channel>> {
        Ok(strata_proto::group_client::GroupClient::new(
            self.channel(address).await?,
        ))
    }

    /// Maps a failed call to `address`.
    pub(crate) fn error(&self, status: tonic::Status, address: &str) -> Error {
        Error::from_status(status, address, self.config.request_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_broker_names_the_address() {
        // Bind then drop a listener so the port is (almost certainly) closed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let conns = Connections::new(ClientConfig::new([address.clone()]));
        let err = conns.channel(&address).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot reach broker {address}: connection refused")
        );
        assert!(err.is_retriable());
    }
}
