//! End-to-end test of recovery after an unclean stop, with a real `strata dev` process killed
//! with SIGKILL: every segment above the recovery point is re-validated, not only the last.
//!
//! The window: a sealed segment not yet fsynced when the machine died can come back damaged
//! (its pages never reached the disk). Before the recovery point, only the active segment was
//! checked, so a damaged batch in a sealed one was served (or failed every read through it)
//! and the records after it stayed, behind a hole. Now recovery cuts the log at the damage.

use strata_tests::DevBroker;

const TOPIC: &str = "sealed";

/// Every file under `dir` whose name ends with `suffix`, sorted.
fn files(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    strata_tests::files_under(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

fn offsets_and_values(out: &str) -> Vec<(i64, String)> {
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON record");
            (
                v["offset"].as_i64().expect("an offset"),
                v["value"].as_str().expect("a value").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_damaged_sealed_segment_above_the_recovery_point_is_cut_after_a_crash() {
    let mut broker = DevBroker::start();
    broker.cli_ok(
        &[
            "topic",
            "create",
            TOPIC,
            "-p",
            "1",
            "-c",
            "segment.bytes=16384",
        ],
        None,
    );
    let padding = "x".repeat(90);
    let value = |chunk: usize, i: usize| format!("c{chunk}-{i:03}-{padding}");
    // About 10 KB a produce call: one batch each, a segment every one or two.
    for chunk in 0..8 {
        let input: Vec<u8> = (0..100)
            .flat_map(|i| format!("{}\n", value(chunk, i)).into_bytes())
            .collect();
        broker.cli_ok(&["produce", TOPIC], Some(&input));
    }
    broker.kill9();
    let segments = files(&broker.data_dir, ".log");
    assert!(segments.len() >= 4, "several segments: {segments:?}");
    // The crash came before any checkpoint: nothing is known to be on disk.
    for checkpoint in files(&broker.data_dir, "recovery-point-checkpoint") {
        std::fs::write(checkpoint, "0\n0\n").unwrap();
    }
    // The second segment (sealed) lost a page: a byte in the middle of its records changes.
    let damaged = &segments[1];
    let mut bytes = std::fs::read(damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(damaged, &bytes).unwrap();
    broker.restart();

    let out = broker.cli_ok(
        &[
            "consume",
            TOPIC,
            "--offset",
            "start",
            "--timeout",
            "2s",
            "--format",
            "json",
        ],
        None,
    );
    let records = offsets_and_values(&out);
    assert!(
        records.len() >= 100 && records.len() < 800,
        "the log ends before the damaged batch: {} records",
        records.len()
    );
    for (i, (offset, v)) in records.iter().enumerate() {
        assert_eq!(*offset, i as i64, "no hole");
        assert_eq!(*v, value(i / 100, i % 100), "no damaged record served");
    }
    let later = files(&broker.data_dir, ".log");
    assert!(
        later.len() <= 2,
        "the segments after the damage are gone: {later:?}"
    );
    broker.cli_ok(&["produce", TOPIC], Some(b"after-recovery\n"));
    let next = records.len().to_string();
    let out = broker.cli_ok(
        &[
            "consume", TOPIC, "--offset", &next, "-n", "1", "--format", "json",
        ],
        None,
    );
    assert_eq!(
        offsets_and_values(&out),
        vec![(records.len() as i64, "after-recovery".to_string())]
    );
}
