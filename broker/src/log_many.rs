//! The Log service's multi-partition calls (`ProduceMany`, `FetchMany`): one request per
//! leader broker carries every partition a client has ready for it, and each partition is
//! authorized, served and answered on its own exactly as its one-partition call would be (the
//! same checks, the same error codes and sentences), so one refused partition fails only
//! itself.
//!
//! Invariants: a partition appears at most once per request (its batches' order, or its
//! offsets, would be undefined otherwise); a `FetchMany` never answers more than its byte
//! budget plus one batch, reads each partition below its high watermark only, and waits on all
//! of its partitions at once.

use std::time::Duration;
use strata_proto as pb;
use tonic::Status;

use super::LogService;
use crate::error::BrokerError;
use crate::replica::FetchCursor;
use crate::security::{Operation, Principal, ResourceType};

/// Refuses a request that names a partition twice.
fn check_unique<'a>(
    call: &str,
    partitions: impl Iterator<Item = (&'a str, u32)>,
) -> Result<(), Status> {
    let mut seen = std::collections::HashSet::new();
    for (topic, partition) in partitions {
        if !seen.insert((topic, partition)) {
            return Err(BrokerError::InvalidRequest(format!(
                "partition {topic}/{partition} appears twice in one {call} request; name each partition once"
            ))
            .into());
        }
    }
    Ok(())
}

/// A partition's answer in a multi-partition call: the code of docs/errors.md and the sentence
/// a one-partition call would have failed with.
fn partition_error(status: &Status) -> (String, String) {
    (
        strata_proto::ErrorCode::of(status).as_str().to_string(),
        status.message().to_string(),
    )
}

impl LogService {
    /// Appends to every partition of the request at once; each is authorized and answered on
    /// its own. A partition named twice refuses the whole request (its batches' order would
    /// be undefined).
    pub(super) async fn produce_many_partitions(
        &self,
        who: &Principal,
        req: pb::ProduceManyRequest,
    ) -> Result<pb::ProduceManyResponse, Status> {
        check_unique(
            "ProduceMany",
            req.partitions
                .iter()
                .map(|p| (p.topic.as_str(), p.partition)),
        )?;
        let security = &self.state.security;
        let appends = req.partitions.into_iter().map(|p| {
            let (topic, partition) = (p.topic.clone(), p.partition);
            let one = pb::ProduceRequest {
                topic: p.topic,
                partition: p.partition,
                acks: req.acks,
                timeout_ms: req.timeout_ms,
                records: p.records,
            };
            async move {
                let outcome = match security.authorize(
                    who,
                    Operation::Write,
                    ResourceType::Topic,
                    &one.topic,
                ) {
                    Ok(()) => self.produce_batches(one).await,
                    Err(e) => Err(e.into()),
                };
                match outcome {
                    Ok(r) => pb::PartitionProduced {
                        topic,
                        partition,
                        error_code: String::new(),
                        error_message: String::new(),
                        base_offset: r.base_offset,
                        last_offset: r.last_offset,
                        log_start_offset: r.log_start_offset,
                    },
                    Err(status) => {
                        let (error_code, error_message) = partition_error(&status);
                        pb::PartitionProduced {
                            topic,
                            partition,
                            error_code,
                            error_message,
                            base_offset: -1,
                            last_offset: -1,
                            log_start_offset: -1,
                        }
                    }
                }
            }
        });
        Ok(pb::ProduceManyResponse {
            partitions: futures::future::join_all(appends).await,
        })
    }

