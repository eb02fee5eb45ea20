//! A leader killed between a segment object's PUT and the manifest write that would list it
//! (SIGKILL at the `upload.after_object_put` failpoint): the next leader continues from the
//! manifest and uploads the segment itself, the scrub removes the dead leader's unlisted
//! object, and a replay from offset 0 returns every record once, in order, from the bucket.
//! The bucket is made by `strata tier init`, whose errors are checked on the way.

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use strata_tests::etcd::EtcdServer;
use strata_tests::localstack::LocalStack;
use strata_tests::serve::ServeBroker;
use strata_tests::wait_for;

const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];
const URL: &str = "s3://midupload/tiers";

fn tier_init(endpoint: &str, url: &str) -> std::process::Output {
    Command::new(strata_tests::strata_bin())
        .args([
            "tier",
            "init",
            "--object-store",
            url,
            "--s3-endpoint",
            endpoint,
        ])
        .envs(AWS_ENV)
        .output()
        .unwrap()
}

fn json(broker: &ServeBroker, args: &[&str]) -> Value {
    serde_json::from_str(&broker.cli_ok(args, None)).unwrap()
}

/// The segment objects under the partition's directory in the bucket.
fn segment_objects(localstack: &LocalStack, partition: u32) -> Vec<String> {
    let dir = format!("/{partition}/");
    localstack
        .object_keys(URL)
        .into_iter()
        .filter(|k| k.ends_with(".seg") && k.contains("/midway-") && k.contains(&dir))
        .collect()
}

#[test]
fn a_leader_killed_mid_upload_is_finished_by_the_next_and_the_scrub_removes_its_leftover() {
    const N: usize = 150_000;
    let localstack = LocalStack::start();

    // tier init: errors first, then the bucket, then again (idempotent).
    let out = tier_init("http://127.0.0.1:1", URL);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach http://127.0.0.1:1"),
        "{stderr}"
    );
    let out = tier_init(&localstack.endpoint, "memory://x");
    assert!(!out.status.success());
    let out = tier_init(&localstack.endpoint, URL);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("bucket midupload created") && stdout.contains("conditional PUT works"),
        "{stdout}"
    );
    let out = tier_init(&localstack.endpoint, URL);
    assert!(String::from_utf8_lossy(&out.stdout).contains("bucket midupload exists"));

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
        // An upload abandons its manifest write 3 s after its object PUT (half the grace):
        // room enough for a loaded machine.
        "--remote-scrub-grace",
        "6s",
        "--remote-scrub-interval",
        "1s",
    ];
    let mut with_failpoint = AWS_ENV.to_vec();
    with_failpoint.push(("STRATA_FAILPOINTS", "upload.after_object_put=pause"));
    let mut brokers: Vec<ServeBroker> = (1..=3)
        .map(|id| {
            let env: &[(&str, &str)] = if id == 1 { &with_failpoint } else { &AWS_ENV };
            ServeBroker::start_with_env(id, &etcd.endpoint, "failover", &flags, env)
        })
        .collect();
    brokers[1].cli_ok(
        &[
            "topic",
            "create",
            "midway",
            "-p",
            "3",
            "-r",
            "3",
            "-c",
            "segment.bytes=262144",
            "-c",
            "local.retention.bytes=1",
            "-c",
            "min.insync.replicas=2",
        ],
        None,
    );
    // The partition broker 1 leads: its first upload stops between object and manifest.
    let described = json(
        &brokers[1],
        &["topic", "describe", "midway", "--format", "json"],
    );
    let partition = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["leader"] == 1)
        .map(|p| p["partition"].as_u64().unwrap() as u32)
        .unwrap_or_else(|| panic!("broker 1 leads no partition: {described}"));
    let input: Vec<u8> = (0..N)
        .flat_map(|i| format!("{i:08}-mid-upload-failover\n").into_bytes())
        .collect();
    brokers[1].cli_ok(
        &[
            "produce",
            "midway",
            "--partition",
            &partition.to_string(),
            "--acks",
            "all",
        ],
        Some(&input),
    );

    let leftover = wait_for(
        Duration::from_secs(60),
        "broker 1 paused after an object PUT",
        || {
            let log = brokers[0].log_text();
            let line = log.lines().find(|l| l.contains("failpoint reached"))?;
            let key = line.split("detail=").nth(1)?.split_whitespace().next()?;
            Some(key.trim_matches('"').to_string())
        },
    );
    println!("broker 1 stopped after writing {leftover}");
    assert!(
        segment_objects(&localstack, partition).contains(&leftover),
        "the half-done upload's object is in the bucket"
    );
    let status = json(
        &brokers[1],
        &["tier", "status", "midway", "--format", "json"],
    );
    assert_eq!(
        status["partitions"][partition as usize]["remote_segments"], 0,
        "no manifest lists it: {status}"
    );

    brokers[0].kill9();

    // The next leader uploads every sealed segment, local retention empties the hot tier down
    // to the active segment, and the scrub deletes the dead leader's object.
    let survivor = &brokers[1];
    let final_status = wait_for(
        Duration::from_secs(90),
        "the new leader finished the uploads",
        || {
            let s = json(survivor, &["tier", "status", "midway", "--format", "json"]);
            let p = &s["partitions"][partition as usize];
            let remote_end = p["remote_log_end_offset"].as_i64()?;
            let local_start = p["local_log_start_offset"].as_i64()?;
            (p["log_end_offset"] == N as i64 && remote_end > 0 && local_start == remote_end)
                .then(|| p.clone())
        },
    );
    println!("after failover: {final_status}");
    wait_for(
        Duration::from_secs(30),
        "the scrub removed the unlisted object",
        || (!segment_objects(&localstack, partition).contains(&leftover)).then_some(()),
    );
    let objects = segment_objects(&localstack, partition);
    assert_eq!(
        objects.len() as u64,
        final_status["remote_segments"].as_u64().unwrap(),
        "every segment object in the bucket is listed once by the manifest: {objects:?}"
    );

    // Replay from offset 0 through a surviving broker: every record once, in order.
    let out = survivor.cli_ok(
        &[
            "consume",
            "midway",
            "--partition",
            &partition.to_string(),
            "--offset",
            "start",
            "-n",
            &N.to_string(),
            "--timeout",
            "30s",
        ],
        None,
    );
    let expected = String::from_utf8(input).unwrap();
    assert!(
        out == expected,
        "replay differs from what was produced ({} vs {} bytes)",
        out.len(),
        expected.len()
    );
    println!(
        "replayed {N} records from offset 0, {} of them from the bucket",
        final_status["remote_log_end_offset"]
    );
}
