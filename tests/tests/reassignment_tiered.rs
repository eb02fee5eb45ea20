//! Moving a tiered partition costs its hot tier, not its history (etcd, LocalStack, four
//! `strata serve`): the partition's replicas move to a broker that never held it, leadership
//! included; the new replica's log starts at the old leader's local log start (its history
//! stays in the bucket), the new leader replays the whole partition from offset 0 through the
//! bucket, and the new broker holds a small part of what the bucket holds.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use strata_tests::cluster::ServeCluster as Cluster;
use strata_tests::etcd::EtcdServer;
use strata_tests::localstack::{LocalStack, AWS_ENV};
use strata_tests::serve::ServeBroker;
use strata_tests::wait_for;

const URL: &str = "s3://moves/t";
const TOPIC: &str = "history";

fn lines(from: usize, to: usize) -> Vec<u8> {
    (from..to)
        .flat_map(|i| format!("rec-{i:08}-padding-to-some-forty-bytes\n").into_bytes())
        .collect()
}

/// Base offsets and total bytes of partition 0's local segments under a broker's data dir.
fn local_segments(data_dir: &Path) -> (Vec<i64>, u64) {
    let mut bases = Vec::new();
    let mut bytes = 0;
    for f in strata_tests::files_under(data_dir) {
        let s = f.to_string_lossy();
        if s.contains(&format!("/{TOPIC}~")) && s.contains("/0/") && s.ends_with(".log") {
            if let Some(base) = f.file_stem().and_then(|n| n.to_str()?.parse().ok()) {
                bases.push(base);
            }
            bytes += std::fs::metadata(&f).map_or(0, |m| m.len());
        }
    }
    bases.sort_unstable();
    (bases, bytes)
}

#[test]
fn a_tiered_partition_moves_with_its_hot_tier_only() {
    let localstack = LocalStack::start();
    localstack.tier_init(URL);
    let etcd = EtcdServer::start();
    let flags = [
        "--session-timeout",
        "3s",
        "--object-store",
        URL,
        "--s3-endpoint",
        &localstack.endpoint,
        "--retention-check-interval",
        "500ms",
    ];
    let brokers: Vec<ServeBroker> = (1..=4)
        .map(|id| ServeBroker::start_with_env(id, &etcd.endpoint, "moves", &flags, &AWS_ENV))
        .collect();
    let c = Cluster { etcd, brokers };
    c.create_topic(
        TOPIC,
        1,
        2,
        &[
            "remote.storage.enable=true",
            "segment.bytes=16384",
            "local.retention.bytes=1",
        ],
    );
    let (replicas, leader, _) = c.assignment(TOPIC, 0);
    c.broker(leader)
        .cli_ok(&["produce", TOPIC, "--acks", "all"], Some(&lines(0, 4000)));
    let status = || -> Value {
        let s: Value = serde_json::from_str(
            &c.any_live()
                .cli_ok(&["tier", "status", TOPIC, "--format", "json"], None),
        )
        .unwrap();
        s["partitions"][0].clone()
    };
    let local_start = c.wait(Duration::from_secs(60), "the hot tier trimmed", || {
        let s = status();
        let start = s["local_log_start_offset"].as_i64()?;
        (start > 2000 && s["remote_segments"].as_u64()? > 5).then_some(start)
    });
    let remote_bytes = status()["remote_bytes"].as_u64().unwrap();

    // Both replicas move to the two brokers that never held the partition.
    let target: Vec<i64> = (1..=4).filter(|b| !replicas.contains(b)).collect();
    let to = target
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",");
    c.any_live().cli_ok(
        &[
            "partition",
            "reassign",
            TOPIC,
            "--partition",
            "0",
            "--replicas",
            &to,
        ],
        None,
    );
    let (now, new_leader, _) = c.wait(Duration::from_secs(60), "the move finished", || {
        let a = c.assignment(TOPIC, 0);
        (a.0 == target).then_some(a)
    });
    assert_eq!(now, target);
    assert_eq!(new_leader, target[0]);
    for b in &target {
        let (bases, bytes) = local_segments(&c.broker(*b).data_dir);
        println!(
            "broker {b}: local segments from {:?}, {bytes} bytes; the bucket holds {remote_bytes} (zstd)",
            bases.first()
        );
        assert!(
            bases.first().is_some_and(|&base| base >= local_start),
            "broker {b}'s log starts at or above the old leader's local start {local_start}: \
             {bases:?}"
        );
        // The history is 4,000 records; what moved is the hot tier, a few segments of it.
        let produced = lines(0, 4000).len() as u64;
        assert!(
            bytes < produced / 4,
            "broker {b} copied the history: {bytes} of {produced} bytes"
        );
    }
    for b in &replicas {
        wait_for(
            Duration::from_secs(20),
            "the old replicas' files deleted",
            || {
                local_segments(&c.broker(*b).data_dir)
                    .0
                    .is_empty()
                    .then_some(())
            },
        );
    }
    // The new leader replays the whole partition, its history from the bucket.
    let all = c
        .broker(new_leader)
        .cli_ok(&["consume", TOPIC, "--offset", "start", "-n", "4000"], None);
    assert!(
        all == String::from_utf8(lines(0, 4000)).unwrap(),
        "replay from offset 0 after the move differs"
    );
}
