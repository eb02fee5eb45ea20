//! Support for end-to-end tests: the `strata` binary (built on first use), `strata dev`
//! processes on their own port and data directory, and CLI invocations.
//!
//! Invariant: a test that cannot start what it needs panics (fails); it never skips.

pub mod client;
pub mod cluster;
pub mod etcd;
pub mod faults;
pub mod history;
pub mod localstack;
pub mod metrics;
pub mod netns;
pub use strata_proto::tls::pki;
pub mod procs;
pub mod reads;
pub mod replicas;
pub mod rng;
pub mod serve;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Path of the `strata` binary of this build profile, building it once if needed.
pub fn strata_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("STRATA_BIN") {
            return PathBuf::from(p);
        }
        // The test binary lives in <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile dir");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "strata", "--bin", "strata"]);
        if release {
            cmd.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let status = cmd
            .status()
            .expect("running cargo build for the strata binary");
        assert!(status.success(), "building the strata binary failed");
        let bin = profile_dir.join("strata");
        assert!(bin.exists(), "strata binary not found at {}", bin.display());
        bin
    })
    .clone()
}

/// The shortest group session the tests' brokers allow: their members use 3 s sessions to
/// fail over quickly, below Kafka's default minimum of 6 s (which production keeps).
pub const TEST_GROUP_MIN_SESSION_TIMEOUT: &str = "1s";

/// A free port on loopback for a server the test starts, never handed out twice by this
/// process.
///
/// Ports come from below the kernel's ephemeral range (32768 and up on Linux): a port the
/// kernel picked (`bind(:0)`) is released before the server binds it, and in that window an
/// outgoing connection of any process (a broker dialling etcd) can take the same ephemeral
/// port, which failed a CI run with "Address already in use". Each test binary starts at an
/// offset of its own pid so binaries running side by side rarely probe the same ports.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000; // 10000..32000, below the ephemeral range
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7919)) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        // Free now on loopback and on every address (a server may bind 0.0.0.0).
        let free = |ip: &str| TcpListener::bind((ip, port)).is_ok(); // released at once
        if free("127.0.0.1") && free("0.0.0.0") {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN)
}

/// Waits until something accepts TCP connections at `addr`.
pub fn wait_for_port(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr} after {within:?}");
}

/// A `strata dev` process with its own data directory and port.
pub struct DevBroker {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Extra `strata dev` flags.
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl DevBroker {
    /// Starts `strata dev` on a fresh data directory.
    pub fn start() -> DevBroker {
        Self::start_with(&[])
    }

    /// Like [`DevBroker::start`], with extra `strata dev` flags.
    pub fn start_with(extra: &[&str]) -> DevBroker {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let mut broker = DevBroker {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: Some(tmp),
        };
        broker.restart();
        broker
    }

    /// A broker with TLS (certificate `broker.crt`, CN Broker:0, made in `pki`), client
    /// certificates checked against `pki`'s CA, password and mTLS authentication, and the
    /// bootstrap admin `admin` with the password in `admin.pw` (`admin-secret-1`).
    pub fn start_secure(pki: &pki::Pki) -> DevBroker {
        DevBroker::start_secure_with(pki, &[])
    }

    /// [`DevBroker::start_secure`] with more flags (e.g. `--authorizer acl`).
    pub fn start_secure_with(pki: &pki::Pki, extra: &[&str]) -> DevBroker {
        pki.leaf("ca", "broker", "Broker:0", 30);
        std::fs::write(pki.path("admin.pw"), "admin-secret-1\n").expect("admin password file");
        let (cert, key, ca, pw) = (
            pki.arg("broker.crt"),
            pki.arg("broker.key"),
            pki.arg("ca.crt"),
            pki.arg("admin.pw"),
        );
        let mut args = vec![
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &ca,
            "--auth",
            "password,mtls",
            "--bootstrap-admin-password-file",
            &pw,
        ];
        args.extend_from_slice(extra);
        DevBroker::start_with(&args)
    }

    /// What the broker wrote to stderr, over every start.
    pub fn log_text(&self) -> String {
        let (Some(dir), Some(name)) = (self.data_dir.parent(), self.data_dir.file_name()) else {
            return String::new();
        };
        let prefix = format!("{}.log.", name.to_string_lossy());
        let mut logs: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .collect();
        logs.sort();
        logs.iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }

    /// Starts (again) on the same data directory and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is still running");
        let log = std::fs::File::create(self.data_dir.with_extension(format!("log.{}", now_ms())))
            .or_else(|_| std::fs::File::create("/dev/null"))
            .expect("log file");
        let child = Command::new(strata_bin())
            .args(["dev", "--listen", &self.addr.to_string(), "--data-dir"])
            .arg(&self.data_dir)
            .args(&self.extra)
            .env(
                "STRATA_GROUP_MIN_SESSION_TIMEOUT",
                TEST_GROUP_MIN_SESSION_TIMEOUT,
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting strata dev");
        self.child = Some(child);
        wait_for_port(self.addr, Duration::from_secs(30));
    }

    /// SIGKILL: no flush, no clean shutdown.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL strata dev");
            child.wait().expect("reaping strata dev");
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill -TERM");
            assert!(status.success());
            let status = child.wait().expect("waiting for strata dev");
            assert!(status.success(), "strata dev exited with {status}");
        }
    }

    /// Runs a `strata` client command against this broker, feeding `stdin`.
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_cli(&self.addr.to_string(), args, stdin)
    }

    /// Like [`DevBroker::cli`], but panics with stderr unless the command succeeds.
    pub fn cli_ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        run_cli_ok(&self.addr.to_string(), args, stdin)
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Like [`run_cli`], but panics with stderr unless the command succeeds; returns stdout.
pub fn run_cli_ok(brokers: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run_cli(brokers, args, stdin);
    assert!(
        out.status.success(),
        "strata {} (brokers {brokers}) failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs `strata ARGS` with `STRATA_BROKERS=brokers` and `stdin`.
pub fn run_cli(brokers: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(strata_bin())
        .args(args)
        .env("STRATA_BROKERS", brokers)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running strata");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || {
        if let Some(input) = input {
            let _ = pipe.write_all(&input);
        }
    });
    let out = child.wait_with_output().expect("waiting for strata");
    writer.join().expect("stdin writer");
    out
}

/// Runs `command` to its end and returns its output; a process still running after `within`
/// (a broker that should have refused to start, and did not) is killed and the test fails
/// with what it printed, instead of hanging the suite.
pub fn output_within(command: &mut Command, within: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the command");
    let deadline = Instant::now() + within;
    while child.try_wait().expect("polling the command").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child
                .wait_with_output()
                .expect("the killed command's output");
            panic!(
                "{command:?} still ran after {within:?}; it printed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("the command's output")
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Calls `probe` every 200 ms until it returns a value; panics naming `what` after `within`.
pub fn wait_for<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `n` values `<prefix>0`, `<prefix>1`, ...: what tests produce and expect back.
pub fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// [`numbered`] as `strata produce` input, one value per line.
pub fn numbered_lines(prefix: &str, n: usize) -> Vec<u8> {
    numbered(prefix, n)
        .into_iter()
        .flat_map(|v| format!("{v}\n").into_bytes())
        .collect()
}

/// Every file under `dir`, recursively, sorted by path (none when `dir` is missing).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
