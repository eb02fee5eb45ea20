//! The channel to etcd when it speaks TLS: one lazily connected tonic channel per endpoint,
//! made by the caller's TLS connector (which reloads its certificate files, so a rotated client
//! certificate is used by the next connection without a restart), used one at a time: calls go
//! to the current endpoint, and a transport failure there (no connection within the connect
//! timeout, a connection that died, a refused handshake) moves later calls to the next one, as
//! etcd's own Go client pins one endpoint and fails over.
//!
//! Invariants: every endpoint's channel carries the same connect timeout and HTTP/2 keepalive
//! as the plaintext path (`etcd.rs`), so a dead member is noticed the same way; a call is sent
//! once (its body cannot be replayed), so the call that met the failure fails and the caller's
//! retry goes to the next endpoint.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::codegen::http::{Request, Response, Uri};
use tonic::transport::{Channel, Endpoint};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use crate::{CoordinatorError, Result};

/// Makes the channel to one endpoint (`http://host:port`; the connector does the TLS).
pub type MakeChannel = Arc<dyn Fn(Endpoint) -> Channel + Send + Sync>;

/// etcd's client port, when an endpoint names none.
const ETCD_PORT: u16 = 2379;

/// The channel over `urls` (each `https://host[:port]`).
pub(crate) fn channel(
    urls: &[String],
    make: &MakeChannel,
    connect_timeout: Duration,
    keep_alive: (Duration, Duration),
) -> Result<etcd_client::Channel> {
    let mut channels = Vec::with_capacity(urls.len());
    for url in urls {
        let invalid =
            |e: String| CoordinatorError::Unavailable(format!("etcd endpoint {url}: {e}"));
        let uri: Uri = url.parse().map_err(|e| invalid(format!("{e}")))?;
        let host = uri
            .host()
            .ok_or_else(|| invalid("it names no host".into()))?;
        let plain = format!("http://{host}:{}", uri.port_u16().unwrap_or(ETCD_PORT));
        let endpoint = Endpoint::from_shared(plain)
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(connect_timeout)
            .http2_keep_alive_interval(keep_alive.0)
            .keep_alive_timeout(keep_alive.1)
            .keep_alive_while_idle(false);
        channels.push(make(endpoint));
    }
    if channels.len() == 1 {
        return Ok(etcd_client::Channel::Tonic(channels.remove(0)));
    }
    Ok(etcd_client::Channel::Custom(BoxCloneSyncService::new(
        Failover {
            channels: channels.into(),
            current: Arc::new(AtomicUsize::new(0)),
        },
    )))
}

/// Calls on the current endpoint; a transport failure moves on to the next.
#[derive(Clone)]
struct Failover<S> {
    channels: Arc<[S]>,
    current: Arc<AtomicUsize>,
}

impl<S> Service<Request<Body>> for Failover<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + Sync + 'static,
    S::Error: Into<tower::BoxError>,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = tower::BoxError;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Response<Body>, tower::BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        // Readiness is the chosen channel's, awaited in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let at = self.current.load(Ordering::Relaxed);
        let channel = self.channels[at % self.channels.len()].clone();
        let current = self.current.clone();
        Box::pin(async move {
            // Armed until an answer arrives: a failure, or a caller that gave up waiting (its
            // request timeout), moves later calls on.
            let mut guard = MoveOn {
                current,
                at,
                armed: true,
            };
            let answer = channel.oneshot(request).await.map_err(Into::into);
            guard.armed = answer.is_err();
            answer
        })
    }
}

/// Moves calls to the endpoint after `at` when dropped armed.
struct MoveOn {
    current: Arc<AtomicUsize>,
    at: usize,
    armed: bool,
}

impl Drop for MoveOn {
    fn drop(&mut self) {
        if self.armed {
            // Only the first call to fail here moves on; the others follow it.
            let _ = self.current.compare_exchange(
                self.at,
                self.at + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Endpoint `i` answers with status 200 + i, or fails like a dead connection.
    fn endpoint(
        i: u16,
        alive: bool,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = tower::BoxError,
        Future = impl Send,
    > + Clone
           + Send
           + Sync
           + 'static {
        tower::service_fn(move |_request: Request<Body>| async move {
            if i == 9 {
                std::future::pending::<()>().await;
            }
            if alive {
                Ok(Response::builder()
                    .status(200 + i)
                    .body(Body::empty())
                    .unwrap())
            } else {
                Err::<Response<Body>, tower::BoxError>("connection refused".into())
            }
        })
    }

    #[tokio::test]
    async fn a_transport_failure_moves_later_calls_to_the_next_endpoint() {
        let mut failover = Failover {
            channels: vec![endpoint(0, false), endpoint(1, true)].into(),
            current: Arc::new(AtomicUsize::new(0)),
        };
        let request = || Request::new(Body::empty());
        let status = |r: std::result::Result<Response<Body>, tower::BoxError>| {
            r.map(|r| r.status().as_u16())
        };
        assert!(
            status(failover.call(request()).await).is_err(),
            "the dead endpoint fails the call that meets it"
        );
        assert_eq!(
            status(failover.call(request()).await).unwrap(),
            201,
            "the next call goes to the live one"
        );
        assert_eq!(
            status(failover.call(request()).await).unwrap(),
            201,
            "and stays there"
        );
    }

    #[tokio::test]
    async fn calls_failing_together_move_on_once() {
        let mut failover = Failover {
            channels: vec![endpoint(0, false), endpoint(1, true), endpoint(2, true)].into(),
            current: Arc::new(AtomicUsize::new(0)),
        };
        let (a, b) = (
            failover.call(Request::new(Body::empty())),
            failover.call(Request::new(Body::empty())),
        );
        assert!(a.await.is_err() && b.await.is_err());
        let next = failover.call(Request::new(Body::empty())).await.unwrap();
        assert_eq!(
            next.status().as_u16(),
            201,
            "two failures at endpoint 0 skip only to endpoint 1"
        );
    }

    #[tokio::test]
    async fn a_call_given_up_on_moves_later_calls_on() {
        let mut failover = Failover {
            channels: vec![endpoint(9, true), endpoint(1, true)].into(),
            current: Arc::new(AtomicUsize::new(0)),
        };
        let call = failover.call(Request::new(Body::empty()));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), call)
                .await
                .is_err(),
            "the silent endpoint holds the call until its caller gives up"
        );
        let next = failover.call(Request::new(Body::empty())).await.unwrap();
        assert_eq!(next.status().as_u16(), 201);
    }
}
