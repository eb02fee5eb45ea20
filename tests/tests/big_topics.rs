//! Topics of thousands of partitions on three brokers and a stock etcd (its default
//! `--max-txn-ops` is 128): created, grown and deleted in chunks; and a change SIGKILLed
//! between two chunks, which the next controller ends (a creation undone, a deletion
//! finished). The chunking and the phases have unit tests in `broker/src/topic_writes_tests.rs`.

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use strata_tests::cluster::ServeCluster as Cluster;
use strata_tests::etcd::EtcdServer;
use strata_tests::serve::{ServeBroker, TEST_SESSION_TIMEOUT};
use strata_tests::strata_bin;

/// Keys of `topic`'s partition states.
fn partition_keys(cluster: &Cluster, name: &str, topic: &str) -> u64 {
    cluster
        .etcd
        .count_keys(&format!("/strata/{name}/partitions/{topic}/"))
}

fn topic_records(cluster: &Cluster, name: &str, topic: &str) -> u64 {
    cluster
        .etcd
        .count_keys(&format!("/strata/{name}/topics/{topic}"))
}

fn described_partitions(broker: &ServeBroker, topic: &str) -> usize {
    let out = broker.cli_ok(&["topic", "describe", topic, "--format", "json"], None);
    let d: Value = serde_json::from_str(&out).expect("describe answers JSON");
    d["partitions"].as_array().expect("partitions").len()
}

