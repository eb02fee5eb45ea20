//! Hostile input over raw gRPC against a real `strata dev`: batches whose record framing lies
//! (the hostile-input issue's cases). Each is refused with a status that names the problem,
//! nothing is stored (the log end offset does not move), the broker stays up with its memory
//! bounded, and `strata consume` still reads the partition. And requests that ask for too
//! much (a million repeated partitions, endless waits, huge metadata, a million producers):
//! each answered within bounds or refused with a status that names the limit.

use std::time::{SystemTime, UNIX_EPOCH};

use strata_log::batch::{self, Compression, HEADER_LEN, LOG_OVERHEAD};
use strata_log::records::BatchBuilder;
use strata_log::varint::put_varint;
use strata_proto::admin_client::AdminClient;
use strata_proto::group_client::GroupClient;
use strata_proto::log_client::LogClient;
use strata_proto::replica_client::ReplicaClient;
use strata_proto::{
    list_offsets_request::Spec, Acks, CommitOffsetsRequest, FetchRequest, JoinGroupRequest,
    ListOffsetsRequest, OffsetCommit, PartitionStatusRequest, ProduceRequest, ReplicaFetchRequest,
    RetentionPreviewRequest,
};
use strata_tests::DevBroker;

const TOPIC: &str = "hostile";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn put_i32(b: &mut [u8], pos: usize, v: i32) {
    b[pos..pos + 4].copy_from_slice(&v.to_be_bytes());
}

fn put_i64(b: &mut [u8], pos: usize, v: i64) {
    b[pos..pos + 8].copy_from_slice(&v.to_be_bytes());
}

