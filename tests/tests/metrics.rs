//! The metrics endpoint end to end: `strata dev --metrics` scraped with a plain HTTP GET after
//! producing, uploading and replaying from the remote tier; and a three-broker cluster on etcd
//! whose brokers report etcd latency and, once a follower is SIGKILLed, under-replicated
//! partitions.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use strata_tests::etcd::EtcdServer;
use strata_tests::metrics::{get, http, scrape};
use strata_tests::serve::{ServeBroker, TEST_SESSION_TIMEOUT};
use strata_tests::{free_port, wait_for, DevBroker};

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series} in the scrape"))
}

/// Every histogram's `+Inf` bucket equals its `_count`; returns how many histograms there are.
fn check_histograms(samples: &BTreeMap<String, f64>) -> usize {
    let mut n = 0;
    for (series, inf) in samples {
        let Some((name, labels)) = series.split_once("_bucket{") else {
            continue;
        };
        let Some(labels) = labels.strip_suffix("le=\"+Inf\"}") else {
            continue;
        };
        let labels = labels.trim_end_matches(',');
        let count = if labels.is_empty() {
            format!("{name}_count")
        } else {
            format!("{name}_count{{{labels}}}")
        };
        assert_eq!(*inf, value(samples, &count), "{series} vs {count}");
        n += 1;
    }
    n
}

