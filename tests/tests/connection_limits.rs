//! The broker's connection and stream limits against a real `strata dev`, over raw TCP and
//! raw HTTP/2 so nothing in a client library hides what the broker does: a connection past
//! `--max-connections` is closed as it is accepted and a CLI call then fails with a message,
//! while the broker keeps serving once connections are given back; one connection that opens
//! more calls than the broker's HTTP/2 stream limit has the extra call refused
//! (REFUSED_STREAM) and the calls within the limit, and the connection, are kept.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use strata_tests::DevBroker;

/// What the broker advertises and enforces per connection (broker/src/limits.rs).
const MAX_STREAMS: u32 = 16_384;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const REFUSED_STREAM: u32 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK block of literal fields (never indexed, no Huffman) for a gRPC call to Produce
/// whose body never comes: the broker's handler waits for it, so the stream stays open.
fn call_headers() -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/strata.v1.Log/Produce"),
        (":authority", "broker"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0x10);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// One frame read from the broker: (type, flags, stream, payload).
fn read_frame(conn: &mut TcpStream) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    conn.read_exact(&mut head)?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    conn.read_exact(&mut payload)?;
    Ok((head[3], head[4], stream, payload))
}

#[test]
fn one_connection_gets_the_advertised_stream_limit_and_the_call_past_it_is_refused() {
    let broker = DevBroker::start();
    let mut conn = TcpStream::connect(broker.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    conn.write_all(PREFACE).unwrap();
    conn.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
    // The broker's first frame is its SETTINGS, which carry the stream limit.
    let (kind, flags, _, payload) = read_frame(&mut conn).expect("the broker's settings");
    assert_eq!((kind, flags), (SETTINGS, 0), "first frame {kind} {flags}");
    let advertised = payload.chunks_exact(6).find_map(|s| {
        (u16::from_be_bytes([s[0], s[1]]) == SETTINGS_MAX_CONCURRENT_STREAMS)
            .then(|| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
    });
    assert_eq!(advertised, Some(MAX_STREAMS), "settings {payload:?}");
    conn.write_all(&frame(SETTINGS, ACK, 0, &[])).unwrap();

    // Read everything the broker sends on a thread (so neither side's buffers fill), noting
    // streams it resets and whether it gives up on the connection.
    let mut reader = conn.try_clone().unwrap();
    let (resets_tx, resets) = mpsc::channel::<(u32, u32)>();
    let (closed_tx, closed) = mpsc::channel::<String>();
    std::thread::spawn(move || loop {
        match read_frame(&mut reader) {
            Ok((RST_STREAM, _, stream, p)) if p.len() == 4 => {
                let code = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                let _ = resets_tx.send((stream, code));
            }
            Ok((GOAWAY, _, _, p)) => {
                let _ = closed_tx.send(format!("GOAWAY {p:?}"));
                return;
            }
            Ok((HEADERS | DATA | SETTINGS, ..)) | Ok(_) => {}
            Err(e) => {
                let _ = closed_tx.send(format!("read: {e}"));
                return;
            }
        }
    });

    // Every call within the limit, then one more: written in large chunks.
    let block = call_headers();
    let mut out = Vec::new();
    for i in 0..=MAX_STREAMS {
        out.extend_from_slice(&frame(HEADERS, END_HEADERS, 1 + 2 * i, &block));
        if out.len() > 256 * 1024 {
            conn.write_all(&out).expect("writing calls");
            out.clear();
        }
    }
    conn.write_all(&out).expect("writing calls");
    let last = 1 + 2 * MAX_STREAMS;
    let (stream, code) = resets
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "the call past the limit was not refused: {:?}",
                closed.try_recv()
            )
        });
    assert_eq!(
        (stream, code),
        (last, REFUSED_STREAM),
        "the broker reset stream {stream} with code {code}"
    );
    // The calls within the limit are kept, and so is the connection.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        resets.try_recv().is_err(),
        "a call within the limit was reset"
    );
    assert!(
        closed.try_recv().is_err(),
        "the broker closed the connection"
    );
    drop(conn);
    broker.cli_ok(&["topic", "create", "after-streams", "-p", "1"], None);
}

/// True when the broker closed `conn` (end of file or reset) within `within`.
fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    conn.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8; 1];
    match conn.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::TimedOut,
    }
}

fn held(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect()
}

#[test]
fn connections_past_max_connections_are_closed_and_the_broker_serves_when_they_go() {
    const LIMIT: usize = 20;
    let broker = DevBroker::start_with(&["--max-connections", &LIMIT.to_string()]);
    broker.cli_ok(&["topic", "create", "t", "-p", "1"], None);
    let mut conns = held(broker.addr, LIMIT);
    // Each holds its slot: none is closed (the broker waits for their HTTP/2 preface).
    for c in conns.iter_mut().take(3) {
        assert!(!closed_within(c, Duration::from_millis(300)));
    }
    // The next is accepted and closed at once.
    let mut extra = TcpStream::connect(broker.addr).expect("the kernel accepts");
    assert!(
        closed_within(&mut extra, Duration::from_secs(10)),
        "a connection past --max-connections {LIMIT} was kept"
    );
    // A CLI call fails, saying it could not talk to the broker, and does not hang.
    let started = Instant::now();
    let out = broker.cli(&["topic", "list"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&broker.addr.to_string()),
        "the error should name the broker: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    // Connections given back are slots again.
    drop(conns);
    let listed = strata_tests::wait_for(Duration::from_secs(20), "a free slot", || {
        let out = broker.cli(&["topic", "list"], None);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert!(listed.contains('t'), "{listed}");
    broker.cli_ok(&["produce", "t", "--partition", "0"], Some(b"still here\n"));
    let read = broker.cli_ok(&["consume", "t", "--offset", "start", "-n", "1"], None);
    assert!(read.contains("still here"), "{read}");
}
