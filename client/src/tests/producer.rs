//! Producer tests: batching, partitioning, retries, errors, flush and close.

use std::time::Duration;

use futures::FutureExt;
use strata_proto::ErrorCode;

use crate::fake::{self, Running};
use crate::{Acks, ClientConfig, Error, Producer, ProducerConfig, ProducerRecord};

fn config(server: &Running) -> ProducerConfig {
    let mut c = ProducerConfig::new(ClientConfig::new([server.address.clone()]));
    c.retry_backoff = Duration::from_millis(10);
    c
}

async fn producer(server: &Running, adjust: impl FnOnce(&mut ProducerConfig)) -> Producer {
    let mut c = config(server);
    adjust(&mut c);
    Producer::connect(c).await.unwrap()
}

#[tokio::test]
async fn batches_are_sealed_by_size() {
    let server = fake::start(&[("t", 1)]).await;
    let p = producer(&server, |c| {
        c.batch_bytes = 1024;
        c.linger = Duration::from_secs(60);
    })
    .await;
    let value = "v".repeat(100);
    let mut futures = Vec::new();
    for i in 0..50 {
        let rec = ProducerRecord::new("t", format!("{i:03}{value}")).partition(0);
        futures.push(p.send(rec).await.unwrap());
    }
    // Sealed batches go out without waiting for the (long) linger.
    for f in futures.drain(..40) {
        let md = tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .expect("sealed batches are sent at once")
            .unwrap();
        assert_eq!(md.partition, 0);
    }
    p.flush().await.unwrap();
    let calls = server.fake.produced.lock().clone();
    assert!(calls.len() >= 5, "{} requests", calls.len());
    for call in &calls {
        assert_eq!(call.batches.len(), 1);
        assert!(
            call.batches[0].len() <= 1024,
            "batch of {}",
            call.batches[0].len()
        );
    }
    for call in &calls[..calls.len() - 1] {
        assert!(
            call.records >= 8,
            "a sealed batch holds {} records",
            call.records
        );
    }
    let values = server.fake.values("t", 0);
    assert_eq!(values.len(), 50);
    for (i, (offset, v)) in values.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert!(v.starts_with(&format!("{i:03}")));
    }
    for (i, f) in futures.into_iter().enumerate() {
        assert_eq!(f.now_or_never().unwrap().unwrap().offset, 40 + i as i64);
    }
}

#[tokio::test]
async fn open_batches_leave_after_linger() {
    let server = fake::start(&[("t", 1)]).await;
    let p = producer(&server, |c| c.linger = Duration::from_millis(100)).await;
    let start = tokio::time::Instant::now();
    let a = p.send(ProducerRecord::new("t", "a")).await.unwrap();
    let b = p.send(ProducerRecord::new("t", "b")).await.unwrap();
    let c = p.send(ProducerRecord::new("t", "c")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(server.fake.produced.lock().is_empty(), "sent before linger");
    let (a, b, c) = (a.await.unwrap(), b.await.unwrap(), c.await.unwrap());
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!((a.offset, b.offset, c.offset), (0, 1, 2));
    let calls = server.fake.produced.lock().clone();
    assert_eq!(calls.len(), 1, "one batch for the three records");
    assert_eq!(calls[0].records, 3);
}

#[tokio::test]
async fn keys_are_hashed_with_kafka_murmur2() {
    let server = fake::start(&[("t", 10)]).await;
    let p = producer(&server, |c| c.linger = Duration::from_millis(1)).await;
    // (murmur2("21") & 0x7fffffff) % 10 = 1173551340 % 10 = 0
    // (murmur2("foobar") & 0x7fffffff) % 10 = 1357151166 % 10 = 6
    let a = p
        .send(ProducerRecord::new("t", "x").key("21"))
        .await
        .unwrap();
    let b = p
        .send(ProducerRecord::new("t", "y").key("foobar"))
        .await
        .unwrap();
    let c = p
        .send(ProducerRecord::new("t", "z").key("foobar"))
        .await
        .unwrap();
    assert_eq!(a.await.unwrap().partition, 0);
    assert_eq!(b.await.unwrap().partition, 6);
    assert_eq!(c.await.unwrap().partition, 6);
    assert_eq!(server.fake.values("t", 6).len(), 2);
}

#[tokio::test]
async fn keyless_records_stick_then_spread() {
    let server = fake::start(&[("t", 4)]).await;
    let p = producer(&server, |c| {
        c.batch_bytes = 600;
        c.linger = Duration::from_secs(60);
    })
    .await;
    let mut partitions = Vec::new();
    let mut futures = Vec::new();
    for i in 0..200 {
        futures.push(
            p.send(ProducerRecord::new("t", format!("{i:0100}")))
                .await
                .unwrap(),
        );
    }
    p.flush().await.unwrap();
    for f in futures {
        partitions.push(f.await.unwrap().partition);
    }
    let switches = partitions.windows(2).filter(|w| w[0] != w[1]).count();
    let mut used = partitions.clone();
    used.sort();
    used.dedup();
    assert!(used.len() >= 2, "keyless records all went to {used:?}");
    // Sticky: the partition changes only when a batch is full (about 5 records each).
    assert!(switches <= 200 / 4, "{switches} switches");
    // Only the batches still open at flush (one per partition at most) may be partial.
    let calls = server.fake.produced.lock().clone();
    let small = calls.iter().filter(|c| c.records < 4).count();
    assert!(small <= 4, "{small} small batches of {}", calls.len());
    let total: usize = (0..4).map(|p| server.fake.values("t", p).len()).sum();
    assert_eq!(total, 200);
}

#[tokio::test]
async fn explicit_partition_and_clear_errors() {
    let server = fake::start(&[("t", 4)]).await;
    let p = producer(&server, |c| c.linger = Duration::from_millis(1)).await;
    let md = p
        .send(ProducerRecord::new("t", "v").key("k").partition(2))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((md.topic.as_str(), md.partition, md.offset), ("t", 2, 0));
    assert_eq!(server.fake.values("t", 2), vec![(0, "v".to_string())]);
    let call = server.fake.produced.lock()[0].clone();
    assert_eq!((call.topic.as_str(), call.partition), ("t", 2));

    let err = p
        .send(ProducerRecord::new("t", "v").partition(9))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "topic \"t\" has 4 partitions; partition 9 does not exist"
    );
    let err = p.send(ProducerRecord::new("nope", "v")).await.unwrap_err();
    assert_eq!(err.to_string(), "topic \"nope\" does not exist");
    assert_eq!(err.code(), Some(ErrorCode::UnknownTopicOrPartition));
}

