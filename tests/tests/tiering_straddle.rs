//! The tiering stall after a failover, as the issue found it: three brokers on etcd and
//! LocalStack, a topic with RF 3, `segment.ms=3000` and `local.retention.bytes=1`, paced
//! acks=all load, SIGKILL of the leader, more load. Replicas roll their segments at different
//! batches (each on its own clock), so the new leader's segment straddles the manifest's end;
//! it must upload from that end, so the remote log end keeps moving, the hot tier stays a few
//! segments, and every record is read back from offset 0 across both tiers.

use serde_json::Value;
use std::time::Duration;
use strata_tests::etcd::EtcdServer;
use strata_tests::localstack::{LocalStack, AWS_ENV};
use strata_tests::serve::ServeBroker;
use strata_tests::wait_for;

const URL: &str = "s3://straddle/tiers";
const TOPIC: &str = "straddle";

fn status(broker: &ServeBroker) -> Value {
    let s: Value =
        serde_json::from_str(&broker.cli_ok(&["tier", "status", TOPIC, "--format", "json"], None))
            .unwrap();
    s["partitions"][0].clone()
}

fn leader(broker: &ServeBroker) -> i64 {
    let d: Value = serde_json::from_str(
        &broker.cli_ok(&["topic", "describe", TOPIC, "--format", "json"], None),
    )
    .unwrap();
    d["partitions"][0]["leader"].as_i64().unwrap_or(-1)
}

/// Paced acks=all load for `seconds` through `broker`.
fn load(broker: &ServeBroker, seconds: u32) {
    let out = broker.cli(
        &[
            "bench",
            "latency",
            "--topic",
            TOPIC,
            "--rate",
            "3000",
            "--acks",
            "all",
            "--duration",
            &format!("{seconds}s"),
            "--warmup",
            "0s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "bench latency: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn uploads_continue_from_the_manifest_end_after_the_leader_is_killed() {
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
    let mut brokers: Vec<ServeBroker> = (1..=3)
        .map(|id| ServeBroker::start_with_env(id, &etcd.endpoint, "straddle", &flags, &AWS_ENV))
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
        "segment.ms=3000",
        "-c",
        "local.retention.bytes=1",
        "-c",
        "min.insync.replicas=2",
    ];
    wait_for(Duration::from_secs(30), "three live brokers", || {
        brokers[0].cli(&create, None).status.success().then_some(())
    });
    let first = leader(&brokers[0]);
    assert!((1..=3).contains(&first), "no leader: {first}");
    // A broker that stays up: the one after the first leader.
    let via = (first as usize) % 3;

    load(&brokers[via], 12);
    let before = wait_for(Duration::from_secs(30), "segments uploaded", || {
        let s = status(&brokers[via]);
        (s["remote_log_end_offset"].as_i64()? > 0).then_some(s)
    });
    println!("before the kill: {before}");

    brokers[(first - 1) as usize].kill9();
    let second = wait_for(Duration::from_secs(30), "a new leader", || {
        let l = leader(&brokers[via]);
        (l > 0 && l != first).then_some(l)
    });
    println!("broker {first} killed; broker {second} leads");
    load(&brokers[via], 20);

    // The remote end passes where the log ended at the kill and stays within a few segments of
    // the log end; local retention keeps the hot tier to a few segments.
    let killed_at = before["log_end_offset"].as_i64().unwrap();
    let after = wait_for(Duration::from_secs(60), "uploads past the failover", || {
        let s = status(&brokers[via]);
        let remote_end = s["remote_log_end_offset"].as_i64()?;
        let end = s["log_end_offset"].as_i64()?;
        let local = s["local_segments"].as_i64()?;
        // 20 s of load at 3000/s is ~60,000 records; a 3 s segment holds ~9,000.
        (remote_end > killed_at && end - remote_end < 20_000 && local <= 4).then_some(s)
    });
    println!("after the failover: {after}");
    let leader_log = brokers[(second - 1) as usize].log_text();
    for stall in [
        "not uploading out of order",
        "no batch boundary",
        "in neither tier",
    ] {
        assert!(
            !leader_log.contains(stall),
            "the new leader's uploads stalled ({stall}):\n{leader_log}"
        );
    }

    // Every record, once, from offset 0: the remote tier then the local one, no hole. (The
    // latency bench's values start with a binary timestamp: read them as JSON lines.)
    let end = after["log_end_offset"].as_i64().unwrap();
    let out = brokers[via].cli(
        &[
            "consume",
            TOPIC,
            "--partition",
            "0",
            "--offset",
            "start",
            "-n",
            &end.to_string(),
            "--timeout",
            "60s",
            "--format",
            "json",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "consume from offset 0: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offsets: Vec<i64> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_slice(l).expect("a JSON record");
            v["offset"].as_i64().expect("an offset")
        })
        .collect();
    assert_eq!(offsets.len() as i64, end, "records read from offset 0");
    assert!(
        offsets.iter().enumerate().all(|(i, o)| *o == i as i64),
        "offsets from 0 run without a gap or a repeat"
    );
}
