//! A tiered topic's life on etcd and LocalStack, with one broker:
//! - `remote.storage.enable` follows KIP-950: turning it off is refused unless
//!   `remote.log.delete.on.disable=true` comes with it, which deletes the remote data (and
//!   says so); turning it back on resumes cleanly from the local log; turning it on for a topic
//!   created without it uploads its history;
//! - `remote.upload.max.interval.ms` bounds how long data of an idle partition stays off the
//!   bucket;
//! - a broker starts and serves local data while the store does not answer (LocalStack
//!   SIGSTOPped), a deleted topic's objects are deleted through a tombstone that outlives the
//!   outage and a broker restart, and tiering catches up when the store answers again.

use serde_json::Value;
use std::time::Duration;
use strata_tests::etcd::EtcdServer;
use strata_tests::localstack::{LocalStack, AWS_ENV};
use strata_tests::serve::ServeBroker;
use strata_tests::{numbered_lines, wait_for};

fn start_broker(localstack: &LocalStack, etcd: &EtcdServer, url: &str) -> ServeBroker {
    let flags = [
        "--session-timeout",
        "3s",
        "--object-store",
        url,
        "--s3-endpoint",
        &localstack.endpoint,
        "--retention-check-interval",
        "500ms",
    ];
    ServeBroker::start_with_env(1, &etcd.endpoint, "lifecycle", &flags, &AWS_ENV)
}

/// Creates a topic once the broker is the controller.
fn create(broker: &ServeBroker, topic: &str, configs: &[&str]) {
    let mut args = vec!["topic", "create", topic, "-p", "1", "-r", "1"];
    for c in configs {
        args.extend(["-c", c]);
    }
    wait_for(Duration::from_secs(30), "a controller", || {
        let out = broker.cli(&args, None);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success() || stderr.contains("controller"),
            "{topic}: {stderr}"
        );
        out.status.success().then_some(())
    });
}

fn status(broker: &ServeBroker, topic: &str) -> Value {
    let s: Value =
        serde_json::from_str(&broker.cli_ok(&["tier", "status", topic, "--format", "json"], None))
            .unwrap();
    s["partitions"][0].clone()
}

