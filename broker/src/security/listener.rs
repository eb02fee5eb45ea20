//! Accepting connections: a connection slot, then TLS (or plaintext), each handshake in its own
//! task with a time limit, so a slow or silent client never holds up the accept loop.
//!
//! A client speaking the wrong protocol is refused at once, on both ends, with a sentence:
//! plaintext HTTP/2 on the TLS listener is served, but every call is answered UNAUTHENTICATED
//! saying the port needs TLS (the authentication layer does it; no handler runs); a TLS
//! handshake on the plaintext listener gets a TLS alert (protocol_version). A client
//! certificate the client CA does not vouch for is judged after the handshake, and its calls
//! answered the same way. The broker logs each, naming the source.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::server::Connected;

use strata_proto::tls::PeerCertificate;

use crate::limits::{ConnectionSlots, Slot};

/// Longest a client may take from connecting to finishing its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted connections waiting for the server to take them.
const BACKLOG: usize = 128;

/// What a call learns of its connection (tonic puts it in every request's extensions).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    pub tls: bool,
    /// The client's certificate, judged against the client CA.
    pub peer: Arc<PeerCertificate>,
    /// A plaintext client on the TLS listener: every call is answered with a sentence saying
    /// TLS is needed (an answer a client reports, where a closed connection is retried).
    pub wrong_protocol: bool,
}

impl Default for ConnInfo {
    fn default() -> Self {
        ConnInfo {
            remote: None,
            tls: false,
            peer: Arc::new(PeerCertificate::None),
            wrong_protocol: false,
        }
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection, holding its slot until it closes.
pub struct Conn {
    io: Io,
    info: ConnInfo,
    _slot: Slot,
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// The stream of accepted connections `listener` yields, TLS with `tls`' current config.
/// Ends when the receiver is dropped.
pub fn incoming(
    listener: TcpListener,
    slots: ConnectionSlots,
    tls: Option<Arc<strata_proto::tls::Reloading<strata_proto::tls::ServerTls>>>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (stream, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // The builder's tcp_nodelay covers only listeners tonic binds itself: without it,
            // Nagle delays small answers (acks=all, replica fetches) by ~40 ms.
            let _ = stream.set_nodelay(true);
            let Some(slot) = slots.admit(&stream) else {
                continue;
            };
            let tx = tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, open(stream, remote, tls)).await {
                    Ok(Some((io, info))) => {
                        let _ = tx
                            .send(Ok(Conn {
                                io,
                                info,
                                _slot: slot,
                            }))
                            .await;
                    }
                    Ok(None) => {}
                    Err(_) => {
                        tracing::info!(%remote, "closing a connection that did not finish its TLS handshake within 10 s")
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn open(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<Arc<strata_proto::tls::Reloading<strata_proto::tls::ServerTls>>>,
) -> Option<(Io, ConnInfo)> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await.ok()?;
    if n == 0 {
        return None;
    }
    let is_tls = first[0] == strata_proto::tls::TLS_HANDSHAKE_BYTE;
    match tls {
        None if is_tls => {
            tracing::warn!(%remote, "a TLS handshake reached the plaintext listener; refusing it (the client should connect without TLS, or the broker be given --tls-cert)");
            refuse_tls(stream).await;
            None
        }
        None => Some((
            Io::Plain(stream),
            ConnInfo {
                remote: Some(remote),
                ..ConnInfo::default()
            },
        )),
        Some(_) if !is_tls => {
            tracing::warn!(%remote, "a plaintext connection reached the TLS listener; its calls are answered with a sentence asking for TLS (--tls-ca)");
            Some((
                Io::Plain(stream),
                ConnInfo {
                    remote: Some(remote),
                    wrong_protocol: true,
                    ..ConnInfo::default()
                },
            ))
        }
        Some(config) => {
            let server = config.current();
            let acceptor = tokio_rustls::TlsAcceptor::from(server.config.clone());
            match acceptor.accept(stream).into_fallible().await {
                Ok(tls) => {
                    let peer = server.peer(tls.get_ref().1);
                    if let PeerCertificate::Refused(why) = &peer {
                        tracing::warn!(%remote, reason = %why, "refusing a client certificate; its calls are answered UNAUTHENTICATED");
                    }
                    Some((
                        Io::Tls(Box::new(tls)),
                        ConnInfo {
                            remote: Some(remote),
                            tls: true,
                            peer: Arc::new(peer),
                            wrong_protocol: false,
                        },
                    ))
                }
                Err((e, stream)) => {
                    tracing::warn!(%remote, error = %e, "TLS handshake failed (an untrusted or expired client certificate, or not a TLS client)");
                    drain_and_close(stream).await;
                    None
                }
            }
        }
    }
}

/// A fatal TLS alert (protocol_version) in a plaintext record: the client's handshake fails at
/// once instead of waiting for a ServerHello.
async fn refuse_tls(mut stream: TcpStream) {
    let _ = stream
        .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70])
        .await;
    drain_and_close(stream).await;
}

/// Reads what the client still sends (for at most a second) before closing: closing a socket
/// with unread data resets it, and the client would see "connection reset" instead of the
/// GOAWAY or alert that says why.
async fn drain_and_close(mut stream: TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}