#[test]
fn dev_broker_serves_prometheus_metrics() {
    const N: usize = 30_000;
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let broker = DevBroker::start_with(&[
        "--metrics",
        &metrics.to_string(),
        "--retention-check-interval",
        "500ms",
    ]);
    broker.cli_ok(
        &[
            "topic",
            "create",
            "metered",
            "-p",
            "1",
            "-c",
            "segment.bytes=65536",
            "-c",
            "local.retention.bytes=1",
            "-c",
            "remote.storage.enable=true",
        ],
        None,
    );
    let input: Vec<u8> = (0..N)
        .flat_map(|i| format!("metered-{i:08}\n").into_bytes())
        .collect();
    broker.cli_ok(
        &[
            "produce",
            "metered",
            "--acks",
            "all",
            "--compression",
            "none",
        ],
        Some(&input),
    );

    // Wait until segments are uploaded and local retention dropped some: the replay below
    // then reads through the remote tier and its chunk cache.
    wait_for(
        Duration::from_secs(30),
        "segments in the remote tier only",
        || {
            let out = broker.cli_ok(&["tier", "status", "metered", "--format", "json"], None);
            let s: Value = serde_json::from_str(&out).unwrap();
            let p = &s["partitions"][0];
            (p["local_log_start_offset"].as_i64().unwrap() > 0
                && p["remote_segments"].as_u64().unwrap() > 0)
                .then_some(())
        },
    );
    let out = broker.cli_ok(
        &[
            "consume",
            "metered",
            "--offset",
            "start",
            "-n",
            &N.to_string(),
        ],
        None,
    );
    assert_eq!(out.as_bytes(), &input[..]);
    // Read the start again: its frame is in the chunk cache now.
    let again = broker.cli_ok(
        &["consume", "metered", "--offset", "start", "-n", "10"],
        None,
    );
    assert_eq!(again.as_bytes(), &input[..10 * "metered-00000000\n".len()]);

    let m = scrape(metrics);
    for api in ["produce", "fetch"] {
        assert!(value(&m, &format!("strata_requests_total{{api=\"{api}\"}}")) > 0.0);
        assert_eq!(
            value(&m, &format!("strata_request_errors_total{{api=\"{api}\"}}")),
            0.0
        );
        let count = format!("strata_request_duration_seconds_count{{api=\"{api}\"}}");
        assert!(value(&m, &count) > 0.0, "{count}");
    }
    let produced = value(
        &m,
        "strata_request_bytes_total{api=\"produce\",direction=\"in\"}",
    );
    let fetched = value(
        &m,
        "strata_request_bytes_total{api=\"fetch\",direction=\"out\"}",
    );
    assert!(
        produced >= input.len() as f64,
        "batches hold the values: {produced}"
    );
    assert!(
        fetched >= produced,
        "everything was fetched back: {fetched} < {produced}"
    );
    assert!(check_histograms(&m) >= 5, "histograms are rendered");
    assert_eq!(
        value(
            &m,
            "strata_request_duration_seconds_bucket{api=\"produce\",le=\"+Inf\"}"
        ),
        value(&m, "strata_request_duration_seconds_count{api=\"produce\"}")
    );

    // The remote tier: uploads, GETs of the replay, the chunk cache.
    assert!(value(&m, "strata_remote_uploads_total") > 0.0);
    assert!(value(&m, "strata_remote_upload_bytes_total") > 0.0);
    assert_eq!(value(&m, "strata_remote_upload_errors_total"), 0.0);
    assert!(value(&m, "strata_remote_fetch_requests_total") > 0.0);
    assert!(value(&m, "strata_remote_fetch_bytes_total") > 0.0);
    assert!(value(&m, "strata_object_store_requests_total{op=\"put\"}") > 0.0);
    assert!(value(&m, "strata_object_store_get_bytes_total") > 0.0);
    assert!(
        value(
            &m,
            "strata_object_store_request_duration_seconds_count{op=\"get\"}"
        ) > 0.0
    );
    let (hits, misses) = (
        value(&m, "strata_remote_cache_hits_total"),
        value(&m, "strata_remote_cache_misses_total"),
    );
    assert!(
        misses > 0.0,
        "the first read of each frame misses the cache"
    );
    assert!(
        hits > 0.0,
        "the second read of the first frame hits the cache"
    );
    assert!(value(&m, "strata_remote_cache_bytes") > 0.0);
    assert!(value(&m, "strata_remote_upload_lag_bytes") >= 0.0);
    assert!(value(&m, "strata_remote_upload_lag_seconds") >= 0.0);
    // Partition health of a single broker.
    assert_eq!(value(&m, "strata_partitions"), 1.0);
    assert_eq!(value(&m, "strata_leader_partitions"), 1.0);
    assert_eq!(value(&m, "strata_under_replicated_partitions"), 0.0);
    assert_eq!(value(&m, "strata_offline_partitions"), 0.0);
    assert_eq!(value(&m, "strata_controller_active"), 1.0);
    assert_eq!(value(&m, "strata_build_info{version=\"0.1.0\"}"), 1.0);

    // Counters only go up.
    broker.cli_ok(&["produce", "metered"], Some(b"one more\n"));
    let again = scrape(metrics);
    assert!(
        value(&again, "strata_requests_total{api=\"produce\"}")
            > value(&m, "strata_requests_total{api=\"produce\"}")
    );

    let (status, _, _) = get(metrics, "/");
    assert_eq!(status, 404);
    let (status, _, _) = get(metrics, "/metricsx");
    assert_eq!(status, 404);
    let (status, head, _) = http(metrics, "DELETE /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(status, 405, "{head}");
    let (status, _, _) = http(metrics, "nonsense\r\n\r\n");
    assert_eq!(status, 400);

    // A second broker cannot take a metrics port in use, and says which.
    let other = strata_tests::run_cli(
        &broker.addr.to_string(),
        &[
            "dev",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
            broker.data_dir.with_extension("other").to_str().unwrap(),
            "--metrics",
            &metrics.to_string(),
        ],
        None,
    );
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains(&format!("cannot serve metrics on {metrics}")),
        "{err}"
    );
}

