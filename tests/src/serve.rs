//! `strata serve` processes for cluster tests: each with its own port and data directory,
//! pointed at a test etcd. Killed (SIGKILL) when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::{free_port, run_cli, run_cli_ok, strata_bin};

/// Registration lease used by tests: short, so a killed broker is noticed quickly.
pub const TEST_SESSION_TIMEOUT: &str = "3s";

pub struct ServeBroker {
    pub id: i32,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    etcd: String,
    cluster: String,
    /// Extra `strata serve` flags.
    extra: Vec<String>,
    /// Extra environment variables.
    env: Vec<(String, String)>,
    /// Network namespace it runs in (`ip netns exec`); `None`: the test's own.
    netns: Option<String>,
    /// SIGSTOPped: running, but answering nothing.
    frozen: std::sync::atomic::AtomicBool,
    child: Option<Child>,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl ServeBroker {
    /// Starts broker `id` of `cluster` against `etcd` and waits for its port.
    pub fn start(id: i32, etcd: &str, cluster: &str) -> ServeBroker {
        Self::start_with(
            id,
            etcd,
            cluster,
            &["--session-timeout", TEST_SESSION_TIMEOUT],
        )
    }

    /// Like [`ServeBroker::start`], with these `strata serve` flags (give --session-timeout).
    pub fn start_with(id: i32, etcd: &str, cluster: &str, extra: &[&str]) -> ServeBroker {
        Self::start_with_env(id, etcd, cluster, extra, &[])
    }

    /// Like [`ServeBroker::start_with`], with extra environment variables (S3 credentials).
    pub fn start_with_env(
        id: i32,
        etcd: &str,
        cluster: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ServeBroker {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self::launch(id, etcd, cluster, extra, env, addr, None)
    }

    /// Like [`ServeBroker::start_with`], inside network namespace `netns`, listening on `addr`
    /// (an address of that namespace the test can reach).
    pub fn start_in_netns(
        id: i32,
        etcd: &str,
        cluster: &str,
        extra: &[&str],
        addr: SocketAddr,
        netns: &str,
    ) -> ServeBroker {
        Self::launch(id, etcd, cluster, extra, &[], addr, Some(netns.to_string()))
    }

    fn launch(
        id: i32,
        etcd: &str,
        cluster: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        addr: SocketAddr,
        netns: Option<String>,
    ) -> ServeBroker {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut b = ServeBroker {
            id,
            addr,
            data_dir: tmp.path().join("data"),
            etcd: etcd.to_string(),
            cluster: cluster.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            netns,
            frozen: Default::default(),
            child: None,
            log: tmp.path().join("broker.log"),
            _tmp: tmp,
        };
        b.restart();
        b
    }

    fn command(&self) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                // `ip netns exec` enters the namespace and execs: the child's pid is strata's.
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(strata_bin());
                cmd
            }
            None => Command::new(strata_bin()),
        };
        cmd.args([
            "serve",
            "--id",
            &self.id.to_string(),
            "--listen",
            &self.addr.to_string(),
        ])
        .arg("--data-dir")
        .arg(&self.data_dir)
        .args(["--etcd", &self.etcd, "--cluster", &self.cluster])
        .args(&self.extra)
        // Brokers in network namespaces listen on non-loopback addresses, without TLS.
        .args(
            (!self.addr.ip().is_loopback() && !self.extra.iter().any(|a| a == "--tls-cert"))
                .then_some("--allow-plaintext"),
        )
        .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Replaces the extra environment variables used from the next (re)start on.
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// Starts (again) on the same port and data directory.
    pub fn restart(&mut self) {
        if let Err(e) = self.try_restart() {
            panic!("{e}");
        }
    }

    /// Like [`ServeBroker::restart`], but a broker that exits while starting (etcd out of
    /// reach, say) or does not listen within 30 s is an error, not a panic; it is then stopped.
    pub fn try_restart(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "broker {} is still running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("broker log file");
        let child = self
            .command()
            .env("STRATA_LOG", "info")
            .env(
                "STRATA_GROUP_MIN_SESSION_TIMEOUT",
                crate::TEST_GROUP_MIN_SESSION_TIMEOUT,
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting strata serve");
        self.child = Some(child);
        let outcome = self.wait_listening();
        if outcome.is_err() {
            self.kill9();
        }
        outcome
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "broker {} exited with {status} while starting:\n{}",
                    self.id,
                    self.log_text()
                ));
            }
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "broker {} is not listening on {} after 30 s:\n{}",
            self.id,
            self.addr,
            self.log_text()
        ))
    }

    /// SIGKILL: no flush, no clean shutdown, the registration lease left to expire.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL strata serve");
            child.wait().expect("reaping strata serve");
        }
        self.frozen
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// SIGTERM, then waits for the process to exit (a clean stop: controlled shutdown, logs
    /// closed, registration released); returns how long that took.
    pub fn terminate(&mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill -TERM");
            assert!(status.success(), "kill -TERM broker {}", self.id);
            let exited = child.wait().expect("reaping strata serve");
            assert!(exited.success(), "broker {} stopped with {exited}", self.id);
        }
        started.elapsed()
    }

    /// A broker lost with its disk: SIGKILL, the data directory removed, started again empty
    /// under the same id.
    pub fn lose_disk(&mut self) {
        self.kill9();
        if self.data_dir.exists() {
            std::fs::remove_dir_all(&self.data_dir).expect("removing the data directory");
        }
        self.restart();
    }

    /// The exit status if the process ended by itself (it is then no longer running).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Running and not frozen: it answers requests.
    pub fn is_serving(&self) -> bool {
        self.is_running() && !self.frozen.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a broker frozen without dying.
    pub fn freeze(&self, stop: bool) {
        let pid = self
            .child
            .as_ref()
            .expect("broker running")
            .id()
            .to_string();
        let signal = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
        self.frozen.store(stop, std::sync::atomic::Ordering::SeqCst);
    }

    /// What the broker wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a client command against this broker.
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_cli(&self.addr.to_string(), args, stdin)
    }

    /// Like [`ServeBroker::cli`], but panics with stderr unless the command succeeds.
    pub fn cli_ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        run_cli_ok(&self.addr.to_string(), args, stdin)
    }
}

impl Drop for ServeBroker {
    fn drop(&mut self) {
        self.kill9();
    }
}
