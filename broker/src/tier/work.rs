//! The leader's and followers' periodic tiered-storage work: upload sealed, committed
//! segments; apply total retention to the remote tier; scrub objects no manifest lists.
//!
//! Each leader partition's work is its own task, at most `--remote-upload-concurrency` at once
//! per broker, and a partition whose task still runs is skipped by later passes: a partition
//! stuck on a store call stalls no other.
//!
//! Invariant: the three steps are independent. An upload that fails (a store error, a gap in
//! the history) is logged and retried on the next pass, and never keeps remote retention or the
//! scrub from running: a stalled upload must not also stop the bucket from being trimmed.

use std::sync::Arc;
use tokio::sync::watch;

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use tokio::sync::Semaphore;

use super::lineage;
use super::plan::{self, Step};
use super::Tier;
use crate::error::{BrokerError, Result};
use crate::replica::{Partition, RemoteSummary};
use crate::replicas::TopicHandle;
use crate::state::BrokerState;
use strata_tiering::{Manifest, RetentionPolicy};

/// How often a broker whose store did not answer at start-up checks it again.
const STORE_RECHECK: std::time::Duration = std::time::Duration::from_secs(3);

/// How often the controller works through the remote-deletion tombstones.
const DELETIONS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3);

/// Uploads, remote retention and scrub, and (on the controller) remote deletions, until `stop`.
pub async fn run(state: Arc<BrokerState>, mut stop: watch::Receiver<bool>) {
    let Some(tier) = state.tier.as_ref() else {
        return;
    };
    tokio::spawn(run_deletions(Arc::clone(&state), stop.clone()));
    let interval = tier.config.upload_interval;
    let mut last_scrub = tokio::time::Instant::now();
    let mut next_check = tokio::time::Instant::now();
    let shared = Arc::new(Shared {
        permits: Arc::new(Semaphore::new(tier.config.upload_concurrency.max(1))),
        busy: Mutex::new(HashSet::new()),
        checked: Mutex::new(HashMap::new()),
    });
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if !tier.is_ready() {
            // A broker that started while the store did not answer checks it again every few
            // seconds; nothing is uploaded, retained or scrubbed until it answers.
            if tokio::time::Instant::now() < next_check {
                continue;
            }
            next_check = tokio::time::Instant::now() + STORE_RECHECK;
            if !store_answers(tier).await {
                continue;
            }
        }
        let mut scrub = None;
        if last_scrub.elapsed() >= tier.config.scrub_interval {
            last_scrub = tokio::time::Instant::now();
            // One read of the store's clock serves every partition of this pass.
            match tier.store_now_ms().await {
                Ok(now) => scrub = Some(now),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the object store's clock; scrubbing at the next interval")
                }
            }
        }
        for topic in state
            .replicas
            .local_topics()
            .into_iter()
            .filter(|t| t.config.remote_storage)
        {
            for p in topic.partitions.values() {
                if !p.is_leader() {
                    // Followers learn the remote tier's bounds from their leader's answers.
                    if let Some(remote) = p.remote_log() {
                        remote.follow();
                    }
                    continue;
                }
                spawn_leader_work(&state, &shared, &topic, p, scrub);
            }
        }
    }
}

/// What the per-partition tasks of [`run`] share.
#[derive(Debug)]
struct Shared {
    /// `--remote-upload-concurrency`: partitions working at once on this broker.
    permits: Arc<Semaphore>,
    /// Partitions whose task still runs: a partition stuck on a store call that does not
    /// answer holds its own slot and nobody else's pass.
    busy: Mutex<HashSet<(String, u32)>>,
    /// The leader epoch at which each partition's lineage was last checked.
    checked: Mutex<HashMap<(String, u32), i32>>,
}

/// Starts the leader's work on one partition, unless it is still running from an earlier
/// pass or every upload slot is taken (it then waits for the next pass). A scrub due in a pass
/// a partition misses is done at the next scrub interval.
fn spawn_leader_work(
    state: &Arc<BrokerState>,
    shared: &Arc<Shared>,
    topic: &Arc<TopicHandle>,
    p: &Arc<Partition>,
    scrub: Option<i64>,
) {
    let id = (topic.record.topic_id.clone(), p.index);
    if shared.busy.lock().contains(&id) {
        return;
    }
    let Ok(permit) = Arc::clone(&shared.permits).try_acquire_owned() else {
        return;
    };
    shared.busy.lock().insert(id.clone());
    let (state, shared, topic, p) = (
        Arc::clone(state),
        Arc::clone(shared),
        Arc::clone(topic),
        Arc::clone(p),
    );
    tokio::spawn(async move {
        let _permit = permit;
        if let Some(tier) = state.tier.as_ref() {
            if let Err(e) = lead_partition(tier, &topic, &p, scrub, &shared.checked).await {
                tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "tiered storage work failed; retrying");
            }
        }
        shared.busy.lock().remove(&id);
    });
}

