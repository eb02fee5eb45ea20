//! Tiered storage under faults: an object store that stops answering for 30 s while records
//! flow (nothing lost, nothing deleted locally before it is uploaded, uploads resume), corrupted
//! and truncated objects in the bucket (a data error, never records), and a missing bucket (a
//! clear error at startup).

use serde_json::Value;
use std::time::{Duration, Instant};
use strata_tests::localstack::LocalStack;
use strata_tests::DevBroker;

const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

fn partition0(broker: &DevBroker, topic: &str) -> Value {
    let out = broker.cli_ok(&["tier", "status", topic, "--format", "json"], None);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["partitions"][0].clone()
}

fn wait_until(
    broker: &DevBroker,
    topic: &str,
    within: Duration,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let p = partition0(broker, topic);
        if check(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}: {p}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn lines(tag: &str, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("{tag}-{i:08}\n").into_bytes())
        .collect()
}

fn dev_on_s3(localstack: &LocalStack, bucket: &str) -> DevBroker {
    for (k, v) in AWS_ENV {
        std::env::set_var(k, v);
    }
    let url = format!("s3://{bucket}/faults");
    DevBroker::start_with(&[
        "--object-store",
        &url,
        "--s3-endpoint",
        &localstack.endpoint,
        "--retention-check-interval",
        "500ms",
    ])
}

#[test]
fn an_object_store_down_for_30_seconds_loses_nothing() {
    let localstack = LocalStack::start();
    localstack.create_bucket("faults");
    let broker = dev_on_s3(&localstack, "faults");
    broker.cli_ok(
        &[
            "topic",
            "create",
            "t",
            "-p",
            "1",
            "-c",
            "segment.bytes=65536",
            "-c",
            "local.retention.bytes=1",
        ],
        None,
    );
    let before = lines("before", 10_000);
    broker.cli_ok(&["produce", "t", "--acks", "all"], Some(&before));
    let p = wait_until(
        &broker,
        "t",
        Duration::from_secs(30),
        "first uploads",
        |p| {
            p["remote_segments"].as_u64().unwrap() > 0
                && p["local_log_start_offset"].as_i64().unwrap() > 0
        },
    );
    let remote_end_before = p["remote_log_end_offset"].as_i64().unwrap();

    localstack.freeze(true);
    let frozen = Instant::now();
    let during = lines("during", 20_000);
    broker.cli_ok(&["produce", "t", "--acks", "all"], Some(&during));
    while frozen.elapsed() < Duration::from_secs(30) {
        let p = partition0(&broker, "t");
        // Nothing deleted locally that the remote tier does not hold.
        assert!(
            p["local_log_start_offset"].as_i64().unwrap()
                <= p["remote_log_end_offset"].as_i64().unwrap(),
            "local retention went past the remote tier while S3 was down: {p}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    localstack.freeze(false);

    // Uploads resume and the hot tier shrinks again.
    let end = (before.len() + during.len()) as i64 / 16;
    wait_until(
        &broker,
        "t",
        Duration::from_secs(60),
        "uploads resumed",
        |p| {
            p["remote_log_end_offset"].as_i64().unwrap() > remote_end_before + 10_000
                && p["local_log_start_offset"].as_i64().unwrap() > remote_end_before
        },
    );
    let out = broker.cli_ok(
        &["consume", "t", "--offset", "start", "-n", &end.to_string()],
        None,
    );
    let mut expected = before.clone();
    expected.extend_from_slice(&during);
    assert_eq!(
        out.as_bytes(),
        &expected[..],
        "every record, in order, after the outage"
    );
}

/// Offsets of segment objects under `dir`, by base offset (from the key's first field).
fn segment_objects(dir: &std::path::Path) -> Vec<(i64, std::path::PathBuf)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() {
            out.extend(segment_objects(&path));
        } else if path.extension().is_some_and(|x| x == "seg") {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let base: i64 = name.split('-').next().unwrap().parse().unwrap();
            out.push((base, path));
        }
    }
    out.sort();
    out
}

#[test]
fn corrupted_or_truncated_objects_are_data_errors_never_records() {
    let broker = DevBroker::start_with(&["--retention-check-interval", "500ms"]);
    broker.cli_ok(
        &[
            "topic",
            "create",
            "c",
            "-p",
            "1",
            "-c",
            "segment.bytes=65536",
            "-c",
            "local.retention.bytes=1",
        ],
        None,
    );
    let input = lines("rec", 30_000);
    broker.cli_ok(&["produce", "c"], Some(&input));
    wait_until(
        &broker,
        "c",
        Duration::from_secs(30),
        "three segments uploaded and gone locally",
        |p| {
            p["remote_segments"].as_u64().unwrap() >= 3
                && p["local_log_start_offset"].as_i64().unwrap() > 0
        },
    );
    let objects = segment_objects(&broker.data_dir.join("tier"));
    assert!(objects.len() >= 3, "{objects:?}");

    // Flip one byte inside the first object's first frame.
    let (first_base, first) = &objects[0];
    let mut bytes = std::fs::read(first).unwrap();
    bytes[100] ^= 0x5a;
    std::fs::write(first, &bytes).unwrap();
    let out = broker.cli(
        &[
            "consume",
            "c",
            "--offset",
            &first_base.to_string(),
            "-n",
            "10",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a corrupt frame must fail the consume"
    );
    assert!(
        stderr.contains("CRC-32C mismatch") && stderr.contains(".seg"),
        "names the object: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no records from a corrupt frame: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Cut the second object short: its footer is gone.
    let (second_base, second) = &objects[1];
    let len = std::fs::metadata(second).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(second)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = broker.cli(
        &[
            "consume",
            "c",
            "--offset",
            &second_base.to_string(),
            "-n",
            "10",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a truncated object must fail the consume"
    );
    assert!(
        stderr.contains(".seg") && stderr.contains("unreadable"),
        "names the object: {stderr}"
    );
    assert!(out.stdout.is_empty());

    // Untouched objects still serve their records.
    let (third_base, _) = &objects[2];
    let out = broker.cli_ok(
        &[
            "consume",
            "c",
            "--offset",
            &third_base.to_string(),
            "-n",
            "1",
        ],
        None,
    );
    assert_eq!(out.trim(), format!("rec-{third_base:08}"));
}

#[test]
fn a_missing_bucket_is_a_clear_error_at_startup() {
    let localstack = LocalStack::start();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(strata_tests::strata_bin())
        .args([
            "dev",
            "--listen",
            &format!("127.0.0.1:{}", strata_tests::free_port()),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--object-store",
            "s3://no-such-bucket/x",
            "--s3-endpoint",
            &localstack.endpoint,
        ])
        .envs(AWS_ENV)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("s3://no-such-bucket/x") && stderr.contains("cannot be listed"),
        "{stderr}"
    );
}
