//! The metrics endpoint: `GET /metrics` over minimal HTTP/1.1, answered with every Strata
//! metric in the Prometheus text format 0.0.4.
//!
//! What it answers: `GET` (or `HEAD`) `/metrics` (a query string is ignored) → 200; any other
//! path → 404; `/metrics` with another method → 405; a request head that is not HTTP/1.x →
//! 400; a head over [`MAX_HEAD_BYTES`] → 431. Every answer has a `Content-Length` and
//! `Connection: close`; one request per connection.
//!
//! Must never: block a tokio worker (rendering runs on the blocking pool, since collectors
//! take log locks that disk writes hold), hold a connection open for a slow client (the head
//! must arrive within [`READ_TIMEOUT`]), or keep unbounded connections (at most
//! [`MAX_CONNECTIONS`] at once; more wait in the listen backlog). Like [`crate::Broker::serve`]
//! it takes a bound listener and a shutdown future.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::state::BrokerState;

/// Largest request head read.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;

/// Renders the text served at `/metrics`.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves the process-wide registry, with the gauges computed from `state` at each scrape,
/// on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<BrokerState>,
    shutdown: impl Future<Output = ()>,
) {
    crate::metrics::register();
    // A weak reference: the endpoint does not keep a stopped broker's state alive.
    let weak = Arc::downgrade(&state);
    drop(state);
    let _collector = strata_metrics::global().register_collector(
        move |out: &mut strata_metrics::Encoder<'_>| {
            if let Some(state) = weak.upgrade() {
                crate::metrics::collect(&state, out);
            }
        },
    );
    serve_with(
        listener,
        Arc::new(|| strata_metrics::global().render()),
        shutdown,
    )
    .await
}

/// Serves what `render` returns at `/metrics` on `listener` until `shutdown` completes;
/// connections still open then are closed.
pub async fn serve_with(listener: TcpListener, render: Render, shutdown: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, usually: back off instead of spinning.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let render = render.clone();
        connections.spawn(async move {
            let _permit = permit;
            handle(stream, render).await;
        });
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

async fn handle(mut stream: TcpStream, render: Render) {
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let reply = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream, &mut buf)).await {
        Err(_) | Ok(Err(_)) => return, // too slow, or gone: nothing to answer
        Ok(Ok(Head::TooLarge)) => plain(
            "431 Request Header Fields Too Large",
            "the request head is too large\n",
        ),
        Ok(Ok(Head::Complete(n))) => answer(&buf[..n], render).await,
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&reply).await?;
        stream.shutdown().await
    })
    .await;
}

enum Head {
    /// The head ends within the first n bytes.
    Complete(usize),
    TooLarge,
}

/// Reads until the blank line that ends a request head.
async fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<Head> {
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            return Ok(Head::TooLarge);
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        // Look again from a little before the new bytes: the terminator may straddle reads.
        let from = filled.saturating_sub(3);
        filled += n;
        let seen = &buf[from..filled];
        if let Some(i) = find(seen, b"\r\n\r\n") {
            return Ok(Head::Complete(from + i + 4));
        }
        if let Some(i) = find(seen, b"\n\n") {
            return Ok(Head::Complete(from + i + 2));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The response to a complete request head.
async fn answer(head: &[u8], render: Render) -> Vec<u8> {
    let request = match parse_request_line(head) {
        Some(r) => r,
        None => return plain("400 Bad Request", "malformed HTTP/1.1 request\n"),
    };
    let path = request.target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return plain(
            "404 Not Found",
            "not found: metrics are served at /metrics\n",
        );
    }
    let head_only = match request.method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return response(
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                &[("Allow", "GET, HEAD")],
                b"only GET and HEAD are allowed at /metrics\n",
                false,
            )
        }
    };
    let body = match tokio::task::spawn_blocking(move || render()).await {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(error = %e, "rendering metrics failed");
            return plain("500 Internal Server Error", "rendering metrics failed\n");
        }
    };
    response(
        "200 OK",
        strata_metrics::CONTENT_TYPE,
        &[],
        body.as_bytes(),
        head_only,
    )
}

struct RequestLine<'a> {
    method: &'a str,
    target: &'a str,
}

/// `METHOD TARGET HTTP/1.x` from the first line of the head.
fn parse_request_line(head: &[u8]) -> Option<RequestLine<'_>> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    if parts.next().is_some()
        || !token(method)
        || !target.starts_with('/')
        || !version.starts_with("HTTP/1.")
    {
        return None;
    }
    Some(RequestLine { method, target })
}

fn plain(status: &str, body: &str) -> Vec<u8> {
    response(
        status,
        "text/plain; charset=utf-8",
        &[],
        body.as_bytes(),
        false,
    )
}

fn response(
    status: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server() -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(
            listener,
            Arc::new(|| "# TYPE x counter\nx 1\n".to_string()),
            async move {
                let _ = stopped.await;
            },
        ));
        (addr, stop, task)
    }

    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_metrics_and_refuses_everything_else() {
        let (addr, stop, task) = server().await;
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(ok.contains("Content-Length: 21\r\n"), "{ok}");
        assert!(ok.contains("Connection: close\r\n"));
        assert!(ok.ends_with("\r\n\r\n# TYPE x counter\nx 1\n"), "{ok}");

        let query = exchange(addr, b"GET /metrics?x=1 HTTP/1.0\n\n").await;
        assert!(query.starts_with("HTTP/1.1 200 OK\r\n"), "{query}");
        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        let missing = exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
        for bad in [
            &b"hello\r\n\r\n"[..],
            b"GET /metrics SPDY/3\r\n\r\n",
            b"GET  HTTP/1.1\r\n\r\n",
        ] {
            let r = exchange(addr, bad).await;
            assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
        }
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        // Exactly the limit, so the server reads it all (unread bytes would reset the socket).
        huge.resize(MAX_HEAD_BYTES, b'a');
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(&huge).await;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the server stops on shutdown")
            .unwrap();
    }

    #[tokio::test]
    async fn a_silent_client_does_not_stop_the_others_or_shutdown() {
        let (addr, stop, task) = server().await;
        let _silent: Vec<TcpStream> =
            futures::future::join_all((0..MAX_CONNECTIONS - 1).map(|_| TcpStream::connect(addr)))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("open connections do not hold up shutdown")
            .unwrap();
    }
}
