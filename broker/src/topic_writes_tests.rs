//! The chunked topic changes against a store that refuses transactions over etcd's default
//! 128 operations, and the way an interrupted change ends.

use super::*;
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use strata_coordinator::{Coordinator, EmbeddedCoordinator, Lease, Versioned, Watch};

/// etcd's `--max-txn-ops` default.
const ETCD_MAX_TXN_OPS: usize = 128;

/// The embedded store with etcd's transaction limit.
#[derive(Debug)]
struct EtcdLimits(EmbeddedCoordinator);

#[async_trait]
impl Coordinator for EtcdLimits {
    fn cluster(&self) -> &str {
        self.0.cluster()
    }
    async fn get(&self, key: &str) -> strata_coordinator::Result<Option<Versioned>> {
        self.0.get(key).await
    }
    async fn list(&self, prefix: &str) -> strata_coordinator::Result<Vec<(String, Versioned)>> {
        self.0.list(prefix).await
    }
    async fn commit(&self, writes: Vec<Write>) -> strata_coordinator::Result<i64> {
        assert!(
            writes.len() <= ETCD_MAX_TXN_OPS,
            "a commit of {} operations: etcd refuses it (too many operations in txn request)",
            writes.len()
        );
        self.0.commit(writes).await
    }
    async fn watch(&self, prefix: &str, except: &[&str]) -> strata_coordinator::Result<Watch> {
        self.0.watch(prefix, except).await
    }
    async fn register(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> strata_coordinator::Result<Lease> {
        self.0.register(key, value, ttl).await
    }
    async fn campaign(
        &self,
        election: &str,
        value: Bytes,
        ttl: Duration,
    ) -> strata_coordinator::Result<Lease> {
        self.0.campaign(election, value, ttl).await
    }
    async fn leader(&self, election: &str) -> strata_coordinator::Result<Option<Bytes>> {
        self.0.leader(election).await
    }
    async fn revision(&self) -> strata_coordinator::Result<i64> {
        self.0.revision().await
    }
}

fn store() -> (tempfile::TempDir, MetadataStore) {
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedCoordinator::open(dir.path(), "test").unwrap();
    (dir, MetadataStore::new(Arc::new(EtcdLimits(embedded))))
}

fn record(name: &str, partitions: u32) -> TopicRecord {
    TopicRecord {
        name: name.to_string(),
        topic_id: format!("{name}-id"),
        partitions,
        replication_factor: 1,
        config: Default::default(),
        created_ms: 0,
        phase: TopicPhase::Ready,
    }
}

fn states(n: usize) -> Vec<PartitionState> {
    (0..n)
        .map(|i| PartitionState {
            replicas: vec![i as i32 % 3],
            leader: i as i32 % 3,
            leader_epoch: 0,
            isr: vec![i as i32 % 3],
            leader_incarnation: 0,
            emptied: vec![],
            reassigning: None,
        })
        .collect()
}

async fn partition_keys(metadata: &MetadataStore, name: &str) -> usize {
    metadata
        .store()
        .list(&format!("partitions/{name}/"))
        .await
        .unwrap()
        .len()
}

async fn current(metadata: &MetadataStore, name: &str) -> Revisioned<TopicRecord> {
    metadata
        .topic(name)
        .await
        .unwrap()
        .expect("the topic record")
}

#[tokio::test]
async fn thousands_of_partitions_are_created_grown_and_deleted_in_chunks() {
    let (_dir, metadata) = store();
    metadata
        .create_topic(&record("big", 2_000), &states(2_000))
        .await
        .unwrap();
    let snapshot = metadata.snapshot().await.unwrap();
    assert_eq!(snapshot.topics["big"].partitions.len(), 2_000);

    let topic = current(&metadata, "big").await;
    assert!(metadata
        .add_partitions(&topic, &states(3_000)[2_000..])
        .await
        .unwrap());
    let topic = current(&metadata, "big").await;
    assert_eq!(topic.value.partitions, 3_000);
    assert_eq!(topic.value.phase, TopicPhase::Ready);
    assert_eq!(
        metadata.snapshot().await.unwrap().topics["big"]
            .partitions
            .len(),
        3_000
    );

    assert!(metadata.delete_topic(&topic, None).await.unwrap());
    assert!(metadata.topic("big").await.unwrap().is_none());
    assert_eq!(partition_keys(&metadata, "big").await, 0);
}

#[tokio::test]
async fn a_topic_being_created_is_not_part_of_the_cluster_and_an_interrupted_one_is_undone() {
    let (_dir, metadata) = store();
    let revision = metadata.begin_create(&record("t", 300)).await.unwrap();
    // The creator wrote one chunk, then its process died.
    metadata
        .write_partition_states("t", revision, 0, &states(100))
        .await
        .unwrap();
    assert!(
        !metadata.snapshot().await.unwrap().topics.contains_key("t"),
        "a topic being created is not served"
    );
    let err = metadata
        .create_topic(&record("t", 300), &states(300))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is being created"), "{err}");

    let left = current(&metadata, "t").await;
    assert_eq!(left.value.phase, TopicPhase::Creating);
    assert_eq!(
        metadata.end_interrupted(&left, None).await.unwrap(),
        Ended::Undone
    );
    assert!(metadata.topic("t").await.unwrap().is_none(), "undone");
    assert_eq!(partition_keys(&metadata, "t").await, 0);

    // The name is free again.
    metadata
        .create_topic(&record("t", 300), &states(300))
        .await
        .unwrap();
    assert_eq!(
        metadata.snapshot().await.unwrap().topics["t"]
            .partitions
            .len(),
        300
    );
}

#[tokio::test]
async fn a_writer_whose_change_was_taken_over_writes_nothing_more() {
    let (_dir, metadata) = store();
    let revision = metadata.begin_create(&record("t", 300)).await.unwrap();
    metadata
        .write_partition_states("t", revision, 0, &states(100))
        .await
        .unwrap();
    // A new controller ends the change while the old writer still runs (deposed, frozen).
    let left = current(&metadata, "t").await;
    metadata.end_interrupted(&left, None).await.unwrap();
    let err = metadata
        .write_partition_states("t", revision, 100, &states(300)[100..])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("was interrupted"), "{err}");
    assert_eq!(partition_keys(&metadata, "t").await, 0, "no chunk landed");
    assert!(metadata.topic("t").await.unwrap().is_none());
}