/// Runs the store check again for a broker that started while the store did not answer.
async fn store_answers(tier: &Tier) -> bool {
    match tier.check().await {
        Ok(super::StoreCheck::Ready) => {
            tracing::info!(url = %tier.config.url, "the object store answers; tiering starts");
            true
        }
        Ok(super::StoreCheck::Unreachable(why)) => {
            tracing::debug!(reason = %why, "the object store still does not answer");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "the object store answers but cannot be used; nothing is uploaded");
            false
        }
    }
}

/// The controller's remote deletions, apart from the uploads: a big deletion or a store that
/// does not answer keeps no partition from uploading.
async fn run_deletions(state: Arc<BrokerState>, mut stop: watch::Receiver<bool>) {
    let Some(tier) = state.tier.as_ref() else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DELETIONS_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        if state
            .is_controller
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            super::deletions::process(&state.metadata, tier, state.clock.now_ms()).await;
        }
    }
}

/// The manifest in force for the leader: read from the store once per leader epoch (from the
/// version its replica fetches taught it, with no LIST), then kept in memory.
async fn manifest_for_leader(
    p: &Arc<Partition>,
    remote: &strata_tiering::RemoteLog,
) -> Result<Arc<Manifest>> {
    let hint = p.remote_summary().map(|s| s.version);
    let m = remote
        .lead(p.leader_epoch(), hint)
        .await
        .map_err(|e| p.tier_error(e))?;
    p.set_remote_summary(Some(RemoteSummary::of(&m)));
    Ok(m)
}

/// Leader: the three steps, each on its own (see the module's invariant).
async fn lead_partition(
    tier: &Tier,
    topic: &TopicHandle,
    p: &Arc<Partition>,
    scrub: Option<i64>,
    checked: &Mutex<HashMap<(String, u32), i32>>,
) -> Result<()> {
    let Some(remote) = p.remote_log() else {
        return Ok(());
    };
    let mut manifest = manifest_for_leader(p, &remote).await.inspect_err(|_| {
        strata_tiering::metrics::upload_failed_before_store();
    })?;
    let id = (topic.record.topic_id.clone(), p.index);
    let epoch = p.leader_epoch();
    if checked.lock().get(&id) != Some(&epoch) {
        manifest = reconcile_lineage(topic, p, &remote, manifest).await?;
        checked.lock().insert(id, epoch);
    }
    let (manifest, uploaded) = upload_segments(p, &remote, manifest).await;
    if let Err(e) = &uploaded {
        tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "uploading failed; retrying next pass (retention and scrub go on)");
    }
    let retained = apply_remote_retention(topic, p, &remote, manifest).await;
    if let Err(e) = &retained {
        tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "remote retention failed; retrying next pass");
    }
    if let Some(store_now_ms) = scrub {
        let report = remote
            .scrub_at(tier.config.scrub_grace, store_now_ms)
            .await
            .map_err(|e| p.tier_error(e))?;
        if !report.deleted_objects.is_empty() {
            tracing::info!(topic = %p.topic, partition = p.index, objects = report.deleted_objects.len(), "scrub removed unlisted objects");
        }
    }
    Ok(())
}

/// KIP-405's lineage check, once per leader epoch, before anything is skipped as uploaded: the
/// remote tier must hold this leader's history ([`lineage`]). After an unclean election the
/// leader's log wins, as it does for followers: the remote tail from the first diverging
/// offset is dropped (manifest first, then objects) and uploads go on from there. Without
/// unclean election a divergence means the bucket is not this partition's history: nothing is
/// uploaded or deleted, and the error says so on every pass.
async fn reconcile_lineage(
    topic: &TopicHandle,
    p: &Arc<Partition>,
    remote: &strata_tiering::RemoteLog,
    manifest: Arc<Manifest>,
) -> Result<Arc<Manifest>> {
    let (Some(end), Some(runs)) = (manifest.end_offset(), lineage::remote_epochs(&manifest)) else {
        return Ok(manifest);
    };
    let (local, local_start, local_end) = p.with_log(|log| {
        Ok((
            log.epoch_entries(),
            log.log_start_offset(),
            log.log_end_offset(),
        ))
    })?;
    let Some(from) = lineage::divergence(&runs, end, &local, local_start, local_end) else {
        return Ok(manifest);
    };
    let (topic_name, index) = (&p.topic, p.index);
    if !topic.config.unclean_leader_election {
        return Err(BrokerError::Internal(format!(
            "{topic_name}/{index}: the remote tier holds offsets {from}..{end} that this leader's \
             log does not hold with the same leader epoch; with \
             unclean.leader.election.enable=false that cannot come from an election, so nothing \
             is uploaded or deleted until an operator looks"
        )));
    }
    let keep_end = manifest
        .segments
        .iter()
        .find(|s| s.next_offset > from)
        .map_or(end, |s| s.base_offset);
    if keep_end < local_start {
        return Err(BrokerError::Internal(format!(
            "{topic_name}/{index}: after an unclean election the remote tier diverges from this \
             leader's log at offset {from}, inside a remote segment starting at {keep_end}, below \
             the local log start {local_start}: the shared part cannot be uploaded again, so \
             nothing is uploaded until an operator looks"
        )));
    }
    let (after, deleted) = remote
        .truncate_end(from, p.leader_epoch())
        .await
        .map_err(|e| p.tier_error(e))?;
    tracing::warn!(topic = %topic_name, partition = index, from, remote_end = end, new_remote_end = keep_end, objects = deleted.len(),
        "unclean leader election: the remote tier held records this leader does not have; dropped its tail (those records are gone) and uploading from the new end");
    p.set_remote_summary(Some(RemoteSummary::of(&after)));
    Ok(Arc::new(after))
}

