//! The nemesis's fault schedule: random faults from a seed, up to two at a time on different
//! brokers, each started, held for a random time and healed.
//!
//! Kinds: SIGKILL (restarted when it ends), SIGSTOP (SIGCONT), etcd SIGSTOPped, a broker's link
//! cut (healed), a slow link (rate-limited), and a broker lost with its disk (SIGKILL, data
//! directory removed, restarted empty when it ends). A disk is lost only while every ISR is
//! full, after a quiet spell longer than a session with no fault active (once chosen, the
//! schedule starts nothing else until then, so disk losses happen even under a steady stream
//! of faults): Kafka's promise covers the loss of any one broker
//! with its disk, not of the last copy. Other faults may start while it lasts (a frozen
//! controller or etcd while a leader comes back empty is the window that lost records before
//! incarnations).
//!
//! Invariant: at most one broker's disk is lost at a time, and `heal_all` leaves every broker
//! running, every link up and etcd answering.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::ServeCluster;
use crate::netns::Net;
use crate::rng::Rng;

/// How long a chosen disk loss waits for every ISR to be full before it is skipped.
const DISK_LOSS_PATIENCE: Duration = Duration::from_secs(45);
/// How long nothing must have changed before a disk loss: longer than the nemesis's broker
/// session (6 s) plus a controller pass, so the ISRs it reads are the real ones.
const DISK_LOSS_QUIET: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kill,
    Freeze,
    EtcdFreeze,
    Cut,
    Slow,
    DiskLoss,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Kill => "sigkill",
            Kind::Freeze => "sigstop",
            Kind::EtcdFreeze => "etcd-sigstop",
            Kind::Cut => "cut-off",
            Kind::Slow => "slow-link",
            Kind::DiskLoss => "disk-loss",
        }
    }
}

struct Active {
    kind: Kind,
    /// The broker it applies to (0 for etcd).
    broker: usize,
    started: Instant,
    ends: Instant,
}

/// Faults applied so far and those still active.
pub struct Faults {
    rng: Rng,
    active: Vec<Active>,
    /// A disk loss chosen and waiting for every ISR to be full: (broker, since).
    pending_disk_loss: Option<(usize, Instant)>,
    /// When a fault last started or ended.
    last_change: Instant,
    /// Applied faults by kind (and `disk-loss-skipped` when an ISR was not full).
    pub applied: BTreeMap<&'static str, u32>,
    /// One line per healed fault: kind, broker, how long it lasted.
    pub log: Vec<String>,
}