/// Fixes the batch length field and the CRC after a change: the lie must be in the framing,
/// not in a checksum the broker refuses first.
fn seal(mut b: Vec<u8>) -> Vec<u8> {
    let len = (b.len() - LOG_OVERHEAD) as i32;
    put_i32(&mut b, batch::LENGTH_POS, len);
    let crc = batch::compute_crc(&b);
    b[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A valid batch of `n` records stamped now.
fn valid(n: usize, compression: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new(compression);
    let ts = now_ms();
    for i in 0..n {
        b.append(ts, None, Some(format!("v{i}").as_bytes()), &[]);
    }
    b.build().unwrap().to_vec()
}

/// A batch declaring `count` records around a given records section.
fn declaring(count: i32, section: &[u8], compression: Compression) -> Vec<u8> {
    let mut b = valid(1, Compression::None);
    b.truncate(HEADER_LEN);
    b.extend_from_slice(section);
    put_i32(&mut b, batch::RECORD_COUNT_POS, count);
    put_i32(&mut b, batch::LAST_OFFSET_DELTA_POS, count - 1);
    b[batch::ATTRIBUTES_POS..batch::ATTRIBUTES_POS + 2]
        .copy_from_slice(&compression.codec_id().to_be_bytes());
    seal(b)
}

/// One record (offset delta 0, timestamp delta 0, null key) with `value`.
fn record(value_len: usize) -> Vec<u8> {
    let mut body = vec![0u8, 0, 0];
    put_varint(&mut body, -1);
    put_varint(&mut body, value_len as i64);
    body.resize(body.len() + value_len, 0);
    put_varint(&mut body, 0);
    let mut out = Vec::new();
    put_varint(&mut out, body.len() as i64);
    out.extend(body);
    out
}

fn cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let one = valid(1, Compression::None);
    let section = one[HEADER_LEN..].to_vec();
    let mut past_end = one.clone();
    past_end[HEADER_LEN] = 0x7e; // the record's length varint: 63 bytes, more than follow
    let mut delta7 = one.clone();
    delta7[HEADER_LEN + 3] = 14; // the offset delta varint: zig-zag 7
    let mut decreasing = valid(2, Compression::None);
    decreasing[HEADER_LEN + 3] = 2; // record 0 says offset delta 1
    let mut max_ts = one.clone();
    put_i64(&mut max_ts, batch::MAX_TIMESTAMP_POS, i64::MAX);
    let mut future = one.clone();
    let later = now_ms() + 3 * 3_600_000;
    put_i64(&mut future, batch::BASE_TIMESTAMP_POS, later);
    put_i64(&mut future, batch::MAX_TIMESTAMP_POS, later);
    let mut transactional = one.clone();
    transactional[batch::ATTRIBUTES_POS + 1] |= 0x10;
    // Idempotent batches of many producers in one request: each would add producer state.
    let mut producers = Vec::new();
    for pid in 1000..1100 {
        let mut b = BatchBuilder::new(Compression::None).producer(pid, 0, 0);
        b.append(now_ms(), None, Some(b"p"), &[]);
        producers.extend_from_slice(&b.build().unwrap());
    }
    // 80 MiB of zeros in one record: a few KiB of zstd, past 64 x max.message.bytes.
    let bomb = zstd::bulk::compress(&record(80 << 20), 3).unwrap();
    assert!(bomb.len() < 64 * 1024, "the bomb is small: {}", bomb.len());
    vec![
        (
            "count 1, no records",
            declaring(1, &[], Compression::None),
            "missing",
        ),
        (
            "count 1000, one record",
            declaring(1000, &section, Compression::None),
            "record 1 ",
        ),
        (
            "count 2^31-1, header only",
            declaring(i32::MAX, &[], Compression::None),
            "missing",
        ),
        (
            "a record length past the batch",
            seal(past_end),
            "runs past the end",
        ),
        (
            "offset delta 7 in a one-record batch",
            seal(delta7),
            "offset delta is 7",
        ),
        (
            "decreasing offset deltas",
            seal(decreasing),
            "offset delta is 1",
        ),
        ("max_timestamp = i64::MAX", seal(max_ts), "max timestamp"),
        (
            "a timestamp three hours ahead",
            seal(future),
            "message.timestamp.after.max.ms",
        ),
        ("a transactional batch", seal(transactional), "transactions"),
        (
            "100 producers in one request",
            producers,
            "idempotent batches of 100 producers",
        ),
        (
            "a zstd batch past the decompression limit",
            declaring(1, &bomb, Compression::Zstd),
            "decompresses to more than",
        ),
    ]
}

fn produce(records: Vec<u8>) -> ProduceRequest {
    ProduceRequest {
        topic: TOPIC.into(),
        partition: 0,
        acks: Acks::All as i32,
        timeout_ms: 5_000,
        records: records.into(),
    }
}

fn rss_peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_whose_framing_lies_are_refused_and_nothing_is_stored() {
    let broker = DevBroker::start();
    broker.cli_ok(&["topic", "create", TOPIC, "-p", "1"], None);
    broker.cli_ok(&["produce", TOPIC], Some(b"a\nb\nc\n"));
    let mut client = LogClient::connect(format!("http://{}", broker.addr))
        .await
        .unwrap();
    let end = |spec| ListOffsetsRequest {
        topic: TOPIC.into(),
        partition: 0,
        spec: Some(spec),
    };
    let pid = broker.child.as_ref().unwrap().id();
    let rss_before = rss_peak_kib(pid);
    for (name, records, says) in cases() {
        let status = client.produce(produce(records)).await.expect_err(name);
        println!("{name}: {:?} {}", status.code(), status.message());
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{name}: {status:?}"
        );
        assert!(
            status.message().contains(says),
            "{name}: {:?} should say {says:?}",
            status.message()
        );
        let latest = client
            .list_offsets(end(Spec::Latest(true)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(latest.offset, 3, "{name}: nothing was stored");
    }
    let rss_after = rss_peak_kib(pid);
    println!("broker RSS peak: {rss_before} KiB before the cases, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 32 * 1024,
        "the decompression bomb raised the broker's RSS peak from {rss_before} to {rss_after} KiB"
    );
    // A valid zstd batch still goes in, and a timestamp lookup walks it.
    let ok = client
        .produce(produce(valid(2, Compression::Zstd)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ok.base_offset, ok.last_offset), (3, 4));
    let found = client
        .list_offsets(end(Spec::TimestampMs(0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.offset, 0);
    let out = broker.cli_ok(
        &[
            "consume",
            TOPIC,
            "--offset",
            "start",
            "-n",
            "5",
            "--timeout",
            "3s",
        ],
        None,
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["a", "b", "c", "v0", "v1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_ask_for_too_much_are_bounded_or_refused() {
    const T: &str = "greedy";
    let broker = DevBroker::start();
    broker.cli_ok(&["topic", "create", T, "-p", "2"], None);
    broker.cli_ok(&["produce", T, "--partition", "0"], Some(b"a\nb\n"));
    let url = format!("http://{}", broker.addr);
    let pid = broker.child.as_ref().unwrap().id();
    let rss_before = rss_peak_kib(pid);

    // A zstd batch that decompresses to 32 MiB (within 64 x max.message.bytes) and 4
    // concurrent timestamp lookups over it: each streams through one small buffer.
    let mut big = BatchBuilder::new(Compression::Zstd);
    big.append(now_ms(), None, Some(&vec![0u8; 32 * 1024 * 1024]), &[]);
    let mut log = LogClient::connect(url.clone())
        .await
        .unwrap()
        .max_encoding_message_size(usize::MAX);
    log.produce(
        ProduceRequest {
            partition: 1,
            ..produce(big.build().unwrap().to_vec())
        }
        .with_topic(T),
    )
    .await
    .expect("a 32 MiB record, compressed to a few KiB");
    let rss_lookups = rss_peak_kib(pid);
    let lookups: Vec<_> = (0..4)
        .map(|_| {
            let mut log = log.clone();
            tokio::spawn(async move {
                log.list_offsets(ListOffsetsRequest {
                    topic: T.into(),
                    partition: 1,
                    spec: Some(Spec::TimestampMs(now_ms() + 60_000)),
                })
                .await
                .map(|r| r.into_inner().offset)
            })
        })
        .collect();
    for l in lookups {
        l.await.unwrap().expect("a timestamp lookup");
    }
    let rss_after_lookups = rss_peak_kib(pid);
    println!("4 timestamp lookups over a 32 MiB batch: RSS peak {rss_lookups} -> {rss_after_lookups} KiB");
    assert!(
        rss_after_lookups < rss_lookups + 32 * 1024,
        "4 lookups over a 32 MiB batch raised the RSS peak from {rss_lookups} to {rss_after_lookups} KiB"
    );

    // A million repeated partitions: each answered once.
    let mut replica = ReplicaClient::connect(url.clone()).await.unwrap();
    let status = replica
        .partition_status(PartitionStatusRequest {
            topic: T.into(),
            partitions: vec![0; 1_000_000],
        })
        .await
        .expect("a status of repeated partitions")
        .into_inner();
    assert_eq!(status.partitions.len(), 1, "partition 0, once");
    // A million partitions to preview: the topic's two.
    let million: Vec<u32> = (0..1_000_000).collect();
    let preview = replica
        .retention_preview(RetentionPreviewRequest {
            topic: T.into(),
            set: Default::default(),
            partitions: million.clone(),
        })
        .await
        .expect("a preview of a million partitions")
        .into_inner();
    assert_eq!(preview.partitions.len(), 2);
    let mut admin = AdminClient::connect(url.clone()).await.unwrap();
    let preview = admin
        .retention_preview(RetentionPreviewRequest {
            topic: T.into(),
            set: Default::default(),
            partitions: million,
        })
        .await
        .expect("an admin preview naming a million partitions")
        .into_inner();
    assert_eq!(preview.partitions.len(), 2);

    // A rebalance timeout of 49 days.
    let mut groups = GroupClient::connect(url.clone()).await.unwrap();
    let join = groups
        .join_group(JoinGroupRequest {
            group: "g".into(),
            member_id: String::new(),
            client_id: "hostile".into(),
            topics: vec![T.into()],
            protocols: vec!["range".into()],
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: u32::MAX,
            owned: vec![],
        })
        .await
        .expect_err("a rebalance timeout of u32::MAX ms");
    assert_eq!(join.code(), tonic::Code::InvalidArgument, "{join:?}");
    assert!(join.message().contains("rebalance timeout"), "{join:?}");

    // 1.4 MB of offset metadata.
    let commit = groups
        .commit_offsets(CommitOffsetsRequest {
            group: "g".into(),
            member_id: String::new(),
            generation: -1,
            offsets: vec![OffsetCommit {
                topic: T.into(),
                partition: 0,
                offset: 1,
                metadata: "m".repeat(1_400_000),
            }],
        })
        .await
        .expect_err("1.4 MB of commit metadata");
    assert!(
        commit.message().contains("offset.metadata.max.bytes"),
        "{commit:?}"
    );

    // A hundred thousand producers in one request: refused by the one-producer rule.
    let many = batches_of_producers(100_000);
    let refused = log
        .produce(
            ProduceRequest {
                partition: 1,
                ..produce(many)
            }
            .with_topic(T),
        )
        .await
        .expect_err("a hundred thousand producers in one request");
    assert!(
        refused.message().contains("100000 producers"),
        "{refused:?}"
    );
    // A million: 69 MB, refused by the Log service's decode limit before it is looked at.
    let million = log
        .produce(
            ProduceRequest {
                partition: 1,
                ..produce(batches_of_producers(1_000_000))
            }
            .with_topic(T),
        )
        .await
        .expect_err("a million producers in one request");
    assert!(
        million.message().contains("message length too large"),
        "{million:?}"
    );

    // 50 fetches that want 4 GiB before answering, while records arrive: each answers by
    // its wait, with what there is.
    let producing = {
        let url = url.clone();
        tokio::spawn(async move {
            let mut log = LogClient::connect(url).await.unwrap();
            for _ in 0..20 {
                log.produce(produce(valid(10, Compression::None)).with_topic(T))
                    .await
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };
    let fetches: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut log = LogClient::connect(url).await.unwrap();
                log.fetch(FetchRequest {
                    topic: T.into(),
                    partition: 0,
                    offset: 0,
                    max_wait_ms: 2_000,
                    min_bytes: u32::MAX,
                    max_bytes: 1024 * 1024,
                })
                .await
                .map(|r| r.into_inner().high_watermark)
            })
        })
        .collect();
    for f in fetches {
        let hw = f.await.unwrap().expect("a fetch that waits its max_wait");
        assert!(hw >= 2, "the fetch answered with the partition's records");
    }
    producing.await.unwrap();

    // A follower claiming to hold offset 2^63-1 (with the right epoch): refused before its
    // progress is recorded; the high watermark does not move.
    let latest = |client: &mut LogClient<tonic::transport::Channel>| {
        let mut client = client.clone();
        async move {
            client
                .list_offsets(ListOffsetsRequest {
                    topic: T.into(),
                    partition: 0,
                    spec: Some(Spec::Latest(true)),
                })
                .await
                .unwrap()
                .into_inner()
                .offset
        }
    };
    let hw_before = latest(&mut log).await;
    let far = replica
        .replica_fetch(ReplicaFetchRequest {
            topic: T.into(),
            partition: 0,
            replica_id: 0,
            fetch_offset: i64::MAX,
            leader_epoch: 0,
            max_wait_ms: 0,
            max_bytes: 1024,
        })
        .await
        .expect_err("a replica fetch from offset 2^63-1");
    assert!(
        far.message()
            .contains("offset 9223372036854775807 is outside the log"),
        "{far:?}"
    );
    assert_eq!(
        latest(&mut log).await,
        hw_before,
        "the high watermark did not move"
    );

    let rss_after = rss_peak_kib(pid);
    println!("broker RSS peak: {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 256 * 1024,
        "the broker's RSS peak rose from {rss_before} to {rss_after} KiB"
    );
    let out = broker.cli_ok(
        &[
            "consume",
            T,
            "--partition",
            "0",
            "--offset",
            "start",
            "-n",
            "2",
            "--timeout",
            "3s",
        ],
        None,
    );
    assert_eq!(out.lines().take(2).collect::<Vec<_>>(), ["a", "b"]);
}

/// `n` one-record idempotent batches, each of its own producer id (1000, 1001, ...).
fn batches_of_producers(n: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None).producer(1_000, 0, 0);
    b.append(now_ms(), None, Some(b"p"), &[]);
    let template = b.build().unwrap().to_vec();
    let mut out = Vec::with_capacity(template.len() * n as usize);
    for id in 0..n {
        let mut one = template.clone();
        put_i64(&mut one, batch::PRODUCER_ID_POS, 1_000 + id);
        out.extend_from_slice(&seal(one));
    }
    out
}

trait WithTopic {
    fn with_topic(self, topic: &str) -> Self;
}

impl WithTopic for ProduceRequest {
    fn with_topic(mut self, topic: &str) -> Self {
        self.topic = topic.into();
        self
    }
}

#[test]
fn a_topic_past_the_brokers_partition_capacity_is_refused_naming_the_limit() {
    let broker = DevBroker::start_with(&["--max-partitions-per-broker", "50"]);
    let out = broker.cli(&["topic", "create", "wide", "-p", "60"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("broker 0 would host 60 partition replicas")
            && stderr.contains("--max-partitions-per-broker 50"),
        "{stderr}"
    );
    broker.cli_ok(&["topic", "create", "fits", "-p", "40"], None);
    let out = broker.cli(&["topic", "add-partitions", "fits", "--total", "51"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("would host 51 partition replicas (11 of them new)"),
        "{stderr}"
    );
    broker.cli_ok(&["topic", "add-partitions", "fits", "--total", "50"], None);
    let listed = broker.cli_ok(&["topic", "list"], None);
    assert!(
        !listed.contains("wide") && listed.contains("fits"),
        "{listed}"
    );
}