fn num(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// Every object key of the topic in the bucket (segments and manifests).
fn objects(localstack: &LocalStack, url: &str, topic: &str) -> Vec<String> {
    let dir = format!("/{topic}-");
    localstack
        .object_keys(url)
        .into_iter()
        .filter(|k| k.contains(&dir))
        .collect()
}

fn alter(broker: &ServeBroker, topic: &str, sets: &[&str]) -> std::process::Output {
    let mut args = vec!["topic", "alter-config", topic];
    for s in sets {
        args.extend(["--set", s]);
    }
    broker.cli(&args, None)
}

/// Records `from..to` as the produce command writes them.
fn lines(from: usize, to: usize) -> Vec<u8> {
    (from..to)
        .flat_map(|i| format!("rec-{i:08}-padding-to-some-forty-bytes\n").into_bytes())
        .collect()
}

fn consume_all(broker: &ServeBroker, topic: &str, n: usize) -> Vec<String> {
    broker
        .cli_ok(
            &["consume", topic, "--offset", "start", "-n", &n.to_string()],
            None,
        )
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn remote_storage_is_turned_off_only_with_its_data_deleted_and_back_on_cleanly() {
    const URL: &str = "s3://toggle/t";
    let localstack = LocalStack::start();
    localstack.tier_init(URL);
    let etcd = EtcdServer::start();
    let broker = start_broker(&localstack, &etcd, URL);
    create(
        &broker,
        "hist",
        &["segment.bytes=16384", "local.retention.bytes=1"],
    );
    broker.cli_ok(&["produce", "hist", "--acks", "all"], Some(&lines(0, 2000)));
    let tiered = wait_for(
        Duration::from_secs(60),
        "uploads, then local retention",
        || {
            let s = status(&broker, "hist");
            (num(&s, "remote_segments") > 1 && num(&s, "local_log_start_offset") > 0).then_some(s)
        },
    );
    println!("tiered: {tiered}");

    // Off without the deletion flag: refused, nothing changes.
    let out = alter(&broker, "hist", &["remote.storage.enable=false"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "turning it off alone is refused");
    assert!(
        stderr.contains("remote.log.delete.on.disable=true"),
        "the refusal names the flag: {stderr}"
    );
    assert!(num(&status(&broker, "hist"), "remote_segments") > 1);
    // The flag alone, or with the tier left on, is refused too.
    let out = alter(&broker, "hist", &["remote.log.delete.on.disable=true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("goes only with"));

    // Off with the flag: the remote data goes, and the command says so.
    let out = alter(
        &broker,
        "hist",
        &[
            "remote.storage.enable=false",
            "remote.log.delete.on.disable=true",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("being deleted"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_for(
        Duration::from_secs(60),
        "the topic's objects deleted",
        || objects(&localstack, URL, "hist").is_empty().then_some(()),
    );
    let off = status(&broker, "hist");
    let local_start = num(&off, "local_log_start_offset");
    assert_eq!(num(&off, "remote_segments"), 0, "{off}");
    // The log now starts at the local log start: the first record readable is there.
    let first = consume_all(&broker, "hist", 1);
    assert_eq!(
        first,
        vec![format!("rec-{local_start:08}-padding-to-some-forty-bytes")],
        "{off}"
    );

    // Back on: accepted once the deletion is done (refused with a sentence before).
    wait_for(Duration::from_secs(60), "turning it back on", || {
        let out = alter(&broker, "hist", &["remote.storage.enable=true"]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success() || stderr.contains("still being deleted"),
            "{stderr}"
        );
        out.status.success().then_some(())
    });
    broker.cli_ok(
        &["produce", "hist", "--acks", "all"],
        Some(&lines(2000, 4000)),
    );
    let on = wait_for(Duration::from_secs(60), "uploads resumed", || {
        let s = status(&broker, "hist");
        (num(&s, "remote_segments") > 1 && num(&s, "local_log_start_offset") > local_start)
            .then_some(s)
    });
    println!("back on: {on}");
    assert_eq!(
        num(&on, "remote_log_start_offset"),
        local_start,
        "the new remote tier starts where the local log did: {on}"
    );
    // Everything from the log start is readable, in order, across both tiers.
    let n = 4000 - local_start as usize;
    let got = consume_all(&broker, "hist", n);
    let want: Vec<String> = String::from_utf8(lines(local_start as usize, 4000))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(got == want, "replay after re-enabling differs");

    // A topic created without remote storage uploads its whole history once it is turned on.
    create(
        &broker,
        "late",
        &["segment.bytes=16384", "remote.storage.enable=false"],
    );
    broker.cli_ok(&["produce", "late", "--acks", "all"], Some(&lines(0, 1000)));
    let out = alter(&broker, "late", &["remote.storage.enable=true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let late = wait_for(
        Duration::from_secs(60),
        "the old topic's history uploaded",
        || {
            let s = status(&broker, "late");
            (num(&s, "remote_segments") > 1).then_some(s)
        },
    );
    assert_eq!(num(&late, "remote_log_start_offset"), 0, "{late}");
}

#[test]
fn an_idle_partition_reaches_the_bucket_within_the_upload_interval() {
    const URL: &str = "s3://interval/t";
    let localstack = LocalStack::start();
    localstack.tier_init(URL);
    let etcd = EtcdServer::start();
    let broker = start_broker(&localstack, &etcd, URL);
    // Big segments that size never rolls; segment.ms stays at its week.
    create(&broker, "quiet", &["remote.upload.max.interval.ms=2000"]);
    create(&broker, "default", &[]);
    broker.cli_ok(
        &["produce", "quiet", "--acks", "all"],
        Some(&numbered_lines("q", 10)),
    );
    broker.cli_ok(
        &["produce", "default", "--acks", "all"],
        Some(&numbered_lines("d", 10)),
    );
    let s = wait_for(
        Duration::from_secs(30),
        "the idle partition's upload",
        || {
            let s = status(&broker, "quiet");
            (num(&s, "remote_log_end_offset") == 10).then_some(s)
        },
    );
    println!("quiet: {s}");
    let d = status(&broker, "default");
    assert_eq!(
        num(&d, "remote_segments"),
        0,
        "with the default hour, nothing is rolled yet: {d}"
    );
    let described = broker.cli_ok(&["topic", "describe", "default", "--format", "json"], None);
    assert!(
        described.contains("remote.upload.max.interval.ms") && described.contains("3600000"),
        "{described}"
    );
}

#[test]
fn a_broker_starts_while_the_store_is_down_and_a_deleted_topics_objects_go_once_it_is_back() {
    const URL: &str = "s3://outage/t";
    let localstack = LocalStack::start();
    localstack.tier_init(URL);
    let etcd = EtcdServer::start();
    let mut broker = start_broker(&localstack, &etcd, URL);
    create(&broker, "gone", &["segment.bytes=16384"]);
    broker.cli_ok(&["produce", "gone", "--acks", "all"], Some(&lines(0, 1000)));
    wait_for(
        Duration::from_secs(60),
        "uploads of the topic to delete",
        || (num(&status(&broker, "gone"), "remote_segments") > 1).then_some(()),
    );
    assert!(!objects(&localstack, URL, "gone").is_empty());

    // The store stops answering (SIGSTOP: connections hang). The deletion is recorded in etcd
    // and outlives the outage and a restart of the broker.
    localstack.freeze(true);
    broker.cli_ok(&["topic", "delete", "gone"], None);
    std::thread::sleep(Duration::from_secs(5));
    broker.kill9();
    broker.restart();
    wait_for(
        Duration::from_secs(60),
        "the restarted broker serving",
        || {
            broker
                .cli(&["topic", "list"], None)
                .status
                .success()
                .then_some(())
        },
    );
    assert!(
        broker
            .log_text()
            .contains("the object store does not answer"),
        "the broker said why it started without its store"
    );
    // It serves local data meanwhile.
    create(&broker, "fresh", &["segment.bytes=16384"]);
    broker.cli_ok(
        &["produce", "fresh", "--acks", "all"],
        Some(&lines(0, 1000)),
    );
    let got = consume_all(&broker, "fresh", 1000);
    assert_eq!(got.len(), 1000);
    assert_eq!(got[999], "rec-00000999-padding-to-some-forty-bytes");

    // The store answers again: tiering catches up and the deletion finishes.
    localstack.freeze(false);
    wait_for(Duration::from_secs(90), "the new topic's uploads", || {
        (num(&status(&broker, "fresh"), "remote_segments") > 1).then_some(())
    });
    wait_for(
        Duration::from_secs(90),
        "the deleted topic's objects gone",
        || objects(&localstack, URL, "gone").is_empty().then_some(()),
    );
}
