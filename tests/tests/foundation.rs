//! The foundation issue's "done means", end to end against real `strata dev` processes:
//! produce 100,000 lines through the CLI, consume them back in order with dense offsets, kill
//! the broker with SIGKILL, restart it on the same data directory and read the same records;
//! a segment cut in the middle of its last batch recovers to the last whole batch.

use serde_json::Value;
use strata_tests::DevBroker;

fn lines(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(format!("line-{i:06}\n").as_bytes());
    }
    out
}

/// Parses `consume --format json` output into (partition, offset, value) triples.
fn parse_json_records(stdout: &str) -> Vec<(u64, i64, String)> {
    stdout
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad json line {l:?}: {e}"));
            (
                v["partition"].as_u64().expect("partition"),
                v["offset"].as_i64().expect("offset"),
                v["value"].as_str().expect("value").to_string(),
            )
        })
        .collect()
}

#[test]
fn produce_consume_100k_lines_survive_sigkill() {
    const N: usize = 100_000;
    let mut broker = DevBroker::start();
    broker.cli_ok(&["topic", "create", "orders", "-p", "1"], None);
    let out = broker.cli(&["produce", "orders"], Some(&lines(N)));
    assert!(
        out.status.success(),
        "produce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains(&format!("produced {N} records")),
        "summary: {summary}"
    );

    let consume = [
        "consume", "orders", "--offset", "start", "-n", "100000", "--format", "json",
    ];
    let first = parse_json_records(&broker.cli_ok(&consume, None));
    assert_eq!(first.len(), N);
    for (i, (partition, offset, value)) in first.iter().enumerate() {
        assert_eq!(*partition, 0);
        assert_eq!(*offset, i as i64, "offsets are dense from 0");
        assert_eq!(value, &format!("line-{i:06}"), "record {i} in order");
    }
    let text = broker.cli_ok(
        &["consume", "orders", "--offset", "start", "-n", "100000"],
        None,
    );
    assert_eq!(
        text.as_bytes(),
        &lines(N)[..],
        "text output is the input, line for line"
    );

    broker.kill9();
    broker.restart();
    let second = parse_json_records(&broker.cli_ok(&consume, None));
    assert_eq!(first, second, "the same records after kill -9 and restart");

    let describe: Value = serde_json::from_str(
        &broker.cli_ok(&["topic", "describe", "orders", "--format", "json"], None),
    )
    .unwrap();
    assert_eq!(describe["name"], "orders");
    assert_eq!(describe["partitions"][0]["log_end_offset"], N as i64);
    assert_eq!(describe["partitions"][0]["high_watermark"], N as i64);
    assert_eq!(describe["partitions"][0]["log_start_offset"], 0);
    assert!(describe["config"]["retention.ms"].is_string());
}

#[test]
fn keyed_records_spread_over_partitions_and_keep_per_key_order() {
    let broker = DevBroker::start();
    broker.cli_ok(&["topic", "create", "keyed", "-p", "4"], None);
    let mut input = Vec::new();
    for i in 0..2000 {
        input.extend_from_slice(format!("user-{}:{i}\n", i % 10).as_bytes());
    }
    broker.cli_ok(
        &[
            "produce",
            "keyed",
            "--key-separator",
            ":",
            "--acks",
            "1",
            "--compression",
            "zstd",
        ],
        Some(&input),
    );
    let out = broker.cli_ok(
        &[
            "consume", "keyed", "--offset", "start", "-n", "2000", "--format", "json",
        ],
        None,
    );
    let mut by_key: std::collections::BTreeMap<String, (u64, Vec<u64>)> = Default::default();
    let mut partitions = std::collections::BTreeSet::new();
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        let p = v["partition"].as_u64().unwrap();
        partitions.insert(p);
        let entry = by_key.entry(key.clone()).or_insert((p, Vec::new()));
        assert_eq!(entry.0, p, "key {key} stays on one partition");
        entry.1.push(v["value"].as_str().unwrap().parse().unwrap());
    }
    assert_eq!(by_key.len(), 10);
    assert!(
        partitions.len() > 1,
        "keys spread over partitions: {partitions:?}"
    );
    for (key, (_, values)) in by_key {
        assert_eq!(values.len(), 200, "key {key}");
        assert!(values.windows(2).all(|w| w[0] < w[1]), "key {key} in order");
    }
}