#[tokio::test]
async fn an_interrupted_addition_of_partitions_is_undone_and_the_topic_keeps_serving() {
    let (_dir, metadata) = store();
    metadata
        .create_topic(&record("t", 150), &states(150))
        .await
        .unwrap();
    let topic = current(&metadata, "t").await;
    let mut growing = topic.value.clone();
    growing.phase = TopicPhase::Growing { to: 450 };
    let revision = metadata
        .replace_topic(&growing, topic.revision)
        .await
        .unwrap()
        .unwrap();
    metadata
        .write_partition_states("t", revision, 150, &states(450)[150..250])
        .await
        .unwrap();
    let served = metadata.snapshot().await.unwrap();
    assert_eq!(
        served.topics["t"].partitions.len(),
        150,
        "the topic serves its partitions while more are added"
    );

    let left = current(&metadata, "t").await;
    assert_eq!(
        metadata.end_interrupted(&left, None).await.unwrap(),
        Ended::Undone
    );
    let after = current(&metadata, "t").await;
    assert_eq!(after.value.phase, TopicPhase::Ready);
    assert_eq!(after.value.partitions, 150);
    assert_eq!(
        partition_keys(&metadata, "t").await,
        150,
        "the new states are gone"
    );
    // And partitions can be added again.
    assert!(metadata
        .add_partitions(&after, &states(450)[150..])
        .await
        .unwrap());
    assert_eq!(current(&metadata, "t").await.value.partitions, 450);
}

