//! `retention set --dry-run`: what retention would delete from each tier of the partitions this
//! broker leads, under a changed config. It mirrors the rules the log and the remote tier apply
//! (oldest sealed segments first; by size, what remains stays at or above the limit; by time,
//! segments whose newest record is older than the limit; locally, never past the remote end
//! when tiered) and changes nothing.

use std::collections::BTreeMap;
use strata_proto as pb;

use crate::error::Result;
use crate::replica::Partition;
use crate::state::BrokerState;
use crate::topic_config::{self, TopicConfig};

/// One segment as retention sees it.
struct Seg {
    next_offset: i64,
    bytes: u64,
    max_timestamp: i64,
}

/// Oldest-first deletion by size and time; `keep_last` keeps the newest segment (the active one).
fn simulate(
    segments: &[Seg],
    retention_ms: Option<i64>,
    retention_bytes: Option<u64>,
    now: i64,
    limit: i64,
    keep_last: bool,
) -> pb::TierDeletion {
    let mut total: u64 = segments.iter().map(|s| s.bytes).sum();
    let mut out = pb::TierDeletion {
        segments: 0,
        bytes: 0,
        up_to_offset: -1,
    };
    let deletable = segments.len().saturating_sub(usize::from(keep_last));
    for seg in &segments[..deletable] {
        if seg.next_offset > limit {
            break;
        }
        let by_bytes = retention_bytes.is_some_and(|b| total - seg.bytes >= b);
        let by_time =
            retention_ms.is_some_and(|ms| seg.max_timestamp >= 0 && seg.max_timestamp < now - ms);
        if !by_bytes && !by_time {
            break;
        }
        total -= seg.bytes;
        out.segments += 1;
        out.bytes += seg.bytes;
        out.up_to_offset = seg.next_offset;
    }
    out
}

impl BrokerState {
    pub async fn retention_preview(
        &self,
        req: &pb::RetentionPreviewRequest,
    ) -> Result<pb::RetentionPreviewResponse> {
        let snapshot = self.replicas.snapshot();
        let topic = snapshot.topic(&req.topic)?;
        let mut overrides: BTreeMap<String, String> = topic.record.config.clone();
        overrides.extend(req.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        let config = topic_config::resolve(self.replicas.defaults(), &overrides)?;
        let mut partitions = Vec::new();
        // A set: a request naming a million partitions costs one pass, not one per partition.
        let asked: std::collections::HashSet<u32> = req.partitions.iter().copied().collect();
        for index in 0..topic.record.partitions {
            if !asked.is_empty() && !asked.contains(&index) {
                continue;
            }
            if let Ok(p) = self.replicas.leader(&req.topic, index) {
                partitions.push(self.preview_partition(&p, &config).await?);
            }
        }
        Ok(pb::RetentionPreviewResponse { partitions })
    }

    async fn preview_partition(
        &self,
        p: &Partition,
        config: &TopicConfig,
    ) -> Result<pb::PartitionRetentionPreview> {
        let now = self.clock.now_ms();
        let local: Vec<Seg> = p.with_log(|log| {
            Ok(log
                .segments()
                .iter()
                .map(|s| Seg {
                    next_offset: s.next_offset,
                    bytes: s.size_bytes,
                    max_timestamp: s.max_timestamp,
                })
                .collect())
        })?;
        let remote_end = p.remote_summary().map_or(0, |s| s.end);
        let local_cfg = config.local_log_config();
        let limit = if config.remote_storage {
            remote_end
        } else {
            i64::MAX
        };
        let local_deletion = simulate(
            &local,
            local_cfg.retention_ms,
            local_cfg.retention_bytes,
            now,
            limit,
            true,
        );
        let remote_deletion = match (config.remote_storage, p.remote_log()) {
            (true, Some(remote)) => {
                let manifest = remote.manifest().await.ok();
                let segments: Vec<Seg> = manifest
                    .map(|m| {
                        m.segments
                            .iter()
                            .map(|s| Seg {
                                next_offset: s.next_offset,
                                bytes: s.segment_bytes,
                                max_timestamp: s.max_timestamp,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let local_only = p.local_bytes_above(remote_end)?;
                let bytes = config
                    .log
                    .retention_bytes
                    .map(|b| b.saturating_sub(local_only));
                simulate(
                    &segments,
                    config.log.retention_ms,
                    bytes,
                    now,
                    i64::MAX,
                    false,
                )
            }
            _ => pb::TierDeletion {
                segments: 0,
                bytes: 0,
                up_to_offset: -1,
            },
        };
        Ok(pb::PartitionRetentionPreview {
            partition: p.index,
            local: Some(local_deletion),
            remote: Some(remote_deletion),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(n: usize) -> Vec<Seg> {
        (0..n)
            .map(|i| Seg {
                next_offset: (i as i64 + 1) * 100,
                bytes: 1000,
                max_timestamp: 1_000 + i as i64,
            })
            .collect()
    }

    #[test]
    fn mirrors_size_time_and_limit_rules() {
        // Size: keep at least 2500 bytes of 5000: two segments go (3000 remain; a third would leave 2000).
        let d = simulate(&segs(5), None, Some(2500), 0, i64::MAX, true);
        assert_eq!((d.segments, d.bytes, d.up_to_offset), (2, 2000, 200));
        // Time: everything older than 1003 goes, but never the active (last) segment.
        let d = simulate(&segs(5), Some(10), None, 1_013, i64::MAX, true);
        assert_eq!((d.segments, d.up_to_offset), (3, 300));
        // Never past the limit (the remote end, for a tiered local log).
        let d = simulate(&segs(5), Some(0), None, 10_000, 250, true);
        assert_eq!((d.segments, d.up_to_offset), (2, 200));
        // Nothing to do.
        assert_eq!(
            simulate(&segs(5), None, None, 0, i64::MAX, true).up_to_offset,
            -1
        );
    }
}
