//! How many partition replicas one broker can host, and the check that refuses a topic change
//! that would put more on a broker than it can hold.
//!
//! A replica keeps a file open (its segment; its indexes are mapped and closed) and memory-maps
//! its two indexes, so a broker runs out of file handles (`ulimit -n`) or mappings (`vm.max_map_count`)
//! long before it runs out of disk. Each broker works out its own capacity at start, the
//! smallest of `--max-partitions-per-broker` and what its limits allow, and registers it; the
//! controller refuses a creation or an addition of partitions that would pass any broker's.
//!
//! Invariant: the estimate counts one segment per replica ([`FILES_PER_REPLICA`]); a replica
//! with many segments holds more, which the reserve ([`RESERVED_FILES`]) absorbs only in part.

use std::collections::BTreeMap;

use crate::error::{BrokerError, Result};
use crate::metadata::{BrokerRecord, PartitionState};
use crate::snapshot::ClusterSnapshot;

/// The default `--max-partitions-per-broker`.
pub const DEFAULT_MAX_PARTITIONS: u32 = 10_000;
/// Files a replica of one segment keeps open: the segment (its indexes are mapped, not open).
pub const FILES_PER_REPLICA: u64 = 1;
/// Memory maps per replica: the two indexes of its active segment.
pub const MAPS_PER_REPLICA: u64 = 2;
/// Files kept for everything else: connections, etcd, sealed segments' extra handles.
pub const RESERVED_FILES: u64 = 2048;
/// Mappings kept for the allocator, the binary and thread stacks.
pub const RESERVED_MAPS: u64 = 4096;

/// A broker's capacity and the limit that sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    pub replicas: u32,
    pub set_by: String,
}

/// The capacity given the configured maximum and the process's limits (`None`: unknown).
pub fn capacity(configured: u32, open_files: Option<u64>, max_map_count: Option<u64>) -> Capacity {
    let by_files = open_files.map(|files| Capacity {
        replicas: fit(files, RESERVED_FILES, FILES_PER_REPLICA),
        set_by: format!(
            "its open-files limit of {files} (ulimit -n) at {FILES_PER_REPLICA} file per partition"
        ),
    });
    let by_maps = max_map_count.map(|maps| Capacity {
        replicas: fit(maps, RESERVED_MAPS, MAPS_PER_REPLICA),
        set_by: format!("vm.max_map_count {maps} at {MAPS_PER_REPLICA} mappings per partition"),
    });
    let configured = Capacity {
        replicas: configured,
        set_by: format!("--max-partitions-per-broker {configured}"),
    };
    // The lowest wins; on a tie, the first named (the configured value).
    [Some(configured), by_files, by_maps]
        .into_iter()
        .flatten()
        .reduce(|best, c| if c.replicas < best.replicas { c } else { best })
        .expect("the configured capacity is always there")
}

/// Replicas that fit in `limit` after `reserved`, at `each` per replica.
fn fit(limit: u64, reserved: u64, each: u64) -> u32 {
    (limit.saturating_sub(reserved) / each).min(u32::MAX as u64) as u32
}

/// The capacity of this process: `configured`, bounded by the soft open-files limit (read
/// after the CLI raised it to the hard one) and `vm.max_map_count`.
pub fn of_this_process(configured: u32) -> Capacity {
    let open_files = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| soft_open_files(&limits));
    let maps = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    capacity(configured, open_files, maps)
}

/// The soft "Max open files" of a `/proc/<pid>/limits` text.
fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Refuses `added` partition states when, with every replica the cluster already places
/// (`snapshot`), a broker would host more than the capacity it registered. Brokers that
/// registered none (older ones) are not checked.
pub fn check(
    brokers: &[BrokerRecord],
    snapshot: &ClusterSnapshot,
    added: &[PartitionState],
) -> Result<()> {
    let mut hosted: BTreeMap<i32, u64> = BTreeMap::new();
    let existing = snapshot.topics.values().flat_map(|t| t.partitions.iter());
    for state in existing.chain(added) {
        for r in &state.replicas {
            *hosted.entry(*r).or_default() += 1;
        }
    }
    for b in brokers.iter().filter(|b| b.max_partitions > 0) {
        let after = hosted.get(&b.id).copied().unwrap_or(0);
        if after > b.max_partitions as u64 {
            let new = added.iter().filter(|s| s.replicas.contains(&b.id)).count();
            return Err(BrokerError::InvalidPartitions(format!(
                "broker {} would host {after} partition replicas ({new} of them new); it can \
                 host {} ({}). Add brokers, or raise the limit that sets it",
                b.id, b.max_partitions, b.max_partitions_why
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_limit_sets_the_capacity_and_is_named() {
        let c = capacity(10_000, None, None);
        assert_eq!(c.replicas, 10_000);
        assert!(c.set_by.contains("--max-partitions-per-broker"));
        let c = capacity(100_000, Some(20_000), Some(65_530));
        assert_eq!(c.replicas, 20_000 - RESERVED_FILES as u32);
        assert!(
            c.set_by.contains("open-files limit of 20000"),
            "{}",
            c.set_by
        );
        let c = capacity(100_000, Some(1_048_576), Some(65_530));
        assert_eq!(c.replicas, (65_530 - RESERVED_MAPS as u32) / 2);
        assert!(c.set_by.contains("vm.max_map_count"), "{}", c.set_by);
        assert_eq!(capacity(10_000, Some(100), None).replicas, 0);
    }

    #[test]
    fn reads_the_soft_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            20000                40000                files     \n";
        assert_eq!(soft_open_files(limits), Some(20_000));
        assert_eq!(soft_open_files("nothing"), None);
    }

    fn broker(id: i32, max: u32) -> BrokerRecord {
        BrokerRecord {
            id,
            address: String::new(),
            rack: None,
            incarnation: 0,
            disk_id: String::new(),
            max_partitions: max,
            max_partitions_why: "its open-files limit".into(),
        }
    }

    fn on(replicas: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader: replicas[0],
            leader_epoch: 0,
            isr: replicas.to_vec(),
            leader_incarnation: 0,
            emptied: vec![],
            reassigning: None,
        }
    }

    #[test]
    fn a_change_past_a_brokers_capacity_is_refused_naming_it() {
        let brokers = [broker(1, 3), broker(2, 0)];
        let snapshot = ClusterSnapshot::default();
        assert!(check(&brokers, &snapshot, &[on(&[1]), on(&[1]), on(&[1, 2])]).is_ok());
        let err = check(&brokers, &snapshot, &vec![on(&[1, 2]); 4])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("broker 1 would host 4 partition replicas"),
            "{err}"
        );
        assert!(
            err.contains("it can host 3 (its open-files limit)"),
            "{err}"
        );
        // Broker 2 registered no capacity: not checked.
        assert!(check(&brokers[1..], &snapshot, &vec![on(&[2]); 100]).is_ok());
    }
}
