//! Scenarios every [`Coordinator`] implementation must pass. Each is a `pub async fn` that
//! panics with a message on failure; tests call [`run_all`] with a fresh store of each kind.
//!
//! The scenarios leave no registration or leadership behind (only plain keys), so a store can
//! be checked after them (e.g. reopened).

use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;

use crate::{Changes, Coordinator, CoordinatorError, Event, Expect, Write};

/// How long a notification or an election may take to arrive.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long "nothing happens" is watched for.
const QUIET: Duration = Duration::from_millis(500);
/// The TTL of the leases of the scenarios (expiry itself is tested with a shorter one).
const TTL: Duration = Duration::from_secs(5);

/// Runs every scenario against `store`, which must start empty.
pub async fn run_all(store: &dyn Coordinator) {
    create_if_absent(store).await;
    compare_and_swap(store).await;
    atomic_commit(store).await;
    check_entries_condition_without_writing(store).await;
    list_by_prefix(store).await;
    long_listing_is_whole_and_ordered(store).await;
    conditional_delete(store).await;
    watch_notifies(store).await;
    watch_reports_each_change(store).await;
    register_conflicts_and_releases(store).await;
    abandoned_registration_expires(store).await;
    registration_lost_when_its_key_is_deleted(store).await;
    campaign_waits_for_the_leader(store).await;
}

/// A create-if-absent succeeds once, then fails with a conflict.
pub async fn create_if_absent(store: &dyn Coordinator) {
    let rev = store
        .put("cia/a", Bytes::from("1"), Expect::Absent)
        .await
        .expect("first create-if-absent succeeds");
    let got = store.get("cia/a").await.unwrap().expect("key exists");
    assert_eq!(got.value, Bytes::from("1"));
    assert_eq!(got.revision, rev);
    let err = store
        .put("cia/a", Bytes::from("2"), Expect::Absent)
        .await
        .expect_err("second create-if-absent must conflict");
    assert!(matches!(err, CoordinatorError::Conflict { .. }), "{err}");
    assert_eq!(
        store.get("cia/a").await.unwrap().unwrap().value,
        Bytes::from("1")
    );
}

/// A write carrying a stale revision is refused; one with the current revision wins.
pub async fn compare_and_swap(store: &dyn Coordinator) {
    let r1 = store
        .put("cas/k", Bytes::from("v1"), Expect::Absent)
        .await
        .unwrap();
    let r2 = store
        .put("cas/k", Bytes::from("v2"), Expect::Revision(r1))
        .await
        .expect("CAS on the current revision succeeds");
    assert!(r2 > r1, "revisions grow: {r1} then {r2}");
    let err = store
        .put("cas/k", Bytes::from("stale"), Expect::Revision(r1))
        .await
        .expect_err("CAS on a stale revision must conflict");
    assert!(matches!(err, CoordinatorError::Conflict { .. }), "{err}");
    let got = store.get("cas/k").await.unwrap().unwrap();
    assert_eq!((got.value, got.revision), (Bytes::from("v2"), r2));
    let err = store
        .put("cas/missing", Bytes::from("x"), Expect::Revision(r2))
        .await
        .expect_err("CAS on a missing key must conflict");
    assert!(matches!(err, CoordinatorError::Conflict { .. }), "{err}");
}

/// A commit applies all its writes or none.
pub async fn atomic_commit(store: &dyn Coordinator) {
    store
        .put("tx/exists", Bytes::from("e"), Expect::Absent)
        .await
        .unwrap();
    let err = store
        .commit(vec![
            Write::put("tx/new", "n", Expect::Absent),
            Write::put("tx/exists", "changed", Expect::Absent),
        ])
        .await
        .expect_err("one failed condition fails the commit");
    assert!(matches!(err, CoordinatorError::Conflict { .. }), "{err}");
    assert!(
        store.get("tx/new").await.unwrap().is_none(),
        "no partial commit"
    );
    let rev = store
        .commit(vec![
            Write::put("tx/new", "n", Expect::Absent),
            Write::delete("tx/exists", Expect::Any),
        ])
        .await
        .unwrap();
    assert_eq!(store.get("tx/new").await.unwrap().unwrap().revision, rev);
    assert!(store.get("tx/exists").await.unwrap().is_none());
}

