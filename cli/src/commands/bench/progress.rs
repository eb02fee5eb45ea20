//! The live progress line: on a terminal, once a second, what has been done and the rate of
//! the last second, on stderr (so `--format json` on stdout stays one clean object).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters the scenario bumps; the progress line reads them.
#[derive(Default)]
pub struct Counters {
    pub produced: AtomicU64,
    pub consumed: AtomicU64,
}

impl Counters {
    pub fn add_produced(&self, n: u64) {
        self.produced.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_consumed(&self, n: u64) {
        self.consumed.fetch_add(n, Ordering::Relaxed);
    }

    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }
}

/// Prints the progress line until dropped; nothing when stderr is not a terminal.
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn start(label: &'static str, counters: Arc<Counters>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { task: None };
        }
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let (mut last_p, mut last_c) = (0, 0);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let p = counters.produced.load(Ordering::Relaxed);
                let c = counters.consumed.load(Ordering::Relaxed);
                let mut line =
                    format!("\r\x1b[K{label} {:>6.1} s", started.elapsed().as_secs_f64());
                if p > 0 {
                    line += &format!("  produced {p} ({}/s)", rate(p - last_p));
                }
                if c > 0 {
                    line += &format!("  consumed {c} ({}/s)", rate(c - last_c));
                }
                (last_p, last_c) = (p, c);
                let mut err = std::io::stderr();
                let _ = err.write_all(line.as_bytes());
                let _ = err.flush();
            }
        });
        Progress { task: Some(task) }
    }
}

fn rate(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = std::io::stderr().write_all(b"\r\x1b[K");
        }
    }
}
