//! An in-process fake broker for unit tests: the `Log` and `Admin` services over a real tonic
//! server bound to 127.0.0.1:0, keeping batches in memory exactly as a broker stores them
//! (validated, stamped with offsets, served whole). Failures can be injected per call.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use strata_log::batch::{self, BatchIter};
use strata_log::records::decode_records;
use strata_log::{BatchBuilder, Compression};
use strata_proto::admin_server::{Admin, AdminServer};
use strata_proto::list_offsets_request::Spec;
use strata_proto::log_server::{Log, LogServer};
use strata_proto::*;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// One produce request the fake accepted.
#[derive(Debug, Clone)]
pub struct ProduceCall {
    pub topic: String,
    pub partition: u32,
    pub acks: i32,
    pub batches: Vec<Bytes>,
    pub records: usize,
}

#[derive(Debug, Default)]
pub struct PartitionLog {
    /// Stamped batches, in offset order.
    pub batches: Vec<Bytes>,
    pub next: i64,
}

#[derive(Debug, Default)]
pub struct Topic {
    pub partitions: Vec<PartitionLog>,
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct Fake {
    pub address: Mutex<String>,
    pub topics: Mutex<HashMap<String, Topic>>,
    /// Statuses returned by the next produce calls, one per call, before any is accepted.
    pub produce_failures: Mutex<VecDeque<Status>>,
    pub produce_attempts: Mutex<usize>,
    /// How long each produce call waits before it is handled (a broker that does not answer).
    pub produce_delay: Mutex<Duration>,
    pub produced: Mutex<Vec<ProduceCall>>,
    pub list_offsets: Mutex<Vec<Spec>>,
    /// ProduceMany calls taken, and whether to refuse them as an older broker would.
    pub produce_many_calls: Mutex<usize>,
    pub produce_many_unimplemented: Mutex<bool>,
    /// FetchMany calls taken, and whether to refuse them as an older broker would.
    pub fetch_many_calls: Mutex<usize>,
    pub fetch_many_unimplemented: Mutex<bool>,
}

fn unknown(topic: &str) -> Status {
    ErrorCode::UnknownTopicOrPartition.status(format!("topic \"{topic}\" does not exist"))
}

impl Fake {
    pub fn add_topic(&self, name: &str, partitions: u32) {
        let mut topics = self.topics.lock();
        let t = topics.entry(name.to_string()).or_default();
        t.partitions
            .resize_with(partitions as usize, PartitionLog::default);
    }

    /// Appends records (value, timestamp) as one batch, as a producer would.
    pub fn append(&self, topic: &str, partition: u32, records: &[(&str, i64)]) {
        let mut b = BatchBuilder::new(Compression::None);
        for (value, ts) in records {
            b.append(*ts, None, Some(value.as_bytes()), &[]);
        }
        self.append_raw(topic, partition, b.build().unwrap().to_vec());
    }

    /// Appends batch bytes after stamping their offsets (no validation).
    pub fn append_raw(&self, topic: &str, partition: u32, mut bytes: Vec<u8>) {
        let mut topics = self.topics.lock();
        let log = &mut topics.get_mut(topic).unwrap().partitions[partition as usize];
        log.next = batch::stamp_all(&mut bytes, log.next, 0);
        let bytes = Bytes::from(bytes);
        let mut pos = 0;
        for item in BatchIter::new(&bytes) {
            let (h, _) = item.unwrap();
            log.batches.push(bytes.slice(pos..pos + h.total_len()));
            pos += h.total_len();
        }
    }

    /// Every stored record's value of a partition, as strings, in offset order.
    pub fn values(&self, topic: &str, partition: u32) -> Vec<(i64, String)> {
        let topics = self.topics.lock();
        let log = &topics[topic].partitions[partition as usize];
        log.batches
            .iter()
            .flat_map(|b| decode_records(b).unwrap())
            .map(|r| {
                let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                (r.offset, v)
            })
            .collect()
    }

    fn describe(&self, name: &str) -> Result<TopicDescription, Status> {
        let topics = self.topics.lock();
        let t = topics.get(name).ok_or_else(|| unknown(name))?;
        Ok(TopicDescription {
            name: name.to_string(),
            topic_id: format!("id-{name}"),
            replication_factor: 1,
            partitions: t
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| PartitionDescription {
                    partition: i as u32,
                    leader: 1,
                    replicas: vec![1],
                    isr: vec![1],
                    log_start_offset: 0,
                    high_watermark: p.next,
                    log_end_offset: p.next,
                    size_bytes: p.batches.iter().map(|b| b.len() as u64).sum(),
                })
                .collect(),
            config: t.config.clone().into_iter().collect(),
            overrides: t.config.keys().cloned().collect(),
        })
    }
}