/// Listing returns exactly the keys under a prefix, in order.
/// A check entry makes the commit depend on a key without writing it.
pub async fn check_entries_condition_without_writing(store: &dyn Coordinator) {
    let r = store
        .put("chk/state", Bytes::from("gen-1"), Expect::Absent)
        .await
        .unwrap();
    store
        .commit(vec![
            Write::check("chk/state", Expect::Revision(r)),
            Write::put("chk/offset", Bytes::from("10"), Expect::Any),
        ])
        .await
        .expect("the check holds: the put applies");
    let state = store.get("chk/state").await.unwrap().unwrap();
    assert_eq!(state.revision, r, "a check does not write its key");
    let r2 = store
        .put("chk/state", Bytes::from("gen-2"), Expect::Revision(r))
        .await
        .unwrap();
    let err = store
        .commit(vec![
            Write::check("chk/state", Expect::Revision(r)),
            Write::put("chk/offset", Bytes::from("20"), Expect::Any),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoordinatorError::Conflict { ref key, .. } if key == "chk/state"),
        "a failed check fails the commit, naming the key: {err:?}"
    );
    assert_eq!(
        store.get("chk/offset").await.unwrap().unwrap().value,
        Bytes::from("10")
    );
    store
        .commit(vec![
            Write::delete("chk/state", Expect::Revision(r2)),
            Write::delete("chk/offset", Expect::Any),
        ])
        .await
        .unwrap();
}

pub async fn list_by_prefix(store: &dyn Coordinator) {
    for k in ["lp/b", "lp/a", "lp/c/d", "lpx"] {
        store.put(k, Bytes::from(k), Expect::Absent).await.unwrap();
    }
    let keys: Vec<String> = store
        .list("lp/")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["lp/a", "lp/b", "lp/c/d"]);
    assert!(store.list("nothing/").await.unwrap().is_empty());
}

/// A listing longer than any page an implementation reads at once comes back whole, in key
/// order, and ends before the next prefix (`ll/` sorts before `ll0`).
pub async fn long_listing_is_whole_and_ordered(store: &dyn Coordinator) {
    const KEYS: usize = 2_500;
    let names: Vec<String> = (0..KEYS).map(|i| format!("ll/{i:05}")).collect();
    for chunk in names.chunks(100) {
        let writes = chunk
            .iter()
            .map(|k| Write::put(k.clone(), Bytes::from(k.clone()), Expect::Absent))
            .collect();
        store.commit(writes).await.unwrap();
    }
    store
        .put("ll0", Bytes::from("after"), Expect::Absent)
        .await
        .unwrap();
    let listed = store.list("ll/").await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), KEYS, "every key under the prefix is listed");
    assert_eq!(keys, names.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(listed.iter().all(|(k, v)| v.value == k.as_bytes()));
}

/// Deletes honour their condition.
pub async fn conditional_delete(store: &dyn Coordinator) {
    let rev = store
        .put("del/k", Bytes::from("v"), Expect::Absent)
        .await
        .unwrap();
    let err = store
        .delete("del/k", Expect::Revision(rev + 100))
        .await
        .expect_err("delete with a wrong revision must conflict");
    assert!(matches!(err, CoordinatorError::Conflict { .. }), "{err}");
    store.delete("del/k", Expect::Revision(rev)).await.unwrap();
    assert!(store.get("del/k").await.unwrap().is_none());
}

/// A watch notifies after a put and after a delete under its prefix, and not for others.
pub async fn watch_notifies(store: &dyn Coordinator) {
    let mut watch = store
        .watch("wt/a/", &["wt/a/quiet/"])
        .await
        .expect("watch wt/a/");
    let mut other = store.watch("wt/b/", &[]).await.expect("watch wt/b/");
    store
        .put("wt/a/quiet/1", Bytes::from("x"), Expect::Absent)
        .await
        .unwrap();
    assert!(
        timeout(QUIET, watch.changed()).await.is_err(),
        "a change under an excluded prefix must not notify"
    );
    store
        .put("wt/a/1", Bytes::from("x"), Expect::Absent)
        .await
        .unwrap();
    timeout(PATIENCE, watch.changed())
        .await
        .expect("a put under the prefix notifies")
        .expect("the watch is alive");
    store.delete("wt/a/1", Expect::Any).await.unwrap();
    timeout(PATIENCE, watch.changed())
        .await
        .expect("a delete under the prefix notifies")
        .expect("the watch is alive");
    assert!(
        timeout(QUIET, other.changed()).await.is_err(),
        "a change under another prefix must not notify"
    );
    store.delete("wt/a/quiet/1", Expect::Any).await.unwrap();
    assert!(store.list("wt/").await.unwrap().is_empty());
}

