//! A stopped broker's replicas read straight from its data directory: the batches (base
//! offset, last offset, CRC) each partition log holds, for comparing replicas byte for byte
//! without going through any broker.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::history::Batches;
use crate::serve::ServeBroker;

/// The batches of partitions `0..partitions` of `topic` on `broker`, which must be stopped (its
/// logs are opened, and recovered if it was killed). A partition it has no directory for is
/// empty.
pub fn batches(broker: &ServeBroker, topic: &str, partitions: u32) -> BTreeMap<u32, Batches> {
    let logs = broker.data_dir.join("logs");
    assert!(
        !broker.is_running(),
        "broker {} must be stopped before its logs are read",
        broker.id
    );
    let topic_dir = std::fs::read_dir(&logs)
        .unwrap_or_else(|e| panic!("listing {}: {e}", logs.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{topic}~")))
        });
    (0..partitions)
        .map(|p| {
            let Some(dir) = topic_dir.as_ref().map(|d| d.join(p.to_string())) else {
                return (p, Vec::new());
            };
            if !dir.exists() {
                return (p, Vec::new());
            }
            let log = strata_log::Log::open(
                &dir,
                strata_log::LogConfig::default(),
                Arc::new(strata_log::SystemClock),
            )
            .unwrap_or_else(|e| panic!("opening {}: {e}", dir.display()));
            let batches = log
                .headers_from(log.log_start_offset())
                .unwrap_or_else(|e| panic!("reading batch headers of {}: {e}", dir.display()))
                .iter()
                .map(|h| {
                    (
                        h.base_offset,
                        h.base_offset + h.last_offset_delta as i64,
                        h.crc,
                    )
                })
                .collect();
            (p, batches)
        })
        .collect()
}
