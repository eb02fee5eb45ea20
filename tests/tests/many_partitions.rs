//! Many partitions on three `strata serve` brokers (issue 17): a 600-partition RF 3 topic is
//! replicated by one fetch stream per (follower, leader) broker pair, so the idle cluster makes
//! a handful of replica fetches a second instead of one long poll per partition and follower;
//! acks=all produce across every partition works, also after a leader's SIGKILL and restart
//! (the followers' sessions to the restarted leader are refused and opened again).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use strata_client::ProducerRecord;
use strata_tests::client::{acks_all_producer, block_on};
use strata_tests::cluster::ServeCluster;
use strata_tests::etcd::EtcdServer;
use strata_tests::free_port;
use strata_tests::metrics::scrape;
use strata_tests::serve::ServeBroker;

const PARTITIONS: u32 = 600;
const IDLE: Duration = Duration::from_secs(5);

fn replica_fetches(m: &BTreeMap<String, f64>) -> f64 {
    m.get(r#"strata_requests_total{api="replica_fetch"}"#)
        .copied()
        .unwrap_or(0.0)
}

/// Sends one record to every partition with acks=all and waits for every acknowledgement.
fn produce_to_every_partition(brokers: &str, value: &str) {
    block_on(async {
        let producer = acks_all_producer(brokers, Duration::from_millis(5)).await;
        let mut pending = Vec::new();
        for p in 0..PARTITIONS {
            let record = ProducerRecord::new("many", value.to_string()).partition(p);
            pending.push(producer.send(record).await.expect("queued"));
        }
        for (p, delivery) in pending.into_iter().enumerate() {
            let meta = delivery
                .await
                .unwrap_or_else(|e| panic!("acks=all produce to partition {p} failed: {e}"));
            assert_eq!(meta.partition, p as u32);
        }
        producer.close().await.expect("producer closes");
    });
}

#[test]
fn six_hundred_partitions_replicate_over_one_stream_per_broker_pair() {
    let etcd = EtcdServer::start();
    let metrics: Vec<SocketAddr> = (0..3)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    let brokers = (1..=3)
        .map(|id| {
            let m = metrics[id as usize - 1].to_string();
            ServeBroker::start_with(
                id,
                &etcd.endpoint,
                "many",
                &["--metrics", &m, "--session-timeout", "10s"],
            )
        })
        .collect();
    let mut cluster = ServeCluster { etcd, brokers };
    cluster.create_topic("many", PARTITIONS, 3, &[]);

    // Every broker follows the two others over one stream each and leads a session for each.
    cluster.wait(
        Duration::from_secs(20),
        "two streams and two sessions per broker",
        || {
            metrics
                .iter()
                .all(|m| {
                    let s = scrape(*m);
                    s.get("strata_replica_fetch_streams") == Some(&2.0)
                        && s.get("strata_replica_fetch_sessions") == Some(&2.0)
                })
                .then_some(())
        },
    );

    // Idle: a few rounds a second per session, not one long poll per partition and follower
    // (that was 2 x 200 polls per 500 ms on each leader, about 4,000 in 5 s).
    let before: Vec<f64> = metrics
        .iter()
        .map(|m| replica_fetches(&scrape(*m)))
        .collect();
    std::thread::sleep(IDLE);
    for (i, m) in metrics.iter().enumerate() {
        let rounds = replica_fetches(&scrape(*m)) - before[i];
        eprintln!(
            "broker {}: {rounds} replica fetches in {IDLE:?} idle",
            i + 1
        );
        assert!(
            rounds <= 60.0,
            "broker {} answered {rounds} replica fetches in {IDLE:?} with nothing to replicate",
            i + 1
        );
    }

    let addresses = cluster.addresses();
    produce_to_every_partition(&addresses, "first");

    // A leader dies: its partitions move, and acks=all works across every partition again.
    cluster.broker_mut(2).kill9();
    let survivors: String = [1, 3]
        .iter()
        .map(|id| cluster.broker(*id).addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    cluster.wait(
        Duration::from_secs(40),
        "every partition led by a live broker",
        || {
            cluster
                .partitions("many")
                .iter()
                .all(|(leader, _)| *leader == 1 || *leader == 3)
                .then_some(())
        },
    );
    produce_to_every_partition(&survivors, "second");

    // It comes back: the followers' streams to it start over and every ISR fills again.
    cluster.broker_mut(2).restart();
    cluster.wait(
        Duration::from_secs(60),
        "every ISR full after the restart",
        || {
            cluster
                .partitions("many")
                .iter()
                .all(|(leader, isr)| *leader > 0 && isr.len() == 3)
                .then_some(())
        },
    );
    produce_to_every_partition(&addresses, "third");
    for p in [0, PARTITIONS / 2, PARTITIONS - 1] {
        assert_eq!(
            cluster.read(2, "many", p, 3),
            vec!["first", "second", "third"],
            "partition {p} through the restarted broker"
        );
    }
}
