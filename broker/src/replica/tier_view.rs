//! What one partition replica knows of its remote tier: whether the topic is tiered, its
//! remote log, the latest manifest's bounds, and the local retention limit they set.
//!
//! Invariant: on a tiered topic local retention deletes only what the remote tier holds (below
//! the manifest's end), whether or not a remote log is attached yet.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::partition::Partition;
use crate::error::Result;

/// Where the remote tier of a partition starts and ends, from its latest manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSummary {
    pub start: i64,
    /// Offset after the last uploaded record.
    pub end: i64,
    pub segments: u32,
    pub bytes: u64,
    /// The manifest version it comes from (0: nothing uploaded yet).
    pub version: u64,
    /// Max timestamp of the last uploaded segment (-1: none).
    pub last_timestamp: i64,
}

impl RemoteSummary {
    pub fn of(m: &strata_tiering::Manifest) -> RemoteSummary {
        let start = m
            .remote_log_start_offset
            .max(m.segments.first().map_or(0, |s| s.base_offset));
        RemoteSummary {
            start,
            end: m.end_offset().unwrap_or(start),
            segments: m.segments.len() as u32,
            bytes: m.segments.iter().map(|s| s.object_bytes).sum(),
            version: m.version,
            last_timestamp: m.segments.last().map_or(-1, |s| s.max_timestamp),
        }
    }

    /// As sent to followers in replica-fetch answers.
    pub fn to_proto(self) -> strata_proto::RemoteTierBounds {
        strata_proto::RemoteTierBounds {
            start_offset: self.start,
            end_offset: self.end,
            segments: self.segments,
            bytes: self.bytes,
            manifest_version: self.version,
            last_timestamp: self.last_timestamp,
        }
    }

    /// As a follower learns it from its leader.
    pub fn from_proto(b: &strata_proto::RemoteTierBounds) -> RemoteSummary {
        RemoteSummary {
            start: b.start_offset,
            end: b.end_offset,
            segments: b.segments,
            bytes: b.bytes,
            version: b.manifest_version,
            last_timestamp: b.last_timestamp,
        }
    }

    pub(super) fn holds(&self, offset: i64) -> bool {
        self.segments > 0 && offset >= self.start && offset < self.end
    }
}

impl Partition {
    /// Whether the topic is tiered (its config says so). A tiered partition's local retention
    /// deletes only what the remote tier holds, whether or not a remote log is attached yet.
    pub fn set_tiered(&self, tiered: bool) {
        self.tiered.store(tiered, Ordering::Relaxed);
        self.update_retention_limit();
    }

    pub(super) fn update_retention_limit(&self) {
        let limit = match (
            self.tiered.load(Ordering::Relaxed),
            *self.remote_summary.read(),
        ) {
            (false, _) => i64::MAX,
            (true, Some(s)) => s.end,
            (true, None) => 0,
        };
        if self.retention_limit.swap(limit, Ordering::Relaxed) != limit {
            self.touch(); // local retention may delete more now
        }
    }

    /// Attaches the partition's remote log (reads below the local start go there).
    pub fn set_remote_log(&self, remote: Option<Arc<strata_tiering::RemoteLog>>) {
        *self.remote.write() = remote;
    }

    pub fn remote_log(&self) -> Option<Arc<strata_tiering::RemoteLog>> {
        self.remote.read().clone()
    }

    /// Records what the latest manifest says; local retention may then delete below its end.
    pub fn set_remote_summary(&self, summary: Option<RemoteSummary>) {
        *self.remote_summary.write() = summary;
        self.update_retention_limit();
    }

    pub fn remote_summary(&self) -> Option<RemoteSummary> {
        *self.remote_summary.read()
    }

    /// Bytes of local segments starting at or after `offset` (not yet in the remote tier).
    pub fn local_bytes_above(&self, offset: i64) -> Result<u64> {
        self.with_log(|log| {
            Ok(log
                .segments()
                .iter()
                .filter(|s| s.base_offset >= offset)
                .map(|s| s.size_bytes)
                .sum())
        })
    }
}
