//! The gRPC server's resource limits: how large a message each service takes and sends, how
//! long any call may run, how many connections the broker holds and how many calls each
//! carries at once. A client past a limit gets a status that says which one, never a broker
//! that runs out of memory, threads or file handles.
//!
//! Invariant: every service is served through [`Deadline`] and every connection through
//! a [`Slot`] (`security::listener`), so no call outlives its service's deadline and no connection is accepted past
//! [`MAX_CONNECTIONS`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::server::NamedService;

/// Requests to the Admin, Replica and Group services: all are small (a topic's partition
/// list, a group's subscriptions); Log requests carry records and take `max_request_bytes`.
pub const MAX_CONTROL_REQUEST: usize = 4 * 1024 * 1024;
/// Answers of the Admin and Group services (a 10,000-partition topic described with every
/// partition's offsets is about 1 MiB; a JoinGroup answer lists every member's metadata).
pub const MAX_CONTROL_ANSWER: usize = 32 * 1024 * 1024;
/// Connections the broker holds at once by default (`--max-connections`); the next is closed
/// at once, with a warning.
pub const MAX_CONNECTIONS: usize = 4096;
/// Calls in flight on one connection (HTTP/2 concurrent streams). A follower long-polls one
/// stream per partition it follows from a leader, so this stays above the partitions a
/// broker may host.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 16_384;

/// Deadlines: the longest a call of each service may take, beyond the longest wait a request
/// may ask for (produce 120 s, fetch 30 s; a JoinGroup its rebalance timeout).
pub const LOG_DEADLINE: Duration = Duration::from_secs(180);
/// A topic of 10,000 partitions takes seconds to write to etcd and open.
pub const ADMIN_DEADLINE: Duration = Duration::from_secs(180);
pub const REPLICA_DEADLINE: Duration = Duration::from_secs(60);

/// A service whose calls end with DEADLINE_EXCEEDED after `limit`.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S> Deadline<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        Deadline { inner, limit }
    }
}

impl<S: NamedService> NamedService for Deadline<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Deadline<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // A cheap clone (shared bytes): the path is only formatted when a call times out.
        let uri = request.uri().clone();
        let call = self.inner.call(request);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, call).await {
                Ok(answer) => answer,
                Err(_) => {
                    let path = uri.path();
                    tracing::warn!(call = %path, limit_ms = limit.as_millis() as u64, "a call passed its deadline");
                    let status = tonic::Status::deadline_exceeded(format!(
                        "{path} did not finish within the broker's deadline of {} s for it",
                        limit.as_secs()
                    ));
                    Ok(status.into_http())
                }
            }
        })
    }
}

/// One of the broker's connection slots, held by an accepted connection until it closes.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// The slots connections take.
#[derive(Debug, Clone)]
pub struct ConnectionSlots {
    free: Arc<Semaphore>,
    max: usize,
}

impl ConnectionSlots {
    pub fn new(max: usize) -> Self {
        ConnectionSlots {
            free: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A slot for the connection `stream`, or `None` (and the caller closes it) when every
    /// slot is taken.
    pub fn admit(&self, stream: &TcpStream) -> Option<Slot> {
        match self.free.clone().try_acquire_owned() {
            Ok(slot) => Some(Slot(slot)),
            Err(_) => {
                tracing::warn!(
                    peer = ?stream.peer_addr().ok(),
                    limit = self.max,
                    "refusing a connection: the broker holds as many as it allows"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_and_slots_come_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let slots = ConnectionSlots::new(2);
        let mut held = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            let (stream, _) = listener.accept().await.unwrap();
            held.push(slots.admit(&stream).map(|slot| (stream, slot)));
        }
        assert!(held[0].is_some() && held[1].is_some());
        assert!(held[2].is_none(), "the third connection is refused");
        held.remove(0);
        clients.push(TcpStream::connect(addr).await.unwrap());
        let (stream, _) = listener.accept().await.unwrap();
        assert!(
            slots.admit(&stream).is_some(),
            "a closed connection frees its slot"
        );
    }
}
