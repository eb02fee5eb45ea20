//! Remote retention, dropping a diverged tail, and partition deletion: the manifest that no
//! longer lists segments is written first, their objects are deleted second.

use futures::stream::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Result, TieringError};
use crate::manifest::{Manifest, PartitionPaths, SegmentMeta};

use super::{RemoteLog, MANIFEST_WRITE_ATTEMPTS};

/// Which segments remote retention removes: the oldest segments that match any rule, up to
/// the first that matches none.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetentionPolicy {
    /// Move the remote log start to this offset; segments wholly below it go.
    pub start_offset: Option<i64>,
    /// `retention.ms`: segments whose newest record is older than this go.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: oldest segments go while what remains stays at or above this.
    pub retention_bytes: Option<u64>,
}

impl RemoteLog {
    /// Removes the oldest segments the policy expires: writes a manifest without them and with
    /// a higher `remote_log_start_offset` (fenced by `leader_epoch`), THEN deletes their
    /// objects. Returns the manifest now in force and the objects deleted. An object whose
    /// delete fails is unlisted garbage for [`RemoteLog::scrub`].
    pub async fn apply_retention(
        &self,
        policy: &RetentionPolicy,
        leader_epoch: i32,
    ) -> Result<(Manifest, Vec<Path>)> {
        let now = self.clock.now_ms();
        self.drop_segments(leader_epoch, "applying retention", |current| {
            let expired = expired_prefix(current, policy, now);
            let mut new_start = current.remote_log_start_offset;
            if let Some(o) = policy.start_offset {
                new_start = new_start.max(o);
            }
            if let Some(last) = current.segments[..expired].last() {
                new_start = new_start.max(last.next_offset);
            }
            if expired == 0 && new_start == current.remote_log_start_offset {
                return None;
            }
            let mut next = current.clone();
            next.remote_log_start_offset = new_start;
            let gone = next.segments.drain(..expired).collect();
            Some((next, gone))
        })
        .await
    }

    /// Drops the remote tail from the segment holding `offset` on (an unclean leader's log
    /// diverges from the bucket there, `strata_broker::tier::lineage`): writes a manifest
    /// without those segments, then deletes their objects. The remote end moves back to the
    /// base offset of the first segment dropped.
    pub async fn truncate_end(
        &self,
        offset: i64,
        leader_epoch: i32,
    ) -> Result<(Manifest, Vec<Path>)> {
        self.drop_segments(leader_epoch, "dropping the remote tail", |current| {
            let keep = current
                .segments
                .partition_point(|s| s.next_offset <= offset);
            if keep == current.segments.len() {
                return None;
            }
            let mut next = current.clone();
            let gone = next.segments.drain(keep..).collect();
            Some((next, gone))
        })
        .await
    }

    /// Writes the manifest `change` makes of the one in force (fenced by `leader_epoch`;
    /// `None`: nothing to change), THEN deletes the objects of the segments it dropped.
    async fn drop_segments(
        &self,
        leader_epoch: i32,
        what: &str,
        change: impl Fn(&Manifest) -> Option<(Manifest, Vec<SegmentMeta>)>,
    ) -> Result<(Manifest, Vec<Path>)> {
        let mut current = (*self.manifest().await?).clone();
        for _ in 0..MANIFEST_WRITE_ATTEMPTS {
            if current.leader_epoch > leader_epoch {
                return Err(TieringError::Fenced {
                    partition: self.paths.describe(),
                    ours: leader_epoch,
                    current: current.leader_epoch,
                });
            }
            let Some((mut next, gone)) = change(&current) else {
                return Ok((current, Vec::new()));
            };
            next.leader_epoch = leader_epoch;
            match self.manifests.write_next(&current, next).await {
                Ok(written) => {
                    self.remember(&written);
                    let mut deleted = Vec::new();
                    for s in gone {
                        self.ctx.footer_cache.remove(&s.key);
                        let key = Path::from(s.key);
                        match self.store.delete(&key).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted.push(key),
                            Err(e) => {
                                tracing::warn!(key = %key, error = %e, "dropped segment object left for scrub")
                            }
                        }
                    }
                    return Ok((written, deleted));
                }
                Err(TieringError::ManifestConflict { .. }) => {
                    self.follow();
                    current = self.fresh().await?;
                }
                Err(e) => {
                    self.follow();
                    return Err(e);
                }
            }
        }
        Err(TieringError::Unavailable(format!(
            "{}: gave up {what} after {MANIFEST_WRITE_ATTEMPTS} lost manifest races",
            self.paths.describe()
        )))
    }

    /// Deletes every manifest version and object of the partition (topic deletion): manifests
    /// first, oldest version first, so readers see the newest view until the partition is gone
    /// and a crash half-way leaves only unlisted objects. Returns how many objects went.
    pub async fn delete_all(&self) -> Result<usize> {
        let prefix = self.paths.partition_prefix();
        let all: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| TieringError::store(&prefix, e))?;
        let (mut manifests, others): (Vec<Path>, Vec<Path>) = all
            .into_iter()
            .partition(|p| PartitionPaths::manifest_version(p).is_some());
        manifests.sort_by_key(PartitionPaths::manifest_version);
        let mut n = 0;
        for p in manifests.into_iter().chain(others) {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => n += 1,
                Err(e) => return Err(TieringError::store(&p, e)),
            }
        }
        *self.cached.lock() = None;
        self.follow();
        Ok(n)
    }
}

/// How many of the oldest segments the policy expires.
fn expired_prefix(m: &Manifest, policy: &RetentionPolicy, now_ms: i64) -> usize {
    let mut remaining = m.total_segment_bytes();
    let mut n = 0;
    for s in &m.segments {
        let by_offset = policy.start_offset.is_some_and(|o| s.next_offset <= o);
        let by_time = policy
            .retention_ms
            .is_some_and(|ms| s.max_timestamp < now_ms.saturating_sub(ms));
        let by_size = policy
            .retention_bytes
            .is_some_and(|max| remaining.saturating_sub(s.segment_bytes) >= max && remaining > max);
        if !(by_offset || by_time || by_size) {
            break;
        }
        remaining -= s.segment_bytes;
        n += 1;
    }
    n
}
