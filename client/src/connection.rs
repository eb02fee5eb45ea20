//! One cached tonic [`Channel`] per broker address, created on first use.
//!
//! A channel is opened with the connect timeout and carries the request timeout; tonic
//! reconnects it by itself after a failure, so a channel is never replaced. This module never
//! retries: callers decide what a failure means.
//!
//! With TLS configured, channels connect through [`TlsConnector`]; with credentials, every
//! call carries `authorization: Basic base64(user:password)` ([`Channel`] adds it). Credentials
//! are refused without TLS, so a password never crosses the network in the clear.

use std::collections::HashMap;

use parking_lot::Mutex;
use std::sync::Arc;
use std::task::{Context, Poll};
use strata_proto::log_client::LogClient;

use base64::Engine;
use strata_proto::tls::{Reloading, TlsConnector};
use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::transport::Endpoint;

use crate::config::ClientConfig;
use crate::error::{Error, Result};

/// Generous cap on one gRPC message, both ways (a fetch answer holds whole batches).
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// HTTP/2 flow-control windows, matching the broker's: one stream can carry a multi-MiB batch
/// or fetch answer without stalling on window updates.
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// A tonic channel that adds the caller's `authorization` header to every call.
#[derive(Clone, Debug)]
pub struct Channel {
    inner: tonic::transport::Channel,
    authorization: Option<http::HeaderValue>,
}

impl Service<http::Request<Body>> for Channel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = tonic::transport::channel::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if let Some(value) = &self.authorization {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value.clone());
        }
        Service::call(&mut self.inner, request)
    }
}

/// The channel cache.
#[derive(Debug)]
pub(crate) struct Connections {
    config: ClientConfig,
    /// The TLS config, or why the files do not load.
    tls: Option<Result<Arc<Reloading<rustls::ClientConfig>>, String>>,
    authorization: Option<http::HeaderValue>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Connections {
    pub(crate) fn new(config: ClientConfig) -> Self {
        let tls = config
            .tls
            .clone()
            .map(|files| Reloading::client(files).map_err(|e| e.0));
        // A long-lived client follows rotated certificate files as brokers do: new
        // connections use the new files. The watch ends with the last handle to the config.
        if let (Some(Ok(tls)), Ok(_)) = (&tls, tokio::runtime::Handle::try_current()) {
            tls.watch(strata_proto::tls::RELOAD_EVERY);
        }
        let authorization = config.credentials.as_ref().and_then(|c| {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.user, c.password));
            let mut value = http::HeaderValue::from_str(&format!("Basic {token}")).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Connections {
            config,
            tls,
            authorization,
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
        let tls = match &self.tls {
            Some(Ok(tls)) => Some(tls.clone()),
            Some(Err(why)) => return Err(Error::InvalidInput(why.clone())),
            None if self.config.credentials.is_some() => {
                return Err(Error::InvalidInput(
                    "a user and password are sent only over TLS: give the CA that signed the brokers' certificates (--tls-ca or STRATA_TLS_CA)".into(),
                ))
            }
            None => None,
        };
        let connect = async {
            match tls {
                Some(tls) => {
                    endpoint
                        .connect_with_connector(TlsConnector::new(tls))
                        .await
                }
                None => endpoint.connect().await,
            }
        };
        let channel = match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(inner)) => Channel {
                inner,
                authorization: self.authorization.clone(),
            },
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
