//! The replication issue's fault tests, with real processes against real etcd: 200,000
//! numbered records produced with acks=all (RF 3, min.insync.replicas 2) while the leader is
//! killed with SIGKILL (then a follower; then the leader twice, with a restart between), then
//! read back: every acknowledged record must be there exactly once, in order. Also: a frozen
//! follower leaves the ISR and acks=all keeps working; it rejoins once it catches up.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_client::{Acks, ClientConfig, Producer, ProducerConfig, ProducerRecord};
use strata_tests::cluster::ServeCluster as Cluster;

const RECORDS: u64 = 200_000;
const TOPIC: &str = "numbers";

/// The single-partition views these tests check, over the shared three-broker cluster.
trait Partition0 {
    /// Partition 0's (leader, isr), as a live broker describes it.
    fn partition0(&self) -> (i64, Vec<i64>);
    fn wait_partition0(
        &self,
        within: Duration,
        what: &str,
        check: impl Fn(i64, &[i64]) -> bool,
    ) -> (i64, Vec<i64>);
}

impl Partition0 for Cluster {
    fn partition0(&self) -> (i64, Vec<i64>) {
        self.partitions(TOPIC).swap_remove(0)
    }

    fn wait_partition0(
        &self,
        within: Duration,
        what: &str,
        check: impl Fn(i64, &[i64]) -> bool,
    ) -> (i64, Vec<i64>) {
        self.wait(within, what, || {
            let (leader, isr) = self.partition0();
            check(leader, &isr).then_some((leader, isr))
        })
    }
}

/// What the producer saw of each record: when it was sent, and when and where it was acknowledged.
struct Outcome {
    sent: Instant,
    acked: Option<(Instant, i64)>,
}

/// Produces `RECORDS` numbered records with acks=all on a thread of its own, counting acks in
/// `acked` as they arrive.
fn produce_numbers(
    brokers: String,
    acked: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Vec<Outcome>> {
    produce_numbers_at(brokers, acked, None)
}

/// Like [`produce_numbers`], paced to `rate` records per second when given.
fn produce_numbers_at(
    brokers: String,
    acked: Arc<AtomicU64>,
    rate: Option<u64>,
) -> std::thread::JoinHandle<Vec<Outcome>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut config =
                ProducerConfig::new(ClientConfig::new(brokers.split(',').map(str::to_string)));
            config.acks = Acks::All;
            config.batch_bytes = 16 * 1024;
            config.linger = Duration::from_millis(2);
            config.delivery_timeout = Duration::from_secs(90);
            config.buffer_bytes = 4 * 1024 * 1024;
            let producer = Producer::connect(config).await.expect("producer connects");
            let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 16);
            let collector = tokio::spawn(async move {
                let mut outcomes = Vec::with_capacity(RECORDS as usize);
                while let Some((sent, delivery)) = rx.recv().await {
                    let delivery: strata_client::DeliveryFuture = delivery;
                    let acked_at = match delivery.await {
                        Ok(meta) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                            Some((Instant::now(), meta.offset))
                        }
                        Err(_) => None,
                    };
                    outcomes.push(Outcome {
                        sent,
                        acked: acked_at,
                    });
                }
                outcomes
            });
            let started = Instant::now();
            for i in 0..RECORDS {
                if let Some(rate) = rate.filter(|_| i % 1000 == 0) {
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let record = ProducerRecord::new(TOPIC, i.to_string()).partition(0);
                let delivery = producer.send(record).await.expect("send enqueues");
                tx.send((Instant::now(), delivery)).await.unwrap();
            }
            producer.flush().await.unwrap();
            drop(tx);
            let outcomes = collector.await.unwrap();
            producer.close().await.unwrap();
            outcomes
        })
    })
}

/// Reads partition 0 from the start to its high watermark: (offset, number) pairs.
fn read_all(brokers: &str) -> Vec<(i64, u64)> {
    strata_tests::reads::numbers(brokers, TOPIC)
}