fn describe_partition0(via: &ServeBroker, topic: &str) -> (i64, Vec<i64>, Vec<i64>) {
    let d: Value =
        serde_json::from_str(&via.cli_ok(&["topic", "describe", topic, "--format", "json"], None))
            .unwrap();
    let p = &d["partitions"][0];
    let ids = |k: &str| -> Vec<i64> {
        p[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };
    (p["leader"].as_i64().unwrap(), ids("replicas"), ids("isr"))
}

#[test]
fn cluster_brokers_report_etcd_latency_and_under_replicated_partitions() {
    let etcd = EtcdServer::start();
    let ports: Vec<SocketAddr> = (0..3)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    let mut brokers: Vec<ServeBroker> = (1..=3)
        .map(|id| {
            let metrics = ports[id as usize - 1].to_string();
            ServeBroker::start_with(
                id,
                &etcd.endpoint,
                "metrics",
                &[
                    "--session-timeout",
                    TEST_SESSION_TIMEOUT,
                    "--metrics",
                    &metrics,
                ],
            )
        })
        .collect();
    let scrape_of = |id: i64| scrape(ports[id as usize - 1]);
    wait_for(Duration::from_secs(20), "three live brokers", || {
        let out = brokers[0].cli(&["cluster", "info", "--format", "json"], None);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let alive = v["brokers"]
            .as_array()?
            .iter()
            .filter(|b| b["alive"] == true)
            .count();
        (alive == 3).then_some(())
    });
    brokers[0].cli_ok(
        &["topic", "create", "replicated", "-p", "1", "-r", "3"],
        None,
    );
    wait_for(
        Duration::from_secs(20),
        "all three replicas in sync",
        || {
            let (leader, _, isr) = describe_partition0(&brokers[0], "replicated");
            (leader > 0 && isr.len() == 3).then_some(())
        },
    );
    brokers[1].cli_ok(
        &["produce", "replicated", "--acks", "all"],
        Some(b"a\nb\nc\n"),
    );
    let (leader, replicas, _) = describe_partition0(&brokers[0], "replicated");

    // Every broker talks to etcd: registrations, keepalives, metadata reads and writes.
    for id in 1..=3 {
        let m = scrape_of(id);
        check_histograms(&m);
        let calls: f64 = m
            .iter()
            .filter(|(k, _)| k.starts_with("strata_coordinator_request_duration_seconds_count{"))
            .map(|(_, v)| v)
            .sum();
        assert!(calls > 0.0, "broker {id} timed no etcd call");
        assert!(
            value(
                &m,
                "strata_coordinator_request_duration_seconds_count{op=\"txn\"}"
            ) > 0.0,
            "broker {id} registered with a transaction"
        );
    }
    let m = scrape_of(leader);
    assert_eq!(value(&m, "strata_under_replicated_partitions"), 0.0);
    assert_eq!(value(&m, "strata_leader_partitions"), 1.0);
    assert!(value(&m, "strata_requests_total{api=\"replica_fetch\"}") > 0.0);
    assert!(
        value(
            &m,
            "strata_request_bytes_total{api=\"replica_fetch\",direction=\"out\"}"
        ) > 0.0,
        "followers fetched the produced batches"
    );
    let controllers: f64 = (1..=3)
        .map(|id| value(&scrape_of(id), "strata_controller_active"))
        .sum();
    assert_eq!(controllers, 1.0, "exactly one controller");

    // SIGKILL a follower: once its session expires the ISR shrinks, and the leader reports
    // the partition under-replicated.
    let follower = *replicas.iter().find(|r| **r != leader).unwrap();
    brokers[follower as usize - 1].kill9();
    let under = wait_for(
        Duration::from_secs(30),
        "the leader reports an under-replicated partition",
        || {
            let m = scrape_of(leader);
            let v = value(&m, "strata_under_replicated_partitions");
            (v > 0.0).then_some(v)
        },
    );
    assert_eq!(under, 1.0);
    let offline: f64 = (1..=3)
        .filter(|id| *id != follower)
        .map(|id| value(&scrape_of(id), "strata_offline_partitions"))
        .sum();
    assert_eq!(offline, 0.0, "the partition still has a leader");
}
