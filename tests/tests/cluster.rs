//! The cluster issue's "done means", against real etcd and three `strata serve` processes:
//! leaders spread over the brokers, produce and consume through any broker, the controller
//! killed with SIGKILL and replaced, etcd stopped for 10 s without losing a broker or a record,
//! and clear errors for bad input.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use strata_tests::etcd::EtcdServer;
use strata_tests::serve::ServeBroker;

fn cluster(etcd: &EtcdServer, name: &str) -> Vec<ServeBroker> {
    (1..=3)
        .map(|id| ServeBroker::start(id, &etcd.endpoint, name))
        .collect()
}

fn info(via: &ServeBroker) -> Value {
    serde_json::from_str(&via.cli_ok(&["cluster", "info", "--format", "json"], None))
        .expect("cluster info json")
}

/// Polls `cluster info` through `via` until `check` holds, for up to `within`.
fn wait_for(
    via: &ServeBroker,
    within: Duration,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let out = via.cli(&["cluster", "info", "--format", "json"], None);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            if check(&v) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("{what}: not within {within:?}; last cluster info: {v}");
            }
        } else if Instant::now() > deadline {
            panic!(
                "{what}: cluster info keeps failing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn alive_count(v: &Value) -> usize {
    v["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["alive"] == true)
        .count()
}

fn leaders(via: &ServeBroker, topic: &str) -> Vec<i64> {
    let d: Value =
        serde_json::from_str(&via.cli_ok(&["topic", "describe", topic, "--format", "json"], None))
            .unwrap();
    d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["leader"].as_i64().unwrap())
        .collect()
}

fn lines(prefix: &str, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("k{i}:{prefix}-{i}\n").into_bytes())
        .collect()
}

