//! The consumer's background fetcher: one task for every assigned partition, sending one
//! `FetchMany` long poll per leader broker for the partitions it leads whose prefetch buffer
//! has room, and handing each partition's batches to its buffer (`poll` decodes them).
//!
//! Invariants: at most one request in flight per partition, so a partition's batches reach its
//! buffer in offset order; an answer for a partition that was re-assigned or sought since
//! (another generation) is dropped; a partition that met a non-retriable error gets that error
//! as the last thing in its buffer and is not fetched again until it is sought; a broker older
//! than `FetchMany` is asked with one `Fetch` per partition.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use strata_log::batch::BatchIter;
use strata_proto::{ErrorCode, FetchManyRequest, FetchRequest, PartitionFetch};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::config::ConsumerConfig;
use crate::error::{Error, Result};
use crate::metadata::Cluster;

/// Longest wait between two attempts of a failing fetch.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Least time between two fetches of a partition whose answers come back empty at once.
const EMPTY_FLOOR: Duration = Duration::from_millis(50);
/// A leader with fewer partitions to fetch than this gets one long poll per partition (the
/// one-partition Fetch): each answers as soon as its own records arrive, so a consumer of a few
/// partitions keeps its latency; past it, one FetchMany carries them all.
const MANY_FROM: usize = 8;
/// Most bytes one FetchMany may answer (each partition also keeps its own bound): under the
/// client's 64 MiB message limit with room for the framing.
const MAX_ANSWER_BYTES: u32 = 48 * 1024 * 1024;

/// What the fetcher hands to `poll`: one answer's batch bytes, or the error that stopped it.
pub(crate) type Fetched = Result<Bytes>;

/// A partition as the consumer names it.
pub(crate) type Key = (Arc<str>, u32);

#[derive(Debug)]
struct Feed {
    generation: u64,
    offset: i64,
    tx: mpsc::Sender<Fetched>,
    in_flight: bool,
    /// Not fetched before then (a backoff, or the empty-answer floor).
    not_before: Option<Instant>,
    backoff: Duration,
    /// A non-retriable error was handed over: nothing more until a seek.
    stopped: bool,
}

/// The partitions the fetcher serves, shared with the consumer.
#[derive(Debug, Default)]
pub(crate) struct Feeds {
    parts: Mutex<HashMap<Key, Feed>>,
    generations: Mutex<u64>,
    /// Wakes the fetcher: a partition added, or a buffer drained.
    pub(crate) wake: Notify,
}

impl Feeds {
    /// Starts fetching `key` from `offset` into a new buffer of `capacity` answers (replacing
    /// what fetched it before); returns the buffer's receiver and the generation.
    pub(crate) fn start(
        &self,
        key: Key,
        offset: i64,
        capacity: usize,
    ) -> (mpsc::Receiver<Fetched>, u64) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let generation = {
            let mut g = self.generations.lock();
            *g += 1;
            *g
        };
        self.parts.lock().insert(
            key,
            Feed {
                generation,
                offset,
                tx,
                in_flight: false,
                not_before: None,
                backoff: FIRST_BACKOFF,
                stopped: false,
            },
        );
        self.wake.notify_one();
        (rx, generation)
    }

    /// Stops fetching `key`, if `generation` is still the one fetching it.
    pub(crate) fn stop(&self, key: &Key, generation: u64) {
        let mut parts = self.parts.lock();
        if parts.get(key).is_some_and(|f| f.generation == generation) {
            parts.remove(key);
        }
    }
}

/// One request's partitions: (key, generation, offset).
type Asked = Vec<(Key, u64, i64)>;

