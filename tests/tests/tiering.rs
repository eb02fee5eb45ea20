//! Tiered storage end to end on `strata dev` (the local-filesystem object store under the data
//! directory): sealed segments move to the remote tier, local retention removes them from disk
//! only once uploaded, and a consumer replays from offset 0 through the same fetch call.

use serde_json::Value;
use std::time::{Duration, Instant};
use strata_tests::DevBroker;

fn tier_status(broker: &DevBroker, topic: &str) -> Value {
    tier_status_via(&broker.addr.to_string(), topic)
}

fn tier_status_via(brokers: &str, topic: &str) -> Value {
    let out = strata_tests::run_cli_ok(
        brokers,
        &["tier", "status", topic, "--format", "json"],
        None,
    );
    serde_json::from_str(&out).unwrap()
}

fn files_under(dir: &std::path::Path, ext: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| e.path())
        .map(|p| {
            if p.is_dir() {
                files_under(&p, ext)
            } else {
                usize::from(p.extension().is_some_and(|x| x == ext))
            }
        })
        .sum()
}

#[test]
fn replay_from_offset_zero_is_served_from_the_remote_tier() {
    const N: usize = 30_000;
    let broker = DevBroker::start_with(&["--retention-check-interval", "500ms"]);
    broker.cli_ok(
        &[
            "topic",
            "create",
            "events",
            "-p",
            "1",
            "-c",
            "segment.bytes=65536",
            "-c",
            "local.retention.bytes=1",
        ],
        None,
    );
    let input: Vec<u8> = (0..N)
        .flat_map(|i| format!("event-{i:08}\n").into_bytes())
        .collect();
    // Two halves, with a timestamp between them to look up once both are in the bucket.
    let half = input.len() / 2;
    broker.cli_ok(
        &["produce", "events", "--acks", "all"],
        Some(&input[..half]),
    );
    std::thread::sleep(Duration::from_millis(20));
    let between = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::thread::sleep(Duration::from_millis(20));
    broker.cli_ok(
        &["produce", "events", "--acks", "all"],
        Some(&input[half..]),
    );

    // Wait until the older segments are uploaded and gone from local disk.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s = tier_status(&broker, "events");
        let p = &s["partitions"][0];
        // Past the middle: the first half (and the timestamp looked up below) only in the bucket.
        if p["local_log_start_offset"].as_i64().unwrap() > N as i64 / 2
            && p["remote_segments"].as_u64().unwrap() > 0
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "nothing moved to the remote tier: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["remote_storage_enabled"], true);
    let p = &status["partitions"][0];
    assert_eq!(p["remote_log_start_offset"], 0);
    assert!(
        p["remote_log_end_offset"].as_i64().unwrap()
            >= p["local_log_start_offset"].as_i64().unwrap(),
        "{p}"
    );
    assert_eq!(p["log_end_offset"], N as i64);
    println!("tier status after upload: {p}");

    // The same consume as always; everything below the local start comes from the remote tier.
    let out = broker.cli_ok(
        &[
            "consume",
            "events",
            "--offset",
            "start",
            "-n",
            &N.to_string(),
        ],
        None,
    );
    assert_eq!(out.as_bytes(), &input[..], "byte-identical and in order");
    // A timestamp lookup below the local start is answered from the remote time indexes.
    assert!(
        p["local_log_start_offset"].as_i64().unwrap() > N as i64 / 2,
        "{p}"
    );
    let out = broker.cli_ok(
        &[
            "consume",
            "events",
            "--offset",
            &format!("@{between}"),
            "-n",
            "1",
        ],
        None,
    );
    assert_eq!(
        out,
        format!("event-{:08}\n", N / 2),
        "first record after the timestamp"
    );
    let d: Value = serde_json::from_str(
        &broker.cli_ok(&["topic", "describe", "events", "--format", "json"], None),
    )
    .unwrap();
    assert_eq!(
        d["partitions"][0]["log_start_offset"], 0,
        "the log starts in the remote tier"
    );

    // Retention in durations and sizes; a dry run changes nothing.
    let show = broker.cli_ok(&["retention", "show", "events"], None);
    assert!(
        show.contains("REMOTE STORAGE  true") && show.contains("7d"),
        "{show}"
    );
    let dry = broker.cli_ok(
        &[
            "retention",
            "set",
            "events",
            "--total",
            "100KiB",
            "--dry-run",
        ],
        None,
    );
    assert!(dry.contains("nothing was changed"), "{dry}");
    let row = dry
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert!(
        row[4].parse::<u64>().unwrap() > 0,
        "remote segments would go: {dry}"
    );
    let d: Value = serde_json::from_str(
        &broker.cli_ok(&["topic", "describe", "events", "--format", "json"], None),
    )
    .unwrap();
    assert_eq!(
        d["partitions"][0]["log_start_offset"], 0,
        "the dry run deleted nothing"
    );
    for (bad, why) in [
        ("1000", "no unit"),
        ("-5d", "negative"),
        ("5weeks", "not a duration or a size"),
    ] {
        let out = broker.cli(&["retention", "set", "events", "--total", bad], None);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{bad}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    broker.cli_ok(&["retention", "set", "events", "--total", "100KiB"], None);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let d: Value = serde_json::from_str(
            &broker.cli_ok(&["topic", "describe", "events", "--format", "json"], None),
        )
        .unwrap();
        if d["partitions"][0]["log_start_offset"].as_i64().unwrap() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "total retention did not delete remote segments: {d}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Deleting the topic deletes its objects.
    let tier_dir = broker.data_dir.join("tier");
    assert!(files_under(&tier_dir, "seg") > 0);
    broker.cli_ok(&["topic", "delete", "events"], None);
    let deadline = Instant::now() + Duration::from_secs(15);
    while files_under(&tier_dir, "seg") > 0 {
        assert!(
            Instant::now() < deadline,
            "segment objects left after the topic was deleted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// 1,000,000 records through three brokers tiering to S3 (LocalStack): the old segments leave
/// local disk once uploaded, a consumer replays everything from offset 0, byte for byte and in
/// order per partition, and total retention then moves the log start forward.
#[test]
fn three_brokers_tier_to_s3_and_replay_a_million_records() {
    const N: usize = 1_000_000;
    let localstack = strata_tests::localstack::LocalStack::start();
    localstack.create_bucket("strata-e2e");
    let etcd = strata_tests::etcd::EtcdServer::start();
    let flags = [
        "--session-timeout",
        "3s",
        "--object-store",
        "s3://strata-e2e/tiered",
        "--s3-endpoint",
        &localstack.endpoint,
        "--retention-check-interval",
        "500ms",
    ];
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let brokers: Vec<_> = (1..=3)
        .map(|id| {
            strata_tests::serve::ServeBroker::start_with_env(
                id,
                &etcd.endpoint,
                "tiered",
                &flags,
                &env,
            )
        })
        .collect();
    let b = &brokers[0];
    let create = [
        "topic",
        "create",
        "replay",
        "-p",
        "3",
        "-r",
        "3",
        "-c",
        "segment.bytes=1048576",
        "-c",
        "local.retention.bytes=1",
        "-c",
        "min.insync.replicas=2",
    ];
    // Once a controller is elected and all three brokers have registered.
    strata_tests::wait_for(
        Duration::from_secs(30),
        "a controller and three brokers",
        || {
            let out = b.cli(&create, None);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success()
                    || stderr.contains("no controller is available")
                    || stderr.contains("number of live brokers"),
                "topic create replay: {stderr}"
            );
            out.status.success().then_some(())
        },
    );
    let input: Vec<u8> = (0..N)
        .flat_map(|i| format!("{i:08}-abcdefghijklmnop\n").into_bytes())
        .collect();
    let started = Instant::now();
    brokers[1].cli_ok(&["produce", "replay", "--acks", "all"], Some(&input));
    println!(
        "produced {N} records ({} bytes) with tiering on in {:?}",
        input.len(),
        started.elapsed()
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = tier_status_via(&b.addr.to_string(), "replay");
        let moved = s["partitions"].as_array().unwrap().iter().all(|p| {
            p["local_log_start_offset"].as_i64().unwrap() > 0
                && p["remote_segments"].as_u64().unwrap() > 0
        });
        if moved {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "segments did not move to S3: {s}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    println!("tier status: {status}");
    let ended: i64 = status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["log_end_offset"].as_i64().unwrap())
        .sum();
    assert_eq!(ended, N as i64);

    // Replay from offset 0 through a broker that is not the producer's.
    let started = Instant::now();
    let out = brokers[2].cli_ok(
        &[
            "consume",
            "replay",
            "--offset",
            "start",
            "-n",
            &N.to_string(),
            "--format",
            "json",
        ],
        None,
    );
    let elapsed = started.elapsed();
    let mut per_partition: std::collections::BTreeMap<u64, Vec<(i64, String)>> = Default::default();
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        per_partition
            .entry(v["partition"].as_u64().unwrap())
            .or_default()
            .push((
                v["offset"].as_i64().unwrap(),
                v["value"].as_str().unwrap().to_string(),
            ));
    }
    let mut all: Vec<String> = Vec::with_capacity(N);
    for (p, records) in &per_partition {
        for (i, (offset, _)) in records.iter().enumerate() {
            assert_eq!(*offset, i as i64, "partition {p}: dense offsets from 0");
        }
        assert!(
            records.windows(2).all(|w| w[0].1 < w[1].1),
            "partition {p}: in order"
        );
        all.extend(records.iter().map(|(_, v)| v.clone()));
    }
    all.sort();
    let expected: Vec<String> = String::from_utf8(input)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(all, expected, "every record, byte for byte");
    println!(
        "replayed {N} records from S3 (LocalStack) in {elapsed:?}: {:.0} records/s (json output through the CLI)",
        N as f64 / elapsed.as_secs_f64()
    );

    // Total retention removes remote segments and moves the log start.
    b.cli_ok(
        &[
            "topic",
            "alter-config",
            "replay",
            "--set",
            "retention.bytes=2000000",
        ],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d: Value = serde_json::from_str(
            &b.cli_ok(&["topic", "describe", "replay", "--format", "json"], None),
        )
        .unwrap();
        if d["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["log_start_offset"].as_i64().unwrap() > 0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "total retention did not move the log start: {d}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = brokers[2].cli(
        &[
            "consume",
            "replay",
            "--partition",
            "0",
            "--offset",
            "0",
            "-n",
            "1",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside the log"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
