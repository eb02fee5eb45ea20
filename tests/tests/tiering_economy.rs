//! What an idle tiered topic costs at rest: three brokers on etcd and LocalStack, a tiered
//! topic of 6 partitions with RF 3 that took some records (so every partition has a manifest
//! and every follower has learned its bounds), then a quiet minute measured on every broker's
//! object-store request counters. Leaders keep their manifests in memory and followers learn
//! the remote bounds from replica-fetch answers, so the goal is no request at all between
//! scrubs. Then a leader is killed: the new leaders find their manifests from the versions
//! their fetches taught them, with no LIST, and keep uploading.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use strata_tests::etcd::EtcdServer;
use strata_tests::localstack::{LocalStack, AWS_ENV};
use strata_tests::metrics::scrape;
use strata_tests::serve::ServeBroker;
use strata_tests::{free_port, wait_for};

const URL: &str = "s3://economy/tiers";
const TOPIC: &str = "idle";
const REQUESTS: &str = "strata_object_store_requests_total";

fn status(broker: &ServeBroker) -> Vec<Value> {
    let s: Value =
        serde_json::from_str(&broker.cli_ok(&["tier", "status", TOPIC, "--format", "json"], None))
            .unwrap();
    s["partitions"].as_array().unwrap().clone()
}

/// Object-store requests of each live broker so far, by op.
fn requests(metrics: &[(i32, SocketAddr)]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (id, addr) in metrics {
        for (series, v) in scrape(*addr) {
            if series.starts_with(REQUESTS) {
                out.insert(format!("broker {id} {series}"), v);
            }
        }
    }
    out
}

fn difference(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<String> {
    after
        .iter()
        .filter(|(k, v)| before.get(*k).copied().unwrap_or(0.0) != **v)
        .map(|(k, v)| format!("{k}: {} -> {v}", before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

#[test]
fn an_idle_tiered_topic_makes_no_object_store_request_and_a_new_leader_lists_nothing() {
    let localstack = LocalStack::start();
    localstack.tier_init(URL);
    let etcd = EtcdServer::start();
    let ports: Vec<SocketAddr> = (0..3)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    let mut brokers: Vec<ServeBroker> = (1..=3)
        .map(|id| {
            let metrics = ports[id as usize - 1].to_string();
            let flags = [
                "--session-timeout",
                "3s",
                "--object-store",
                URL,
                "--s3-endpoint",
                &localstack.endpoint,
                "--metrics",
                &metrics,
            ];
            ServeBroker::start_with_env(id, &etcd.endpoint, "economy", &flags, &AWS_ENV)
        })
        .collect();
    let create = [
        "topic",
        "create",
        TOPIC,
        "-p",
        "6",
        "-r",
        "3",
        "-c",
        "segment.bytes=16384",
    ];
    wait_for(Duration::from_secs(30), "three live brokers", || {
        brokers[0].cli(&create, None).status.success().then_some(())
    });
    let input: Vec<u8> = (0..1000)
        .flat_map(|i| format!("{i:06}-a-record-of-some-forty-bytes-or-so\n").into_bytes())
        .collect();
    for p in 0..6 {
        let p = p.to_string();
        brokers[0].cli_ok(
            &["produce", TOPIC, "--partition", &p, "--acks", "all"],
            Some(&input),
        );
    }
    // Every partition has uploaded what it sealed (the active segments stay local).
    wait_for(
        Duration::from_secs(60),
        "uploads on every partition",
        || {
            status(&brokers[0])
                .iter()
                .all(|p| p["remote_segments"].as_u64().unwrap_or(0) > 0)
                .then_some(())
        },
    );
    // Leadership settles on the preferred replicas (a move is a leader change, which reads
    // the manifest once: not idle), followers hear the last bounds; then a quiet stretch.
    wait_for(Duration::from_secs(90), "preferred leaders", || {
        let d: Value = serde_json::from_str(
            &brokers[0].cli_ok(&["topic", "describe", TOPIC, "--format", "json"], None),
        )
        .ok()?;
        d["partitions"]
            .as_array()?
            .iter()
            .all(|p| p["leader"] == p["replicas"][0])
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let all: Vec<(i32, SocketAddr)> = (1..=3).map(|id| (id, ports[id as usize - 1])).collect();
    let before = requests(&all);
    std::thread::sleep(Duration::from_secs(30));
    let after = requests(&all);
    let changed = difference(&before, &after);
    assert!(
        changed.is_empty(),
        "an idle tiered topic made object-store requests in 30 s: {changed:?}"
    );
    println!(
        "idle for 30 s: 0 object-store requests on 3 brokers ({} series)",
        after.len()
    );

    // A leader dies: each partition it led gets a new leader, which finds the manifest with
    // GETs from the version it learned (no LIST) and uploads what comes next.
    let survivors: Vec<(i32, SocketAddr)> = vec![(2, ports[1]), (3, ports[2])];
    let before = requests(&survivors);
    brokers[0].kill9();
    let more: Vec<u8> = (0..1000)
        .flat_map(|i| format!("{i:06}-after-the-failover-some-more-bytes\n").into_bytes())
        .collect();
    for p in 0..6 {
        let p = p.to_string();
        wait_for(Duration::from_secs(30), "new leaders", || {
            let out = brokers[1].cli(
                &["produce", TOPIC, "--partition", &p, "--acks", "all"],
                Some(&more),
            );
            out.status.success().then_some(())
        });
    }
    let expected_end: i64 = 12_000;
    wait_for(
        Duration::from_secs(60),
        "uploads after the failover",
        || {
            let s = status(&brokers[1]);
            let total: i64 = s
                .iter()
                .map(|p| p["log_end_offset"].as_i64().unwrap_or(0))
                .sum();
            (total >= expected_end
                && s.iter().all(|p| {
                    p["remote_log_end_offset"].as_i64().unwrap_or(-1)
                        >= p["log_end_offset"].as_i64().unwrap_or(0) - 600
                }))
            .then_some(())
        },
    );
    let after = requests(&survivors);
    let listed: f64 = after
        .iter()
        .filter(|(k, _)| k.contains("op=\"list"))
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0))
        .sum();
    println!("after the failover: {:?}", difference(&before, &after));
    assert_eq!(listed, 0.0, "new leaders listed the bucket");
    let total = |m: &BTreeMap<String, f64>| m.values().sum::<f64>();
    assert!(total(&after) > total(&before), "uploads went on");
}