/// Runs until aborted (the consumer dropped).
pub(crate) async fn run(
    feeds: Arc<Feeds>,
    cluster: Arc<Cluster>,
    config: Arc<ConsumerConfig>,
    ready: Arc<Notify>,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut rounds: usize = 0;
    loop {
        let now = Instant::now();
        let (groups, unknown, next_due) = due(&feeds, &cluster, now);
        let groups = groups.into_iter().flat_map(|(address, asked)| {
            if asked.len() < MANY_FROM {
                asked
                    .into_iter()
                    .map(|one| (address.clone(), vec![one]))
                    .collect::<Vec<_>>()
            } else {
                vec![(address, asked)]
            }
        });
        for (address, mut asked) in groups {
            // A different partition first each time: the broker fills its byte budget in
            // request order, so a backlogged partition must not always take it.
            rounds = rounds.wrapping_add(1);
            let n = asked.len();
            asked.rotate_left(rounds % n);
            let (cluster, config) = (cluster.clone(), config.clone());
            in_flight.push(async move {
                let started = Instant::now();
                let answers = fetch_group(&cluster, &config, &address, &asked).await;
                (asked, answers, started)
            });
        }
        if !unknown.is_empty() {
            // Leaders not cached (an election under way, a topic just created or deleted):
            // one refresh, and the partitions it did not place wait out a backoff, so answers
            // in flight are still taken meanwhile.
            let topics: Vec<String> = unknown.iter().map(|t| t.to_string()).collect();
            let refreshed = cluster.refresh(&topics).await;
            if let Err(e) = &refreshed {
                tracing::debug!(error = %e, "metadata refresh for fetching failed");
            }
            unplaced(
                &feeds,
                &cluster,
                &unknown,
                Instant::now(),
                refreshed.err(),
                &ready,
            );
            continue;
        }
        let sleep = async {
            match next_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((asked, answers, started)) = in_flight.next(), if !in_flight.is_empty() => {
                deliver(&feeds, &cluster, &ready, asked, answers, started).await;
            }
            _ = feeds.wake.notified() => {}
            _ = sleep => {}
        }
    }
}

/// The partitions to fetch now, grouped by cached leader (marked in flight); the topics whose
/// leaders are not cached; and when the next partition waiting out a backoff is due.
fn due(
    feeds: &Feeds,
    cluster: &Cluster,
    now: Instant,
) -> (HashMap<String, Asked>, Vec<Arc<str>>, Option<Instant>) {
    let mut groups: HashMap<String, Asked> = HashMap::new();
    let mut unknown: Vec<Arc<str>> = Vec::new();
    let mut next_due: Option<Instant> = None;
    let mut parts = feeds.parts.lock();
    for (key, feed) in parts.iter_mut() {
        if feed.in_flight || feed.stopped || feed.tx.capacity() == 0 {
            continue;
        }
        if let Some(at) = feed.not_before.filter(|at| *at > now) {
            next_due = Some(next_due.map_or(at, |d| d.min(at)));
            continue;
        }
        match cluster.cached_leader(&key.0, key.1) {
            Some(address) => {
                feed.in_flight = true;
                groups.entry(address).or_default().push((
                    key.clone(),
                    feed.generation,
                    feed.offset,
                ));
            }
            None => {
                if !unknown.contains(&key.0) {
                    unknown.push(key.0.clone());
                }
            }
        }
    }
    (groups, unknown, next_due)
}

