//! The producer's record accumulator: per partition, one open batch taking appends, then a
//! queue of sealed batches waiting for the sender, then the batches in flight.
//!
//! Records are encoded once, into the open batch's [`BatchBuilder`], when `send` is called; the
//! sender builds each batch's bytes once and keeps them for every retry. A partition's batches
//! leave strictly in the order they were opened, and at most `max_in_flight_per_partition` of
//! them are in flight at a time, so with the default of 1 a retried batch keeps its place.
//!
//! Delivery results are shared per batch ([`BatchShared`]): a record's future holds the batch's
//! `Arc` and its index in the batch, so completing a batch of 1,000 records is one store and
//! one round of wake-ups, not 1,000 channel sends.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use strata_log::{BatchBuilder, Compression, Header};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::metadata::TopicMeta;
use crate::partitioner::Sticky;

/// The shared delivery state of one batch: its outcome (the base offset, -1 for acks=0, or
/// the error that failed every record) and the tasks waiting for it.
#[derive(Debug)]
pub(crate) struct BatchShared {
    pub topic: Arc<str>,
    pub partition: u32,
    state: Mutex<BatchState>,
}

#[derive(Debug, Default)]
struct BatchState {
    outcome: Option<Result<i64>>,
    /// The request is over (answered, failed or given up); with acks=0 this comes after the
    /// outcome, which is known as soon as the request is handed to the transport.
    finished: bool,
    wakers: Vec<Waker>,
}

impl BatchShared {
    fn new(topic: Arc<str>, partition: u32) -> Self {
        BatchShared {
            topic,
            partition,
            state: Mutex::new(BatchState::default()),
        }
    }

