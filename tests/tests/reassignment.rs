//! The elastic-cluster issue's reassignment tests, with four real `strata serve` brokers on
//! real etcd: a partition moved off its leader under acks=all load (no send fails, every
//! acknowledged record is there once and in order, the dropped replica's files are deleted);
//! bad targets refused with a sentence; a move to a dead broker that waits, survives a SIGKILL
//! of the controller, and finishes once the broker is back; a cancel that rolls back; a
//! throttled move that takes as long as its rate says, its target SIGKILLed while it catches
//! up; a new broker filled by auto-balance and emptied by a drain.

use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_client::ProducerRecord;
use strata_tests::client::acks_all_producer;
use strata_tests::cluster::ServeCluster as Cluster;
use strata_tests::files_under;
use strata_tests::serve::TEST_SESSION_TIMEOUT;

fn cluster(name: &str) -> Cluster {
    let c = Cluster::start_n(name, 4, &["--session-timeout", TEST_SESSION_TIMEOUT]);
    c.wait(Duration::from_secs(30), "four live brokers", || {
        let info: Value = serde_json::from_str(
            &c.any_live()
                .cli_ok(&["cluster", "info", "--format", "json"], None),
        )
        .ok()?;
        let alive = info["brokers"]
            .as_array()?
            .iter()
            .filter(|b| b["alive"] == true)
            .count();
        (alive == 4 && info["controller"].as_i64()? > 0).then_some(())
    });
    c
}

/// Runs a CLI command that must fail with a sentence holding `expected`.
fn refused(c: &Cluster, args: &[&str], expected: &str) {
    let out = c.any_live().cli(args, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(expected),
        "strata {args:?}: {err}"
    );
}

/// Moves in progress, as `strata cluster reassignments --format json` lists them.
fn reassignments(c: &Cluster) -> Vec<Value> {
    let v: Value = serde_json::from_str(
        &c.any_live()
            .cli_ok(&["cluster", "reassignments", "--format", "json"], None),
    )
    .expect("reassignments answer JSON");
    v["reassignments"].as_array().expect("a list").clone()
}

