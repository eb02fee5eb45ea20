//! The follower's writes to one partition replica: appending what the leader sent, truncating
//! a divergent tail, restarting empty at the leader's log start.
//!
//! Invariant: each of them happens only while this replica follows the given (leader, epoch),
//! checked under the log's write lock, so a fetcher aborted by a leadership change cannot write
//! afterwards.

use strata_log::Log;

use super::partition::Partition;
use crate::error::{BrokerError, Result};

impl Partition {
    /// Whether this replica follows `leader` at `epoch` (what a fetcher checks before it
    /// writes).
    pub(super) fn follows(&self, leader: i32, epoch: i32) -> bool {
        let s = &self.state.read().state;
        s.leader == leader && s.leader_epoch == epoch && leader != self.broker_id
    }

    /// The offset to fetch from `leader` at `epoch` (the log end), or `None` when this replica
    /// no longer follows it there. Read under the log's lock with the role check, so the
    /// offset never includes records this replica appended in another role (as a new leader,
    /// or from another leader) that the old leader would count as replicated.
    pub fn follower_fetch_offset(&self, leader: i32, epoch: i32) -> Option<i64> {
        let guard = self.log.read();
        let log = guard.as_ref()?;
        self.follows(leader, epoch).then(|| log.log_end_offset())
    }

    /// Follower of `leader` at `epoch`: appends batches exactly as the leader stored them,
    /// then takes the leader's high watermark (capped by its own log end offset). Refused
    /// when the role changed (checked under the log's write lock).
    pub fn append_replica(
        &self,
        leader: i32,
        epoch: i32,
        records: &[u8],
        leader_high_watermark: i64,
    ) -> Result<()> {
        if !records.is_empty() {
            self.with_follower_log(leader, epoch, |log| {
                log.append_replica(records)?;
                self.record_producers(log, records);
                self.log_end.send_replace(log.log_end_offset());
                Ok(())
            })?;
            self.touch();
        } else if !self.follows(leader, epoch) {
            return Err(self.stale_fetcher(leader, epoch));
        }
        let hw = leader_high_watermark.min(self.log_end_offset());
        self.high_watermark.send_if_modified(|current| {
            if hw != *current {
                *current = hw;
                true
            } else {
                false
            }
        });
        Ok(())
    }

    /// Runs `f` on the log under its write lock if this replica still follows `leader` at
    /// `epoch`.
    fn with_follower_log<T>(
        &self,
        leader: i32,
        epoch: i32,
        f: impl FnOnce(&mut Log) -> strata_log::Result<T>,
    ) -> Result<T> {
        let mut guard = self.log.write();
        let log = guard.as_mut().ok_or_else(|| self.closed())?;
        if !self.follows(leader, epoch) {
            return Err(self.stale_fetcher(leader, epoch));
        }
        f(log).map_err(|e| self.log_error(e))
    }

    fn stale_fetcher(&self, leader: i32, epoch: i32) -> BrokerError {
        let s = self.state();
        BrokerError::FencedEpoch(format!(
            "{}/{}: a fetcher for leader {leader} at epoch {epoch} may not write; the partition is now led by {} at epoch {}",
            self.topic, self.index, s.leader, s.leader_epoch
        ))
    }

    /// Follower of `leader` at `epoch`: drops everything at and after `offset` (a divergent
    /// tail). Refused when the role changed.
    pub fn truncate_to(&self, leader: i32, epoch: i32, offset: i64) -> Result<()> {
        self.with_follower_log(leader, epoch, |log| {
            if offset < log.log_end_offset() {
                tracing::warn!(topic = %self.topic, partition = self.index, from = offset, to = log.log_end_offset(), "truncating a divergent tail");
                log.truncate_to(offset)?;
                self.rebuild_producers(log);
                self.touch();
            }
            self.log_end.send_replace(log.log_end_offset());
            Ok(())
        })?;
        let end = self.log_end_offset();
        self.high_watermark.send_if_modified(|hw| {
            let changed = *hw > end;
            *hw = (*hw).min(end);
            changed
        });
        Ok(())
    }

    /// Follower of `leader` at `epoch`: drops the whole log and restarts it empty at `offset`
    /// (the leader's log start, when this log ends below it). Refused when the role changed.
    pub fn reset_to(&self, leader: i32, epoch: i32, offset: i64) -> Result<()> {
        self.with_follower_log(leader, epoch, |log| {
            log.reset_to(offset)?;
            self.rebuild_producers(log);
            self.touch();
            self.log_end.send_replace(log.log_end_offset());
            Ok(())
        })?;
        self.high_watermark.send_replace(offset);
        Ok(())
    }
}