    /// A long poll over every partition of the request: each is authorized and checked on
    /// its own; the answer comes once `min_bytes` are read over all of them or at
    /// `max_wait_ms`, woken by any of their high watermarks.
    pub(super) async fn fetch_many_partitions(
        &self,
        who: &Principal,
        req: pb::FetchManyRequest,
    ) -> Result<pb::FetchManyResponse, Status> {
        check_unique(
            "FetchMany",
            req.partitions
                .iter()
                .map(|p| (p.topic.as_str(), p.partition)),
        )?;
        let cfg = &self.state.config;
        let max_wait = Duration::from_millis(req.max_wait_ms as u64).min(cfg.max_fetch_wait);
        let total = match req.max_bytes {
            0 => cfg.max_fetch_bytes,
            n => (n as usize).min(cfg.max_fetch_bytes),
        };
        let want = (req.min_bytes as usize).min(total).max(1);
        let deadline = tokio::time::Instant::now() + max_wait;
        let security = &self.state.security;
        // Per partition: its answer so far (an error ends it), and its cursor while served.
        let mut answers: Vec<pb::PartitionFetched> = Vec::with_capacity(req.partitions.len());
        let mut served = Vec::new();
        for (i, p) in req.partitions.iter().enumerate() {
            answers.push(pb::PartitionFetched {
                topic: p.topic.clone(),
                partition: p.partition,
                ..Default::default()
            });
            let found = security
                .authorize(who, Operation::Read, ResourceType::Topic, &p.topic)
                .and_then(|()| self.state.replicas.leader(&p.topic, p.partition));
            match found {
                Ok(partition) => {
                    let max = match p.max_bytes {
                        0 => total,
                        n => (n as usize).min(total),
                    };
                    let rx = partition.watch_high_watermark();
                    served.push((i, partition, FetchCursor::new(p.offset, max), rx));
                }
                Err(e) => refuse(&mut answers[i], &e.into()),
            }
        }
        let mut first = true;
        // The partition whose high watermark ended the last wait: waiting marked its change
        // seen, so `has_changed` no longer says so.
        let mut woken: Option<usize> = None;
        loop {
            let mut held: usize = served.iter().map(|(_, _, c, _)| c.held()).sum();
            let mut failed = Vec::new();
            for (k, (i, partition, cursor, rx)) in served.iter_mut().enumerate() {
                // After the first pass, only partitions whose high watermark moved are read.
                let moved = first || woken == Some(k) || rx.has_changed().unwrap_or(true);
                if held >= total || cursor.is_full() || !moved {
                    continue;
                }
                if !partition.is_leader() {
                    refuse(&mut answers[*i], &partition.not_leader().into());
                    failed.push(k);
                    continue;
                }
                let hw = *rx.borrow_and_update();
                match cursor.read_more(partition, total - held, hw).await {
                    Ok(n) => held += n,
                    Err(e) => {
                        refuse(&mut answers[*i], &e.into());
                        failed.push(k);
                    }
                }
            }
            first = false;
            woken = None;
            for k in failed.into_iter().rev() {
                served.swap_remove(k);
            }
            let open: Vec<usize> = (0..served.len())
                .filter(|k| !served[*k].2.is_full())
                .collect();
            if held >= want
                || held >= total
                || open.is_empty()
                || tokio::time::Instant::now() >= deadline
            {
                break;
            }
            // Woken by the high watermark of a partition that can still take bytes.
            let changed = served
                .iter_mut()
                .enumerate()
                .filter(|(k, _)| open.contains(k))
                .map(|(_, (_, _, _, rx))| Box::pin(rx.changed()));
            match tokio::time::timeout_at(deadline, futures::future::select_all(changed)).await {
                Ok((_, i, _)) => woken = Some(open[i]),
                // One more pass: what came with the last change before the deadline.
                Err(_) => first = true,
            }
        }
        for (i, partition, cursor, _) in served {
            match cursor.finish(&partition) {
                Ok(r) => {
                    let a = &mut answers[i];
                    a.high_watermark = r.high_watermark;
                    a.log_start_offset = r.log_start_offset;
                    a.log_end_offset = r.log_end_offset;
                    a.records = r.records;
                }
                Err(e) => refuse(&mut answers[i], &e.into()),
            }
        }
        Ok(pb::FetchManyResponse {
            partitions: answers,
        })
    }
}

/// Marks a partition's answer with the error its one-partition call would have returned.
fn refuse(answer: &mut pb::PartitionFetched, status: &Status) {
    let (code, message) = partition_error(status);
    answer.error_code = code;
    answer.error_message = message;
}