fn plan_file(dir: &Path, topic: &str, partition: u32, replicas: &[i64]) -> String {
    let path = dir.join(format!("plan-{topic}-{partition}.json"));
    let plan = serde_json::json!({
        "version": 1,
        "partitions": [{"topic": topic, "partition": partition, "replicas": replicas}],
    });
    std::fs::write(&path, plan.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

fn ids(list: &[i64]) -> String {
    list.iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Files of `topic`'s partition `partition` under a broker's data directory.
fn partition_files(data_dir: &Path, topic: &str, partition: u32) -> Vec<std::path::PathBuf> {
    files_under(data_dir)
        .into_iter()
        .filter(|f| {
            let s = f.to_string_lossy();
            s.contains(&format!("/{topic}~")) && s.contains(&format!("/{partition}/"))
        })
        .collect()
}

/// Sends `n` numbered records to partition 0 of `topic` with acks=all at `rate` per second,
/// on a thread of its own: each record's acknowledged offset, or the error it failed with.
fn produce(
    brokers: String,
    topic: &'static str,
    n: u64,
    rate: u64,
    acked: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Vec<Result<i64, String>>> {
    std::thread::spawn(move || {
        strata_tests::client::block_on(async move {
            let producer = acks_all_producer(&brokers, Duration::from_millis(2)).await;
            let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 16);
            let collector = tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while let Some(delivery) = rx.recv().await {
                    let delivery: strata_client::DeliveryFuture = delivery;
                    outcomes.push(match delivery.await {
                        Ok(meta) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                            Ok(meta.offset)
                        }
                        Err(e) => Err(e.to_string()),
                    });
                }
                outcomes
            });
            let started = Instant::now();
            for i in 0..n {
                if i % 100 == 0 {
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let record = ProducerRecord::new(topic, i.to_string()).partition(0);
                let delivery = producer.send(record).await.expect("send enqueues");
                tx.send(delivery).await.unwrap();
            }
            producer.flush().await.unwrap();
            drop(tx);
            let outcomes = collector.await.unwrap();
            producer.close().await.unwrap();
            outcomes
        })
    })
}

#[test]
fn a_partition_moves_off_its_leader_under_acks_all_load_and_bad_targets_are_refused() {
    let c = cluster("reassign-load");
    let tmp = tempfile::tempdir().unwrap();
    c.create_topic("moving", 1, 3, &["min.insync.replicas=2"]);
    let (replicas, leader, _) = c.assignment("moving", 0);
    let outsider = (1..=4).find(|b| !replicas.contains(b)).unwrap();

    // Bad targets: each refused with a sentence naming what is wrong, and nothing moves.
    let reassign = |partition: &str, to: &str, expected: &str| {
        let args = [
            "partition",
            "reassign",
            "moving",
            "--partition",
            partition,
            "--replicas",
            to,
        ];
        refused(&c, &args, expected)
    };
    reassign("0", "1,2,9", "no broker with id 9 ever registered");
    reassign("0", "2,2,3", "broker 2 appears twice");
    reassign("7", "1,2,3", "partition 7 of topic");
    let broken = tmp.path().join("broken.json");
    std::fs::write(
        &broken,
        r#"{"version":1,"partitions":[{"topic":"moving"}]}"#,
    )
    .unwrap();
    let broken = broken.to_string_lossy();
    refused(
        &c,
        &["reassign", "--plan", &broken, "--execute"],
        "is not a reassignment plan",
    );
    assert_eq!(
        c.assignment("moving", 0).0,
        replicas,
        "a refused move changes nothing"
    );
    assert!(reassignments(&c).is_empty());

    // The move, under acks=all load: the leader leaves, the outsider joins.
    let acked = Arc::new(AtomicU64::new(0));
    let producer = produce(c.addresses(), "moving", 30_000, 3_000, acked.clone());
    c.wait(Duration::from_secs(30), "the producer under way", || {
        (acked.load(Ordering::Relaxed) > 3_000).then_some(())
    });
    let mut target = vec![outsider];
    target.extend(replicas.iter().filter(|b| **b != leader));
    let plan = plan_file(tmp.path(), "moving", 0, &target);
    let started = Instant::now();
    let out = c
        .any_live()
        .cli_ok(&["reassign", "--plan", &plan, "--execute"], None);
    assert!(out.contains("Current replica assignment"), "{out}");
    assert!(
        out.contains(&format!("\"replicas\":[{}]", ids(&replicas))),
        "{out}"
    );
    assert!(out.contains(&format!("to {}", ids(&target))), "{out}");
    let (now, _, isr) = c.wait(Duration::from_secs(60), "the move finished", || {
        let a = c.assignment("moving", 0);
        (a.0 == target && reassignments(&c).is_empty()).then_some(a)
    });
    let took = started.elapsed();
    let (_, new_leader, _) = c.assignment("moving", 0);
    assert!(target.contains(&new_leader) && new_leader != leader);
    assert_eq!(now, target);
    assert!(isr.iter().all(|b| target.contains(b)), "ISR {isr:?}");
    println!("moved moving/0 from {replicas:?} to {target:?} under load in {took:?}");

    let outcomes = producer.join().unwrap();
    let failed: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} sends failed, first: {}",
        failed.len(),
        failed[0]
    );
    let log = strata_tests::reads::numbers(&c.addresses(), "moving");
    assert_eq!(log.len(), outcomes.len(), "every record once");
    for (i, o) in outcomes.iter().enumerate() {
        let offset = *o.as_ref().unwrap();
        assert_eq!(
            log[offset as usize],
            (offset, i as u64),
            "record {i} at offset {offset}"
        );
    }

    // The dropped replica deleted its files; the outsider has the partition.
    c.wait(
        Duration::from_secs(20),
        "the old leader's files deleted",
        || {
            partition_files(&c.broker(leader).data_dir, "moving", 0)
                .is_empty()
                .then_some(())
        },
    );
    assert!(!partition_files(&c.broker(outsider).data_dir, "moving", 0).is_empty());
    let out = c
        .any_live()
        .cli(&["reassign", "--plan", &plan, "--verify"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("moving/0 is complete"),
        "{text}"
    );
    // Nothing to cancel now.
    let out = c
        .any_live()
        .cli_ok(&["reassign", "--plan", &plan, "--cancel"], None);
    assert!(out.contains("nothing to cancel"), "{out}");
}

