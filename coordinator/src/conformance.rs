//! Scenarios every [`Coordinator`] implementation must pass. Each is a `pub async fn` that
//! panics with a message on failure; tests call [`run_all`] with a fresh store of each kind.

use bytes::Bytes;

use crate::{Coordinator, CoordinatorError, Expect, Write};

/// Runs every scenario against `store`, which must start empty.
pub async fn run_all(store: &dyn Coordinator) {
    create_if_absent(store).await;
    compare_and_swap(store).await;
    atomic_commit(store).await;
    list_by_prefix(store).await;
    conditional_delete(store).await;
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
