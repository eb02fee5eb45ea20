//! Consumer groups against etcd and three `strata serve` brokers, with `strata consume -g`
//! processes as members and a producer writing numbered, keyed records all along:
//! - three members split six partitions two each; one is SIGKILLed; within the session timeout
//!   its partitions move to the others, which continue from the committed offsets: nothing is
//!   skipped or lost, duplicates are counted (at-least-once), and the rebalance pause (death →
//!   first record of its partitions consumed elsewhere) is measured, eager and cooperative;
//! - the coordinator's broker is SIGKILLed: the group finds its new coordinator and keeps its
//!   offsets; partitions added to the topic are spread over the members;
//! - bad input: seeking a group with live members, an unknown group, a commit for a partition
//!   the member does not own.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use strata_tests::etcd::EtcdServer;
use strata_tests::procs::{ConsumerProc, ProducerProc, Seen};
use strata_tests::serve::ServeBroker;
use strata_tests::wait_for;

/// 100 records every 20 ms: 5,000 records/s spread over six partitions by key.
const PER_TICK: u64 = 100;
const TICK: Duration = Duration::from_millis(20);

fn cluster(name: &str) -> (EtcdServer, Vec<ServeBroker>) {
    let etcd = EtcdServer::start();
    let brokers = (1..=3)
        .map(|id| ServeBroker::start(id, &etcd.endpoint, name))
        .collect();
    (etcd, brokers)
}

