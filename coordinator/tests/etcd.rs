//! The coordinator against a real etcd, started by each test on its own ports and data
//! directory (see `strata_tests::etcd`): the conformance suite, and what only a real server
//! shows: unreachable endpoints, leases across an etcd outage, watches across a restart.
//!
//! These tests fail when etcd cannot be started; they never skip.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_coordinator::{Coordinator, CoordinatorError, EtcdCoordinator, EtcdOptions, Expect};
use strata_tests::etcd::EtcdServer;
use tokio::time::timeout;

async fn connect(etcd: &EtcdServer, options: EtcdOptions) -> EtcdCoordinator {
    EtcdCoordinator::connect(std::slice::from_ref(&etcd.endpoint), "test", options)
        .await
        .expect("connecting to the test etcd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let etcd = EtcdServer::start();
    let store = connect(&etcd, EtcdOptions::default()).await;
    strata_coordinator::conformance::run_all(&store).await;
    // Keys live under /strata/<cluster>/: another cluster sees none of them.
    let other = EtcdCoordinator::connect(
        std::slice::from_ref(&etcd.endpoint),
        "other",
        EtcdOptions::default(),
    )
    .await
    .unwrap();
    assert!(other.list("").await.unwrap().is_empty());
    assert!(!store.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_etcd_is_a_clear_error_in_time() {
    let options = EtcdOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
    };
    // Nothing listens: refused at once.
    let port = strata_tests::free_port();
    let endpoint = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let err = EtcdCoordinator::connect(std::slice::from_ref(&endpoint), "test", options)
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, CoordinatorError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains(&endpoint), "{err}");

    // Something accepts but never answers: the timeout ends it.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let err = EtcdCoordinator::connect(std::slice::from_ref(&endpoint), "test", options)
        .await
        .expect_err("a silent endpoint is not etcd");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, CoordinatorError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains(&endpoint), "{err}");
}