#[tokio::test]
async fn retriable_errors_are_retried_in_order() {
    let server = fake::start(&[("t", 1)]).await;
    {
        let mut failures = server.fake.produce_failures.lock();
        failures.push_back(tonic::Status::unavailable("broker is starting"));
        failures.push_back(ErrorCode::NotLeaderOrFollower.status("not the leader of t/0"));
    }
    let p = producer(&server, |c| c.linger = Duration::from_millis(1)).await;
    let mut futures = Vec::new();
    for i in 0..5 {
        futures.push(
            p.send(ProducerRecord::new("t", format!("r{i}")))
                .await
                .unwrap(),
        );
    }
    p.flush().await.unwrap();
    for (i, f) in futures.into_iter().enumerate() {
        assert_eq!(f.await.unwrap().offset, i as i64);
    }
    let expected: Vec<(i64, String)> = (0..5).map(|i| (i, format!("r{i}"))).collect();
    assert_eq!(
        server.fake.values("t", 0),
        expected,
        "written once, in order"
    );
    assert!(*server.fake.produce_attempts.lock() >= 3);
}

#[tokio::test]
async fn non_retriable_error_fails_every_record_of_the_batch() {
    let server = fake::start(&[("t", 1)]).await;
    server.fake.produce_failures.lock().push_back(
        ErrorCode::MessageTooLarge.status("the batch of 90 bytes exceeds max.message.bytes (10)"),
    );
    let p = producer(&server, |c| c.linger = Duration::from_millis(20)).await;
    let a = p.send(ProducerRecord::new("t", "a")).await.unwrap();
    let b = p.send(ProducerRecord::new("t", "b")).await.unwrap();
    for f in [a, b] {
        let err = f.await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the batch of 90 bytes exceeds max.message.bytes (10)"
        );
        assert_eq!(err.code(), Some(ErrorCode::MessageTooLarge));
        assert!(!err.is_retriable());
    }
    assert_eq!(*server.fake.produce_attempts.lock(), 1, "not retried");
    assert!(server.fake.values("t", 0).is_empty());
}

#[tokio::test]
async fn delivery_timeout_ends_retries() {
    let server = fake::start(&[("t", 1)]).await;
    for _ in 0..1000 {
        server
            .fake
            .produce_failures
            .lock()
            .push_back(tonic::Status::unavailable("still starting"));
    }
    let p = producer(&server, |c| {
        c.linger = Duration::from_millis(1);
        c.delivery_timeout = Duration::from_millis(200);
    })
    .await;
    let err = p
        .send(ProducerRecord::new("t", "a"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DeliveryTimeout { .. }), "{err}");
    assert!(
        err.to_string().contains("last error: still starting"),
        "{err}"
    );
}

