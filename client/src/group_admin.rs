//! Consumer-group administration on [`Admin`]: list, describe (with lag), seek and delete.
//! Calls that need the group's coordinator go through it; lag and seek targets are resolved
//! with list-offsets on the partitions' leaders.

use std::collections::{BTreeMap, BTreeSet};

use strata_proto::list_offsets_request::Spec;
use strata_proto::{
    DeleteGroupRequest, DescribeGroupRequest, DescribeGroupResponse, FetchOffsetsRequest,
    GroupSummary, ListGroupsRequest, ListOffsetsRequest, OffsetCommit, ResetOffsetsRequest,
};

use crate::admin::Admin;
use crate::consumer::SeekTo;
use crate::coordinator::{on_any_broker, GroupCalls};
use crate::error::{Error, Result};
use crate::group::Partition;

/// A partition's committed offset beside its high watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetLag {
    pub topic: String,
    pub partition: u32,
    /// `None`: nothing committed.
    pub committed: Option<i64>,
    pub high_watermark: i64,
    /// `high_watermark - committed`, when something is committed.
    pub lag: Option<i64>,
}

/// A group's state, members and per-partition lag.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group: DescribeGroupResponse,
    pub offsets: Vec<OffsetLag>,
}

impl Admin {
    /// Every group the cluster knows.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let answer = on_any_broker(&self.cluster, |mut c| async move {
            c.list_groups(ListGroupsRequest {}).await
        })
        .await?;
        Ok(answer.groups)
    }

    /// The group's state and members (from its coordinator), and the lag of every partition it
    /// has committed or assigned.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let calls = GroupCalls::new(self.cluster.clone(), group);
        let request = DescribeGroupRequest {
            group: group.to_string(),
        };
        let described = calls
            .call(|mut c| {
                let r = request.clone();
                async move { c.describe_group(r).await }
            })
            .await?;
        let mut committed: BTreeMap<Partition, Option<i64>> = described
            .offsets
            .iter()
            .map(|o| ((o.topic.clone(), o.partition), Some(o.offset)))
            .collect();
        for m in &described.members {
            for a in &m.assignment {
                committed
                    .entry((a.topic.clone(), a.partition))
                    .or_insert(None);
            }
        }
        let mut offsets = Vec::with_capacity(committed.len());
        for ((topic, partition), c) in committed {
            let high_watermark = self
                .list_offset(&topic, partition, Spec::Latest(true))
                .await?;
            offsets.push(OffsetLag {
                lag: c.map(|c| (high_watermark - c).max(0)),
                topic,
                partition,
                committed: c,
                high_watermark,
            });
        }
        Ok(GroupDescription {
            group: described,
            offsets,
        })
    }

    /// Moves the committed offsets of a group without members: of every partition of `topic`,
    /// or, without a topic, of every partition the group has committed. Returns what was set.
    pub async fn seek_group(
        &self,
        group: &str,
        to: SeekTo,
        topic: Option<&str>,
    ) -> Result<Vec<(Partition, i64)>> {
        let calls = GroupCalls::new(self.cluster.clone(), group);
        let partitions: Vec<Partition> = match topic {
            Some(t) => {
                let meta = self.cluster.topic(t).await?;
                (0..meta.partitions()).map(|p| (t.to_string(), p)).collect()
            }
            None => {
                let request = FetchOffsetsRequest {
                    group: group.to_string(),
                    partitions: vec![],
                };
                let found = calls
                    .call(|mut c| {
                        let r = request.clone();
                        async move { c.fetch_offsets(r).await }
                    })
                    .await?;
                let set: BTreeSet<Partition> = found
                    .offsets
                    .into_iter()
                    .map(|o| (o.topic, o.partition))
                    .collect();
                if set.is_empty() {
                    return Err(Error::InvalidInput(format!(
                        "group {group} has no committed offsets to move; name a topic with --topic"
                    )));
                }
                set.into_iter().collect()
            }
        };
        let mut targets = Vec::with_capacity(partitions.len());
        for (t, p) in partitions {
            let offset = match to {
                SeekTo::Earliest => self.list_offset(&t, p, Spec::Earliest(true)).await?,
                SeekTo::Latest => self.list_offset(&t, p, Spec::Latest(true)).await?,
                SeekTo::Timestamp(ms) => self.list_offset(&t, p, Spec::TimestampMs(ms)).await?,
                SeekTo::Offset(o) => {
                    let start = self.list_offset(&t, p, Spec::Earliest(true)).await?;
                    let end = self.list_offset(&t, p, Spec::Latest(true)).await?;
                    if o < start || o > end {
                        return Err(Error::InvalidInput(format!(
                            "offset {o} is outside {t}/{p}: valid offsets are {start}..={end}"
                        )));
                    }
                    o
                }
            };
            targets.push(((t, p), offset));
        }
        let request = ResetOffsetsRequest {
            group: group.to_string(),
            offsets: targets
                .iter()
                .map(|((topic, partition), offset)| OffsetCommit {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    metadata: String::new(),
                })
                .collect(),
        };
        calls
            .call(|mut c| {
                let r = request.clone();
                async move { c.reset_offsets(r).await }
            })
            .await?;
        Ok(targets)
    }

    /// Deletes a group without members and its offsets; returns how many offsets went.
    pub async fn delete_group(&self, group: &str) -> Result<u32> {
        let calls = GroupCalls::new(self.cluster.clone(), group);
        let request = DeleteGroupRequest {
            group: group.to_string(),
        };
        let answer = calls
            .call(|mut c| {
                let r = request.clone();
                async move { c.delete_group(r).await }
            })
            .await?;
        Ok(answer.offsets_deleted)
    }

    async fn list_offset(&self, topic: &str, partition: u32, spec: Spec) -> Result<i64> {
        self.cluster.topic(topic).await?.check(partition)?;
        let request = ListOffsetsRequest {
            topic: topic.to_string(),
            partition,
            spec: Some(spec),
        };
        let answer = self
            .cluster
            .call_leader(topic, partition, |mut client| {
                let r = request.clone();
                async move { client.list_offsets(r).await }
            })
            .await?;
        Ok(answer.offset)
    }
}