fn all_addresses(brokers: &[ServeBroker]) -> String {
    brokers
        .iter()
        .filter(|b| b.is_running())
        .map(|b| b.addr.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn describe(brokers: &[ServeBroker], group: &str) -> Value {
    let out = strata_tests::run_cli_ok(
        &all_addresses(brokers),
        &["group", "describe", group, "--format", "json"],
        None,
    );
    serde_json::from_str(&out).unwrap()
}

/// `describe`, or `None` while the group does not exist yet or has no coordinator.
fn try_describe(brokers: &[ServeBroker], group: &str) -> Option<Value> {
    let out = strata_tests::run_cli(
        &all_addresses(brokers),
        &["group", "describe", group, "--format", "json"],
        None,
    );
    serde_json::from_slice(&out.stdout).ok()
}

/// A six-partition topic, replicated three times, acks=all needing two replicas.
/// Creates `topic` (6 partitions, RF 3) once all three brokers have registered: a broker
/// serves its port a moment before etcd lists it as live.
fn create_topic(brokers: &[ServeBroker], topic: &str) {
    let args = [
        "topic",
        "create",
        topic,
        "-p",
        "6",
        "-r",
        "3",
        "-c",
        "min.insync.replicas=2",
    ];
    wait_for(Duration::from_secs(30), "three live brokers", || {
        let out = brokers[0].cli(&args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("number of live brokers"),
            "topic create {topic}: {stderr}"
        );
        out.status.success().then_some(())
    });
}

/// `n` members `member-<i>` of `group` reading `topic` from the start when nothing is
/// committed, with a 3 s session timeout and the `extra` flags.
fn start_members(
    addresses: &str,
    topic: &str,
    group: &str,
    n: usize,
    extra: &[&str],
) -> Vec<ConsumerProc> {
    (0..n)
        .map(|i| {
            let client_id = format!("member-{i}");
            let mut args = vec![
                "--session-timeout",
                "3s",
                "--offset",
                "start",
                "--client-id",
                &client_id,
            ];
            args.extend_from_slice(extra);
            ConsumerProc::start(addresses, topic, group, &args)
        })
        .collect()
}

/// Member (by client id) -> its partitions, once the group is Stable with `members` members
/// that together own `partitions` partitions.
fn stable_assignment(
    brokers: &[ServeBroker],
    group: &str,
    members: usize,
    partitions: usize,
) -> BTreeMap<String, Vec<u32>> {
    wait_for(Duration::from_secs(40), "a stable group", || {
        let d = try_describe(brokers, group)?;
        let by_client: BTreeMap<String, Vec<u32>> = d["members"]
            .as_array()?
            .iter()
            .map(|m| {
                let parts = m["assignment"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["partition"].as_u64().unwrap() as u32)
                    .collect();
                (m["client_id"].as_str().unwrap().to_string(), parts)
            })
            .collect();
        let owned: usize = by_client.values().map(Vec::len).sum();
        (d["state"] == "Stable" && by_client.len() == members && owned == partitions)
            .then_some(by_client)
    })
}

/// Waits until the members together have seen `produced` distinct records.
fn wait_until_consumed(members: &[ConsumerProc], produced: u64) {
    wait_for(Duration::from_secs(60), "the members caught up", || {
        let distinct: BTreeSet<String> = members
            .iter()
            .flat_map(|m| m.snapshot().into_iter().map(|s| s.value))
            .collect();
        (distinct.len() as u64 >= produced).then_some(())
    });
}

/// Every produced record seen at least once, every partition's offsets contiguous from 0;
/// returns (records consumed in all, distinct records).
fn check_nothing_lost(all: &[Seen], produced: u64) -> (usize, usize) {
    let distinct: BTreeSet<&str> = all.iter().map(|s| s.value.as_str()).collect();
    let missing: Vec<u64> = (0..produced)
        .filter(|i| !distinct.contains(format!("rec-{i:09}").as_str()))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "records never consumed, e.g. {missing:?}"
    );
    let mut offsets: BTreeMap<u32, BTreeSet<i64>> = BTreeMap::new();
    for s in all {
        offsets.entry(s.partition).or_default().insert(s.offset);
    }
    for (p, seen) in &offsets {
        let last = *seen.iter().next_back().unwrap();
        assert_eq!(
            seen.len() as i64,
            last + 1,
            "partition {p}: offsets 0..={last} all consumed"
        );
    }
    (all.len(), distinct.len())
}

/// Longest time, over `partitions`, between two records of one partition received within
/// `window`: how long the rebalance stopped consumption of partitions that stayed put.
fn longest_stall(seen: &[Seen], partitions: &[u32], window: (Instant, Instant)) -> Duration {
    partitions
        .iter()
        .map(|p| {
            let mut times: Vec<Instant> = seen
                .iter()
                .filter(|s| s.partition == *p && s.at >= window.0 && s.at <= window.1)
                .map(|s| s.at)
                .collect();
            times.sort();
            times
                .windows(2)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or_default()
        })
        .max()
        .unwrap_or_default()
}

struct KillReport {
    pause: Duration,
    survivors_stall: Duration,
    consumed: usize,
    distinct: usize,
    produced: u64,
}

/// Three members of `group` (strategy `strategy`) on a fresh six-partition topic; one is
/// SIGKILLed mid-stream.
fn kill_one_of_three(brokers: &[ServeBroker], topic: &str, strategy: &str) -> KillReport {
    let group = format!("{topic}-readers");
    create_topic(brokers, topic);
    let addresses = all_addresses(brokers);
    let producer = ProducerProc::start(&addresses, topic, 0, PER_TICK, TICK);
    let mut members = start_members(&addresses, topic, &group, 3, &["--strategy", strategy]);
    let before = stable_assignment(brokers, &group, 3, 6);
    assert!(
        before.values().all(|parts| parts.len() == 2),
        "two partitions each: {before:?}"
    );
    wait_for(Duration::from_secs(20), "every member consuming", || {
        members.iter().all(|m| m.count() > 0).then_some(())
    });
    // Let auto-commit (every 5 s) store positions.
    std::thread::sleep(Duration::from_secs(6));
    let victim_parts = before["member-0"].clone();
    let killed_at = Instant::now();
    members[0].kill9();
    let after = stable_assignment(brokers, &group, 2, 6);
    println!("{strategy}: before {before:?}, after the kill {after:?}");
    // Partitions a survivor owned before and after: an eager rebalance stops them too.
    let kept: Vec<u32> = before
        .iter()
        .filter(|(member, _)| member.as_str() != "member-0")
        .flat_map(|(member, parts)| {
            parts
                .iter()
                .copied()
                .filter(|p| after.get(member).is_some_and(|now| now.contains(p)))
                .collect::<Vec<_>>()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    let produced = producer.finish();
    wait_until_consumed(&members, produced);
    let survivors: Vec<Seen> = members[1..].iter().flat_map(|m| m.snapshot()).collect();
    let pause = survivors
        .iter()
        .filter(|s| victim_parts.contains(&s.partition) && s.at >= killed_at)
        .map(|s| s.at - killed_at)
        .min()
        .expect("the victim's partitions were consumed by the survivors");
    let survivors_stall = longest_stall(
        &survivors,
        &kept,
        (killed_at, killed_at + Duration::from_secs(10)),
    );
    let all: Vec<Seen> = members.iter().flat_map(|m| m.snapshot()).collect();
    let (consumed, distinct) = check_nothing_lost(&all, produced);
    for m in &mut members[1..] {
        m.stop();
    }
    KillReport {
        pause,
        survivors_stall,
        consumed,
        distinct,
        produced,
    }
}

#[test]
fn a_killed_member_s_partitions_move_and_nothing_is_skipped_eager_and_cooperative() {
    let (_etcd, brokers) = cluster("groups-kill");
    for (topic, strategy) in [("eager", "range"), ("coop", "cooperative-sticky")] {
        let r = kill_one_of_three(&brokers, topic, strategy);
        println!(
            "{strategy}: produced {}, consumed {} ({} distinct): lost 0, duplicated {}; \
             rebalance pause (SIGKILL -> first record of its partitions consumed elsewhere) \
             {:.2} s; longest stall of a partition the survivors kept {:.2} s",
            r.produced,
            r.consumed,
            r.distinct,
            r.consumed - r.distinct,
            r.pause.as_secs_f64(),
            r.survivors_stall.as_secs_f64(),
        );
        assert!(
            r.pause < Duration::from_secs(15),
            "{strategy}: the partitions moved within the session timeout and a rebalance: {:?}",
            r.pause
        );
    }
}

#[test]
fn the_group_survives_its_coordinator_and_refuses_bad_requests() {
    let (_etcd, mut brokers) = cluster("groups-coord");
    let topic = "failover";
    let group = "failover-readers";
    create_topic(&brokers, topic);
    brokers[0].cli_ok(&["topic", "create", "other", "-p", "1"], None);
    let addresses = all_addresses(&brokers);
    let producer = ProducerProc::start(&addresses, topic, 0, PER_TICK, TICK);
    let mut members = start_members(&addresses, topic, group, 2, &[]);
    stable_assignment(&brokers, group, 2, 6);
    std::thread::sleep(Duration::from_secs(6));

    // Bad requests while the group is live.
    let out = strata_tests::run_cli(&addresses, &["group", "seek", group, "--to", "start"], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("live member"), "{stderr}");
    let out = strata_tests::run_cli(&addresses, &["group", "describe", "no-such-group"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("group no-such-group does not exist"));
    let out = strata_tests::run_cli(&addresses, &["group", "delete", group], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("live member"));
    commit_of_an_unowned_partition_is_refused(&addresses);

    let before = describe(&brokers, group);
    let coordinator = before["coordinator"].as_i64().unwrap() as usize;
    let committed_before: BTreeMap<u64, i64> = before["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| Some((o["partition"].as_u64()?, o["committed"].as_i64()?)))
        .collect();
    assert_eq!(committed_before.len(), 6, "offsets committed: {before}");
    brokers[coordinator - 1].kill9();
    let after = wait_for(Duration::from_secs(30), "a new coordinator", || {
        let d = try_describe(&brokers, group)?;
        (d["coordinator"].as_i64()? as usize != coordinator && d["members"].as_array()?.len() == 2)
            .then_some(d)
    });
    for o in after["offsets"].as_array().unwrap() {
        let p = o["partition"].as_u64().unwrap();
        assert!(
            o["committed"].as_i64().unwrap() >= committed_before[&p],
            "partition {p}: committed offset kept across the coordinator's death: {after}"
        );
    }
    println!(
        "coordinator {coordinator} killed: broker {} took over at generation {} (was {})",
        after["coordinator"], after["generation"], before["generation"]
    );
    std::thread::sleep(Duration::from_secs(3));
    let produced = producer.finish();
    wait_until_consumed(&members, produced);
    let all: Vec<Seen> = members.iter().flat_map(|m| m.snapshot()).collect();
    let (consumed, distinct) = check_nothing_lost(&all, produced);
    println!(
        "coordinator failover: produced {produced}, consumed {consumed}, lost 0, duplicated {}",
        consumed - distinct
    );
    // The dead broker comes back; more partitions: the group rebalances over them.
    brokers[coordinator - 1].restart();
    strata_tests::run_cli_ok(
        &all_addresses(&brokers),
        &["topic", "add-partitions", topic, "--total", "8"],
        None,
    );
    let grown = stable_assignment(&brokers, group, 2, 8);
    println!("after adding partitions: {grown:?}");
    for m in &mut members {
        m.stop();
    }
    wait_for(
        Duration::from_secs(10),
        "the group empty after its members left",
        || (describe(&brokers, group)["state"] == "Empty").then_some(()),
    );
    let out = strata_tests::run_cli_ok(
        &all_addresses(&brokers),
        &["group", "seek", group, "--to", "start", "--topic", topic],
        None,
    );
    assert_eq!(out.lines().count(), 9, "header and eight partitions: {out}");
    let d = describe(&brokers, group);
    assert!(d["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["committed"] == 0));
}

/// A member's commit for a partition it was not assigned names the partition.
fn commit_of_an_unowned_partition_is_refused(brokers: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = strata_client::ConsumerConfig::new(strata_client::ClientConfig::new(
            brokers.split(','),
        ));
        let consumer = strata_client::Consumer::connect(config).await.unwrap();
        let mut settings = strata_client::GroupSettings::new("solo");
        settings.session_timeout = Duration::from_secs(3);
        settings.heartbeat_interval = Duration::from_secs(1);
        let mut member = consumer.subscribe(settings, &["failover"]).unwrap();
        while member.assignment().is_empty() {
            member.poll(Duration::from_millis(200)).await.unwrap();
        }
        let err = member
            .commit_offsets_sync(&[(("other".to_string(), 0), 0)])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not own other/0"), "{err}");
        member.close().await.unwrap();
    });
}
