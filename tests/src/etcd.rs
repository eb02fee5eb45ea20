//! A private etcd for tests: its own ports on 127.0.0.1 and its own data directory, so it never
//! meets a developer's etcd. Killed (SIGKILL) when dropped.
//!
//! Invariant: if etcd cannot start (binary missing, not healthy within 20 s) the test panics with
//! etcd's log; it never skips.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long etcd may take to become healthy.
const STARTUP: Duration = Duration::from_secs(20);

/// An etcd process of one member.
pub struct EtcdServer {
    /// The client URL, `http://IP:PORT` (127.0.0.1 unless started with `start_on`), or
    /// `https://127.0.0.1:PORT` when started with `start_tls`.
    pub endpoint: String,
    client: SocketAddr,
    /// Where `/health` is answered in plaintext: the client port, or with TLS a metrics port.
    health: SocketAddr,
    /// With TLS: the server certificate, its key, and the CA client certificates must chain to.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    peer_port: u16,
    child: Option<Child>,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd on free ports and a fresh data directory, and waits until it is healthy.
    pub fn start() -> EtcdServer {
        Self::start_on(Ipv4Addr::LOCALHOST)
    }

    /// Like [`EtcdServer::start`], serving clients on `ip` (a bridge address that brokers in
    /// network namespaces reach) instead of loopback.
    pub fn start_on(ip: Ipv4Addr) -> EtcdServer {
        let [client_port, peer_port] = distinct_ports();
        let client = SocketAddr::from((ip, client_port));
        Self::launch(format!("http://{client}"), client, client, None, peer_port)
    }

    /// etcd serving TLS on 127.0.0.1 with `cert` and `key`, and requiring client certificates
    /// signed by `client_ca` (`--client-cert-auth`); `/health` on a plaintext metrics port.
    pub fn start_tls(cert: PathBuf, key: PathBuf, client_ca: PathBuf) -> EtcdServer {
        let [client_port, peer_port, metrics_port] = distinct_ports();
        let client = SocketAddr::from((Ipv4Addr::LOCALHOST, client_port));
        let health = SocketAddr::from((Ipv4Addr::LOCALHOST, metrics_port));
        let tls = Some((cert, key, client_ca));
        Self::launch(format!("https://{client}"), client, health, tls, peer_port)
    }

    fn launch(
        endpoint: String,
        client: SocketAddr,
        health: SocketAddr,
        tls: Option<(PathBuf, PathBuf, PathBuf)>,
        peer_port: u16,
    ) -> EtcdServer {
        let dir = tempfile::tempdir().expect("temp dir for etcd");
        let mut server = EtcdServer {
            endpoint,
            client,
            health,
            tls,
            peer_port,
            child: None,
            log: dir.path().join("etcd.log"),
            dir,
        };
        server.spawn();
        server
    }

    /// SIGKILL; the data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills etcd if it runs, then starts it again on the same data directory and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOP: etcd stops answering but keeps its connections.
    pub fn pause(&mut self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`EtcdServer::pause`].
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("etcd is not running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} etcd failed: {status}");
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "etcd is still running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("etcd log file");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let bin = std::env::var("STRATA_ETCD").unwrap_or_else(|_| "etcd".to_string());
        let mut command = Command::new(&bin);
        if let Some((cert, key, ca)) = &self.tls {
            command
                .arg("--cert-file")
                .arg(cert)
                .arg("--key-file")
                .arg(key)
                .arg("--trusted-ca-file")
                .arg(ca)
                .arg("--client-cert-auth")
                .arg("--listen-metrics-urls")
                .arg(format!("http://{}", self.health));
        }
        let child = command
            .arg("--name")
            .arg("strata-test")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &self.endpoint])
            .args(["--advertise-client-urls", &self.endpoint])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("strata-test={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        match child {
            Ok(child) => self.child = Some(child),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("etcd not found ({bin}); run scripts/test.sh, which installs etcd-server")
            }
            Err(e) => panic!("starting etcd ({bin}) failed: {e}"),
        }
        self.wait_healthy();
    }

    /// Waits until etcd accepts connections and reports itself healthy on `/health`.
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("etcd exited with {status}:\n{}", self.log_tail());
            }
            if self.healthy() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd at {} is not healthy after {STARTUP:?}:\n{}",
            self.endpoint,
            self.log_tail()
        );
    }

    fn healthy(&self) -> bool {
        let Ok(mut conn) = TcpStream::connect_timeout(&self.health, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /health HTTP/1.0\r\nHost: {}\r\n\r\n", self.health);
        let mut answer = String::new();
        conn.write_all(request.as_bytes()).is_ok()
            && conn.read_to_string(&mut answer).is_ok()
            && answer.contains("\"health\":\"true\"")
    }

    /// How many keys start with `prefix` (a full etcd key, e.g. `/strata/<cluster>/topics/`),
    /// read through etcd's JSON gateway (`/v3/kv/range`, count only).
    pub fn count_keys(&self, prefix: &str) -> u64 {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().expect("a non-empty prefix") += 1;
        let body = format!(
            r#"{{"key":"{}","range_end":"{}","count_only":true}}"#,
            base64(prefix.as_bytes()),
            base64(&end)
        );
        int(&self.post("/v3/kv/range", &body)["count"])
    }

    /// etcd's (revision, database size, database size in use), in bytes.
    pub fn status(&self) -> (u64, u64, u64) {
        let v = self.post("/v3/maintenance/status", "{}");
        (
            int(&v["header"]["revision"]),
            int(&v["dbSize"]),
            int(&v["dbSizeInUse"]),
        )
    }

    /// Whether etcd still holds the history at `revision` (not compacted away).
    pub fn has_revision(&self, revision: u64) -> bool {
        let body = format!(
            r#"{{"key":"{}","revision":"{revision}","count_only":true}}"#,
            base64(b"/")
        );
        let v = self.post("/v3/kv/range", &body);
        v.get("error").is_none() && v.get("code").is_none()
    }

    /// POSTs `body` to etcd's JSON gateway at `path`.
    fn post(&self, path: &str, body: &str) -> serde_json::Value {
        let request = format!(
            "POST {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.client,
            body.len()
        );
        let mut conn = TcpStream::connect_timeout(&self.client, Duration::from_secs(2))
            .expect("connecting to etcd");
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(request.as_bytes()).expect("asking etcd");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).expect("etcd's answer");
        let json = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(json).unwrap_or_else(|e| panic!("etcd answered {answer:?}: {e}"))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `N` free ports, all different.
fn distinct_ports<const N: usize>() -> [u16; N] {
    // free_port never hands out a port twice.
    std::array::from_fn(|_| free_port())
}

/// An int64 of etcd's JSON gateway (written as a string; left out when zero).
fn int(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::String(n) => n.parse().expect("a number"),
        serde_json::Value::Null => 0,
        other => other.as_u64().expect("a number"),
    }
}

/// Standard base64 with padding (what etcd's JSON gateway takes for byte fields).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
