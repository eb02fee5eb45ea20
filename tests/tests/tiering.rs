//! Tiered storage end to end on `strata dev` (the local-filesystem object store under the data
//! directory): sealed segments move to the remote tier, local retention removes them from disk
//! only once uploaded, and a consumer replays from offset 0 through the same fetch call.

use serde_json::Value;
use std::time::{Duration, Instant};
use strata_tests::DevBroker;

fn tier_status(broker: &DevBroker, topic: &str) -> Value {
    serde_json::from_str(&broker.cli_ok(&["tier", "status", topic, "--format", "json"], None))
        .unwrap()
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
    broker.cli_ok(&["produce", "events", "--acks", "all"], Some(&input));

    // Wait until the older segments are uploaded and gone from local disk.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s = tier_status(&broker, "events");
        let p = &s["partitions"][0];
        if p["local_log_start_offset"].as_i64().unwrap() > 0
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
    let d: Value = serde_json::from_str(
        &broker.cli_ok(&["topic", "describe", "events", "--format", "json"], None),
    )
    .unwrap();
    assert_eq!(
        d["partitions"][0]["log_start_offset"], 0,
        "the log starts in the remote tier"
    );

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
