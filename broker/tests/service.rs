//! The broker's gRPC services over a real listener, driven with the generated clients.

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_broker::{Broker, BrokerConfig};
use strata_coordinator::EmbeddedCoordinator;
use strata_log::{BatchBuilder, Compression};
use strata_proto::v1::{admin_client::AdminClient, log_client::LogClient};
use strata_proto::{self as pb, ErrorCode};
use tokio::sync::oneshot;
use tonic::transport::Channel;

struct Running {
    log: LogClient<Channel>,
    admin: AdminClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let coordinator = EmbeddedCoordinator::open(dir.path().join("metadata"), "test").unwrap();
    let broker = Broker::start(
        BrokerConfig::new(0, dir.path(), addr.to_string()),
        Arc::new(coordinator),
        strata_log::clock::system(),
    )
    .await
    .unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        broker
            .serve(listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Running {
        log: LogClient::new(channel.clone()),
        admin: AdminClient::new(channel),
        stop: Some(tx),
        task,
        _dir: dir,
    }
}

fn batch(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for (i, v) in values.iter().enumerate() {
        b.append(1_000 + i as i64, None, Some(v.as_bytes()), &[]);
    }
    b.build().unwrap()
}

fn produce_req(topic: &str, records: Bytes) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.into(),
        partition: 0,
        acks: pb::Acks::All as i32,
        timeout_ms: 1000,
        records,
    }
}

async fn create(r: &mut Running, name: &str, partitions: u32) {
    r.admin
        .create_topic(pb::CreateTopicRequest {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: Default::default(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn produce_fetch_and_long_poll() {
    let mut r = start().await;
    create(&mut r, "t", 2).await;
    let resp = r
        .log
        .produce(produce_req("t", batch(&["a", "b", "c"])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((resp.base_offset, resp.last_offset), (0, 2));
    let resp = r
        .log
        .produce(produce_req("t", batch(&["d"])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.base_offset, 3);

    let fetch = |offset| pb::FetchRequest {
        topic: "t".into(),
        partition: 0,
        offset,
        max_wait_ms: 2000,
        min_bytes: 1,
        max_bytes: 1 << 20,
    };
    let got = r.log.fetch(fetch(1)).await.unwrap().into_inner();
    assert_eq!(got.high_watermark, 4);
    let records = strata_log::records::decode_all(&got.records).unwrap();
    let values: Vec<_> = records
        .iter()
        .map(|r| (r.offset, r.value.clone().unwrap()))
        .collect();
    assert_eq!(
        values,
        vec![
            (0, "a".into()),
            (1, "b".into()),
            (2, "c".into()),
            (3, "d".into())
        ]
    );

    // A fetch at the end waits for the next append.
    let mut waiter = r.log.clone();
    let started = Instant::now();
    let pending = tokio::spawn(async move { waiter.fetch(fetch(4)).await.unwrap().into_inner() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.log
        .produce(produce_req("t", batch(&["e"])))
        .await
        .unwrap();
    let got = pending.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "woken by the append"
    );
    let records = strata_log::records::decode_all(&got.records).unwrap();
    assert_eq!(records[0].offset, 4);

    // With nothing arriving it answers empty after max_wait.
    let started = Instant::now();
    let mut req = fetch(5);
    req.max_wait_ms = 300;
    let got = r.log.fetch(req).await.unwrap().into_inner();
    assert!(got.records.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));

    r.stop.take().unwrap().send(()).unwrap();
    r.task.await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_codes_and_sentences() {
    let mut r = start().await;
    create(&mut r, "t", 1).await;
    r.log
        .produce(produce_req("t", batch(&["a"])))
        .await
        .unwrap();

    let err = r
        .log
        .produce(produce_req("missing", batch(&["a"])))
        .await
        .unwrap_err();
    assert_eq!(ErrorCode::of(&err), ErrorCode::UnknownTopicOrPartition);
    assert_eq!(err.message(), "topic \"missing\" does not exist");

    let mut bad = batch(&["x"]).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = r
        .log
        .produce(produce_req("t", Bytes::from(bad)))
        .await
        .unwrap_err();
    assert_eq!(
        ErrorCode::of(&err),
        ErrorCode::CorruptMessage,
        "{}",
        err.message()
    );
    assert!(err.message().contains("CRC-32C"), "{}", err.message());

    let err = r
        .log
        .produce(produce_req("t", Bytes::from_static(b"garbage")))
        .await
        .unwrap_err();
    assert_eq!(
        ErrorCode::of(&err),
        ErrorCode::InvalidRecord,
        "{}",
        err.message()
    );

    let mut req = produce_req("t", batch(&["a"]));
    req.partition = 5;
    let err = r.log.produce(req).await.unwrap_err();
    assert!(err.message().contains("partition 5"), "{}", err.message());

    let err = r
        .log
        .fetch(pb::FetchRequest {
            topic: "t".into(),
            partition: 0,
            offset: 10,
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(ErrorCode::of(&err), ErrorCode::OffsetOutOfRange);
    assert!(
        err.message().contains("valid offsets are 0..=0"),
        "{}",
        err.message()
    );

    // Rejected requests left the log as it was.
    let d = r
        .admin
        .describe_topic(pb::DescribeTopicRequest { name: "t".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.partitions[0].log_end_offset, 1);

    let big = "x".repeat(2 << 20);
    let err = r
        .log
        .produce(produce_req("t", batch(&[&big])))
        .await
        .unwrap_err();
    assert_eq!(
        ErrorCode::of(&err),
        ErrorCode::MessageTooLarge,
        "{}",
        err.message()
    );

    let mut req = produce_req("t", batch(&["a"]));
    req.acks = 42;
    let err = r.log.produce(req).await.unwrap_err();
    assert!(err.message().contains("acks"), "{}", err.message());
}

#[tokio::test]
async fn list_offsets_by_time_and_min_isr() {
    let mut r = start().await;
    r.admin
        .create_topic(pb::CreateTopicRequest {
            name: "t".into(),
            partitions: 1,
            replication_factor: 1,
            configs: [("min.insync.replicas".to_string(), "2".to_string())].into(),
        })
        .await
        .unwrap();
    // acks=all cannot be met with one replica; acks=1 can.
    let err = r
        .log
        .produce(produce_req("t", batch(&["a", "b", "c"])))
        .await
        .unwrap_err();
    assert_eq!(
        ErrorCode::of(&err),
        ErrorCode::NotEnoughReplicas,
        "{}",
        err.message()
    );
    let mut req = produce_req("t", batch(&["a", "b", "c"]));
    req.acks = pb::Acks::Leader as i32;
    r.log.produce(req).await.unwrap();
    use pb::list_offsets_request::Spec;
    let list = |spec| pb::ListOffsetsRequest {
        topic: "t".into(),
        partition: 0,
        spec: Some(spec),
    };
    let at = r
        .log
        .list_offsets(list(Spec::TimestampMs(1_001)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((at.offset, at.timestamp_ms), (1, 1_001));
    let after = r
        .log
        .list_offsets(list(Spec::TimestampMs(9_999)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((after.offset, after.timestamp_ms), (3, -1));
    let latest = r
        .log
        .list_offsets(list(Spec::Latest(true)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.offset, 3);
    let earliest = r
        .log
        .list_offsets(list(Spec::Earliest(true)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(earliest.offset, 0);
}