/// A registration and a leadership survive etcd being down longer than their TTL: etcd
/// refreshes lease TTLs when it restarts, so the outage costs nothing as long as the keepalive
/// keeps trying. (A SIGSTOP pause is different: on SIGCONT etcd's clock
/// has moved on and it expires the lease at once, so the long outage here is a kill + restart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_an_etcd_outage() {
    let mut etcd = EtcdServer::start();
    let options = EtcdOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
    };
    let store = connect(&etcd, options).await;
    let lease = store
        .register("brokers/0", Bytes::from("b0"), Duration::from_secs(5))
        .await
        .unwrap();
    let leadership = store
        .campaign("controller", Bytes::from("c0"), Duration::from_secs(5))
        .await
        .unwrap();

    // A paused etcd: calls fail within the request timeout instead of hanging.
    etcd.pause();
    let started = Instant::now();
    let err = store.get("brokers/0").await.expect_err("etcd is paused");
    assert!(matches!(err, CoordinatorError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains(&etcd.endpoint), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    etcd.resume();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!lease.is_lost(), "a short pause must not lose the lease");

    // Down for 8 s, longer than the TTL.
    etcd.kill();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        !lease.is_lost(),
        "an outage must not declare the lease lost"
    );
    assert!(
        !leadership.is_lost(),
        "an outage must not lose the leadership"
    );
    etcd.restart();
    // Give the keepalive a few rounds to get through.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!lease.is_lost(), "the lease survived the outage");
    assert!(!leadership.is_lost(), "the leadership survived the outage");
    let leader = store.leader("controller").await.unwrap();
    assert_eq!(leader, Some(Bytes::from("c0")));
    leadership.release().await.unwrap();
    let got = store.get("brokers/0").await.unwrap();
    assert_eq!(got.map(|v| v.value), Some(Bytes::from("b0")));
    lease.release().await.unwrap();
    assert!(store.get("brokers/0").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_ends_on_an_etcd_restart_and_a_new_one_works() {
    let mut etcd = EtcdServer::start();
    let store = connect(&etcd, EtcdOptions::default()).await;
    let mut watch = store.watch("w/", &[]).await.unwrap();
    store
        .put("w/1", Bytes::from("1"), Expect::Absent)
        .await
        .unwrap();
    timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("notified")
        .unwrap();

    etcd.kill();
    let ended = timeout(Duration::from_secs(20), watch.changed())
        .await
        .expect("the watch reports the broken stream");
    let err = ended.expect_err("etcd is gone: no change to report");
    assert!(matches!(err, CoordinatorError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains(&etcd.endpoint), "{err}");

    etcd.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut watch = loop {
        match store.watch("w/", &[]).await {
            Ok(w) => break w,
            Err(e) => {
                assert!(Instant::now() < deadline, "no watch after the restart: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    store
        .put("w/2", Bytes::from("2"), Expect::Absent)
        .await
        .unwrap();
    timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("the new watch notifies")
        .unwrap();
    assert_eq!(
        store.list("w/").await.unwrap().len(),
        2,
        "data survived the restart"
    );
}

/// A leader deposed without noticing (its key gone: the lease expired while it was frozen)
/// must not write: a commit that carries its fence fails on the fence key, while the new
/// leader's fenced commits succeed. The controller puts its fence on every partition write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_fenced_writes_fail() {
    let etcd = EtcdServer::start();
    let a = connect(&etcd, EtcdOptions::default()).await;
    let b = connect(&etcd, EtcdOptions::default()).await;
    let lease_a = a
        .campaign("ctl", Bytes::from_static(b"a"), Duration::from_secs(10))
        .await
        .unwrap();
    let fence_a = lease_a.fence().expect("an etcd leadership has a fence");
    a.commit(vec![
        fence_a.clone(),
        strata_coordinator::Write::put("p", Bytes::from_static(b"1"), Expect::Absent),
    ])
    .await
    .expect("the leader's fenced write");
    // A's leadership ends behind its back (as when its lease expires while it is frozen).
    b.delete(&fence_a.key, Expect::Any).await.unwrap();
    let lease_b = timeout(
        Duration::from_secs(10),
        b.campaign("ctl", Bytes::from_static(b"b"), Duration::from_secs(10)),
    )
    .await
    .expect("B leads once A's key is gone")
    .unwrap();
    let p = a.get("p").await.unwrap().unwrap();
    let err = a
        .commit(vec![
            fence_a.clone(),
            strata_coordinator::Write::put(
                "p",
                Bytes::from_static(b"2"),
                Expect::Revision(p.revision),
            ),
        ])
        .await
        .expect_err("a deposed leader's write");
    assert!(
        matches!(&err, CoordinatorError::Conflict { key, .. } if *key == fence_a.key),
        "{err}"
    );
    assert_eq!(
        a.get("p").await.unwrap().unwrap().value,
        Bytes::from_static(b"1")
    );
    b.commit(vec![
        lease_b.fence().unwrap(),
        strata_coordinator::Write::put("p", Bytes::from_static(b"3"), Expect::Revision(p.revision)),
    ])
    .await
    .expect("the new leader's fenced write");
    assert_eq!(
        b.get("p").await.unwrap().unwrap().value,
        Bytes::from_static(b"3")
    );
}

/// Compaction forgets old revisions (etcd then refuses reads at them) and keeps every current
/// value; compacting to the same revision again is not an error (two controllers may race).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_forgets_old_revisions_and_keeps_current_values() {
    let etcd = EtcdServer::start();
    let store = connect(&etcd, EtcdOptions::default()).await;
    let first = store
        .put("k", Bytes::from_static(b"0"), Expect::Any)
        .await
        .unwrap();
    for i in 1..=50 {
        store
            .put("k", Bytes::from(i.to_string()), Expect::Any)
            .await
            .unwrap();
    }
    let now = store.revision().await.unwrap();
    assert!(now >= first + 50, "{now} after {first}");
    store.compact(now).await.unwrap();
    store.compact(now).await.unwrap();
    assert_eq!(
        store.get("k").await.unwrap().unwrap().value,
        Bytes::from_static(b"50")
    );
    // Read through etcd's JSON gateway (etcdctl is not installed everywhere the suite runs).
    assert!(
        !etcd.has_revision(first as u64),
        "a read at revision {first} still works after compacting to {now}"
    );
    assert!(
        etcd.has_revision(now as u64),
        "a read at the current revision {now} fails"
    );
}