/// A request still in flight at the delivery deadline is not waited for: the caller hears of
/// the timeout at the deadline, not a request timeout later (Kafka expires in-flight batches).
#[tokio::test]
async fn delivery_timeout_bounds_a_request_in_flight() {
    let server = fake::start(&[("t", 1)]).await;
    *server.fake.produce_delay.lock() = Duration::from_secs(30);
    let p = producer(&server, |c| {
        c.linger = Duration::from_millis(1);
        c.delivery_timeout = Duration::from_millis(300);
        c.client.request_timeout = Duration::from_secs(60);
    })
    .await;
    let started = std::time::Instant::now();
    let err = p
        .send(ProducerRecord::new("t", "a"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DeliveryTimeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed at the delivery deadline, not the request timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn flush_waits_for_everything_buffered() {
    let server = fake::start(&[("t", 2)]).await;
    let p = producer(&server, |c| c.linger = Duration::from_secs(60)).await;
    let mut futures = Vec::new();
    for i in 0..10 {
        futures.push(
            p.send(ProducerRecord::new("t", "v").partition(i % 2))
                .await
                .unwrap(),
        );
    }
    assert!(server.fake.produced.lock().is_empty());
    p.flush().await.unwrap();
    for f in futures {
        let md = f.now_or_never().expect("complete after flush").unwrap();
        assert!(md.offset >= 0);
    }
    assert_eq!(server.fake.values("t", 0).len(), 5);
    assert_eq!(server.fake.values("t", 1).len(), 5);
}

#[tokio::test]
async fn acks_zero_reports_offset_minus_one() {
    let server = fake::start(&[("t", 1)]).await;
    let mut p = producer(&server, |c| {
        c.acks = Acks::None;
        c.linger = Duration::from_millis(1);
    })
    .await;
    p.set_clock(strata_log::ManualClock::new(42));
    let md = p
        .send(ProducerRecord::new("t", "a"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        (md.offset, md.timestamp),
        (-1, 42),
        "timestamp from the clock"
    );
    p.flush().await.unwrap();
    assert_eq!(
        server.fake.produced.lock()[0].acks,
        strata_proto::Acks::None as i32
    );
}

#[tokio::test]
async fn close_sends_what_is_buffered_and_stops() {
    let server = fake::start(&[("t", 1)]).await;
    let p = producer(&server, |c| c.linger = Duration::from_secs(60)).await;
    let other = p.clone();
    let f = p.send(ProducerRecord::new("t", "last")).await.unwrap();
    p.close().await.unwrap();
    assert_eq!(f.await.unwrap().offset, 0);
    let err = other
        .send(ProducerRecord::new("t", "late"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Closed), "{err}");
}

#[tokio::test]
async fn unreachable_broker_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = Producer::connect(ProducerConfig::new(ClientConfig::new([address.clone()])))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot reach broker {address}: connection refused")
    );
}

/// Throughput smoke test: `cargo test -p strata-client --release -- --ignored throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let server = fake::start(&[("t", 4)]).await;
    let p = producer(&server, |c| c.acks = Acks::Leader).await;
    let value = bytes::Bytes::from(vec![b'x'; 100]);
    let n = 1_000_000;
    let start = std::time::Instant::now();
    let mut last = None;
    for _ in 0..n {
        let mut rec = ProducerRecord::new("t", value.clone());
        rec.timestamp = Some(1);
        last = Some(p.send(rec).await.unwrap());
    }
    p.flush().await.unwrap();
    last.unwrap().await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    let total: usize = server.fake.produced.lock().iter().map(|c| c.records).sum();
    assert_eq!(total, n);
    eprintln!(
        "{n} records in {secs:.2}s: {:.0} records/s",
        n as f64 / secs
    );
}

/// A partition that forgot the producer (its id expired while the producer was quiet) answers
/// UNKNOWN_PRODUCER_ID to sequence 1: the producer starts that partition's sequence again at 0
/// with the same batch and the record is delivered (Kafka's KIP-360), instead of every later
/// send to the partition failing.
#[tokio::test]
async fn a_partition_that_forgot_the_producer_gets_sequence_zero_again() {
    let server = fake::start(&[("t", 1)]).await;
    let p = producer(&server, |c| {
        c.linger = Duration::from_millis(1);
        c.enable_idempotence = true;
    })
    .await;
    p.send(ProducerRecord::new("t", "a"))
        .await
        .unwrap()
        .await
        .unwrap();
    server.fake.produce_failures.lock().push_back(
        ErrorCode::UnknownProducerId.status("producer 0 sent sequence 1, which has no state"),
    );
    let delivered = p
        .send(ProducerRecord::new("t", "b"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(delivered.offset, 1);
    p.send(ProducerRecord::new("t", "c"))
        .await
        .unwrap()
        .await
        .unwrap();
    let sequences: Vec<i32> = server
        .fake
        .produced
        .lock()
        .iter()
        .map(|call| {
            strata_log::BatchHeader::parse(&call.batches[0])
                .unwrap()
                .base_sequence
        })
        .collect();
    assert_eq!(sequences, vec![0, 0, 1], "restarted at 0, then counting on");
    for call in server.fake.produced.lock().iter() {
        strata_log::batch::validate(&call.batches[0]).expect("the CRC was recomputed");
    }
    assert_eq!(
        server
            .fake
            .values("t", 0)
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>(),
        vec!["a", "b", "c"]
    );
}

/// An attempt that may have been appended (here NOT_ENOUGH_REPLICAS_AFTER_APPEND) forbids a
/// sequence restart for that batch: restarting could write it twice. The batch fails with the
/// broker's error; the next batch, sent fresh, restarts the sequence.
#[tokio::test]
async fn no_sequence_restart_for_a_batch_that_may_have_been_appended() {
    let server = fake::start(&[("t", 1)]).await;
    let p = producer(&server, |c| {
        c.linger = Duration::from_millis(1);
        c.retry_backoff = Duration::from_millis(1);
    })
    .await;
    p.send(ProducerRecord::new("t", "a"))
        .await
        .unwrap()
        .await
        .unwrap();
    {
        let mut failures = server.fake.produce_failures.lock();
        failures.push_back(ErrorCode::NotEnoughReplicasAfterAppend.status("appended, one copy"));
        failures.push_back(ErrorCode::UnknownProducerId.status("no state for producer 0"));
    }
    let err = p
        .send(ProducerRecord::new("t", "b"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownProducerId), "{err}");
    server
        .fake
        .produce_failures
        .lock()
        .push_back(ErrorCode::UnknownProducerId.status("no state for producer 0"));
    p.send(ProducerRecord::new("t", "c"))
        .await
        .unwrap()
        .await
        .expect("a fresh batch restarts the sequence");
    assert_eq!(
        server
            .fake
            .values("t", 0)
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>(),
        vec!["a", "c"]
    );
}

/// With acks=1, batches of several partitions ready at once for one leader go out as one
/// ProduceMany; a
/// partition refused in it is retried alone, in order; an older broker without ProduceMany
/// gets every batch alone.
#[tokio::test]
async fn batches_for_one_leader_share_a_request_and_failures_retry_alone() {
    let server = fake::start(&[("t", 4)]).await;
    let p = producer(&server, |c| {
        c.linger = Duration::from_millis(20);
        c.acks = Acks::Leader;
    })
    .await;
    // Warm the metadata cache: the sender groups by the leaders it knows without any I/O.
    p.send(ProducerRecord::new("t", "warm").partition(0))
        .await
        .unwrap()
        .await
        .unwrap();
    server
        .fake
        .produce_failures
        .lock()
        .push_back(ErrorCode::NotLeaderOrFollower.status("not the leader of t/?"));
    let mut futures = Vec::new();
    for partition in 0..4 {
        for i in 0..3 {
            let rec = ProducerRecord::new("t", format!("p{partition}-{i}")).partition(partition);
            futures.push((partition, p.send(rec).await.unwrap()));
        }
    }
    for (partition, f) in futures {
        let md = f.await.expect("delivered despite the refused partition");
        assert_eq!(md.partition, partition);
    }
    assert!(
        *server.fake.produce_many_calls.lock() >= 1,
        "one request for the leader"
    );
    for partition in 0..4 {
        let values: Vec<String> = server
            .fake
            .values("t", partition)
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| v != "warm")
            .collect();
        let want: Vec<String> = (0..3).map(|i| format!("p{partition}-{i}")).collect();
        assert_eq!(values, want, "partition {partition}: once each, in order");
    }

    *server.fake.produce_many_unimplemented.lock() = true;
    let calls = *server.fake.produce_many_calls.lock();
    let mut futures = Vec::new();
    for partition in 0..4 {
        let rec = ProducerRecord::new("t", "old-broker").partition(partition);
        futures.push(p.send(rec).await.unwrap());
    }
    for f in futures {
        f.await.expect("delivered one partition per request");
    }
    assert_eq!(*server.fake.produce_many_calls.lock(), calls);
    for partition in 0..4 {
        let values = server.fake.values("t", partition);
        assert_eq!(values.last().unwrap().1, "old-broker");
    }
}
