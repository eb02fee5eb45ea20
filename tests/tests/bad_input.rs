//! Bad input gets a clear error and a non-zero exit, and leaves the log as it was.

use strata_tests::DevBroker;

fn fails_with(broker: &DevBroker, args: &[&str], stdin: Option<&[u8]>, expect: &str) {
    let out = broker.cli(args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "strata {} should fail; stderr: {stderr}",
        args.join(" ")
    );
    assert!(
        stderr.contains(expect),
        "strata {}: expected {expect:?} in: {stderr}",
        args.join(" ")
    );
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
}

#[test]
fn every_bad_input_gets_a_clear_error() {
    let broker = DevBroker::start();
    broker.cli_ok(&["topic", "create", "t", "-p", "2"], None);
    broker.cli_ok(&["produce", "t", "--partition", "0"], Some(b"a\nb\nc\n"));

    fails_with(
        &broker,
        &["produce", "nope"],
        Some(b"x\n"),
        "topic \"nope\" does not exist",
    );
    fails_with(
        &broker,
        &["consume", "nope", "-n", "1"],
        None,
        "does not exist",
    );
    fails_with(
        &broker,
        &["topic", "describe", "nope"],
        None,
        "topic \"nope\" does not exist",
    );
    fails_with(
        &broker,
        &["topic", "delete", "nope"],
        None,
        "does not exist",
    );
    fails_with(
        &broker,
        &["topic", "create", "bad/name"],
        None,
        "invalid topic name",
    );
    fails_with(&broker, &["topic", "create", "t"], None, "already exists");
    fails_with(
        &broker,
        &["topic", "create", "zero", "-p", "0"],
        None,
        "partitions",
    );
    fails_with(
        &broker,
        &["topic", "create", "rf", "-r", "3"],
        None,
        "replication factor 3",
    );
    fails_with(
        &broker,
        &["topic", "create", "c", "-c", "retention.ms"],
        None,
        "key=value",
    );
    fails_with(
        &broker,
        &["topic", "create", "c", "-c", "retention.ms=soon"],
        None,
        "retention.ms",
    );
    fails_with(
        &broker,
        &["topic", "create", "c", "-c", "bogus.key=1"],
        None,
        "unknown topic config key",
    );
    fails_with(
        &broker,
        &["topic", "alter-config", "t", "--set", "segment.bytes=-4"],
        None,
        "segment.bytes",
    );
    fails_with(
        &broker,
        &[
            "topic",
            "create",
            "tiny-index",
            "-c",
            "segment.index.bytes=12",
            "-c",
            "index.interval.bytes=1",
        ],
        None,
        "index.interval.bytes is 1; a topic may not set it below 256",
    );
    fails_with(
        &broker,
        &[
            "topic",
            "create",
            "small-index",
            "-c",
            "segment.index.bytes=12",
        ],
        None,
        "segment.index.bytes is 12; a topic may not set it below 4096",
    );
    fails_with(
        &broker,
        &["topic", "alter-config", "t", "--set", "nonsense"],
        None,
        "key=value",
    );
    fails_with(
        &broker,
        &["produce", "t", "--partition", "7"],
        Some(b"x\n"),
        "partition 7",
    );
    fails_with(
        &broker,
        &["consume", "t", "--partition", "9", "-n", "1"],
        None,
        "partition 9",
    );
    fails_with(
        &broker,
        &[
            "consume",
            "t",
            "--partition",
            "0",
            "--offset",
            "99",
            "-n",
            "1",
        ],
        None,
        "valid offsets are 0..=2",
    );
    fails_with(
        &broker,
        &["produce", "t", "--acks", "2"],
        Some(b"x\n"),
        "acks",
    );
    fails_with(
        &broker,
        &["consume", "t", "--offset", "sometime"],
        None,
        "expected start, end",
    );

    // Nothing was half-written: partition 0 still holds exactly a, b, c.
    let out = broker.cli_ok(
        &[
            "consume",
            "t",
            "--partition",
            "0",
            "--offset",
            "start",
            "-n",
            "3",
        ],
        None,
    );
    assert_eq!(out, "a\nb\nc\n");
    let d: serde_json::Value =
        serde_json::from_str(&broker.cli_ok(&["topic", "describe", "t", "--format", "json"], None))
            .unwrap();
    assert_eq!(d["partitions"][0]["log_end_offset"], 3);
}

#[test]
fn an_unreachable_broker_is_named() {
    let port = strata_tests::free_port();
    let out = strata_tests::run_cli(&format!("127.0.0.1:{port}"), &["topic", "list"], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "names the address: {stderr}"
    );
}

#[test]
fn topic_admin_round_trip() {
    let broker = DevBroker::start();
    broker.cli_ok(
        &[
            "topic",
            "create",
            "cfg",
            "-p",
            "3",
            "-c",
            "retention.ms=3600000",
        ],
        None,
    );
    let list: serde_json::Value =
        serde_json::from_str(&broker.cli_ok(&["topic", "list", "--format", "json"], None)).unwrap();
    assert_eq!(list[0]["name"], "cfg");
    assert_eq!(list[0]["partitions"], 3);
    broker.cli_ok(
        &[
            "topic",
            "alter-config",
            "cfg",
            "--set",
            "segment.bytes=1048576",
            "--delete",
            "retention.ms",
        ],
        None,
    );
    let d: serde_json::Value = serde_json::from_str(
        &broker.cli_ok(&["topic", "describe", "cfg", "--format", "json"], None),
    )
    .unwrap();
    assert_eq!(d["config"]["segment.bytes"], "1048576");
    assert_eq!(
        d["config"]["retention.ms"], "604800000",
        "back to the default"
    );
    assert_eq!(d["partitions"].as_array().unwrap().len(), 3);
    broker.cli_ok(&["topic", "delete", "cfg"], None);
    let list = broker.cli_ok(&["topic", "list"], None);
    assert!(!list.contains("cfg"), "{list}");
    // A re-created topic starts empty.
    broker.cli_ok(&["topic", "create", "cfg"], None);
    let d: serde_json::Value = serde_json::from_str(
        &broker.cli_ok(&["topic", "describe", "cfg", "--format", "json"], None),
    )
    .unwrap();
    assert_eq!(d["partitions"][0]["log_end_offset"], 0);
}