/// Uploads every sealed segment wholly below the high watermark that the remote log does not
/// hold yet, in offset order, each from the remote end ([`plan::step`]). Returns the manifest
/// as it stands after the uploads that succeeded, and the first failure.
async fn upload_segments(
    p: &Arc<Partition>,
    remote: &strata_tiering::RemoteLog,
    mut manifest: Arc<Manifest>,
) -> (Arc<Manifest>, Result<()>) {
    let counted = |e: BrokerError| {
        strata_tiering::metrics::upload_failed_before_store();
        e
    };
    let epoch = p.leader_epoch();
    let hw = p.high_watermark();
    let segments = match p.with_log(|log| Ok(log.segments())) {
        Ok(s) => s,
        Err(e) => return (manifest, Err(counted(e))),
    };
    for seg in segments.iter().filter(|s| s.sealed && s.next_offset <= hw) {
        let end = manifest.end_offset();
        let from = match plan::step(seg.base_offset, seg.next_offset, end) {
            Step::Skip => continue,
            Step::Upload { from } => from,
            Step::Gap { remote_end, base } => {
                let e = BrokerError::Internal(format!(
                    "{}/{}: the remote tier ends at {remote_end} but this leader's oldest \
                     unuploaded segment starts at {base}; offsets {remote_end}..{base} are in \
                     neither tier here, so nothing is uploaded past them",
                    p.topic, p.index
                ));
                return (manifest, Err(counted(e)));
            }
        };
        if from > seg.base_offset {
            tracing::info!(topic = %p.topic, partition = p.index, segment_base = seg.base_offset, from,
                "uploading from the remote end inside a local segment (replicas rolled at different batches)");
        }
        let source = log_source(Arc::clone(p), from, seg.next_offset);
        match remote.upload_from(from, epoch, source).await {
            Ok(next) => {
                tracing::debug!(topic = %p.topic, partition = p.index, from, next = seg.next_offset, "segment uploaded");
                p.set_remote_summary(Some(RemoteSummary::of(&next)));
                manifest = Arc::new(next);
            }
            Err(e) => return (manifest, Err(p.tier_error(e))),
        }
    }
    (manifest, Ok(()))
}

/// Bytes of local log read per call while uploading: the upload streams the segment.
const UPLOAD_CHUNK: usize = 1 << 20;

/// The batches of `p`'s local log in `[from, end)`, about [`UPLOAD_CHUNK`] per call (run on
/// the blocking pool by the upload). Local retention never deletes them meanwhile: its limit
/// is the manifest's end, which is `from`.
fn log_source(p: Arc<Partition>, from: i64, end: i64) -> strata_tiering::BatchSource {
    let mut offset = from;
    Box::new(move || {
        if offset >= end {
            return Ok(None);
        }
        let read = p
            .with_log(|log| log.read(offset, UPLOAD_CHUNK, end))
            .map_err(|e| e.to_string())?;
        if read.bytes.is_empty() {
            return Err(format!(
                "the local log returned nothing at offset {offset}, below the segment's end {end}"
            ));
        }
        offset = plan::chunk_end(&read.bytes, offset).ok_or_else(|| {
            format!(
                "offset {offset} (where the upload continues) is no batch boundary of the local \
                 log: its history differs from the uploaded one"
            )
        })?;
        Ok(Some(read.bytes))
    })
}

/// Total retention over both tiers: time on the remote segments, size on remote plus
/// local-only bytes. Writes the new manifest before deleting objects.
async fn apply_remote_retention(
    topic: &TopicHandle,
    p: &Arc<Partition>,
    remote: &strata_tiering::RemoteLog,
    current: Arc<Manifest>,
) -> Result<()> {
    if current.segments.is_empty() {
        return Ok(());
    }
    let cfg = &topic.config.log;
    let local_only = p.local_bytes_above(current.end_offset().unwrap_or(0))?;
    let policy = RetentionPolicy {
        start_offset: None,
        retention_ms: cfg.retention_ms,
        retention_bytes: cfg.retention_bytes.map(|b| b.saturating_sub(local_only)),
    };
    let (after, deleted) = remote
        .apply_retention(&policy, p.leader_epoch())
        .await
        .map_err(|e| p.tier_error(e))?;
    if !deleted.is_empty() {
        tracing::info!(topic = %p.topic, partition = p.index, objects = deleted.len(), remote_log_start = after.remote_log_start_offset, "remote retention deleted segments");
        p.set_remote_summary(Some(RemoteSummary::of(&after)));
    }
    Ok(())
}