#[tokio::test]
async fn an_interrupted_deletion_is_finished() {
    let (_dir, metadata) = store();
    metadata
        .create_topic(&record("t", 250), &states(250))
        .await
        .unwrap();
    let topic = current(&metadata, "t").await;
    let mut deleting = topic.value.clone();
    deleting.phase = TopicPhase::Deleting;
    let revision = metadata
        .replace_topic(&deleting, topic.revision)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !metadata.snapshot().await.unwrap().topics.contains_key("t"),
        "a topic being deleted is gone for clients"
    );
    let err = metadata
        .create_topic(&record("t", 1), &states(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is being deleted"), "{err}");
    // One chunk deleted, then the controller died.
    let first: Vec<Write> = std::iter::once(Write::check(
        topic_key("t"),
        strata_coordinator::Expect::Revision(revision),
    ))
    .chain((0..100).map(|p| Write::delete(partition_key("t", p), strata_coordinator::Expect::Any)))
    .collect();
    metadata.store().commit(first).await.unwrap();

    let left = current(&metadata, "t").await;
    match metadata.end_interrupted(&left, None).await.unwrap() {
        Ended::Deleted(record) => assert_eq!(record.topic_id, "t-id"),
        other => panic!("the deletion is finished, not {other:?}"),
    }
    // A pass that read the record before that finds it changed and does nothing.
    assert_eq!(
        metadata.end_interrupted(&left, None).await.unwrap(),
        Ended::Changed
    );
    assert!(metadata.topic("t").await.unwrap().is_none());
    assert_eq!(partition_keys(&metadata, "t").await, 0);
}

#[tokio::test]
async fn a_failover_of_thousands_of_partitions_is_written_in_chunks_under_the_fence() {
    let (_dir, metadata) = store();
    metadata
        .create_topic(&record("big", 1_000), &states(1_000))
        .await
        .unwrap();
    let fence_revision = metadata
        .store()
        .put("fence", Bytes::from("1"), Expect::Absent)
        .await
        .unwrap();
    let fence = Some(Write::check("fence", Expect::Revision(fence_revision)));
    let read = metadata.partitions("big").await.unwrap();
    // Someone else changed partition 7 since the read: only it is not written.
    let mut moved = read[7].value.clone();
    moved.leader_epoch = 5;
    metadata
        .write_partition("big", 7, &moved, read[7].revision)
        .await
        .unwrap()
        .expect("written");
    let next: Vec<PartitionState> = read
        .iter()
        .map(|r| PartitionState {
            leader_epoch: r.value.leader_epoch + 1,
            ..r.value.clone()
        })
        .collect();
    let updates: Vec<(&str, u32, &PartitionState, i64)> = next
        .iter()
        .zip(&read)
        .enumerate()
        .map(|(i, (n, r))| ("big", i as u32, n, r.revision))
        .collect();
    let written = metadata
        .update_partitions(&updates, fence.clone())
        .await
        .unwrap();
    assert_eq!(written.iter().filter(|w| !**w).count(), 1);
    assert!(!written[7]);
    let after = metadata.partitions("big").await.unwrap();
    assert_eq!(after[7].value.leader_epoch, 5);
    assert!(after
        .iter()
        .enumerate()
        .all(|(i, p)| i == 7 || p.value.leader_epoch == 1));

    // A deposed controller (its fence key changed) writes nothing.
    metadata
        .store()
        .put("fence", Bytes::from("2"), Expect::Any)
        .await
        .unwrap();
    let read = metadata.partitions("big").await.unwrap();
    let updates: Vec<(&str, u32, &PartitionState, i64)> = read
        .iter()
        .enumerate()
        .map(|(i, r)| ("big", i as u32, &r.value, r.revision))
        .collect();
    let err = metadata
        .update_partitions(&updates, fence)
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::NotController(_)), "{err}");
    let unchanged = metadata.partitions("big").await.unwrap();
    assert!(unchanged
        .iter()
        .zip(&read)
        .all(|(a, b)| a.revision == b.revision));
}
