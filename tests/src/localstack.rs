//! A private LocalStack (S3 only) for tests: its own port on 127.0.0.1 and its own data
//! directory, started and stopped through the scripts in `localstack/` (which install it into a
//! Python venv on first use; see `localstack/README.md`). Stopped when dropped.
//!
//! LocalStack keeps buckets and objects in memory: they are gone after [`LocalStack::stop`],
//! [`LocalStack::kill`] or [`LocalStack::restart`]. Any access key and secret are accepted.
//!
//! Invariant: if LocalStack cannot be installed or started, the test panics with the script's
//! output (the tail of LocalStack's log included); it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::free_port;

/// A LocalStack process serving S3 on its own port.
pub struct LocalStack {
    /// The S3 endpoint, `http://127.0.0.1:PORT` (path-style requests; any region and keys).
    pub endpoint: String,
    /// The port of [`LocalStack::endpoint`].
    pub port: u16,
    dir: tempfile::TempDir,
    running: bool,
}

/// Credentials LocalStack accepts, for brokers and the CLI.
pub const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

impl LocalStack {
    /// Makes the bucket of `url` (`s3://BUCKET/PREFIX`) with `strata tier init`; panics with
    /// its output unless it succeeds.
    /// Every object key under the store URL `url` (`s3://bucket/prefix`), read with a LIST.
    pub fn object_keys(&self, url: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let options = strata_tiering::StoreOptions {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            ..Default::default()
        };
        let (store, _) = strata_tiering::object_store_from_url(url, &options)
            .unwrap_or_else(|e| panic!("store {url}: {e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(
            store
                .list(None)
                .map_ok(|m| m.location.to_string())
                .try_collect(),
        )
        .unwrap_or_else(|e| panic!("listing {url}: {e}"))
    }

    pub fn tier_init(&self, url: &str) {
        let out = Command::new(crate::strata_bin())
            .args(["tier", "init", "--object-store", url])
            .args(["--s3-endpoint", &self.endpoint])
            .envs(AWS_ENV)
            .output()
            .expect("running strata tier init");
        assert!(out.status.success(), "strata tier init {url}: {out:?}");
    }

    /// Starts LocalStack on a free port and a fresh data directory, and waits until S3 is ready
    /// (installing LocalStack first if needed). Panics if it does not come up.
    pub fn start() -> LocalStack {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir for LocalStack");
        let mut localstack = LocalStack {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            running: false,
        };
        localstack.spawn();
        localstack
    }

    /// LocalStack's data directory: `localstack.log`, `localstack.pid` and its own files.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates the bucket `name` (succeeds if it exists already). Panics on failure.
    pub fn create_bucket(&self, name: &str) {
        run_script("create-bucket.sh", &[&self.endpoint, name]);
    }

    /// Stops LocalStack cleanly (SIGTERM, then SIGKILL after 10 s) and waits until it is gone.
    /// All buckets and objects are lost. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if self.running {
            let dir = self.dir.path().to_string_lossy().into_owned();
            run_script("stop.sh", &[&dir]);
            self.running = false;
        }
    }

    /// SIGKILL (an outage: connections are reset, nothing answers on the port) and waits until
    /// the process is gone. All buckets and objects are lost. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if !self.running {
            return;
        }
        let pid = self.pid();
        // Errors are fine: it may have died on its own; the wait below is what counts.
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "LocalStack (pid {pid}) still alive 10 s after SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(self.pid_file());
        self.running = false;
    }

    /// Kills LocalStack if it runs (SIGKILL) and starts it again on the same port and data
    /// directory, waiting until S3 is ready.
    ///
    /// LocalStack keeps its data in memory: after a restart it is EMPTY. Buckets must be created
    /// again (and objects written before the restart are gone), so a test of an outage must
    /// recreate its buckets with [`LocalStack::create_bucket`] after this call.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The last lines of LocalStack's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("localstack.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn spawn(&mut self) {
        assert!(!self.running, "LocalStack is still running");
        let port = self.port.to_string();
        let dir = self.dir.path().to_string_lossy().into_owned();
        let endpoint = run_script("start.sh", &[&port, &dir]);
        assert_eq!(
            endpoint.trim(),
            self.endpoint,
            "localstack/start.sh printed an unexpected endpoint"
        );
        self.running = true;
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): an S3 that stops answering but keeps its data
    /// (a restart would lose it: LocalStack keeps objects in memory).
    pub fn freeze(&self, stop: bool) {
        let signal = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} LocalStack");
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("localstack.pid")
    }

    fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.pid_file()).expect("reading localstack.pid");
        text.trim().parse().expect("pid in localstack.pid")
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        // Never panic in drop (it may run while a test is already panicking).
        let dir = self.dir.path().to_string_lossy().into_owned();
        let stopped = Command::new("bash")
            .arg(script("stop.sh"))
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            if let Ok(pid) = std::fs::read_to_string(self.pid_file()) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
        self.running = false;
    }
}

/// Path of a script in the repository's `localstack/` directory.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("localstack")
        .join(name)
}

/// Runs `localstack/NAME ARGS...` with bash; returns its stdout, or panics with its output.
fn run_script(name: &str, args: &[&str]) -> String {
    let path = script(name);
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        path.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `pid` exists and is not a zombie (a killed LocalStack is reparented, so another
/// process reaps it; until then it shows as a zombie that holds no port).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}
