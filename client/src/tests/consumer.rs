//! Consumer tests: decoding, positions, seeking through ListOffsets, errors.

use std::time::Duration;

use strata_log::{BatchBuilder, Compression};
use strata_proto::list_offsets_request::Spec;
use strata_proto::ErrorCode;

use crate::fake::{self, Running};
use crate::{ClientConfig, Consumer, ConsumerConfig, Error, SeekTo};

const WAIT: Duration = Duration::from_secs(5);

async fn consumer(server: &Running) -> Consumer {
    let mut c = ConsumerConfig::new(ClientConfig::new([server.address.clone()]));
    c.fetch_max_wait = Duration::from_millis(50);
    Consumer::connect(c).await.unwrap()
}

/// Ten records, offsets 0..=9, in two batches; record i has timestamp 1000 + 10 i.
fn fill(server: &Running) {
    let first: Vec<(String, i64)> = (0..5).map(|i| (format!("v{i}"), 1000 + 10 * i)).collect();
    let second: Vec<(String, i64)> = (5..10).map(|i| (format!("v{i}"), 1000 + 10 * i)).collect();
    for batch in [first, second] {
        let refs: Vec<(&str, i64)> = batch.iter().map(|(v, t)| (v.as_str(), *t)).collect();
        server.fake.append("t", 0, &refs);
    }
}

/// Polls until `n` records came (or fails after `WAIT`).
async fn poll_n(c: &mut Consumer, n: usize) -> Vec<crate::ConsumerRecord> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "got {} of {n}",
            out.len()
        );
        out.extend(c.poll(Duration::from_millis(200)).await.unwrap());
    }
    out
}

#[tokio::test]
async fn decodes_batches_and_drops_records_below_the_position() {
    let server = fake::start(&[("t", 1)]).await;
    fill(&server);
    let mut c = consumer(&server).await;
    c.assign(vec![("t".to_string(), 0)]).await.unwrap();
    assert_eq!(c.position("t", 0), Some(10), "assign starts at latest");
    assert_eq!(c.seek("t", 0, SeekTo::Offset(3)).await.unwrap(), 3);
    let records = poll_n(&mut c, 7).await;
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (3..10).collect::<Vec<_>>());
    assert_eq!(records[0].value.as_deref(), Some(&b"v3"[..]));
    assert_eq!(records[0].timestamp, 1030);
    assert_eq!(&*records[0].topic, "t");
    assert_eq!(c.position("t", 0), Some(10));
    assert!(c.poll(Duration::from_millis(100)).await.unwrap().is_empty());

    // New records arrive through the running long poll.
    server.fake.append("t", 0, &[("v10", 2000)]);
    let records = poll_n(&mut c, 1).await;
    assert_eq!(records[0].offset, 10);
    assert_eq!(c.end_offsets("t", 0).await.unwrap(), 11);
}

#[tokio::test]
async fn seek_resolves_through_list_offsets() {
    let server = fake::start(&[("t", 1)]).await;
    fill(&server);
    let mut c = consumer(&server).await;
    c.assign(vec![("t".to_string(), 0)]).await.unwrap();
    assert_eq!(c.seek("t", 0, SeekTo::Earliest).await.unwrap(), 0);
    assert_eq!(c.seek("t", 0, SeekTo::Latest).await.unwrap(), 10);
    assert_eq!(c.seek("t", 0, SeekTo::Timestamp(1055)).await.unwrap(), 6);
    assert_eq!(c.position("t", 0), Some(6));
    let specs = server.fake.list_offsets.lock().clone();
    assert_eq!(
        specs,
        vec![
            Spec::Latest(true),
            Spec::Earliest(true),
            Spec::Latest(true),
            Spec::TimestampMs(1055)
        ]
    );
    let records = poll_n(&mut c, 4).await;
    assert_eq!(records.first().unwrap().offset, 6);
    assert_eq!(records.last().unwrap().offset, 9);
    assert_eq!(c.seek("t", 0, SeekTo::Offset(8)).await.unwrap(), 8);
    let records = poll_n(&mut c, 2).await;
    assert_eq!(records[0].offset, 8);
}

#[tokio::test]
async fn out_of_range_surfaces_with_the_broker_message() {
    let server = fake::start(&[("t", 1)]).await;
    fill(&server);
    let mut c = consumer(&server).await;
    c.assign(vec![("t".to_string(), 0)]).await.unwrap();
    c.seek("t", 0, SeekTo::Offset(50)).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let err = loop {
        match c.poll(Duration::from_millis(200)).await {
            Err(e) => break e,
            Ok(r) => assert!(r.is_empty()),
        }
        assert!(tokio::time::Instant::now() < deadline);
    };
    assert_eq!(
        err.to_string(),
        "offset 50 is outside the log of t/0 (valid offsets 0..=9)"
    );
    assert_eq!(err.code(), Some(ErrorCode::OffsetOutOfRange));
}