/// Partitions of `topics` whose leader the cache still lacks after a refresh: they back off,
/// or, when the refresh failed for good (the topic is gone), hand that error to `poll` and stop.
fn unplaced(
    feeds: &Feeds,
    cluster: &Cluster,
    topics: &[Arc<str>],
    now: Instant,
    failed: Option<Error>,
    ready: &Notify,
) {
    let mut handed = false;
    for (key, feed) in feeds.parts.lock().iter_mut() {
        if !topics.contains(&key.0) || feed.in_flight || feed.stopped {
            continue;
        }
        if cluster.cached_leader(&key.0, key.1).is_some() {
            continue;
        }
        match &failed {
            Some(e) if !e.is_retriable() => {
                feed.stopped = true;
                handed |= feed.tx.try_send(Err(e.clone())).is_ok();
            }
            _ => {
                feed.not_before = Some(now + feed.backoff);
                feed.backoff = (feed.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    if handed {
        ready.notify_one();
    }
}

/// One long poll to `address` for `asked`: each partition's records or error, in its order.
async fn fetch_group(
    cluster: &Cluster,
    config: &ConsumerConfig,
    address: &str,
    asked: &Asked,
) -> Vec<Fetched> {
    let max_wait_ms = config.fetch_max_wait.as_millis().min(u32::MAX as u128) as u32;
    let whole = async {
        if asked.len() == 1 {
            // One partition: its own call, as before FetchMany existed.
            return Err(Error::Broker {
                code: ErrorCode::Unknown,
                status: tonic::Code::Unimplemented,
                message: "one partition: Fetch".to_string(),
            });
        }
        let mut client = cluster.conns().log(address).await?;
        let request = FetchManyRequest {
            partitions: asked
                .iter()
                .map(|((topic, partition), _, offset)| PartitionFetch {
                    topic: topic.to_string(),
                    partition: *partition,
                    offset: *offset,
                    max_bytes: config.fetch_max_bytes,
                })
                .collect(),
            max_wait_ms,
            min_bytes: config.fetch_min_bytes,
            // Each partition may have its own fetch_max_bytes, as with a poll of its own.
            max_bytes: config
                .fetch_max_bytes
                .saturating_mul(asked.len() as u32)
                .min(MAX_ANSWER_BYTES),
        };
        client
            .fetch_many(request)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| cluster.conns().error(s, address))
    }
    .await;
    match whole {
        Ok(answer) => {
            let mut by_key: HashMap<(String, u32), Fetched> = answer
                .partitions
                .into_iter()
                .map(|p| {
                    let outcome = match p.error_code.is_empty() {
                        true => Ok(p.records),
                        false => Err(Error::of_partition(&p.error_code, p.error_message)),
                    };
                    ((p.topic, p.partition), outcome)
                })
                .collect();
            asked
                .iter()
                .map(|((topic, partition), _, _)| {
                    by_key
                        .remove(&(topic.to_string(), *partition))
                        .unwrap_or_else(|| {
                            Err(Error::Corrupt(format!(
                                "the FetchMany answer left out {topic}/{partition}"
                            )))
                        })
                })
                .collect()
        }
        // A broker older than FetchMany (or a single partition): one Fetch per partition.
        Err(Error::Broker {
            status: tonic::Code::Unimplemented,
            ..
        }) => {
            let one = |(key, _, offset): &(Key, u64, i64)| {
                let (topic, partition, offset) = (key.0.clone(), key.1, *offset);
                async move {
                    let mut client = cluster.conns().log(address).await?;
                    let request = FetchRequest {
                        topic: topic.to_string(),
                        partition,
                        offset,
                        max_wait_ms,
                        min_bytes: config.fetch_min_bytes,
                        max_bytes: config.fetch_max_bytes,
                    };
                    client
                        .fetch(request)
                        .await
                        .map(|r| r.into_inner().records)
                        .map_err(|s| cluster.conns().error(s, address))
                }
            };
            futures::future::join_all(asked.iter().map(one)).await
        }
        Err(e) => asked.iter().map(|_| Err(e.clone())).collect(),
    }
}

/// Hands each answer to its partition's buffer (when that partition is still the one asked
/// for), moves its offset on, and backs off partitions that failed or came back empty at once.
async fn deliver(
    feeds: &Feeds,
    cluster: &Cluster,
    ready: &Notify,
    asked: Asked,
    answers: Vec<Fetched>,
    started: Instant,
) {
    let now = Instant::now();
    let mut refresh: Vec<(Arc<str>, Error)> = Vec::new();
    let mut handed = false;
    {
        let mut parts = feeds.parts.lock();
        for ((key, generation, _), answer) in asked.into_iter().zip(answers) {
            let Some(feed) = parts.get_mut(&key).filter(|f| f.generation == generation) else {
                continue; // sought or re-assigned meanwhile: this answer is stale
            };
            feed.in_flight = false;
            match answer {
                Ok(records) if records.is_empty() => {
                    // A broker that answers an empty long poll early must not make this spin.
                    feed.not_before = Some(started + EMPTY_FLOOR);
                }
                Ok(records) => match next_offset(&records) {
                    Ok(next) => {
                        feed.offset = feed.offset.max(next);
                        feed.backoff = FIRST_BACKOFF;
                        feed.not_before = None;
                        // Room was checked when the request left, and only this task sends.
                        handed |= feed.tx.try_send(Ok(records)).is_ok();
                    }
                    Err(e) => {
                        feed.stopped = true;
                        handed |= feed.tx.try_send(Err(e)).is_ok();
                    }
                },
                Err(e) if e.is_retriable() => {
                    tracing::debug!(topic = %key.0, partition = key.1, error = %e, "fetch failed; retrying");
                    feed.not_before = Some(now + feed.backoff);
                    feed.backoff = (feed.backoff * 2).min(MAX_BACKOFF);
                    if !refresh.iter().any(|(t, _)| *t == key.0) {
                        refresh.push((key.0.clone(), e));
                    }
                }
                Err(e) => {
                    feed.stopped = true;
                    handed |= feed.tx.try_send(Err(e)).is_ok();
                }
            }
        }
    }
    if handed {
        ready.notify_one();
    }
    for (topic, e) in refresh {
        cluster.refresh_after(&topic, &e).await;
    }
}

/// The offset after the last batch of an answer (headers only; `poll` checks CRCs).
fn next_offset(records: &Bytes) -> Result<i64> {
    let mut next = -1;
    for item in BatchIter::new(records) {
        let (header, _) = item.map_err(|e| Error::Corrupt(e.to_string()))?;
        next = header.next_offset();
    }
    Ok(next)
}
