//! Followers of a tiered topic never pull the remote history through their leader (etcd,
//! LocalStack, three `strata serve`): a follower that was down while the partition changed
//! leaders and local retention moved past everything it had (the leader epoch it knew is no
//! longer in the new leader's epoch cache) truncates and starts again at the new leader's
//! local log start, rejoins the ISR, and the leader serves no remote read for it.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_tests::etcd::EtcdServer;
use strata_tests::localstack::{LocalStack, AWS_ENV};
use strata_tests::metrics::scrape;
use strata_tests::serve::ServeBroker;
use strata_tests::{free_port, wait_for};

const URL: &str = "s3://followers/t";
const TOPIC: &str = "catchup";
const REMOTE_READS: &str = "strata_remote_fetch_requests_total";

/// The partition's leader and ISR.
fn describe(broker: &ServeBroker) -> (i64, Vec<i64>) {
    let d: Value = serde_json::from_str(
        &broker.cli_ok(&["topic", "describe", TOPIC, "--format", "json"], None),
    )
    .unwrap();
    let p = &d["partitions"][0];
    let isr = p["isr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    (p["leader"].as_i64().unwrap(), isr)
}

fn status(broker: &ServeBroker) -> Value {
    let s: Value =
        serde_json::from_str(&broker.cli_ok(&["tier", "status", TOPIC, "--format", "json"], None))
            .unwrap();
    s["partitions"][0].clone()
}

/// Base offsets of the local segments of partition 0 under a broker's data directory.
fn segment_bases(data_dir: &Path) -> Vec<i64> {
    let logs = data_dir.join("logs");
    let mut bases: Vec<i64> = std::fs::read_dir(&logs)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{TOPIC}~")))
        })
        .flat_map(|d| std::fs::read_dir(d.join("0")).into_iter().flatten())
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p: &PathBuf| p.extension().is_some_and(|e| e == "log"))
        .filter_map(|p| p.file_stem()?.to_str()?.parse().ok())
        .collect();
    bases.sort_unstable();
    bases
}

fn remote_reads(addr: SocketAddr) -> f64 {
    scrape(addr)
        .into_iter()
        .filter(|(series, _)| series.starts_with(REMOTE_READS))
        .map(|(_, v)| v)
        .sum()
}

fn lines(from: usize, to: usize) -> Vec<u8> {
    (from..to)
        .flat_map(|i| format!("rec-{i:08}-padding-to-some-forty-bytes\n").into_bytes())
        .collect()
}

#[test]
fn a_follower_whose_epoch_was_trimmed_restarts_at_the_leaders_local_start() {
    let localstack = LocalStack::start();
    localstack.tier_init(URL);
    let etcd = EtcdServer::start();
    let metrics: Vec<SocketAddr> = (0..3)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    let mut brokers: Vec<ServeBroker> = (1..=3)
        .map(|id| {
            let m = metrics[id as usize - 1].to_string();
            let flags = [
                "--session-timeout",
                "3s",
                "--object-store",
                URL,
                "--s3-endpoint",
                &localstack.endpoint,
                "--retention-check-interval",
                "500ms",
                "--metrics",
                &m,
            ];
            ServeBroker::start_with_env(id, &etcd.endpoint, "followers", &flags, &AWS_ENV)
        })
        .collect();
    let create = [
        "topic",
        "create",
        TOPIC,
        "-p",
        "1",
        "-r",
        "3",
        "-c",
        "segment.bytes=16384",
        "-c",
        "local.retention.bytes=1",
    ];
    wait_for(Duration::from_secs(30), "three live brokers", || {
        brokers[0].cli(&create, None).status.success().then_some(())
    });
    wait_for(Duration::from_secs(30), "a full ISR", || {
        (describe(&brokers[0]).1.len() == 3).then_some(())
    });
    let (first_leader, _) = describe(&brokers[0]);
    let follower = (1..=3).find(|&b| b != first_leader).unwrap();
    let other = (1..=3)
        .find(|&b| b != first_leader && b != follower)
        .unwrap();
    let idx = |id: i64| id as usize - 1;
    brokers[idx(first_leader)].cli_ok(&["produce", TOPIC, "--acks", "all"], Some(&lines(0, 500)));

    // The follower goes down; then the leader does, and the third replica leads in a new epoch.
    brokers[idx(follower)].kill9();
    wait_for(
        Duration::from_secs(30),
        "the follower out of the ISR",
        || (!describe(&brokers[idx(other)]).1.contains(&follower)).then_some(()),
    );
    brokers[idx(first_leader)].kill9();
    wait_for(Duration::from_secs(30), "a new leader", || {
        (describe(&brokers[idx(other)]).0 == other).then_some(())
    });
    let leader = &brokers[idx(other)];
    leader.cli_ok(
        &["produce", TOPIC, "--acks", "all"],
        Some(&lines(500, 4000)),
    );
    // Uploads and local retention move the leader's local start past the old epoch's records:
    // its epoch cache no longer holds the epoch the follower knows.
    let before = wait_for(
        Duration::from_secs(60),
        "the leader's hot tier trimmed",
        || {
            let s = status(leader);
            let local_start = s["local_log_start_offset"].as_i64()?;
            (local_start > 1000 && s["remote_segments"].as_u64()? > 2).then_some(local_start)
        },
    );
    println!("leader {other} (was {first_leader}), local start {before}");
    let reads_before = remote_reads(metrics[idx(other)]);

    brokers[idx(follower)].restart();
    wait_for(
        Duration::from_secs(60),
        "the follower back in the ISR",
        || {
            describe(&brokers[idx(other)])
                .1
                .contains(&follower)
                .then_some(())
        },
    );
    for line in brokers[idx(follower)].log_text().lines() {
        if line.contains(TOPIC) && (line.contains("truncat") || line.contains("log start")) {
            println!("follower: {line}");
        }
    }
    let bases = segment_bases(&brokers[idx(follower)].data_dir);
    assert!(
        bases.first().is_some_and(|&b| b >= before),
        "the follower's log starts at or above the leader's local start {before}: {bases:?}"
    );
    assert!(
        brokers[idx(follower)]
            .log_text()
            .contains("ends below the leader's log start"),
        "the follower says why it starts again"
    );
    assert_eq!(
        remote_reads(metrics[idx(other)]),
        reads_before,
        "the leader read nothing from the bucket for its follower"
    );
    // The partition still replays whole from the bucket and both tiers of the leader.
    let all =
        brokers[idx(other)].cli_ok(&["consume", TOPIC, "--offset", "start", "-n", "4000"], None);
    let want = String::from_utf8(lines(0, 4000)).unwrap();
    assert!(all == want, "replay from offset 0 differs");
}
