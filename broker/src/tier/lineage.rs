//! Whether the remote tier holds this leader's history (KIP-405's epoch lineage check), without
//! I/O. A new leader continues uploading from the manifest's end, skipping what the bucket
//! already holds; that is right only if the bucket's records are the ones in its own log. Two
//! logs hold the same record at an offset exactly when the record carries the same leader
//! epoch in both (an epoch has one leader, which writes each offset once), so the check
//! compares the epochs the manifest's segments record with the leader's epoch cache.
//!
//! Invariant: [`divergence`] returns the first offset the remote tier holds that this leader's
//! log does not hold with the same epoch, or `None` when every checkable offset agrees. Offsets
//! below the local log start cannot be checked (the cache no longer covers them) and count as
//! agreeing: they are never uploaded again.

use strata_log::EpochEntry;
use strata_tiering::Manifest;

/// The epoch runs of the remote tier, oldest first: `(epoch, start offset)`, from the
/// segments that recorded them. `None` when some segment did not (an older manifest): the
/// check is then skipped.
pub fn remote_epochs(m: &Manifest) -> Option<Vec<EpochEntry>> {
    let mut out: Vec<EpochEntry> = Vec::new();
    for s in &m.segments {
        if s.epochs.is_empty() {
            return None;
        }
        for &(epoch, start_offset) in &s.epochs {
            if out.last().is_some_and(|e| e.epoch == epoch) {
                continue;
            }
            out.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
    }
    Some(out)
}

/// The epoch of `offset` in runs `epochs` (`None` before the first run).
fn epoch_at(epochs: &[EpochEntry], offset: i64) -> Option<i32> {
    let i = epochs.partition_point(|e| e.start_offset <= offset);
    Some(epochs.get(i.checked_sub(1)?)?.epoch)
}

/// The first offset in `from..remote_end` where the remote runs and the local runs disagree,
/// or where the local log (ending at `local_end`) has nothing; see the module's invariant.
pub fn divergence(
    remote: &[EpochEntry],
    remote_end: i64,
    local: &[EpochEntry],
    local_start: i64,
    local_end: i64,
) -> Option<i64> {
    let from = remote
        .first()
        .map_or(remote_end, |e| e.start_offset)
        .max(local_start);
    if from >= remote_end {
        return None;
    }
    // Runs are constant between boundaries, so the first disagreement is at a boundary.
    let mut points: Vec<i64> = std::iter::once(from)
        .chain(remote.iter().map(|e| e.start_offset))
        .chain(local.iter().map(|e| e.start_offset))
        .filter(|&o| o >= from && o < remote_end)
        .collect();
    points.sort_unstable();
    points.dedup();
    for o in points {
        if o >= local_end || epoch_at(remote, o) != epoch_at(local, o) {
            return Some(o);
        }
    }
    (local_end < remote_end).then_some(local_end.max(from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(list: &[(i32, i64)]) -> Vec<EpochEntry> {
        list.iter()
            .map(|&(epoch, start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
            .collect()
    }

    #[test]
    fn a_clean_successor_agrees_with_the_bucket() {
        let remote = runs(&[(1, 0), (3, 500)]);
        // The new leader has both epochs and went on in its own.
        let local = runs(&[(1, 0), (3, 500), (4, 900)]);
        assert_eq!(divergence(&remote, 800, &local, 0, 1200), None);
        // Local retention trimmed the cache: only what it still covers is checked.
        let trimmed = runs(&[(3, 700), (4, 900)]);
        assert_eq!(divergence(&remote, 800, &trimmed, 700, 1200), None);
    }

    #[test]
    fn an_unclean_leader_diverges_where_its_epoch_differs() {
        // The old leader wrote epoch 3 from 500 to 800 and uploaded it; the unclean leader
        // never saw epoch 3: its epoch 4 starts at 600, where it lost the old leader's tail.
        let remote = runs(&[(1, 0), (3, 500)]);
        let local = runs(&[(1, 0), (4, 500)]);
        assert_eq!(divergence(&remote, 800, &local, 0, 900), Some(500));
        let local = runs(&[(1, 0), (3, 500), (4, 600)]);
        assert_eq!(divergence(&remote, 800, &local, 0, 900), Some(600));
    }

    #[test]
    fn a_leader_with_less_than_the_bucket_diverges_at_its_end() {
        let remote = runs(&[(1, 0)]);
        let local = runs(&[(1, 0)]);
        assert_eq!(divergence(&remote, 800, &local, 0, 650), Some(650));
        assert_eq!(divergence(&remote, 800, &local, 0, 800), None);
    }

    #[test]
    fn nothing_to_check_below_the_local_start() {
        let remote = runs(&[(1, 0)]);
        let local = runs(&[(5, 1000)]);
        assert_eq!(divergence(&remote, 800, &local, 1000, 1500), None);
        assert_eq!(divergence(&[], 0, &local, 1000, 1500), None);
    }

    #[test]
    fn segments_without_epochs_skip_the_check() {
        let mut m = Manifest::empty();
        m.segments.push(strata_tiering::SegmentMeta {
            key: "k".into(),
            base_offset: 0,
            next_offset: 10,
            max_timestamp: 0,
            object_bytes: 1,
            segment_bytes: 1,
            records: 10,
            leader_epoch: 1,
            epochs: Vec::new(),
        });
        assert_eq!(remote_epochs(&m), None);
        m.segments[0].epochs = vec![(1, 0), (2, 4)];
        let mut next = m.segments[0].clone();
        next.base_offset = 10;
        next.epochs = vec![(2, 10), (3, 12)];
        m.segments.push(next);
        assert_eq!(remote_epochs(&m), Some(runs(&[(1, 0), (2, 4), (3, 12)])));
    }
}
