//! The follower's epoch exchange with a leader before it fetches in a new leader epoch: it
//! asks where its epochs end in the leader's log and truncates a divergent tail, looping over
//! epochs as KIP-279 does. [`crate::replica::truncation`] decides; this module asks and cuts.
//!
//! Invariant: the cut never goes below the high watermark (unless unclean leader election is
//! on), and every cut is checked against the (leader, epoch) under the log's write lock.

use std::sync::Arc;
use strata_proto as pb;
use strata_proto::v1::replica_client::ReplicaClient;
use tonic::transport::Channel;

use crate::error::{BrokerError, Result};
use crate::replica::truncation::{self, OwnLog, Step};
use crate::replica::{blocking, Partition};

/// Most rounds of the epoch exchange before giving up for a backoff (each round asks about a
/// smaller epoch, so a log with fewer epochs never reaches it).
const MAX_TRUNCATION_ROUNDS: usize = 64;

/// Truncates to the end of what this log shares with the leader: the epoch exchange of
/// [`truncation`], one question to the leader per round.
pub async fn truncate(
    p: &Arc<Partition>,
    client: &mut ReplicaClient<Channel>,
    leader: i32,
    epoch: i32,
) -> Result<()> {
    let mut step = truncation::start(&own_log(p, &p.with_log(|log| Ok(log.epoch_entries()))?)?);
    for _ in 0..MAX_TRUNCATION_ROUNDS {
        match step {
            Step::Ask { epoch: asked } => {
                let req = pb::EpochEndOffsetRequest {
                    topic: p.topic.to_string(),
                    partition: p.index,
                    leader_epoch: epoch,
                    epoch: asked,
                };
                let resp = client
                    .epoch_end_offset(req)
                    .await
                    .map_err(|s| {
                        BrokerError::Internal(format!(
                            "epoch query to the leader failed: {}",
                            s.message()
                        ))
                    })?
                    .into_inner();
                let answer = (resp.epoch >= 0).then_some((resp.epoch, resp.end_offset));
                let epochs = p.with_log(|log| Ok(log.epoch_entries()))?;
                step = truncation::on_answer(&own_log(p, &epochs)?, answer);
            }
            Step::Truncate { offset, then_ask } => {
                let target = p.clone();
                blocking(move || target.truncate_to(leader, epoch, offset)).await?;
                match then_ask {
                    None => return Ok(()),
                    Some(asked) => step = Step::Ask { epoch: asked },
                }
            }
            Step::Refuse {
                offset,
                high_watermark,
            } => {
                tracing::error!(topic = %p.topic, partition = p.index, leader, epoch, offset, high_watermark,
                    "the leader's log would make this replica drop committed records; refusing to truncate");
                return Err(BrokerError::FencedEpoch(format!(
                    "{}/{}: leader {leader} at epoch {epoch} holds less than this replica's high watermark {high_watermark}",
                    p.topic, p.index
                )));
            }
        }
    }
    Err(BrokerError::Internal(format!(
        "{}/{}: the epoch exchange with leader {leader} did not end within {MAX_TRUNCATION_ROUNDS} rounds",
        p.topic, p.index
    )))
}

fn own_log<'a>(p: &Partition, epochs: &'a [strata_log::EpochEntry]) -> Result<OwnLog<'a>> {
    Ok(OwnLog {
        epochs,
        log_start: p.local_log_start_offset()?,
        log_end: p.log_end_offset(),
        high_watermark: p.high_watermark(),
        allow_below_high_watermark: p.unclean_leader_election(),
    })
}