/// The directories of `topic` in a broker's data directory.
fn topic_dirs(data_dir: &Path, topic: &str) -> usize {
    std::fs::read_dir(data_dir.join("logs"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{topic}~"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// A broker other than `id`.
fn other_than(cluster: &Cluster, id: i64) -> &ServeBroker {
    cluster
        .brokers
        .iter()
        .find(|b| b.id as i64 != id && b.is_serving())
        .expect("another live broker")
}

fn produce_and_read(cluster: &Cluster, via: i64, topic: &str, partition: u32) {
    let p = partition.to_string();
    cluster.broker(via).cli_ok(
        &["produce", topic, "--partition", &p, "--acks", "all"],
        Some(b"last-partition\n"),
    );
    assert_eq!(
        cluster.read(via, topic, partition, 1),
        vec!["last-partition".to_string()]
    );
}

#[test]
fn a_topic_of_2000_partitions_and_3_replicas_grows_to_3000_and_is_deleted() {
    const NAME: &str = "bigtopics";
    // Longer sessions: opening thousands of logs keeps a loaded machine busy for seconds.
    let cluster = Cluster::start(NAME, &["--session-timeout", "10s"]);
    cluster.create_topic("big", 2000, 3, &[]);
    assert_eq!(partition_keys(&cluster, NAME, "big"), 2000);
    produce_and_read(&cluster, 1, "big", 1999);

    // Through a broker that is not the controller: it forwards the change.
    let controller = cluster.controller();
    let via = other_than(&cluster, controller);
    via.cli_ok(&["topic", "add-partitions", "big", "--total", "3000"], None);
    assert_eq!(described_partitions(via, "big"), 3000);
    assert_eq!(partition_keys(&cluster, NAME, "big"), 3000);
    cluster.wait(Duration::from_secs(60), "every new ISR full", || {
        cluster
            .partitions("big")
            .iter()
            .all(|(l, isr)| *l > 0 && isr.len() == 3)
            .then_some(())
    });
    produce_and_read(&cluster, via.id as i64, "big", 2999);

    via.cli_ok(&["topic", "delete", "big"], None);
    assert_eq!(partition_keys(&cluster, NAME, "big"), 0);
    assert_eq!(topic_records(&cluster, NAME, "big"), 0);
    cluster.wait(
        Duration::from_secs(60),
        "every broker's files removed",
        || {
            cluster
                .brokers
                .iter()
                .all(|b| topic_dirs(&b.data_dir, "big") == 0)
                .then_some(())
        },
    );
    let listed = via.cli_ok(&["topic", "list"], None);
    assert!(!listed.contains("big"), "{listed}");
}

#[test]
fn a_topic_of_10000_partitions_is_created_and_deleted() {
    const NAME: &str = "tenk";
    let cluster = Cluster::start(NAME, &["--session-timeout", "10s"]);
    let controller = cluster.controller();
    let via = other_than(&cluster, controller);
    via.cli_ok(&["topic", "create", "tenk", "-p", "10000"], None);
    assert_eq!(described_partitions(via, "tenk"), 10000);
    assert_eq!(partition_keys(&cluster, NAME, "tenk"), 10000);
    produce_and_read(&cluster, via.id as i64, "tenk", 9999);
    via.cli_ok(&["topic", "delete", "tenk"], None);
    assert_eq!(partition_keys(&cluster, NAME, "tenk"), 0);
    assert_eq!(topic_records(&cluster, NAME, "tenk"), 0);
}

/// Three brokers of `name` whose topic changes wait at `failpoint` until `release` exists.
fn cluster_held_at(name: &str, failpoint: &str, release: &Path) -> Cluster {
    let etcd = EtcdServer::start();
    let spec = format!("{failpoint}=wait:{}", release.display());
    let brokers = (1..=3)
        .map(|id| {
            ServeBroker::start_with_env(
                id,
                &etcd.endpoint,
                name,
                &["--session-timeout", TEST_SESSION_TIMEOUT],
                &[("STRATA_FAILPOINTS", spec.as_str())],
            )
        })
        .collect();
    Cluster { etcd, brokers }
}

/// `strata <args>` against `broker`, running in the background.
fn spawn_cli(broker: &ServeBroker, args: &[&str]) -> Child {
    Command::new(strata_bin())
        .args(args)
        .env("STRATA_BROKERS", broker.addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the strata CLI")
}

fn wait_for_failpoint(cluster: &Cluster, id: i64) {
    cluster.wait(
        Duration::from_secs(30),
        "the change held after its first chunk",
        || {
            cluster
                .broker(id)
                .log_text()
                .contains("failpoint reached")
                .then_some(())
        },
    );
}

/// The window: the controller wrote the record and the first 100 of 500 partition states,
/// then died. The topic must not be served half-made, the name must not stay taken, and the
/// next controller removes what was written.
#[test]
fn a_creation_killed_between_chunks_is_undone_by_the_next_controller() {
    const NAME: &str = "halfmade";
    let tmp = tempfile::tempdir().unwrap();
    let release = tmp.path().join("release");
    let mut cluster = cluster_held_at(NAME, "topic.after_states_written", &release);
    let controller = cluster.controller();
    let create = spawn_cli(
        cluster.broker(controller),
        &["topic", "create", "half", "-p", "500"],
    );
    wait_for_failpoint(&cluster, controller);
    assert_eq!(topic_records(&cluster, NAME, "half"), 1);
    assert_eq!(
        partition_keys(&cluster, NAME, "half"),
        100,
        "one chunk written"
    );
    let other = other_than(&cluster, controller);
    let listed = other.cli_ok(&["topic", "list"], None);
    assert!(
        !listed.contains("half"),
        "a half-made topic is listed: {listed}"
    );
    let taken = other.cli(&["topic", "create", "half", "-p", "1"], None);
    let stderr = String::from_utf8_lossy(&taken.stderr);
    // Refused by the controller's claim on the name (or, once the claim is gone, by the
    // record in phase creating).
    assert!(
        !taken.status.success()
            && (stderr.contains("another change of topic \"half\"")
                || stderr.contains("is being created")),
        "{stderr}"
    );

    cluster.broker_mut(controller).kill9();
    let out = create.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the creation answered though its controller died: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::write(&release, b"").unwrap();
    cluster.wait(
        Duration::from_secs(30),
        "the next controller undid the creation",
        || {
            (topic_records(&cluster, NAME, "half") == 0
                && partition_keys(&cluster, NAME, "half") == 0)
                .then_some(())
        },
    );
    let next = cluster.controller();
    assert_ne!(next, controller);
    assert!(cluster
        .broker(next)
        .log_text()
        .contains("undid an interrupted topic change"));

    cluster.broker_mut(controller).restart();
    cluster.create_topic("half", 500, 1, &[]);
    assert_eq!(partition_keys(&cluster, NAME, "half"), 500);
    produce_and_read(&cluster, next, "half", 499);
}

/// The window: the controller marked the topic deleted and removed the first 100 of 300
/// partition states, then died. The next controller finishes the deletion, every broker's
/// files go (the dead one's when it comes back), and the name is free again.
#[test]
fn a_deletion_killed_between_chunks_is_finished_by_the_next_controller() {
    const NAME: &str = "halfgone";
    let tmp = tempfile::tempdir().unwrap();
    let release = tmp.path().join("release");
    let mut cluster = cluster_held_at(NAME, "topic.after_states_deleted", &release);
    cluster.create_topic("gone", 300, 2, &[]);
    let controller = cluster.controller();
    let mut delete = spawn_cli(cluster.broker(controller), &["topic", "delete", "gone"]);
    wait_for_failpoint(&cluster, controller);
    assert_eq!(
        partition_keys(&cluster, NAME, "gone"),
        200,
        "one chunk deleted"
    );
    let other = other_than(&cluster, controller);
    cluster.wait(
        Duration::from_secs(15),
        "the topic gone for clients once its deletion began",
        || {
            let described = other.cli(&["topic", "describe", "gone"], None);
            let stderr = String::from_utf8_lossy(&described.stderr).to_string();
            (!described.status.success() && stderr.contains("does not exist")).then_some(())
        },
    );

    cluster.broker_mut(controller).kill9();
    let _ = delete.wait();
    std::fs::write(&release, b"").unwrap();
    cluster.wait(
        Duration::from_secs(30),
        "the next controller finished the deletion",
        || {
            (topic_records(&cluster, NAME, "gone") == 0
                && partition_keys(&cluster, NAME, "gone") == 0)
                .then_some(())
        },
    );
    let next = cluster.controller();
    assert!(cluster
        .broker(next)
        .log_text()
        .contains("finished an interrupted topic deletion"));
    cluster.broker_mut(controller).restart();
    cluster.wait(
        Duration::from_secs(30),
        "every broker's files of the topic removed",
        || {
            cluster
                .brokers
                .iter()
                .all(|b| topic_dirs(&b.data_dir, "gone") == 0)
                .then_some(())
        },
    );
    cluster.create_topic("gone", 1, 3, &[]);
    produce_and_read(&cluster, next, "gone", 0);
}
