//! Long-running `strata` client processes for group tests: a consumer whose JSON output lines
//! are collected as they arrive (with the time each was read), and a producer fed numbered,
//! keyed records at a steady pace until stopped.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::strata_bin;

/// One consumed record, as the consumer printed it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub partition: u32,
    pub offset: i64,
    pub value: String,
}

/// `strata consume TOPIC -g GROUP --format json ...`, read line by line.
pub struct ConsumerProc {
    child: Option<Child>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    reader: Option<JoinHandle<()>>,
}

impl ConsumerProc {
    pub fn start(brokers: &str, topic: &str, group: &str, extra: &[&str]) -> ConsumerProc {
        let mut child = Command::new(strata_bin())
            .args(["consume", topic, "-g", group, "--format", "json"])
            .args(extra)
            .env("STRATA_BROKERS", brokers)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting strata consume");
        let stdout = child.stdout.take().expect("consumer stdout");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).expect("a JSON record line");
                sink.lock().unwrap().push(Seen {
                    at: Instant::now(),
                    partition: v["partition"].as_u64().unwrap() as u32,
                    offset: v["offset"].as_i64().unwrap(),
                    value: v["value"].as_str().unwrap_or_default().to_string(),
                });
            }
        });
        ConsumerProc {
            child: Some(child),
            seen,
            reader: Some(reader),
        }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no final commit, no leave.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// SIGTERM and wait: the consumer commits and leaves the group. Panics unless it exits 0.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let status = c.wait().expect("waiting for strata consume");
            assert!(status.success(), "strata consume exited with {status}");
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for ConsumerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `strata produce TOPIC --key-separator : --acks all` fed `k<i>:rec-<i>` lines.
pub struct ProducerProc {
    child: Child,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    feeder: Option<JoinHandle<()>>,
}

impl ProducerProc {
    /// Writes `per_tick` records every `tick` from `first` on, until [`ProducerProc::finish`].
    pub fn start(brokers: &str, topic: &str, first: u64, per_tick: u64, tick: Duration) -> Self {
        let mut child = Command::new(strata_bin())
            .args(["produce", topic, "--key-separator", ":", "--acks", "all"])
            .env("STRATA_BROKERS", brokers)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting strata produce");
        let mut stdin = child.stdin.take().expect("producer stdin");
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (stop2, written2) = (stop.clone(), written.clone());
        let feeder = std::thread::spawn(move || {
            let mut i = first;
            while !stop2.load(Ordering::SeqCst) {
                let mut chunk = String::new();
                for _ in 0..per_tick {
                    chunk.push_str(&format!("k{i}:rec-{i:09}\n"));
                    i += 1;
                }
                if stdin.write_all(chunk.as_bytes()).is_err() {
                    break;
                }
                let _ = stdin.flush();
                written2.fetch_add(per_tick, Ordering::SeqCst);
                std::thread::sleep(tick);
            }
        });
        ProducerProc {
            child,
            stop,
            written,
            feeder: Some(feeder),
        }
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Stops feeding, waits for every record to be acknowledged; returns how many were written.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(f) = self.feeder.take() {
            f.join().expect("producer feeder");
        }
        let status = self.child.wait().expect("waiting for strata produce");
        assert!(status.success(), "strata produce exited with {status}");
        self.written()
    }
}