fn consumed_values(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn expected_values(prefix: &str, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    v.sort();
    v
}

#[test]
fn three_brokers_spread_leaders_and_survive_a_controller_kill() {
    let etcd = EtcdServer::start();
    let mut brokers = cluster(&etcd, "e2e");
    let v = wait_for(
        &brokers[0],
        Duration::from_secs(20),
        "three live brokers and a controller",
        |v| alive_count(v) == 3 && v["controller"].as_i64().unwrap_or(-1) > 0,
    );
    assert_eq!(v["cluster"], "e2e");

    // Create through one broker, produce through another, consume through the third.
    brokers[0].cli_ok(&["topic", "create", "orders", "-p", "6"], None);
    let out = brokers[1].cli(
        &["produce", "orders", "--key-separator", ":"],
        Some(&lines("a", 6000)),
    );
    assert!(
        out.status.success(),
        "produce: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = brokers[2].cli_ok(
        &["consume", "orders", "--offset", "start", "-n", "6000"],
        None,
    );
    assert_eq!(consumed_values(&got), expected_values("a", 6000));

    // A config change made through one broker is seen by another within a second.
    brokers[0].cli_ok(
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=3600000",
        ],
        None,
    );
    let changed = Instant::now();
    loop {
        let d: Value = serde_json::from_str(
            &brokers[2].cli_ok(&["topic", "describe", "orders", "--format", "json"], None),
        )
        .unwrap();
        if d["config"]["retention.ms"] == "3600000" {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "broker 3 did not see the change within a second"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut per_broker: BTreeMap<i64, usize> = BTreeMap::new();
    for l in leaders(&brokers[2], "orders") {
        *per_broker.entry(l).or_default() += 1;
    }
    assert_eq!(
        per_broker,
        BTreeMap::from([(1, 2), (2, 2), (3, 2)]),
        "leaders spread evenly"
    );

    // Kill the controller with SIGKILL: another broker takes over and the dead one shows dead.
    let old = info(&brokers[0])["controller"].as_i64().unwrap();
    let killed_at = Instant::now();
    brokers[(old - 1) as usize].kill9();
    let survivor = brokers.iter().find(|b| b.is_running()).unwrap();
    let v = wait_for(survivor, Duration::from_secs(20), "a new controller", |v| {
        let c = v["controller"].as_i64().unwrap_or(-1);
        c > 0 && c != old && alive_count(v) == 2
    });
    eprintln!(
        "controller failover: broker {old} killed, broker {} elected after {:?}",
        v["controller"],
        killed_at.elapsed()
    );
    let dead = v["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == old)
        .expect("dead broker listed");
    assert_eq!(dead["alive"], false);
    assert_eq!(
        v["offline_partitions"], 2,
        "the dead broker's partitions (RF 1) are offline: {v}"
    );

    // The cluster keeps serving: a new topic lands on the live brokers and works end to end.
    survivor.cli_ok(&["topic", "create", "after", "-p", "4"], None);
    survivor.cli_ok(
        &["produce", "after", "--key-separator", ":"],
        Some(&lines("b", 1000)),
    );
    let got = survivor.cli_ok(
        &["consume", "after", "--offset", "start", "-n", "1000"],
        None,
    );
    assert_eq!(consumed_values(&got), expected_values("b", 1000));
    for l in leaders(survivor, "after") {
        assert_ne!(l, old, "no leader on the dead broker");
    }

    // The killed broker comes back with its data and leads its partitions again.
    let back = (old - 1) as usize;
    brokers[back].restart();
    wait_for(
        &brokers[back],
        Duration::from_secs(20),
        "all three alive, nothing offline",
        |v| alive_count(v) == 3 && v["offline_partitions"] == 0,
    );
    let got = brokers[back].cli_ok(
        &["consume", "orders", "--offset", "start", "-n", "6000"],
        None,
    );
    assert_eq!(
        consumed_values(&got),
        expected_values("a", 6000),
        "every record back after the restart"
    );
}

#[test]
fn brokers_keep_serving_while_etcd_is_down_for_ten_seconds() {
    let mut etcd = EtcdServer::start();
    let brokers = cluster(&etcd, "outage");
    wait_for(
        &brokers[0],
        Duration::from_secs(20),
        "three live brokers",
        |v| alive_count(v) == 3,
    );
    brokers[0].cli_ok(&["topic", "create", "t", "-p", "3"], None);
    brokers[0].cli_ok(
        &["produce", "t", "--key-separator", ":"],
        Some(&lines("before", 300)),
    );

    etcd.kill();
    let down = Instant::now();
    // Leaders keep serving the partitions they lead.
    let out = brokers[1].cli(
        &["produce", "t", "--key-separator", ":"],
        Some(&lines("during", 300)),
    );
    assert!(
        out.status.success(),
        "produce while etcd is down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = brokers[2].cli_ok(&["consume", "t", "--offset", "start", "-n", "600"], None);
    let mut expect = expected_values("before", 300);
    expect.extend(expected_values("during", 300));
    expect.sort();
    assert_eq!(consumed_values(&got), expect);
    // Metadata changes fail clearly meanwhile.
    let out = brokers[0].cli(&["topic", "create", "while-down"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("etcd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down.elapsed()));
    etcd.restart();

    for b in &brokers {
        assert!(b.is_running(), "broker {} survived the outage", b.id);
    }
    wait_for(
        &brokers[0],
        Duration::from_secs(20),
        "the cluster whole again",
        |v| {
            alive_count(v) == 3
                && v["controller"].as_i64().unwrap_or(-1) > 0
                && v["offline_partitions"] == 0
        },
    );
    brokers[2].cli_ok(&["topic", "create", "after-outage", "-p", "2"], None);
    brokers[2].cli_ok(&["produce", "after-outage"], Some(b"x\ny\n"));
    let got = brokers[0].cli_ok(
        &["consume", "after-outage", "--offset", "start", "-n", "2"],
        None,
    );
    assert_eq!(consumed_values(&got), vec!["x", "y"]);
}

#[test]
fn cluster_bad_input_gets_clear_errors() {
    let etcd = EtcdServer::start();
    // Long sessions: the duplicate-id case below needs broker 1's registration to stay live
    // (with 3 s ones, a loaded machine let it lapse and the duplicate took the id).
    let brokers: Vec<ServeBroker> = (1..=3)
        .map(|id| ServeBroker::start_with(id, &etcd.endpoint, "bad", &["--session-timeout", "20s"]))
        .collect();
    wait_for(
        &brokers[0],
        Duration::from_secs(20),
        "three live brokers",
        |v| alive_count(v) == 3,
    );

    let out = brokers[0].cli(&["topic", "create", "wide", "-r", "4"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("replication factor 4 is larger than the number of live brokers (3)"),
        "{err}"
    );

    brokers[1].cli_ok(&["topic", "create", "dup"], None);
    let out = brokers[2].cli(&["topic", "create", "dup"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    // A second process claiming a live broker's id is refused, and says by whom.
    let other_dir = tempfile::tempdir().unwrap();
    let mut duplicate = std::process::Command::new(strata_tests::strata_bin());
    duplicate
        .args([
            "serve",
            "--id",
            "1",
            "--listen",
            &format!("127.0.0.1:{}", strata_tests::free_port()),
        ])
        .args([
            "--etcd",
            &etcd.endpoint,
            "--cluster",
            "bad",
            "--session-timeout",
            "3s",
            "--data-dir",
        ])
        .arg(other_dir.path());
    let out = strata_tests::output_within(&mut duplicate, Duration::from_secs(60));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broker id 1 is already registered by a live broker"),
        "{err}"
    );

    // An unreachable etcd is named.
    let port = strata_tests::free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut unreachable = std::process::Command::new(strata_tests::strata_bin());
    unreachable
        .args([
            "serve",
            "--id",
            "9",
            "--listen",
            "127.0.0.1:0",
            "--etcd",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(dir.path());
    let out = strata_tests::output_within(&mut unreachable, Duration::from_secs(60));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("etcd"),
        "{err}"
    );
}