/// Checks the log against what was acknowledged; prints and returns (acked, found, duplicated, lost).
fn verify(
    scenario: &str,
    outcomes: &[Outcome],
    log: &[(i64, u64)],
) -> (usize, usize, usize, usize) {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (_, n) in log {
        *seen.entry(*n).or_default() += 1;
    }
    let acked: Vec<u64> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.acked.is_some())
        .map(|(i, _)| i as u64)
        .collect();
    let found = acked.iter().filter(|n| seen.contains_key(n)).count();
    let lost = acked.len() - found;
    let duplicated = seen.values().filter(|c| **c > 1).count();
    println!(
        "{scenario}: sent {}, acknowledged {}, found {found}, duplicated {duplicated}, lost {lost}, log holds {}",
        outcomes.len(),
        acked.len(),
        log.len()
    );
    // In order: numbers in the log increase (each was sent after the previous one).
    assert!(
        log.windows(2).all(|w| w[0].1 < w[1].1),
        "{scenario}: the log is out of order"
    );
    assert!(
        log.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "{scenario}: offsets are not dense"
    );
    // Each acknowledged record sits at the offset it was acknowledged with.
    let by_offset: HashMap<i64, u64> = log.iter().copied().collect();
    for (i, o) in outcomes.iter().enumerate() {
        if let Some((_, offset)) = o.acked {
            assert_eq!(
                by_offset.get(&offset),
                Some(&(i as u64)),
                "{scenario}: record {i} acknowledged at offset {offset}"
            );
        }
    }
    (acked.len(), found, duplicated, lost)
}

fn wait_acked(acked: &AtomicU64, at_least: u64, within: Duration) {
    let deadline = Instant::now() + within;
    while acked.load(Ordering::Relaxed) < at_least {
        assert!(
            Instant::now() < deadline,
            "only {} records acknowledged, waiting for {at_least}",
            acked.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Time from `killed` to the first acknowledgement of a record sent after it.
fn failover(outcomes: &[Outcome], killed: Instant) -> Duration {
    outcomes
        .iter()
        .filter(|o| o.sent > killed)
        .filter_map(|o| o.acked.map(|(at, _)| at - killed))
        .min()
        .expect("a record sent after the kill was acknowledged")
}

const FLAGS: &[&str] = &[
    "--session-timeout",
    "3s",
    "--replica-lag-time-max",
    "5s",
    "--leader-rebalance-interval",
    "1h",
];

#[test]
fn leader_killed_mid_stream_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start("leader-kill", FLAGS);
    cluster.create_topic(TOPIC, 1, 3, &["min.insync.replicas=2"]);
    let acked = Arc::new(AtomicU64::new(0));
    let producer = produce_numbers(cluster.addresses(), acked.clone());
    wait_acked(&acked, 50_000, Duration::from_secs(60));
    let (leader, _) = cluster.partition0();
    let killed = Instant::now();
    cluster.brokers[(leader - 1) as usize].kill9();
    let outcomes = producer.join().expect("producer thread");
    println!(
        "leader kill: failover from SIGKILL to the first acks=all write: {:?}",
        failover(&outcomes, killed)
    );
    let log = read_all(&cluster.addresses());
    let (acked, _, duplicated, lost) = verify("leader kill", &outcomes, &log);
    assert_eq!(lost, 0);
    assert_eq!(duplicated, 0);
    assert_eq!(
        acked as u64, RECORDS,
        "with two replicas left every record is acknowledged"
    );
}

#[test]
fn follower_killed_mid_stream_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start("follower-kill", FLAGS);
    cluster.create_topic(TOPIC, 1, 3, &["min.insync.replicas=2"]);
    let acked = Arc::new(AtomicU64::new(0));
    let producer = produce_numbers(cluster.addresses(), acked.clone());
    wait_acked(&acked, 50_000, Duration::from_secs(60));
    let (leader, isr) = cluster.partition0();
    let follower = *isr.iter().find(|r| **r != leader).unwrap();
    cluster.brokers[(follower - 1) as usize].kill9();
    let outcomes = producer.join().expect("producer thread");
    let log = read_all(&cluster.addresses());
    let (acked, _, duplicated, lost) = verify("follower kill", &outcomes, &log);
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(acked as u64, RECORDS);
    let (_, isr) = cluster.partition0();
    assert!(
        !isr.contains(&follower),
        "the dead follower left the ISR: {isr:?}"
    );
}

#[test]
fn leader_killed_twice_with_a_restart_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start("leader-twice", FLAGS);
    cluster.create_topic(TOPIC, 1, 3, &["min.insync.replicas=2"]);
    let acked = Arc::new(AtomicU64::new(0));
    let producer = produce_numbers_at(cluster.addresses(), acked.clone(), Some(15_000));
    wait_acked(&acked, 40_000, Duration::from_secs(60));
    let (first, _) = cluster.partition0();
    cluster.brokers[(first - 1) as usize].kill9();
    let at_kill = acked.load(Ordering::Relaxed);
    wait_acked(&acked, at_kill + 30_000, Duration::from_secs(60));
    // The killed broker restarts while records flow, catches up and returns to the ISR.
    cluster.brokers[(first - 1) as usize].restart();
    let (second, _) = cluster.wait_partition0(
        Duration::from_secs(30),
        "the restarted broker back in the ISR",
        |_, isr| isr.contains(&first) && isr.len() == 3,
    );
    assert_ne!(second, first);
    let at_second = acked.load(Ordering::Relaxed);
    println!("second leader kill after {at_second} acknowledged records");
    assert!(at_second < RECORDS, "the second kill must land mid-stream");
    cluster.brokers[(second - 1) as usize].kill9();
    let outcomes = producer.join().expect("producer thread");
    let log = read_all(&cluster.addresses());
    let (acked, _, duplicated, lost) = verify("leader killed twice", &outcomes, &log);
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(acked as u64, RECORDS);
}

