//! Hostile input over raw gRPC against a real `strata dev`: batches whose record framing lies
//! (the hostile-input issue's cases). Each is refused with a status that names the problem,
//! nothing is stored (the log end offset does not move), the broker stays up with its memory
//! bounded, and `strata consume` still reads the partition.

use std::time::{SystemTime, UNIX_EPOCH};

use strata_log::batch::{self, Compression, HEADER_LEN, LOG_OVERHEAD};
use strata_log::records::BatchBuilder;
use strata_log::varint::put_varint;
use strata_proto::log_client::LogClient;
use strata_proto::{list_offsets_request::Spec, Acks, ListOffsetsRequest, ProduceRequest};
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