/// A watch hands over each change with its key, revision and value (none for a delete), in
/// the order the store made them, also when several came before the reader looked.
pub async fn watch_reports_each_change(store: &dyn Coordinator) {
    let mut watch = store.watch("we/", &["we/quiet/"]).await.expect("watch we/");
    let first = store
        .put("we/1", Bytes::from("one"), Expect::Absent)
        .await
        .unwrap();
    let second = store
        .commit(vec![
            Write::put("we/2", Bytes::from("two"), Expect::Absent),
            Write::put("we/quiet/x", Bytes::from("x"), Expect::Absent),
        ])
        .await
        .unwrap();
    store.delete("we/1", Expect::Any).await.unwrap();
    let third = store.revision().await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match timeout(PATIENCE, watch.changes())
            .await
            .expect("the changes are reported")
            .expect("the watch is alive")
        {
            Changes::Events(events) => seen.extend(events),
            Changes::Unknown => panic!("three changes must not overflow the watch"),
        }
    }
    let expected = vec![
        Event {
            key: "we/1".into(),
            revision: first,
            value: Some(Bytes::from("one")),
        },
        Event {
            key: "we/2".into(),
            revision: second,
            value: Some(Bytes::from("two")),
        },
        Event {
            key: "we/1".into(),
            revision: third,
            value: None,
        },
    ];
    assert_eq!(seen, expected);
    store.delete("we/2", Expect::Any).await.unwrap();
    store.delete("we/quiet/x", Expect::Any).await.unwrap();
}

/// A registered key conflicts while held, is listed, and goes on release.
pub async fn register_conflicts_and_releases(store: &dyn Coordinator) {
    let held = store
        .register("reg/a", Bytes::from("one"), TTL)
        .await
        .expect("first registration succeeds");
    let err = store
        .register("reg/a", Bytes::from("two"), TTL)
        .await
        .expect_err("a second registration of a held key must conflict");
    assert!(matches!(err, CoordinatorError::Conflict { .. }), "{err}");
    let listed = store.list("reg/").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].0.as_str(), &listed[0].1.value),
        ("reg/a", &Bytes::from("one"))
    );
    assert!(!held.is_lost());
    held.release().await.expect("release");
    assert!(store.get("reg/a").await.unwrap().is_none(), "released");
    let again = store
        .register("reg/a", Bytes::from("two"), TTL)
        .await
        .expect("registering a released key succeeds");
    assert_eq!(
        store.get("reg/a").await.unwrap().unwrap().value,
        Bytes::from("two")
    );
    again.release().await.expect("release");

    store
        .put("reg/plain", Bytes::from("p"), Expect::Absent)
        .await
        .unwrap();
    let err = store
        .register("reg/plain", Bytes::from("r"), TTL)
        .await
        .expect_err("registering an existing plain key must conflict");
    assert!(matches!(err, CoordinatorError::Conflict { .. }), "{err}");
    store.delete("reg/plain", Expect::Any).await.unwrap();
}

/// An abandoned registration disappears after its TTL (at once in the embedded store).
pub async fn abandoned_registration_expires(store: &dyn Coordinator) {
    let ttl = Duration::from_secs(2);
    let lease = store
        .register("reg/abandoned", Bytes::from("gone soon"), ttl)
        .await
        .expect("register");
    lease.abandon();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while store.get("reg/abandoned").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an abandoned registration with a TTL of {ttl:?} still exists after 6 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store
        .register("reg/abandoned", Bytes::from("back"), ttl)
        .await
        .expect("the expired key can be registered again")
        .release()
        .await
        .expect("release");
}

/// A registration whose key someone else deletes reports itself lost.
pub async fn registration_lost_when_its_key_is_deleted(store: &dyn Coordinator) {
    let lease = store
        .register("reg/taken", Bytes::from("mine"), TTL)
        .await
        .expect("register");
    store.delete("reg/taken", Expect::Any).await.unwrap();
    timeout(PATIENCE, lease.lost())
        .await
        .expect("a registration whose key was deleted is lost");
    assert!(lease.is_lost());
    lease
        .release()
        .await
        .expect("releasing a lost lease is fine");
    assert!(store.get("reg/taken").await.unwrap().is_none());
}

/// The first campaigner leads at once; a second waits until the first resigns, then leads.
pub async fn campaign_waits_for_the_leader(store: &dyn Coordinator) {
    let first = timeout(PATIENCE, store.campaign("el", Bytes::from("first"), TTL))
        .await
        .expect("the first campaign leads at once")
        .expect("campaign");
    assert_eq!(
        store.leader("el").await.unwrap(),
        Some(Bytes::from("first"))
    );
    let second = store.campaign("el", Bytes::from("second"), TTL);
    tokio::pin!(second);
    assert!(
        timeout(QUIET, &mut second).await.is_err(),
        "a second campaign must wait while the first leads"
    );
    assert_eq!(
        store.leader("el").await.unwrap(),
        Some(Bytes::from("first"))
    );
    first.release().await.expect("resign");
    let second = timeout(PATIENCE, second)
        .await
        .expect("the second campaign leads once the first resigned")
        .expect("campaign");
    assert!(!second.is_lost());
    assert_eq!(
        store.leader("el").await.unwrap(),
        Some(Bytes::from("second"))
    );
    second.release().await.expect("resign");
    assert_eq!(store.leader("el").await.unwrap(), None);
}