#[tonic::async_trait]
impl Log for Fake {
    async fn produce(
        &self,
        request: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        let r = request.into_inner();
        *self.produce_attempts.lock() += 1;
        let delay = *self.produce_delay.lock();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(status) = self.produce_failures.lock().pop_front() {
            return Err(status);
        }
        let summary = batch::validate_all(&r.records)
            .map_err(|e| ErrorCode::InvalidRecord.status(e.to_string()))?;
        let mut topics = self.topics.lock();
        let topic = topics.get_mut(&r.topic).ok_or_else(|| unknown(&r.topic))?;
        let log = topic
            .partitions
            .get_mut(r.partition as usize)
            .ok_or_else(|| unknown(&r.topic))?;
        let base = log.next;
        let mut bytes = r.records.to_vec();
        log.next = batch::stamp_all(&mut bytes, base, 0);
        let bytes = Bytes::from(bytes);
        let mut batches = Vec::new();
        let mut pos = 0;
        for item in BatchIter::new(&bytes) {
            let (h, _) = item.unwrap();
            batches.push(bytes.slice(pos..pos + h.total_len()));
            pos += h.total_len();
        }
        log.batches.extend(batches.iter().cloned());
        let last = log.next - 1;
        drop(topics);
        self.produced.lock().push(ProduceCall {
            topic: r.topic,
            partition: r.partition,
            acks: r.acks,
            batches,
            records: summary.records as usize,
        });
        Ok(Response::new(ProduceResponse {
            base_offset: base,
            last_offset: last,
            log_start_offset: 0,
        }))
    }

    /// Each partition as its own produce call (failures injected per partition).
    async fn produce_many(
        &self,
        request: Request<ProduceManyRequest>,
    ) -> Result<Response<ProduceManyResponse>, Status> {
        if *self.produce_many_unimplemented.lock() {
            return Err(Status::unimplemented("ProduceMany"));
        }
        *self.produce_many_calls.lock() += 1;
        let r = request.into_inner();
        let mut partitions = Vec::new();
        for p in r.partitions {
            let one = ProduceRequest {
                topic: p.topic.clone(),
                partition: p.partition,
                acks: r.acks,
                timeout_ms: r.timeout_ms,
                records: p.records,
            };
            partitions.push(match self.produce(Request::new(one)).await {
                Ok(answer) => {
                    let a = answer.into_inner();
                    PartitionProduced {
                        topic: p.topic,
                        partition: p.partition,
                        error_code: String::new(),
                        error_message: String::new(),
                        base_offset: a.base_offset,
                        last_offset: a.last_offset,
                        log_start_offset: a.log_start_offset,
                    }
                }
                Err(status) => PartitionProduced {
                    topic: p.topic,
                    partition: p.partition,
                    error_code: ErrorCode::of(&status).as_str().to_string(),
                    error_message: status.message().to_string(),
                    base_offset: -1,
                    last_offset: -1,
                    log_start_offset: -1,
                },
            });
        }
        Ok(Response::new(ProduceManyResponse { partitions }))
    }

