//! End-to-end test of a follower that comes back below what the leader still keeps, with
//! real processes against real etcd:
//!
//! - a follower that was down while the leader's retention passed its log end: it starts again
//!   at the leader's log start instead of asking for a gone offset forever, and rejoins the ISR.
//!
//! The rule behind it has unit tests in `broker/src/replica/truncation.rs` and
//! `broker/src/placement.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_tests::cluster::ServeCluster as Cluster;
use strata_tests::numbered_lines;
use strata_tests::replicas;

const TOPIC: &str = "recovery";

/// Segment files (`.log`) of partition 0 of `TOPIC` under `data_dir`, oldest first.
fn segments(data_dir: &Path) -> Vec<PathBuf> {
    let logs = data_dir.join("logs");
    let Ok(entries) = std::fs::read_dir(&logs) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{TOPIC}~")))
        })
        .flat_map(|d| std::fs::read_dir(d.join("0")).into_iter().flatten())
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// The window: the follower's fetch offset is below the leader's log start, so before the fix
/// every fetch failed with OFFSET_OUT_OF_RANGE and the follower never returned to the ISR.
#[test]
fn a_follower_below_the_leaders_log_start_starts_again_there() {
    let mut cluster = Cluster::start(
        "belowstart",
        &[
            "--session-timeout",
            "3s",
            "--retention-check-interval",
            "1s",
        ],
    );
    cluster.create_topic(
        TOPIC,
        1,
        3,
        &[
            "min.insync.replicas=2",
            "segment.bytes=65536",
            "retention.bytes=262144",
        ],
    );
    let (leader, isr) = cluster.partitions(TOPIC)[0].clone();
    let follower = *isr.iter().find(|r| **r != leader).expect("a follower");
    cluster.broker(leader).cli_ok(
        &["produce", TOPIC, "--acks", "all"],
        Some(&numbered_lines("a", 100)),
    );
    // acks=all with the ISR full: the follower holds the 100 records before it is killed.
    cluster.broker_mut(follower).kill9();
    cluster.wait(
        Duration::from_secs(30),
        "the killed follower out of the ISR",
        || (!cluster.partitions(TOPIC)[0].1.contains(&follower)).then_some(()),
    );
    // About 2.4 MB: dozens of 64 KiB segments, all but the last 256 KiB deleted.
    let padding = "x".repeat(100);
    let big: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("b{i}-{padding}\n").into_bytes())
        .collect();
    cluster
        .broker(leader)
        .cli_ok(&["produce", TOPIC, "--acks", "all"], Some(&big));
    cluster.wait(
        Duration::from_secs(30),
        "the leader's retention deleted its first segments",
        || {
            let first = segments(&cluster.broker(leader).data_dir)
                .first()
                .cloned()?;
            (!first.ends_with("00000000000000000000.log")).then_some(())
        },
    );
    cluster.broker_mut(follower).restart();
    cluster.wait(
        Duration::from_secs(60),
        "the follower back in the ISR",
        || (cluster.partitions(TOPIC)[0].1.len() == 3).then_some(()),
    );
    let log = cluster.broker(follower).log_text();
    assert!(
        log.contains("ends below the leader's log start"),
        "the follower says why it starts again"
    );
    for b in &mut cluster.brokers {
        b.kill9();
    }
    let on_follower = replicas::batches(cluster.broker(follower), TOPIC, 1)[&0].clone();
    let on_leader = replicas::batches(cluster.broker(leader), TOPIC, 1)[&0].clone();
    let first = on_follower.first().expect("the follower holds batches").0;
    assert!(
        first > 100,
        "the follower restarted above its old end: {first}"
    );
    assert_eq!(
        on_follower.last(),
        on_leader.last(),
        "the follower caught up to the leader's end"
    );
    let common: Vec<_> = on_leader.iter().filter(|b| b.0 >= first).collect();
    let mine: Vec<_> = on_follower
        .iter()
        .filter(|b| b.0 >= on_leader[0].0)
        .collect();
    assert_eq!(
        mine, common,
        "the follower's batches equal the leader's where both have them"
    );
}
