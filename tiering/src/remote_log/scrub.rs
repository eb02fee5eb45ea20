//! The scrub: objects no kept manifest version lists, and manifest versions older than the
//! kept ones, are deleted once older than the grace period.

use std::collections::HashSet;
use std::time::Duration;

use futures::stream::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Result, TieringError};
use crate::manifest::PartitionPaths;

use super::{RemoteLog, KEEP_MANIFEST_VERSIONS};

/// What [`RemoteLog::scrub`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    pub deleted_objects: Vec<Path>,
    pub deleted_manifests: Vec<u64>,
    /// Unlisted objects left alone because they are younger than the grace period.
    pub young_unlisted: usize,
}

impl RemoteLog {
    /// Removes garbage older than `grace`, judged by the store's clock
    /// ([`crate::store_clock::now_ms`]: one PUT and one HEAD), then [`RemoteLog::scrub_at`].
    pub async fn scrub(&self, grace: Duration) -> Result<ScrubReport> {
        let now = crate::store_clock::now_ms(self.store.as_ref(), self.paths.root()).await?;
        self.scrub_at(grace, now).await
    }

    /// Removes garbage older than `grace` at `store_now_ms` (a lower bound on the store's
    /// time, which a broker reads once per scrub pass for all its partitions): manifest
    /// versions before the latest [`KEEP_MANIFEST_VERSIONS`], then `.seg` objects that no
    /// remaining manifest version lists. Ages are the store's `Last-Modified` against the
    /// store's time, never the broker's clock. Safe because a writer abandons a manifest write
    /// later than half the grace after its object PUT ([`crate::UploadConfig`]), and `grace`
    /// must exceed the longest a writer may hold a manifest it read.
    pub async fn scrub_at(&self, grace: Duration, store_now_ms: i64) -> Result<ScrubReport> {
        let cutoff = store_now_ms - grace.as_millis() as i64;
        let old = |m: &object_store::ObjectMeta| m.last_modified.timestamp_millis() < cutoff;
        let mut report = ScrubReport::default();
        // One LIST of the partition's prefix finds both the manifest versions and the objects.
        let prefix = self.paths.partition_prefix();
        let listing: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| TieringError::store(&prefix, e))?;
        let (mut versions, objects): (Vec<_>, Vec<_>) = listing
            .into_iter()
            .partition(|m| PartitionPaths::manifest_version(&m.location).is_some());
        versions.sort_by_key(|m| PartitionPaths::manifest_version(&m.location));
        let keep_from = versions.len().saturating_sub(KEEP_MANIFEST_VERSIONS);
        let mut remaining = Vec::new();
        for (i, meta) in versions.iter().enumerate() {
            let v = PartitionPaths::manifest_version(&meta.location).unwrap_or_default();
            if i < keep_from && old(meta) {
                match self.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        report.deleted_manifests.push(v)
                    }
                    Err(e) => return Err(TieringError::store(&meta.location, e)),
                }
            } else {
                remaining.push(v);
            }
        }
        let mut listed = HashSet::new();
        for v in remaining {
            match self.manifests.load(v).await {
                Ok(m) => listed.extend(m.segments.into_iter().map(|s| s.key)),
                Err(TieringError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for meta in objects {
            let key = meta.location.as_ref();
            if !key.ends_with(".seg") || listed.contains(key) {
                continue;
            }
            if !old(&meta) {
                report.young_unlisted += 1;
                continue;
            }
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    report.deleted_objects.push(meta.location)
                }
                Err(e) => return Err(TieringError::store(&meta.location, e)),
            }
        }
        Ok(report)
    }
}
