//! Controlled shutdown with real processes: a rolling restart of three `strata serve` brokers
//! (SIGTERM, start again, wait for full ISRs) under acks=all load in runs of 2,000 records.
//! No send may fail, each stopping broker must have moved its leaderships before it exited,
//! and no run may take a second (measured on this 2-core machine: the longest run 175-260 ms
//! with controlled shutdown; 1.5 s for a SIGTERM without it, 9.2 s for SIGKILL).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_client::ProducerRecord;
use strata_tests::client::acks_all_producer;
use strata_tests::cluster::ServeCluster as Cluster;
use strata_tests::serve::TEST_SESSION_TIMEOUT;

const RUN: usize = 2_000;
const PARTITIONS: u32 = 3;

/// What the producer saw: each run's duration, the longest send-to-ack time, failures.
#[derive(Debug, Default)]
struct Seen {
    runs: Vec<Duration>,
    longest_ack: Duration,
    failed: Vec<String>,
}

/// Produces runs of `RUN` records (acks=all, over every partition) until `stop`.
fn produce_runs(brokers: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        strata_tests::client::block_on(async move {
            let producer = acks_all_producer(&brokers, Duration::from_millis(1)).await;
            let mut seen = Seen::default();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let mut deliveries = Vec::with_capacity(RUN);
                for _ in 0..RUN {
                    let record = ProducerRecord::new("rolling", n.to_string())
                        .partition((n % PARTITIONS as u64) as u32);
                    n += 1;
                    let sent = Instant::now();
                    deliveries.push((sent, producer.send(record).await.expect("send enqueues")));
                }
                for (sent, delivery) in deliveries {
                    match delivery.await {
                        Ok(_) => seen.longest_ack = seen.longest_ack.max(sent.elapsed()),
                        Err(e) => seen.failed.push(e.to_string()),
                    }
                }
                seen.runs.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            producer.close().await.unwrap();
            seen
        })
    })
}

#[test]
fn a_rolling_restart_under_acks_all_load_fails_no_send() {
    let mut c = Cluster::start("rolling", &["--session-timeout", TEST_SESSION_TIMEOUT]);
    c.create_topic("rolling", PARTITIONS, 3, &["min.insync.replicas=2"]);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_runs(c.addresses(), stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    for id in 1..=3 {
        let led = c
            .partitions("rolling")
            .iter()
            .filter(|(leader, _)| *leader == id)
            .count();
        let took = c.broker_mut(id).terminate();
        let log = c.broker(id).log_text();
        assert!(
            log.contains("controlled shutdown: every leadership moved"),
            "broker {id} stopped without moving its {led} leaderships:\n{log}"
        );
        println!("broker {id} (leading {led} partitions) stopped in {took:?}");
        std::thread::sleep(Duration::from_secs(1));
        c.broker_mut(id).restart();
        c.wait(Duration::from_secs(60), "every ISR full again", || {
            c.partitions("rolling")
                .iter()
                .all(|(l, isr)| *l > 0 && isr.len() == 3)
                .then_some(())
        });
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let seen = producer.join().unwrap();
    let longest = seen.runs.iter().max().copied().unwrap_or_default();
    println!(
        "{} runs of {RUN} records; longest run {longest:?}; longest send-to-ack {:?}; {} failed",
        seen.runs.len(),
        seen.longest_ack,
        seen.failed.len()
    );
    assert!(
        seen.failed.is_empty(),
        "{} sends failed; first: {}",
        seen.failed.len(),
        seen.failed[0]
    );
    assert!(seen.runs.len() > 3, "the producer ran through the restarts");
    assert!(
        longest < Duration::from_secs(1),
        "a run of {RUN} records took {longest:?}: leadership did not move before the stop"
    );
}
