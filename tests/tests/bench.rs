//! `strata bench` runs every scenario end to end against `strata dev` (small counts: this checks
//! that each scenario does what it says and reports the fixed JSON keys, not how fast it is;
//! figures come from `benches/run.sh`).

use serde_json::Value;
use strata_tests::DevBroker;

fn bench(broker: &DevBroker, args: &[&str]) -> Value {
    let pid = format!("dev={}", broker.child.as_ref().unwrap().id());
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json", "--broker-pid", &pid]);
    let out = broker.cli_ok(&all, None);
    let v: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("bench printed no JSON object ({e}): {out}"));
    for key in [
        "scenario",
        "records",
        "bytes",
        "seconds",
        "records_per_sec",
        "mb_per_sec",
    ] {
        assert!(v.get(key).is_some(), "no {key} in {v}");
    }
    for p in ["p50", "p99", "p999"] {
        assert!(
            v["latency_ms"][p].as_f64().is_some(),
            "no latency_ms.{p} in {v}"
        );
    }
    assert!(
        v["peak_rss_bytes"]["dev"].as_u64().unwrap() > 1 << 20,
        "peak RSS of the broker missing or implausible: {v}"
    );
    v
}

#[test]
fn every_scenario_runs_and_reports() {
    let broker = DevBroker::start_with(&["--retention-check-interval", "1s"]);

    let v = bench(
        &broker,
        &["produce", "--records", "20000", "--producers", "2"],
    );
    assert_eq!(v["scenario"], "produce");
    assert_eq!(v["records"], 20000);
    assert_eq!(v["bytes"], 2_000_000);
    assert!(v["records_per_sec"].as_f64().unwrap() > 0.0);

    // The topic now holds 20,000 records: consume reads exactly those, producing nothing.
    let v = bench(
        &broker,
        &["consume", "--records", "20000", "--consumers", "3"],
    );
    assert_eq!(v["scenario"], "consume");
    assert_eq!(v["records"], 20000);
    assert_eq!(v["bytes"], 2_000_000);

    let v = bench(
        &broker,
        &["produce-consume", "--records", "20000", "--topic", "pc"],
    );
    assert_eq!(v["scenario"], "produce-consume");
    assert_eq!(v["records"], 20000);
    assert_eq!(v["bytes"], 2_000_000, "every produced record consumed once");

    let v = bench(
        &broker,
        &[
            "latency",
            "--rate",
            "2000",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            "--topic",
            "lat",
        ],
    );
    assert_eq!(v["scenario"], "latency");
    assert_eq!(v["records"], 5000, "2000/s for 2.5 s (warm-up included)");
    assert_eq!(v["latency_ms"]["kind"], "end_to_end");
    assert_eq!(
        v["latency_ms"]["samples"], 4000,
        "the warm-up is not measured"
    );
    let p50 = v["latency_ms"]["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 1000.0, "p50 {p50} ms");

    // Replay: 1 MiB segments of 100-byte records over 2 partitions, all sealed ones moved to
    // the local-filesystem store, then read from offset 0.
    let v = bench(
        &broker,
        &[
            "replay",
            "--records",
            "60000",
            "--partitions",
            "2",
            "-c",
            "segment.bytes=1048576",
            "--batch-bytes",
            "64KiB",
        ],
    );
    assert_eq!(v["scenario"], "replay");
    assert_eq!(v["records"], 60000);
    let remote = v["remote_records"].as_i64().unwrap();
    assert!(
        remote > 30000,
        "most records came from the remote tier: {v}"
    );

    // Idle: 50 partitions at rest, the broker's CPU, files and memory.
    let v = bench(
        &broker,
        &[
            "idle",
            "--partitions",
            "50",
            "--duration",
            "2s",
            "--topic",
            "idle",
        ],
    );
    assert_eq!(v["scenario"], "idle");
    assert_eq!(v["records"], 0);
    assert_eq!(v["partitions"], 50);
    assert!(v["ready_seconds"].as_f64().unwrap() > 0.0, "{v}");
    let cpu = v["idle_cpu_percent"]["dev"].as_f64().unwrap();
    assert!(
        (0.0..200.0).contains(&cpu),
        "idle CPU {cpu}% of a core: {v}"
    );
    assert_eq!(v["idle_cpu_percent_total"].as_f64().unwrap(), cpu);
    assert!(
        v["open_fds"]["dev"].as_u64().unwrap() >= 50,
        "a file per partition at least: {v}"
    );
    assert!(v["rss_bytes"]["dev"].as_u64().unwrap() > 1 << 20, "{v}");
}

#[test]
fn bad_bench_flags_are_refused_with_a_sentence() {
    let broker = DevBroker::start();
    for (args, says) in [
        (
            &["consume", "--duration", "5s"][..],
            "does not apply to consume",
        ),
        (&["latency", "--record-size", "4"][..], "at least 8 bytes"),
        (
            &["produce", "--records", "0"][..],
            "--records must be above 0",
        ),
        (&["produce", "--broker-pid", "x=y"][..], "numeric PID"),
        (&["idle", "--records", "5"][..], "does not apply to idle"),
        (
            &["idle", "--duration", "1s"][..],
            "give each broker as --broker-pid",
        ),
    ] {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        let out = broker.cli(&all, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