#[tokio::test]
async fn corrupt_batch_is_an_error_not_records() {
    let server = fake::start(&[("t", 1)]).await;
    let mut b = BatchBuilder::new(Compression::None);
    b.append(1, None, Some(b"hello"), &[]);
    let mut bytes = b.build().unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    server.fake.append_raw("t", 0, bytes);
    let mut c = consumer(&server).await;
    c.assign(vec![("t".to_string(), 0)]).await.unwrap();
    c.seek("t", 0, SeekTo::Earliest).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let err = loop {
        match c.poll(Duration::from_millis(200)).await {
            Err(e) => break e,
            Ok(r) => assert!(r.is_empty(), "corrupt data returned as records"),
        }
        assert!(tokio::time::Instant::now() < deadline);
    };
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("CRC-32C mismatch"), "{err}");
}

#[tokio::test]
async fn assign_validates_topics_and_partitions() {
    let server = fake::start(&[("t", 2)]).await;
    let mut c = consumer(&server).await;
    let err = c.assign(vec![("nope".to_string(), 0)]).await.unwrap_err();
    assert_eq!(err.to_string(), "topic \"nope\" does not exist");
    let err = c.assign(vec![("t".to_string(), 2)]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "topic \"t\" has 2 partitions; partition 2 does not exist"
    );
    let err = c.seek("t", 1, SeekTo::Earliest).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "partition t/1 is not assigned to this consumer"
    );
}

#[tokio::test]
async fn records_from_a_producer_round_trip() {
    let server = fake::start(&[("t", 2)]).await;
    let mut c = consumer(&server).await;
    c.assign(vec![("t".to_string(), 0), ("t".to_string(), 1)])
        .await
        .unwrap();
    let mut pc = crate::ProducerConfig::new(ClientConfig::new([server.address.clone()]));
    pc.compression = Compression::Zstd;
    let p = crate::Producer::connect(pc).await.unwrap();
    for i in 0..20u32 {
        let rec = crate::ProducerRecord::new("t", format!("m{i}"))
            .partition(i % 2)
            .key(format!("k{i}"))
            .header("h", "x");
        p.send(rec).await.unwrap();
    }
    p.flush().await.unwrap();
    let records = poll_n(&mut c, 20).await;
    for part in 0..2u32 {
        let values: Vec<String> = records
            .iter()
            .filter(|r| r.partition == part)
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        let expected: Vec<String> = (0..20)
            .filter(|i| i % 2 == part)
            .map(|i| format!("m{i}"))
            .collect();
        assert_eq!(values, expected);
    }
    assert_eq!(records[0].headers[0].key, "h");
}

/// A group member polls from a spawned task: its futures are `Send` (a rebalance listener
/// stored in the member once made them not, and `tokio::spawn` refused them).
#[test]
fn a_group_members_poll_and_commit_can_run_on_a_spawned_task() {
    fn spawnable<T: Send + 'static>(_: &T) {}
    fn check(mut member: crate::GroupConsumer) {
        let poll = async move {
            let _ = member.poll(std::time::Duration::from_millis(1)).await;
            let _ = member.commit_sync().await;
            let _ = member.close().await;
        };
        spawnable(&poll);
    }
    let _ = check;
}

/// Nine partitions of one leader are read whole and in order, through FetchMany when 8 or
/// more are due together, otherwise one Fetch each; a broker older than FetchMany is read one
/// Fetch per partition.
#[tokio::test]
async fn partitions_of_one_leader_share_a_long_poll() {
    for old_broker in [false, true] {
        let server = fake::start(&[("t", 9)]).await;
        *server.fake.fetch_many_unimplemented.lock() = old_broker;
        let mut c = consumer(&server).await;
        let all: Vec<(String, u32)> = (0..9).map(|p| ("t".to_string(), p)).collect();
        c.assign(all).await.unwrap();
        for p in 0..9 {
            server.fake.append("t", p, &[("a", 1), ("b", 2)]);
        }
        let records = poll_n(&mut c, 18).await;
        for p in 0..9u32 {
            let offsets: Vec<i64> = records
                .iter()
                .filter(|r| r.partition == p)
                .map(|r| r.offset)
                .collect();
            assert_eq!(
                offsets,
                vec![0, 1],
                "partition {p}, old broker {old_broker}"
            );
        }
        if old_broker {
            assert_eq!(*server.fake.fetch_many_calls.lock(), 0);
        }
        // Records that arrive later come through the same long polls.
        server.fake.append("t", 2, &[("c", 3)]);
        let later = poll_n(&mut c, 1).await;
        assert_eq!((later[0].partition, later[0].offset), (2, 2));
    }
}