#[test]
fn a_frozen_follower_leaves_the_isr_and_acks_all_keeps_working() {
    // A session longer than the lag time: the follower is alive but lagging, not dead.
    let cluster = Cluster::start(
        "frozen",
        &["--session-timeout", "20s", "--replica-lag-time-max", "2s"],
    );
    cluster.create_topic(TOPIC, 1, 3, &["min.insync.replicas=2"]);
    let lines: Vec<u8> = (0..1000)
        .flat_map(|i| format!("a{i}\n").into_bytes())
        .collect();
    cluster.brokers[0].cli_ok(&["produce", TOPIC, "--acks", "all"], Some(&lines));
    let (leader, isr) = cluster.partition0();
    let follower = *isr.iter().find(|r| **r != leader).unwrap();
    cluster.broker(follower).freeze(true);
    let lines: Vec<u8> = (0..1000)
        .flat_map(|i| format!("b{i}\n").into_bytes())
        .collect();
    let started = Instant::now();
    cluster
        .broker(leader)
        .cli_ok(&["produce", TOPIC, "--acks", "all"], Some(&lines));
    println!(
        "acks=all with a frozen follower: 1000 records in {:?}",
        started.elapsed()
    );
    // The leader wrote the shrink before it acknowledged; the broker that answers describe
    // learns it through its metadata watch a moment later.
    let (_, isr) = cluster.wait_partition0(
        Duration::from_secs(10),
        "the frozen follower out of the ISR",
        |_, isr| !isr.contains(&follower),
    );
    assert_eq!(isr.len(), 2);
    // Both tools say so.
    let d: Value = serde_json::from_str(
        &cluster
            .broker(leader)
            .cli_ok(&["topic", "describe", TOPIC, "--format", "json"], None),
    )
    .unwrap();
    assert_eq!(d["partitions"][0]["under_replicated"], true);
    assert!(cluster
        .broker(leader)
        .cli_ok(&["topic", "describe", TOPIC], None)
        .contains("under-replicated"));
    let info: Value = serde_json::from_str(
        &cluster
            .broker(leader)
            .cli_ok(&["cluster", "info", "--format", "json"], None),
    )
    .unwrap();
    assert_eq!(info["under_replicated_partitions"], 1, "{info}");
    cluster.broker(follower).freeze(false);
    cluster.wait_partition0(
        Duration::from_secs(20),
        "the follower back in the ISR",
        |_, isr| isr.contains(&follower),
    );
    let out = cluster
        .broker(leader)
        .cli_ok(&["consume", TOPIC, "--offset", "start", "-n", "2000"], None);
    assert_eq!(out.lines().count(), 2000);
}

#[test]
fn leadership_returns_to_the_preferred_replica_after_a_restart() {
    let mut cluster = Cluster::start(
        "preferred",
        &[
            "--session-timeout",
            "3s",
            "--leader-rebalance-interval",
            "1s",
        ],
    );
    cluster.create_topic(TOPIC, 1, 3, &["min.insync.replicas=2"]);
    let (preferred, _) = cluster.partition0();
    let lines: Vec<u8> = (0..500)
        .flat_map(|i| format!("r{i}\n").into_bytes())
        .collect();
    cluster
        .broker(preferred)
        .cli_ok(&["produce", TOPIC, "--acks", "all"], Some(&lines));
    cluster.brokers[(preferred - 1) as usize].kill9();
    let (interim, _) = cluster.wait_partition0(Duration::from_secs(20), "a new leader", |l, _| {
        l > 0 && l != preferred
    });
    cluster
        .broker(interim)
        .cli_ok(&["produce", TOPIC, "--acks", "all"], Some(&lines));
    cluster.brokers[(preferred - 1) as usize].restart();
    // Back in the ISR first, then leading again.
    cluster.wait_partition0(
        Duration::from_secs(30),
        "the preferred replica leading again",
        |l, isr| l == preferred && isr.len() == 3,
    );
    let out = cluster
        .broker(preferred)
        .cli_ok(&["consume", TOPIC, "--offset", "start", "-n", "1000"], None);
    assert_eq!(
        out.lines().count(),
        1000,
        "the preferred replica serves every record"
    );
}