#[test]
fn a_segment_cut_mid_batch_recovers_to_the_last_whole_batch() {
    let mut broker = DevBroker::start();
    broker.cli_ok(&["topic", "create", "torn", "-p", "1"], None);
    // Three produce calls: three batches at least.
    for chunk in 0..3 {
        let input: Vec<u8> = (0..100)
            .flat_map(|i| format!("c{chunk}-{i}\n").into_bytes())
            .collect();
        broker.cli_ok(&["produce", "torn"], Some(&input));
    }
    broker.kill9();
    let segment = find_file(&broker.data_dir, "00000000000000000000.log");
    let len = std::fs::metadata(&segment).unwrap().len();
    // Cut 10 bytes into the last batch: less than a whole batch of 100 records.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    broker.restart();
    let out = broker.cli_ok(
        &[
            "consume",
            "torn",
            "--offset",
            "start",
            "--timeout",
            "2s",
            "--format",
            "json",
        ],
        None,
    );
    let records = parse_json_records(&out);
    assert!(
        records.len() >= 200 && records.len() < 300,
        "kept the whole batches: {}",
        records.len()
    );
    for (i, (_, offset, _)) in records.iter().enumerate() {
        assert_eq!(*offset, i as i64);
    }
    // Appends continue right after the last whole batch.
    broker.cli_ok(&["produce", "torn"], Some(b"after-recovery\n"));
    let next = records.len().to_string();
    let out = broker.cli_ok(
        &[
            "consume", "torn", "--offset", &next, "-n", "1", "--format", "json",
        ],
        None,
    );
    let after = parse_json_records(&out);
    assert_eq!(
        after,
        vec![(0, records.len() as i64, "after-recovery".to_string())]
    );
}

fn find_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    fn walk(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
        for entry in std::fs::read_dir(dir).ok()? {
            let path = entry.ok()?.path();
            if path.is_dir() {
                if let Some(found) = walk(&path, name) {
                    return Some(found);
                }
            } else if path.file_name().is_some_and(|n| n == name) {
                return Some(path);
            }
        }
        None
    }
    walk(dir, name).unwrap_or_else(|| panic!("{name} not found under {}", dir.display()))
}

#[test]
fn graceful_shutdown_flushes_and_marks_logs_clean() {
    let mut broker = DevBroker::start();
    broker.cli_ok(&["topic", "create", "many", "-p", "64"], None);
    let input: Vec<u8> = (0..6400)
        .flat_map(|i| format!("k{i}:v{i}\n").into_bytes())
        .collect();
    broker.cli_ok(&["produce", "many", "--key-separator", ":"], Some(&input));
    broker.stop();
    let mut clean = 0;
    for topic in std::fs::read_dir(broker.data_dir.join("logs")).unwrap() {
        for partition in std::fs::read_dir(topic.unwrap().path()).unwrap() {
            let dir = partition.unwrap().path();
            assert!(
                dir.join(".clean_shutdown").exists(),
                "{} closed cleanly",
                dir.display()
            );
            clean += 1;
        }
    }
    assert_eq!(clean, 64);
    broker.restart();
    let d: Value = serde_json::from_str(
        &broker.cli_ok(&["topic", "describe", "many", "--format", "json"], None),
    )
    .unwrap();
    let total: i64 = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["log_end_offset"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 6400, "after the restart: {d}");
    let out = broker.cli_ok(
        &["consume", "many", "--offset", "start", "-n", "6400"],
        None,
    );
    let mut values: Vec<&str> = out.lines().collect();
    values.sort();
    let mut expect: Vec<String> = (0..6400).map(|i| format!("v{i}")).collect();
    expect.sort();
    assert_eq!(values, expect);
}
