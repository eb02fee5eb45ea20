//! LocalStack, as the tests start it (`strata_tests::localstack`), serves what Strata's object
//! store needs: bucket creation, PUT then GET of an object, and a conditional PUT with
//! `If-None-Match: *` that fails with 412 when the key exists. Also: two instances at once
//! stay apart, and a restart comes back empty. Requests are raw HTTP/1.1 (unsigned,
//! path-style), which LocalStack accepts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use strata_tests::localstack::LocalStack;

/// One HTTP/1.1 request on a fresh connection; returns the status code and the body.
fn http(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let host = endpoint.strip_prefix("http://").expect("http endpoint");
    let mut conn = TcpStream::connect(host).unwrap_or_else(|e| panic!("connecting to {host}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    conn.write_all(request.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).expect("reading the response");

    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of response headers");
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let mut payload = answer[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        payload = dechunk(&payload);
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        payload.truncate(len);
    }
    (status, payload)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = String::from_utf8_lossy(&data[..eol]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// After a kill nothing may answer HTTP at `endpoint`. (A bare TCP connect is not proof: the
/// port is in the ephemeral range, so another process on the machine may have bound it, or a
/// connect may meet itself, TCP's simultaneous open.)
fn assert_no_http_answer(endpoint: &str) {
    let host = endpoint.strip_prefix("http://").expect("http endpoint");
    let Ok(mut conn) = TcpStream::connect(host) else {
        return;
    };
    let local = conn.local_addr().ok();
    let peer = conn.peer_addr().ok();
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /_localstack/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = conn.write_all(request.as_bytes());
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("\"s3\""),
        "LocalStack still answers at {endpoint} after kill (local {local:?}, peer {peer:?}): {answer}"
    );
}

#[test]
fn put_get_and_conditional_put() {
    let ls = LocalStack::start();
    ls.create_bucket("strata-smoke");
    ls.create_bucket("strata-smoke"); // idempotent

    let body = b"hello from strata\n".repeat(1000);
    let (status, _) = http(&ls.endpoint, "PUT", "/strata-smoke/seg/0001", &[], &body);
    assert_eq!(status, 200, "PUT");
    let (status, got) = http(&ls.endpoint, "GET", "/strata-smoke/seg/0001", &[], b"");
    assert_eq!(status, 200, "GET");
    assert_eq!(got, body, "GET returns what PUT wrote");

    let (status, got) = http(
        &ls.endpoint,
        "GET",
        "/strata-smoke/seg/0001",
        &[("Range", "bytes=6-9")],
        b"",
    );
    assert_eq!(status, 206, "ranged GET");
    assert_eq!(got, b"from");

    let create = [("If-None-Match", "*")];
    let (status, _) = http(
        &ls.endpoint,
        "PUT",
        "/strata-smoke/lease",
        &create,
        b"first",
    );
    assert_eq!(status, 200, "first conditional PUT");
    let (status, answer) = http(
        &ls.endpoint,
        "PUT",
        "/strata-smoke/lease",
        &create,
        b"second",
    );
    assert_eq!(
        status,
        412,
        "second conditional PUT: {}",
        String::from_utf8_lossy(&answer)
    );
    let (_, got) = http(&ls.endpoint, "GET", "/strata-smoke/lease", &[], b"");
    assert_eq!(got, b"first", "the losing conditional PUT changed nothing");
}

#[test]
fn two_instances_stay_apart_and_restart_comes_back_empty() {
    let mut a = LocalStack::start();
    let b = LocalStack::start();
    assert_ne!(a.endpoint, b.endpoint);
    a.create_bucket("only-in-a");
    let (status, _) = http(&a.endpoint, "PUT", "/only-in-a/k", &[], b"v");
    assert_eq!(status, 200);
    let (status, _) = http(&b.endpoint, "GET", "/only-in-a/k", &[], b"");
    assert_eq!(status, 404, "the other instance does not see the bucket");

    a.kill();
    assert_no_http_answer(&a.endpoint);
    a.restart();
    let (status, _) = http(&a.endpoint, "GET", "/only-in-a/k", &[], b"");
    assert_eq!(status, 404, "data is in memory: gone after a restart");
    a.create_bucket("only-in-a");
    let (status, _) = http(&a.endpoint, "PUT", "/only-in-a/k", &[], b"v2");
    assert_eq!(status, 200);
    let (_, got) = http(&a.endpoint, "GET", "/only-in-a/k", &[], b"");
    assert_eq!(got, b"v2");
    a.stop();
    // b is stopped by Drop.
}