    /// Each partition as its own non-waiting fetch, repeated until one has records or the
    /// wait is over.
    async fn fetch_many(
        &self,
        request: Request<FetchManyRequest>,
    ) -> Result<Response<FetchManyResponse>, Status> {
        if *self.fetch_many_unimplemented.lock() {
            return Err(Status::unimplemented("FetchMany"));
        }
        *self.fetch_many_calls.lock() += 1;
        let r = request.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(r.max_wait_ms as u64);
        loop {
            let mut partitions = Vec::new();
            for p in &r.partitions {
                let one = FetchRequest {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    offset: p.offset,
                    max_wait_ms: 0,
                    min_bytes: 0,
                    max_bytes: p.max_bytes,
                };
                partitions.push(match self.fetch(Request::new(one)).await {
                    Ok(a) => {
                        let a = a.into_inner();
                        PartitionFetched {
                            topic: p.topic.clone(),
                            partition: p.partition,
                            high_watermark: a.high_watermark,
                            log_start_offset: a.log_start_offset,
                            log_end_offset: a.log_end_offset,
                            records: a.records,
                            ..Default::default()
                        }
                    }
                    Err(status) => PartitionFetched {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        error_code: ErrorCode::of(&status).as_str().to_string(),
                        error_message: status.message().to_string(),
                        ..Default::default()
                    },
                });
            }
            let any = partitions
                .iter()
                .any(|p| !p.records.is_empty() || !p.error_code.is_empty());
            if any || tokio::time::Instant::now() >= deadline {
                return Ok(Response::new(FetchManyResponse { partitions }));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let r = request.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(r.max_wait_ms as u64);
        loop {
            {
                let topics = self.topics.lock();
                let topic = topics.get(&r.topic).ok_or_else(|| unknown(&r.topic))?;
                let log = topic
                    .partitions
                    .get(r.partition as usize)
                    .ok_or_else(|| unknown(&r.topic))?;
                if r.offset < 0 || r.offset > log.next {
                    return Err(ErrorCode::OffsetOutOfRange.status(format!(
                        "offset {} is outside the log of {}/{} (valid offsets 0..={})",
                        r.offset,
                        r.topic,
                        r.partition,
                        log.next - 1
                    )));
                }
                let mut out = Vec::new();
                for b in &log.batches {
                    let h = batch::BatchHeader::parse(b).unwrap();
                    if h.last_offset() >= r.offset
                        && (out.is_empty() || out.len() + b.len() <= r.max_bytes as usize)
                    {
                        out.extend_from_slice(b);
                    }
                }
                if !out.is_empty() || tokio::time::Instant::now() >= deadline {
                    return Ok(Response::new(FetchResponse {
                        high_watermark: log.next,
                        log_start_offset: 0,
                        log_end_offset: log.next,
                        records: Bytes::from(out),
                    }));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let r = request.into_inner();
        let spec = r.spec.ok_or_else(|| Status::invalid_argument("no spec"))?;
        self.list_offsets.lock().push(spec);
        let topics = self.topics.lock();
        let topic = topics.get(&r.topic).ok_or_else(|| unknown(&r.topic))?;
        let log = topic
            .partitions
            .get(r.partition as usize)
            .ok_or_else(|| unknown(&r.topic))?;
        let (offset, timestamp_ms) = match spec {
            Spec::Earliest(_) => (0, -1),
            Spec::Latest(_) => (log.next, -1),
            Spec::TimestampMs(t) => log
                .batches
                .iter()
                .flat_map(|b| decode_records(b).unwrap())
                .find(|rec| rec.timestamp >= t)
                .map_or((log.next, -1), |rec| (rec.offset, rec.timestamp)),
        };
        Ok(Response::new(ListOffsetsResponse {
            offset,
            timestamp_ms,
        }))
    }

    async fn init_producer_id(
        &self,
        _request: Request<strata_proto::InitProducerIdRequest>,
    ) -> Result<Response<strata_proto::InitProducerIdResponse>, Status> {
        Ok(Response::new(strata_proto::InitProducerIdResponse {
            producer_id: 1000,
            producer_epoch: 0,
        }))
    }

    async fn metadata(
        &self,
        request: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        let r = request.into_inner();
        let topics = self.topics.lock();
        let topics = topics
            .iter()
            .filter(|(name, _)| r.topics.is_empty() || r.topics.contains(name))
            .map(|(name, t)| TopicMetadata {
                name: name.clone(),
                topic_id: format!("id-{name}"),
                partitions: (0..t.partitions.len() as u32)
                    .map(|p| PartitionInfo {
                        partition: p,
                        leader: 1,
                        replicas: vec![1],
                        isr: vec![1],
                        leader_epoch: 0,
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(MetadataResponse {
            cluster: "fake".to_string(),
            controller: 1,
            brokers: vec![BrokerInfo {
                id: 1,
                address: self.address.lock().clone(),
                rack: String::new(),
                alive: true,
            }],
            topics,
        }))
    }
}

#[tonic::async_trait]
impl Admin for Fake {
    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let r = request.into_inner();
        if self.topics.lock().contains_key(&r.name) {
            return Err(ErrorCode::TopicAlreadyExists
                .status(format!("topic \"{}\" already exists", r.name)));
        }
        self.add_topic(&r.name, r.partitions);
        self.topics.lock().get_mut(&r.name).unwrap().config = r.configs.into_iter().collect();
        Ok(Response::new(self.describe(&r.name)?))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let name = request.into_inner().name;
        self.topics
            .lock()
            .remove(&name)
            .ok_or_else(|| unknown(&name))?;
        Ok(Response::new(DeleteTopicResponse {}))
    }

    async fn list_topics(
        &self,
        _request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let mut topics: Vec<TopicSummary> = self
            .topics
            .lock()
            .iter()
            .map(|(name, t)| TopicSummary {
                name: name.clone(),
                topic_id: format!("id-{name}"),
                partitions: t.partitions.len() as u32,
                replication_factor: 1,
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<DescribeTopicRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        Ok(Response::new(self.describe(&request.into_inner().name)?))
    }

    async fn alter_topic_config(
        &self,
        request: Request<AlterTopicConfigRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let r = request.into_inner();
        {
            let mut topics = self.topics.lock();
            let t = topics.get_mut(&r.name).ok_or_else(|| unknown(&r.name))?;
            t.config.extend(r.set);
            for k in r.delete {
                t.config.remove(&k);
            }
        }
        Ok(Response::new(self.describe(&r.name)?))
    }

    async fn tier_status(
        &self,
        request: Request<strata_proto::TierStatusRequest>,
    ) -> Result<Response<strata_proto::TierStatusResponse>, Status> {
        Ok(Response::new(strata_proto::TierStatusResponse {
            topic: request.into_inner().topic,
            remote_storage_enabled: false,
            partitions: vec![],
        }))
    }

    async fn create_partitions(
        &self,
        _request: Request<strata_proto::CreatePartitionsRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        Err(Status::unimplemented(
            "the fake broker cannot add partitions",
        ))
    }

    async fn retention_preview(
        &self,
        _request: Request<strata_proto::RetentionPreviewRequest>,
    ) -> Result<Response<strata_proto::RetentionPreviewResponse>, Status> {
        Ok(Response::new(strata_proto::RetentionPreviewResponse {
            partitions: vec![],
        }))
    }

    async fn alter_partition_reassignments(
        &self,
        _request: Request<strata_proto::AlterPartitionReassignmentsRequest>,
    ) -> Result<Response<strata_proto::AlterPartitionReassignmentsResponse>, Status> {
        Err(Status::unimplemented(
            "the fake broker is one broker: it has nowhere to move a partition to",
        ))
    }

    async fn drain_broker(
        &self,
        _request: Request<strata_proto::DrainBrokerRequest>,
    ) -> Result<Response<strata_proto::ReassignmentPlan>, Status> {
        Err(Status::unimplemented(
            "the fake broker is one broker: it has nowhere to drain to",
        ))
    }

    async fn balance_cluster(
        &self,
        _request: Request<strata_proto::BalanceClusterRequest>,
    ) -> Result<Response<strata_proto::ReassignmentPlan>, Status> {
        Ok(Response::new(strata_proto::ReassignmentPlan {
            moves: vec![],
            started: false,
        }))
    }

    async fn list_partition_reassignments(
        &self,
        _request: Request<strata_proto::ListPartitionReassignmentsRequest>,
    ) -> Result<Response<strata_proto::ListPartitionReassignmentsResponse>, Status> {
        Ok(Response::new(
            strata_proto::ListPartitionReassignmentsResponse { partitions: vec![] },
        ))
    }

    async fn cluster_info(
        &self,
        _request: Request<strata_proto::ClusterInfoRequest>,
    ) -> Result<Response<strata_proto::ClusterInfoResponse>, Status> {
        let partitions = self
            .topics
            .lock()
            .values()
            .map(|t| t.partitions.len() as u32)
            .sum();
        Ok(Response::new(strata_proto::ClusterInfoResponse {
            cluster: "fake".to_string(),
            controller: 0,
            brokers: vec![],
            partitions,
            offline_partitions: 0,
            under_replicated_partitions: 0,
        }))
    }
}

/// A running fake broker; stops when dropped.
pub struct Running {
    pub fake: Arc<Fake>,
    pub address: String,
    _stop: oneshot::Sender<()>,
}

/// Starts a fake broker holding `topics` (name, partitions).
pub async fn start(topics: &[(&str, u32)]) -> Running {
    let fake = Arc::new(Fake::default());
    for (name, partitions) in topics {
        fake.add_topic(name, *partitions);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    *fake.address.lock() = address.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(LogServer::from_arc(fake.clone()).max_decoding_message_size(64 << 20))
        .add_service(AdminServer::from_arc(fake.clone()))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async {
                let _ = stopped.await;
            },
        );
    tokio::spawn(server);
    Running {
        fake,
        address,
        _stop: stop,
    }
}
