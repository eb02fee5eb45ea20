//! Many partitions on three `strata serve` brokers (issue 17): a 600-partition RF 3 topic is
//! replicated by one fetch stream per (follower, leader) broker pair, so the idle cluster makes
//! a handful of replica fetches a second instead of one long poll per partition and follower;
//! housekeeping visits no idle partition; acks=all produce across every partition works, also
//! after a leader's SIGKILL and restart (the followers' sessions to the restarted leader are
//! refused and opened again).

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

fn metric(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.get(name).copied().unwrap_or(0.0)
}

fn housekeeping_visits(m: &BTreeMap<String, f64>) -> f64 {
    metric(m, "strata_housekeeping_visits_total")
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

/// ProduceMany and FetchMany straight to broker 1: its own partitions are served, one it does
/// not lead is refused on its own with NOT_LEADER_OR_FOLLOWER, a partition named twice refuses
/// the request. Returns the partitions it wrote a second record ("many") to.
fn multi_partition_calls_answer_each_partition(cluster: &ServeCluster) -> Vec<u32> {
    let leaders = cluster.partitions("many");
    let mine: Vec<u32> = (0..PARTITIONS)
        .filter(|p| leaders[*p as usize].0 == 1)
        .take(3)
        .collect();
    let other = (0..PARTITIONS)
        .find(|p| leaders[*p as usize].0 != 1)
        .expect("a partition led elsewhere");
    let address = cluster.broker(1).addr.to_string();
    block_on(async {
        let mut client = strata_proto::log_client::LogClient::connect(format!("http://{address}"))
            .await
            .expect("connect to broker 1");
        let mut batch = strata_log::BatchBuilder::new(strata_log::Compression::None);
        batch.append(0, None, Some(&b"many"[..]), &[]);
        let records = batch.build().unwrap();
        let asked: Vec<u32> = mine.iter().copied().chain([other]).collect();
        let produced = client
            .produce_many(strata_proto::ProduceManyRequest {
                acks: strata_proto::Acks::All as i32,
                timeout_ms: 10_000,
                partitions: asked
                    .iter()
                    .map(|p| strata_proto::PartitionBatches {
                        topic: "many".into(),
                        partition: *p,
                        records: records.clone(),
                    })
                    .collect(),
            })
            .await
            .expect("ProduceMany answers")
            .into_inner();
        assert_eq!(produced.partitions.len(), asked.len());
        for (p, answer) in asked.iter().zip(&produced.partitions) {
            assert_eq!(answer.partition, *p);
            if *p == other {
                assert_eq!(answer.error_code, "NOT_LEADER_OR_FOLLOWER", "{answer:?}");
                assert!(!answer.error_message.is_empty());
            } else {
                assert_eq!(answer.error_code, "", "{answer:?}");
                assert_eq!(answer.base_offset, 1, "after the record 'first'");
            }
        }
        let fetched = client
            .fetch_many(strata_proto::FetchManyRequest {
                partitions: asked
                    .iter()
                    .map(|p| strata_proto::PartitionFetch {
                        topic: "many".into(),
                        partition: *p,
                        offset: 0,
                        max_bytes: 1 << 20,
                    })
                    .collect(),
                max_wait_ms: 100,
                min_bytes: 1,
                max_bytes: 4 << 20,
            })
            .await
            .expect("FetchMany answers")
            .into_inner();
        for (p, answer) in asked.iter().zip(&fetched.partitions) {
            if *p == other {
                assert_eq!(answer.error_code, "NOT_LEADER_OR_FOLLOWER", "{answer:?}");
            } else {
                assert_eq!(answer.error_code, "", "{answer:?}");
                assert_eq!(answer.high_watermark, 2, "{answer:?}");
                let values: Vec<String> = strata_log::records::decode_all(&answer.records)
                    .unwrap()
                    .into_iter()
                    .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
                    .collect();
                assert_eq!(values, ["first", "many"]);
            }
        }
        let twice = client
            .fetch_many(strata_proto::FetchManyRequest {
                partitions: [mine[0], mine[0]]
                    .iter()
                    .map(|p| strata_proto::PartitionFetch {
                        topic: "many".into(),
                        partition: *p,
                        offset: 0,
                        max_bytes: 1024,
                    })
                    .collect(),
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 1024,
            })
            .await
            .unwrap_err();
        assert_eq!(twice.code(), tonic::Code::InvalidArgument, "{twice:?}");
        assert!(twice.message().contains("appears twice"), "{twice:?}");
    });
    mine
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
    // Every replica opened is visited by housekeeping once (its log may have a chore due).
    cluster.wait(
        Duration::from_secs(20),
        "every replica visited by housekeeping once",
        || {
            metrics
                .iter()
                .all(|m| housekeeping_visits(&scrape(*m)) >= PARTITIONS as f64)
                .then_some(())
        },
    );
    // Then only partitions that changed or have a chore due: none, idle (the old design
    // visited all 600 replicas of each broker every second, 3,000 in 5 s).
    let before: Vec<(f64, f64)> = metrics
        .iter()
        .map(|m| {
            let s = scrape(*m);
            (replica_fetches(&s), housekeeping_visits(&s))
        })
        .collect();
    std::thread::sleep(IDLE);
    for (i, m) in metrics.iter().enumerate() {
        let s = scrape(*m);
        let visits = housekeeping_visits(&s) - before[i].1;
        eprintln!(
            "broker {}: {visits} housekeeping visits in {IDLE:?} idle",
            i + 1
        );
        assert!(
            visits <= 10.0,
            "broker {} housekept {visits} partitions in {IDLE:?} with nothing due",
            i + 1
        );
        let rounds = replica_fetches(&s) - before[i].0;
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
    let written_twice = multi_partition_calls_answer_each_partition(&cluster);

    // A leader dies: its partitions move, and acks=all works across every partition again.
    let deltas_before = metric(&scrape(metrics[0]), "strata_metadata_deltas_total");
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
    // The elections and ISR shrinks reached broker 1 as deltas of the metadata watch, not as
    // one re-read of all 600 partitions per change.
    let deltas = metric(&scrape(metrics[0]), "strata_metadata_deltas_total") - deltas_before;
    eprintln!("broker 1: {deltas} partition states applied as deltas after the SIGKILL");
    assert!(
        deltas >= 200.0,
        "broker 1 applied only {deltas} partition states as deltas; broker 2 led about 200"
    );

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
    for p in [0, PARTITIONS / 2, PARTITIONS - 1]
        .into_iter()
        .chain(written_twice.iter().copied())
    {
        let mut want = vec!["first"];
        if written_twice.contains(&p) {
            want.push("many");
        }
        want.extend(["second", "third"]);
        assert_eq!(
            cluster.read(2, "many", p, want.len()),
            want,
            "partition {p} through the restarted broker"
        );
    }
}