impl Faults {
    pub fn new(seed: u64) -> Faults {
        Faults {
            rng: Rng::new(seed),
            active: Vec::new(),
            pending_disk_loss: None,
            last_change: Instant::now(),
            applied: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    /// One step: heals the faults whose time is up, maybe starts one, and returns how long to
    /// wait before the next step. A disk loss, once chosen, waits (starting nothing else, for
    /// up to 30 s) until every ISR is full; `isrs_full` is asked only then.
    pub fn step(
        &mut self,
        cluster: &mut ServeCluster,
        net: &mut Net,
        isrs_full: impl Fn(&ServeCluster) -> bool,
    ) -> Duration {
        let now = Instant::now();
        // Heal what is due first, etcd before brokers (a restart needs it), so that a slow
        // restart below does not stretch other faults past their time.
        let (mut due, active): (Vec<Active>, Vec<Active>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|a| a.ends <= now);
        self.active = active;
        due.sort_by_key(|a| a.kind != Kind::EtcdFreeze);
        for fault in due {
            self.heal(fault, cluster, net);
        }
        if !self.active.iter().any(|a| a.kind == Kind::EtcdFreeze) {
            self.restart_exited(cluster);
        }
        if let Some((broker, since)) = self.pending_disk_loss {
            let busy = self
                .active
                .iter()
                .any(|a| a.broker == broker || a.kind == Kind::DiskLoss);
            // ISRs as the metadata shows them lag the truth: a broker SIGKILLed a moment ago
            // is still listed until its session expires, and a restart is out of the ISR only
            // once the controller processed it. So the disk is lost only after a quiet spell
            // longer than a session, with every broker running and every ISR full then.
            let quiet = self.active.is_empty() && self.last_change.elapsed() >= DISK_LOSS_QUIET;
            let running = cluster.brokers.iter().all(|b| b.is_running());
            if !busy && quiet && running && isrs_full(cluster) {
                self.pending_disk_loss = None;
                self.begin(Kind::DiskLoss, broker, cluster, net);
            } else if since.elapsed() > DISK_LOSS_PATIENCE {
                self.pending_disk_loss = None;
                *self.applied.entry("disk-loss-skipped").or_default() += 1;
            }
            return Duration::from_millis(500);
        }
        if self.active.len() < 2 && self.rng.between(0, 2) > 0 {
            let kind = match self.rng.between(0, 6) {
                0 => Kind::Kill,
                1 | 2 => Kind::Freeze,
                3 => Kind::EtcdFreeze,
                4 => Kind::Cut,
                5 => Kind::Slow,
                _ => Kind::DiskLoss,
            };
            let broker = match kind {
                Kind::EtcdFreeze => 0,
                _ => self.rng.between(1, 3) as usize,
            };
            // A broker that is not running (a restart that failed, retried next step) takes
            // no new fault.
            let stopped = broker > 0 && !cluster.broker(broker as i64).is_running();
            if kind == Kind::DiskLoss {
                self.pending_disk_loss = Some((broker, now));
            } else if !stopped && !self.active.iter().any(|a| a.broker == broker) {
                self.begin(kind, broker, cluster, net);
            }
        }
        self.rng.millis(300, 1500)
    }

    /// Applies `kind` to `broker` (0: etcd) and schedules its end.
    fn begin(&mut self, kind: Kind, broker: usize, cluster: &mut ServeCluster, net: &mut Net) {
        let hold = match kind {
            Kind::Kill => self.rng.millis(200, 3000),
            Kind::Freeze => self.rng.millis(500, 8000),
            Kind::EtcdFreeze => self.rng.millis(500, 5000),
            Kind::Cut => self.rng.millis(1000, 10000),
            Kind::Slow => self.rng.millis(2000, 10000),
            Kind::DiskLoss => self.rng.millis(200, 3000),
        };
        match kind {
            Kind::Kill => cluster.broker_mut(broker as i64).kill9(),
            Kind::Freeze => cluster.broker(broker as i64).freeze(true),
            Kind::EtcdFreeze => cluster.etcd.pause(),
            Kind::Cut => net.cut(broker),
            Kind::Slow => {
                let kbit = self.rng.between(200, 2000) as u32;
                net.slow(broker, kbit);
            }
            Kind::DiskLoss => {
                let b = cluster.broker_mut(broker as i64);
                b.kill9();
                std::fs::remove_dir_all(&b.data_dir).expect("removing the data directory");
            }
        }
        *self.applied.entry(kind.name()).or_default() += 1;
        let now = Instant::now();
        self.last_change = now;
        self.active.push(Active {
            kind,
            broker,
            started: now,
            ends: now + hold,
        });
    }

    fn heal(&mut self, fault: Active, cluster: &mut ServeCluster, net: &mut Net) {
        self.last_change = Instant::now();
        match fault.kind {
            Kind::Kill | Kind::DiskLoss => {
                // A failed start (etcd frozen) is retried by the next step's restart_exited.
                let _ = cluster.broker_mut(fault.broker as i64).try_restart();
            }
            Kind::Freeze => cluster.broker(fault.broker as i64).freeze(false),
            Kind::EtcdFreeze => cluster.etcd.resume(),
            Kind::Cut => net.heal(fault.broker),
            Kind::Slow => net.unslow(fault.broker),
        }
        let target = match fault.broker {
            0 => "etcd".to_string(),
            b => format!("broker {b}"),
        };
        self.log.push(format!(
            "{} {target} for {:?}",
            fault.kind.name(),
            fault.started.elapsed()
        ));
    }

    /// Starts every broker that should run and does not: one that exited by itself (started
    /// while etcd was frozen or its link cut, it could not reach etcd and gave up, as a process
    /// under systemd would before being restarted), or whose restart failed for that reason.
    /// The nemesis keeps calling it after healing, while it waits for the cluster to settle.
    pub fn restart_exited(&mut self, cluster: &mut ServeCluster) {
        let down: Vec<usize> = self
            .active
            .iter()
            .filter(|a| matches!(a.kind, Kind::Kill | Kind::DiskLoss))
            .map(|a| a.broker)
            .collect();
        for b in &mut cluster.brokers {
            if down.contains(&(b.id as usize)) {
                continue;
            }
            if let Some(status) = b.exited() {
                self.log
                    .push(format!("broker {} exited by itself ({status})", b.id));
            }
            if b.is_running() {
                continue;
            }
            *self.applied.entry("restart-after-exit").or_default() += 1;
            self.last_change = Instant::now();
            if let Err(e) = b.try_restart() {
                let last = e.lines().last().unwrap_or_default().to_string();
                self.log
                    .push(format!("broker {} did not start, retrying: {last}", b.id));
            }
        }
    }

    /// Ends every active fault, in the order they started.
    pub fn heal_all(&mut self, cluster: &mut ServeCluster, net: &mut Net) {
        // Resume etcd first: restarting brokers register with it.
        self.active
            .sort_by_key(|a| (a.kind != Kind::EtcdFreeze, a.started));
        for fault in std::mem::take(&mut self.active) {
            self.heal(fault, cluster, net);
        }
        net.heal_all();
        for _ in 0..5 {
            self.restart_exited(cluster);
            if cluster.brokers.iter().all(|b| b.is_running()) {
                return;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        panic!(
            "a broker does not start after healing: {:?}",
            self.log.last()
        );
    }
}