    /// Records the outcome (the first one wins) and wakes every waiter.
    pub fn complete(&self, outcome: Result<i64>) {
        let wakers = {
            let mut state = self.state.lock();
            if state.outcome.is_some() {
                return;
            }
            state.outcome = Some(outcome);
            std::mem::take(&mut state.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_complete(&self) -> bool {
        self.state.lock().outcome.is_some()
    }

    /// Marks the batch's request as over and wakes every waiter.
    fn finish(&self) {
        let wakers = {
            let mut state = self.state.lock();
            state.finished = true;
            std::mem::take(&mut state.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    pub fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Result<i64>> {
        let mut state = self.state.lock();
        if let Some(outcome) = &state.outcome {
            return Poll::Ready(outcome.clone());
        }
        if !state.wakers.last().is_some_and(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Waits until the batch's request is over, whatever the outcome.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            let mut state = self.state.lock();
            if state.finished {
                return Poll::Ready(());
            }
            state.wakers.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// One batch: the records encoded so far and who waits for them.
#[derive(Debug)]
pub(crate) struct Batch {
    pub builder: BatchBuilder,
    pub shared: Arc<BatchShared>,
    pub created: Instant,
    /// Buffer-memory permits held until the batch completes.
    pub reserved: usize,
}

#[derive(Debug, Default)]
struct PartitionQueue {
    /// Sequence number of the next record to leave (idempotence).
    next_sequence: i32,
    /// The broker forgot the producer while several batches were in flight: the next batch
    /// to leave once none is starts the sequence again at 0.
    restart_when_idle: bool,
    open: Option<Batch>,
    sealed: VecDeque<Batch>,
    in_flight: Vec<Arc<BatchShared>>,
}

impl PartitionQueue {
    fn is_idle(&self) -> bool {
        self.open.is_none() && self.sealed.is_empty() && self.in_flight.is_empty()
    }
}

#[derive(Debug, Default)]
struct State {
    topics: HashMap<Arc<str>, Vec<PartitionQueue>>,
    sticky: Sticky,
    closed: bool,
}

/// How `append` picks the partition.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route {
    /// Already chosen (explicit or by key).
    To(u32),
    /// Keyless: the topic's sticky partition.
    Sticky,
}

/// Settings the accumulator needs.
#[derive(Debug, Clone)]
pub(crate) struct AccumulatorConfig {
    /// Producer id and epoch when idempotent: batches then carry per-partition sequences.
    pub producer: Option<(i64, i16)>,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub compression: Compression,
    pub buffer_bytes: usize,
    pub max_in_flight: usize,
}

/// See the module doc.
#[derive(Debug)]
pub(crate) struct Accumulator {
    config: AccumulatorConfig,
    state: Mutex<State>,
    memory: Semaphore,
    /// Wakes the sender: a batch was created or sealed, a request completed, or closing.
    pub wakeup: Notify,
}

/// A record's place in a batch, which its delivery future needs.
pub(crate) struct Appended {
    pub shared: Arc<BatchShared>,
    pub index: u32,
}

/// Bytes a record is charged against `buffer_bytes`: its payload plus the worst-case record
/// framing.
pub(crate) fn record_charge(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    let headers: usize = headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len) + 10)
        .sum();
    key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len) + headers + 32
}

impl Accumulator {
    pub fn new(config: AccumulatorConfig) -> Self {
        Accumulator {
            memory: Semaphore::new(config.buffer_bytes),
            config,
            state: Mutex::new(State::default()),
            wakeup: Notify::new(),
        }
    }

    /// Waits until `bytes` of buffer memory are free and takes them.
    pub async fn reserve(&self, bytes: usize) -> Result<()> {
        if bytes > self.config.buffer_bytes {
            return Err(Error::InvalidInput(format!(
                "a record of about {bytes} bytes does not fit in the producer's buffer of {} bytes",
                self.config.buffer_bytes
            )));
        }
        let n = bytes as u32;
        match self.memory.try_acquire_many(n) {
            Ok(permit) => permit.forget(),
            Err(_) => self
                .memory
                .acquire_many(n)
                .await
                .map_err(|_| Error::Closed)?
                .forget(),
        }
        Ok(())
    }

    fn release(&self, bytes: usize) {
        self.memory.add_permits(bytes);
    }

    /// Appends one record to the open batch of its partition, sealing batches as they fill.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &self,
        topic: &TopicMeta,
        route: Route,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
        reserved: usize,
    ) -> Result<Appended> {
        let partitions = topic.partitions();
        let batch_bytes = self.config.batch_bytes;
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.closed {
            drop(guard);
            self.release(reserved);
            return Err(Error::Closed);
        }
        let mut partition = match route {
            Route::To(p) => p,
            Route::Sticky => state.sticky.partition(&topic.name, partitions),
        };
        if !state.topics.contains_key(&*topic.name) {
            state.topics.insert(topic.name.clone(), Vec::new());
        }
        let queues = state.topics.get_mut(&*topic.name).expect("inserted above");
        if queues.len() < partitions as usize {
            queues.resize_with(partitions as usize, PartitionQueue::default);
        }
        let mut sealed = false;
        let mut created = false;
        // A record that does not fit seals the open batch. A keyless record then follows the
        // sticky partitioner to its next partition (Kafka's "abort on new batch"), so no
        // batch starts with the leftover of another partition's full one.
        for _ in 0..=partitions {
            let q = &mut queues[partition as usize];
            let Some(open) = &q.open else { break };
            let size = open.builder.record_size(timestamp, key, value, headers);
            if open.builder.is_empty() || open.builder.size_bytes() + size <= batch_bytes {
                break;
            }
            q.sealed.extend(q.open.take());
            sealed = true;
            if !matches!(route, Route::Sticky) {
                break;
            }
            state.sticky.on_sealed(&topic.name, partition, partitions);
            partition = state.sticky.partition(&topic.name, partitions);
        }
        let q = &mut queues[partition as usize];
        let open = q.open.get_or_insert_with(|| {
            created = true;
            Batch {
                builder: BatchBuilder::with_capacity(self.config.compression, batch_bytes),
                shared: Arc::new(BatchShared::new(topic.name.clone(), partition)),
                created: Instant::now(),
                reserved: 0,
            }
        });
        open.builder.append(timestamp, key, value, headers);
        open.reserved += reserved;
        let appended = Appended {
            shared: open.shared.clone(),
            index: (open.builder.len() - 1) as u32,
        };
        if open.builder.size_bytes() >= batch_bytes {
            q.sealed.extend(q.open.take());
            sealed = true;
            if matches!(route, Route::Sticky) {
                state.sticky.on_sealed(&topic.name, partition, partitions);
            }
        }
        drop(guard);
        if sealed || created {
            self.wakeup.notify_one();
        }
        Ok(appended)
    }

    /// Takes the batches the sender may send now: sealed ones, open ones whose linger has
    /// passed (or all open ones when `force`), within each partition's in-flight limit. Also
    /// returns when the next open batch's linger ends.
    pub fn drain(&self, now: Instant, force: bool) -> (Vec<Batch>, Option<Instant>) {
        let mut out = Vec::new();
        let mut next: Option<Instant> = None;
        let mut state = self.state.lock();
        for queues in state.topics.values_mut() {
            for q in queues.iter_mut() {
                while q.in_flight.len() < self.config.max_in_flight {
                    let batch = if let Some(b) = q.sealed.pop_front() {
                        b
                    } else if q
                        .open
                        .as_ref()
                        .is_some_and(|b| force || b.created + self.config.linger <= now)
                    {
                        q.open.take().expect("checked")
                    } else {
                        break;
                    };
                    let mut batch = batch;
                    if q.restart_when_idle && q.in_flight.is_empty() {
                        q.next_sequence = 0;
                        q.restart_when_idle = false;
                    }
                    if let Some((id, epoch)) = self.config.producer {
                        // Sequences follow the order batches leave, which is the send order.
                        let records = batch.builder.len() as i32;
                        let builder = std::mem::replace(
                            &mut batch.builder,
                            BatchBuilder::new(Compression::None),
                        );
                        batch.builder = builder.producer(id, epoch, q.next_sequence);
                        q.next_sequence = q.next_sequence.wrapping_add(records) & i32::MAX;
                    }
                    q.in_flight.push(batch.shared.clone());
                    out.push(batch);
                }
                if q.in_flight.len() < self.config.max_in_flight {
                    if let Some(open) = &q.open {
                        let due = open.created + self.config.linger;
                        next = Some(next.map_or(due, |n| n.min(due)));
                    }
                }
            }
        }
        (out, next)
    }

    /// The broker forgot this producer on the batch's partition (its id expired there after
    /// producer.id.expiration.ms): restarts the partition's sequence at 0 with this batch, if it
    /// is the only one in flight (later batches then follow it). Returns the batch's new base
    /// sequence, or `None` when other batches are in flight and the order cannot be kept (the
    /// batch then fails, and the first batch to leave once none is in flight starts at 0).
    pub fn restart_sequence(&self, shared: &Arc<BatchShared>, records: i32) -> Option<i32> {
        let mut state = self.state.lock();
        let q = state
            .topics
            .get_mut(&*shared.topic)?
            .get_mut(shared.partition as usize)?;
        let alone = q.in_flight.len() == 1 && Arc::ptr_eq(&q.in_flight[0], shared);
        if !alone {
            // This batch fails; the partition starts again at 0 once nothing is in flight.
            q.restart_when_idle = true;
            return None;
        }
        q.next_sequence = records & i32::MAX;
        Some(0)
    }

    /// Seals every open batch and returns every batch not yet complete, for `flush`.
    pub fn seal_all(&self) -> Vec<Arc<BatchShared>> {
        let mut out = Vec::new();
        let mut state = self.state.lock();
        for queues in state.topics.values_mut() {
            for q in queues.iter_mut() {
                if let Some(open) = q.open.take() {
                    q.sealed.push_back(open);
                }
                out.extend(q.sealed.iter().map(|b| b.shared.clone()));
                out.extend(q.in_flight.iter().cloned());
            }
        }
        drop(state);
        self.wakeup.notify_one();
        out
    }

    /// Called by the sender once a batch has its outcome: frees its in-flight slot and memory.
    pub fn completed(&self, shared: &Arc<BatchShared>, reserved: usize) {
        {
            let mut state = self.state.lock();
            if let Some(queues) = state.topics.get_mut(&*shared.topic) {
                if let Some(q) = queues.get_mut(shared.partition as usize) {
                    q.in_flight.retain(|b| !Arc::ptr_eq(b, shared));
                }
            }
        }
        shared.finish();
        self.release(reserved);
        self.wakeup.notify_one();
    }

    /// Refuses further appends; what is buffered is still sent.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.wakeup.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// True when nothing is buffered or in flight.
    pub fn is_idle(&self) -> bool {
        let state = self.state.lock();
        state
            .topics
            .values()
            .all(|qs| qs.iter().all(PartitionQueue::is_idle))
    }
}