#[test]
fn a_move_to_a_dead_broker_waits_survives_a_controller_kill_can_be_cancelled_and_throttles() {
    let mut c = cluster("reassign-faults");
    let tmp = tempfile::tempdir().unwrap();
    c.create_topic("slow", 1, 2, &[]);
    let lines: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("{i:0>6}-{}\n", "x".repeat(93)).into_bytes())
        .collect();
    c.any_live()
        .cli_ok(&["produce", "slow", "--partition", "0"], Some(&lines));
    let (replicas, _, _) = c.assignment("slow", 0);
    let mut outsiders = (1..=4).filter(|b| !replicas.contains(b));
    let (dead, spare) = (outsiders.next().unwrap(), outsiders.next().unwrap());

    // A move to a broker that is down waits, listed with everything still to copy.
    c.broker_mut(dead).kill9();
    c.wait(Duration::from_secs(30), "a live controller", || {
        let now = c.controller();
        (now > 0 && now != dead).then_some(())
    });
    let target = vec![dead, replicas[1]];
    let out = c.any_live().cli_ok(
        &[
            "partition",
            "reassign",
            "slow",
            "--partition",
            "0",
            "--replicas",
            &ids(&target),
        ],
        None,
    );
    assert!(out.contains("Reassigning slow/0"), "{out}");
    let listed = c.wait(Duration::from_secs(20), "the move listed", || {
        reassignments(&c).into_iter().next()
    });
    assert_eq!(listed["to"], serde_json::json!(target));
    assert_eq!(listed["from"], serde_json::json!(replicas));
    assert!(
        listed["bytes_left"].as_u64().unwrap() > 1_000_000,
        "{listed}"
    );
    assert_eq!(listed["offsets_left"], 20_000, "{listed}");
    let text = c.any_live().cli_ok(&["cluster", "reassignments"], None);
    assert!(
        text.contains("BYTES LEFT") && text.contains("slow"),
        "{text}"
    );

    // The controller dies mid-move; the next one keeps the move and finishes it once the
    // target broker is back.
    let controller = c.controller();
    c.broker_mut(controller).kill9();
    c.wait(Duration::from_secs(30), "a new controller", || {
        let now = c.controller();
        (now > 0 && now != controller).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        reassignments(&c).len(),
        1,
        "the move outlives the controller"
    );
    assert_eq!(
        c.assignment("slow", 0).0.len(),
        3,
        "original replicas plus the added one"
    );
    c.broker_mut(dead).restart();
    c.broker_mut(controller).restart();
    c.wait(Duration::from_secs(60), "the move finished", || {
        (c.assignment("slow", 0).0 == target && reassignments(&c).is_empty()).then_some(())
    });
    assert_eq!(
        c.read(spare, "slow", 0, 20_000).len(),
        20_000,
        "every record after the move"
    );

    // A cancel rolls a waiting move back to the original replicas.
    c.broker_mut(spare).kill9();
    c.wait(Duration::from_secs(30), "a live controller", || {
        let now = c.controller();
        (now > 0 && now != spare).then_some(())
    });
    let before = c.assignment("slow", 0).0;
    let moved: Vec<i64> = vec![spare, before[1]];
    let plan = plan_file(tmp.path(), "slow", 0, &moved);
    c.any_live()
        .cli_ok(&["reassign", "--plan", &plan, "--execute"], None);
    let out = c
        .any_live()
        .cli(&["reassign", "--plan", &plan, "--verify"], None);
    assert_eq!(
        out.status.code(),
        Some(3),
        "in progress: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = c
        .any_live()
        .cli_ok(&["reassign", "--plan", &plan, "--cancel"], None);
    assert!(
        out.contains("Cancelled the reassignment of slow/0"),
        "{out}"
    );
    assert_eq!(c.assignment("slow", 0).0, before);
    assert!(reassignments(&c).is_empty());
    c.broker_mut(spare).restart();

    // A throttled move copies at about its rate: ~2 MB at 512 KiB/s takes over 2 s.
    let target = vec![spare, before[1]];
    let started = Instant::now();
    c.any_live().cli_ok(
        &[
            "partition",
            "reassign",
            "slow",
            "--partition",
            "0",
            "--replicas",
            &ids(&target),
            "--throttle",
            "512KiB",
        ],
        None,
    );
    let listed = c.wait(Duration::from_secs(10), "the throttled move listed", || {
        reassignments(&c).into_iter().next()
    });
    assert_eq!(listed["throttle_bytes_per_sec"], 512 * 1024);
    // The target broker dies while it catches up: the move waits, and finishes once it is
    // back (its copy resumes where its log ends).
    c.wait(
        Duration::from_secs(20),
        "the new replica catching up",
        || {
            let m = reassignments(&c).into_iter().next()?;
            let end = m["catching_up"][0]["log_end_offset"].as_i64()?;
            (end > 0 && m["offsets_left"].as_i64()? > 0).then_some(())
        },
    );
    c.broker_mut(spare).kill9();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(reassignments(&c).len(), 1, "the move waits for its target");
    assert_ne!(c.assignment("slow", 0).0, target);
    c.broker_mut(spare).restart();
    c.wait(
        Duration::from_secs(60),
        "the throttled move finished",
        || (c.assignment("slow", 0).0 == target && reassignments(&c).is_empty()).then_some(()),
    );
    let took = started.elapsed();
    println!("throttled move of ~2 MB at 512 KiB/s took {took:?}");
    assert!(
        took > Duration::from_secs(2),
        "the throttle held nothing back: {took:?}"
    );
    assert_eq!(c.read(spare, "slow", 0, 20_000).len(), 20_000);
}

/// How many replicas of `topic` each broker 1..=4 hosts.
fn hosted(c: &Cluster, topic: &str, partitions: usize) -> [usize; 4] {
    let mut n = [0; 4];
    for p in 0..partitions {
        for r in c.assignment(topic, p).0 {
            n[(r - 1) as usize] += 1;
        }
    }
    n
}

#[test]
fn a_new_broker_gets_partitions_by_auto_balance_and_a_drain_empties_it() {
    let flags = [
        "--session-timeout",
        TEST_SESSION_TIMEOUT,
        "--auto-balance",
        "--leader-rebalance-interval",
        "2s",
    ];
    let mut c = Cluster::start_n("reassign-balance", 3, &flags);
    c.create_topic("spread", 6, 2, &[]);
    assert_eq!(hosted(&c, "spread", 6), [4, 4, 4, 0]);
    let out = c
        .any_live()
        .cli_ok(&["cluster", "balance", "--dry-run"], None);
    assert!(out.contains("Nothing to move"), "{out}");

    // A new broker: the controller balances on its own, 12 replicas over four brokers.
    let etcd = c.etcd.endpoint.clone();
    c.brokers.push(strata_tests::serve::ServeBroker::start_with(
        4,
        &etcd,
        "reassign-balance",
        &flags,
    ));
    c.wait(Duration::from_secs(60), "broker 4 given its share", || {
        (hosted(&c, "spread", 6) == [3, 3, 3, 3] && reassignments(&c).is_empty()).then_some(())
    });
    let leaders: Vec<i64> = (0..6).map(|p| c.assignment("spread", p).0[0]).collect();
    for b in 1..=4 {
        let n = leaders.iter().filter(|l| **l == b).count();
        assert!(
            (1..=2).contains(&n),
            "broker {b} is preferred leader of {n}: {leaders:?}"
        );
    }
    let out = c
        .any_live()
        .cli_ok(&["cluster", "balance", "--dry-run"], None);
    assert!(out.contains("Nothing to move"), "{out}");

    // Drain it again: the dry run prints a Kafka plan; the drain empties it, and balancing
    // leaves it empty while it runs.
    let plan: Value = serde_json::from_str(&c.any_live().cli_ok(
        &["cluster", "drain", "4", "--dry-run", "--format", "json"],
        None,
    ))
    .expect("a plan in JSON");
    assert_eq!(plan["version"], 1);
    let planned = plan["partitions"].as_array().unwrap();
    assert_eq!(planned.len(), 3, "{plan}");
    assert!(planned
        .iter()
        .all(|p| !p["replicas"].as_array().unwrap().contains(&4.into())));
    assert_eq!(hosted(&c, "spread", 6)[3], 3, "a dry run moves nothing");
    let out = c
        .any_live()
        .cli_ok(&["cluster", "drain", "4", "--wait"], None);
    assert!(out.contains("Broker 4 hosts no replica"), "{out}");
    assert_eq!(hosted(&c, "spread", 6)[3], 0);
    std::thread::sleep(Duration::from_secs(5));
    if hosted(&c, "spread", 6)[3] != 0 {
        c.print_logs();
        panic!("auto-balance refilled a drained broker");
    }
    refused(
        &c,
        &["cluster", "drain", "9"],
        "no broker with id 9 ever registered",
    );
}
