//! The Rust `GroupConsumer` against `strata dev` (the embedded coordinator): rebalance
//! callbacks, auto.offset.reset, manual async commits, pause/resume, and a member that stops
//! polling for longer than max.poll.interval losing its partitions to the group.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_client::{
    ClientConfig, Consumer, ConsumerConfig, GroupConsumer, GroupSettings, OffsetReset,
    RebalanceEvent,
};
use strata_tests::DevBroker;

fn settings(group: &str, reset: OffsetReset) -> GroupSettings {
    let mut s = GroupSettings::new(group);
    s.session_timeout = Duration::from_secs(3);
    s.heartbeat_interval = Duration::from_millis(500);
    s.auto_offset_reset = reset;
    s
}

async fn member(broker: &DevBroker, settings: GroupSettings) -> GroupConsumer {
    let config = ConsumerConfig::new(ClientConfig::new([broker.addr.to_string()]));
    let consumer = Consumer::connect(config).await.unwrap();
    consumer.subscribe(settings, &["events"]).unwrap()
}

/// Polls until `n` records came back (or panics after 20 s).
async fn take(m: &mut GroupConsumer, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} records",
            out.len()
        );
        for r in m.poll(Duration::from_millis(200)).await.unwrap() {
            out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_consumer_behaves_like_kafkas() {
    let broker = DevBroker::start();
    broker.cli_ok(&["topic", "create", "events", "-p", "2"], None);
    let input: String = (0..100).map(|i| format!("e{i:03}\n")).collect();
    broker.cli_ok(
        &["produce", "events", "--partition", "0"],
        Some(input.as_bytes()),
    );

    // latest: a new group starts after what exists; earliest: before it.
    let mut late = member(&broker, settings("late", OffsetReset::Latest)).await;
    assert!(late
        .poll(Duration::from_millis(1500))
        .await
        .unwrap()
        .is_empty());
    late.close().await.unwrap();

    let mut m = member(&broker, settings("early", OffsetReset::Earliest)).await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    m.on_rebalance(Box::new(move |e: &RebalanceEvent| {
        sink.lock().unwrap().push(e.clone())
    }));
    let got = take(&mut m, 100).await;
    assert_eq!(got.len(), 100);
    assert_eq!(got[0], "e000");
    assert_eq!(
        events.lock().unwrap()[0],
        RebalanceEvent::Assigned(vec![("events".into(), 0), ("events".into(), 1)])
    );

    // A manual, asynchronous commit lands.
    m.commit_async().await.unwrap().unwrap();
    assert_eq!(m.committed("events", 0).await.unwrap(), Some(100));

    // Paused partitions return nothing until resumed.
    m.pause(&[("events".into(), 0)]).unwrap();
    broker.cli_ok(
        &["produce", "events", "--partition", "0"],
        Some(b"paused\n"),
    );
    assert!(m
        .poll(Duration::from_millis(1000))
        .await
        .unwrap()
        .is_empty());
    m.resume(&[("events".into(), 0)]).unwrap();
    assert_eq!(take(&mut m, 1).await, vec!["paused".to_string()]);

    // A second member: the partitions split, one each.
    let mut other = member(&broker, settings("early", OffsetReset::Earliest)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while m.assignment().len() != 1 || other.assignment().len() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no split: {:?} / {:?}",
            m.assignment(),
            other.assignment()
        );
        m.poll(Duration::from_millis(100)).await.unwrap();
        other.poll(Duration::from_millis(100)).await.unwrap();
    }
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, RebalanceEvent::Revoked(_))));

    // `other` stops polling past max.poll.interval: it leaves, `m` gets both partitions back,
    // and `other` learns on its next poll that it lost its partition.
    other.close().await.unwrap();
    let mut slow_settings = settings("early", OffsetReset::Earliest);
    slow_settings.max_poll_interval = Duration::from_secs(2);
    let mut slow = member(&broker, slow_settings).await;
    let lost = Arc::new(Mutex::new(Vec::new()));
    let sink = lost.clone();
    slow.on_rebalance(Box::new(move |e: &RebalanceEvent| {
        if let RebalanceEvent::Lost(p) = e {
            sink.lock().unwrap().extend(p.clone())
        }
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while slow.assignment().is_empty() || m.assignment().len() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "slow never joined");
        m.poll(Duration::from_millis(100)).await.unwrap();
        slow.poll(Duration::from_millis(100)).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while m.assignment().len() != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle member kept its partition"
        );
        m.poll(Duration::from_millis(200)).await.unwrap();
    }
    slow.poll(Duration::from_millis(100)).await.unwrap();
    assert_eq!(
        lost.lock().unwrap().len(),
        1,
        "the idle member lost its partition"
    );
    slow.close().await.unwrap();
    m.close().await.unwrap();
}
