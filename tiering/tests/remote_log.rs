//! Remote-log scenarios, each written once and run against the in-memory store and the local
//! filesystem store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_log::batch::BatchIter;
use strata_log::{ErrorKind, ManualClock};
use strata_tiering::testing::{uniform_segment, ClockedStore};
use strata_tiering::{
    root_path, ChunkCache, FaultyStore, ReadContext, RemoteLog, RetentionPolicy, RetryConfig,
    RetryingStore, UploadConfig,
};

pub struct Env {
    store: Arc<dyn ObjectStore>,
    _dir: Option<tempfile::TempDir>,
    cache_dir: tempfile::TempDir,
}

fn memory() -> Env {
    Env {
        store: Arc::new(InMemory::new()),
        _dir: None,
        cache_dir: tempfile::tempdir().unwrap(),
    }
}

fn local() -> Env {
    let dir = tempfile::tempdir().unwrap();
    Env {
        store: Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
        _dir: Some(dir),
        cache_dir: tempfile::tempdir().unwrap(),
    }
}

fn now_ms() -> i64 {
    strata_log::clock::system().now_ms()
}

impl Env {
    fn log_with(&self, store: Arc<dyn ObjectStore>, cache: bool) -> RemoteLog {
        let cache =
            cache.then(|| ChunkCache::new(self.cache_dir.path().join("chunks"), 1 << 20).unwrap());
        RemoteLog::new(
            store,
            root_path(&Path::from("strata"), "c1"),
            "orders",
            "6f1c",
            0,
            ReadContext::new(4, cache),
        )
        .with_upload_config(UploadConfig {
            frame_bytes: 4096,
            zstd_level: 1,
            ..Default::default()
        })
    }

    fn log(&self) -> RemoteLog {
        self.log_with(Arc::clone(&self.store), true)
    }
}

/// Three consecutive segments starting at offset 100, records timestamped from `ts0`.
fn three_segments(ts0: i64) -> Vec<(Bytes, i64)> {
    let mut out = Vec::new();
    let mut base = 100;
    for i in 0..3 {
        let (seg, next) = uniform_segment(20 + i, 5, 100, base, 1, ts0 + base);
        out.push((seg, base));
        base = next;
    }
    out
}

/// Uploads `segs` in order; returns the remote end offset.
async fn upload_all(log: &RemoteLog, segs: &[(Bytes, i64)], epoch: i32) -> i64 {
    let mut end = 0;
    for (seg, base) in segs {
        end = log
            .upload(seg.clone(), *base, epoch)
            .await
            .unwrap()
            .end_offset()
            .unwrap();
    }
    end
}

pub async fn upload_then_read_every_offset(env: Env) {
    let log = env.log();
    let segs = three_segments(1_000);
    upload_all(&log, &segs, 1).await;
    let m = log.latest_manifest().await.unwrap().unwrap();
    assert_eq!(m.version, 3);
    assert_eq!(m.segments.len(), 3);
    assert_eq!(m.remote_log_start_offset, 100);
    let end = m.end_offset().unwrap();
    for (seg, _) in &segs {
        for item in BatchIter::new(seg) {
            let (h, batch) = item.unwrap();
            for o in h.base_offset..=h.last_offset() {
                let got = log.read(o, 1).await.unwrap().unwrap();
                assert_eq!(&got[..], batch, "offset {o}");
            }
            // A larger read starts with the same batch and holds whole batches only.
            let got = log.read(h.base_offset, 3000).await.unwrap().unwrap();
            assert!(got.starts_with(batch));
            assert!(got.len() <= 3000 || got.len() == batch.len());
            strata_log::batch::validate_all(&got).unwrap();
        }
    }
    assert_eq!(log.read(99, 1000).await.unwrap(), None);
    assert_eq!(log.read(end, 1000).await.unwrap(), None);
    // A second instance (no cached footers, cold chunk cache) reads the same bytes.
    let other = env.log_with(Arc::clone(&env.store), false);
    let (seg, base) = &segs[1];
    let first = BatchIter::new(seg).next().unwrap().unwrap().1;
    assert_eq!(&other.read(*base, 1).await.unwrap().unwrap()[..], first);
}

pub async fn offsets_for_timestamps_come_from_the_time_indexes(env: Env) {
    let log = env.log();
    let segs = three_segments(1_000); // the record at offset o has timestamp 1_000 + o
    let end = upload_all(&log, &segs, 1).await;
    for o in (100..end).step_by(7).chain([end - 1]) {
        assert_eq!(
            log.offset_for_timestamp(1_000 + o).await.unwrap(),
            Some((o, 1_000 + o)),
            "timestamp of offset {o}"
        );
    }
    assert_eq!(
        log.offset_for_timestamp(0).await.unwrap(),
        Some((100, 1_100))
    );
    assert_eq!(log.offset_for_timestamp(1_000 + end).await.unwrap(), None);
}

pub async fn uploads_are_idempotent_contiguous_and_fenced(env: Env) {
    let log = env.log();
    let segs = three_segments(0);
    let m1 = log.upload(segs[0].0.clone(), segs[0].1, 5).await.unwrap();
    let again = log.upload(segs[0].0.clone(), segs[0].1, 5).await.unwrap();
    assert_eq!(again, m1, "re-upload changes nothing");
    let err = log
        .upload(segs[2].0.clone(), segs[2].1, 5)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = log
        .upload(segs[1].0.clone(), segs[1].1, 3)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    // A newer leader continues from the manifest's end.
    let m2 = log.upload(segs[1].0.clone(), segs[1].1, 6).await.unwrap();
    assert_eq!((m2.version, m2.leader_epoch), (2, 6));
    // Only the listed objects exist: the refused uploads left nothing behind.
    let objects: Vec<_> = list_segs(&env.store).await;
    assert_eq!(objects.len(), 2, "{objects:?}");
}

async fn list_segs(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    use futures::TryStreamExt;
    let all: Vec<_> = store.list(None).try_collect().await.unwrap();
    all.into_iter()
        .map(|m| m.location.to_string())
        .filter(|k| k.ends_with(".seg"))
        .collect()
}

pub async fn retention_moves_the_start_then_deletes(env: Env) {
    let clock = ManualClock::new(now_ms());
    let log = env.log().with_clock(clock.clone());
    let segs = three_segments(0);
    upload_all(&log, &segs, 2).await;
    let before = log.latest_manifest().await.unwrap().unwrap();
    let first_key = Path::from(before.segments[0].key.as_str());
    // Fill caches, then expire the first segment by offset.
    assert!(log.read(100, 1).await.unwrap().is_some());
    let policy = RetentionPolicy {
        start_offset: Some(segs[1].1),
        ..Default::default()
    };
    let (m, deleted) = log.apply_retention(&policy, 2).await.unwrap();
    assert_eq!(m.remote_log_start_offset, segs[1].1);
    assert_eq!(m.segments.len(), 2);
    assert_eq!(m.version, before.version + 1);
    assert_eq!(deleted, vec![first_key.clone()]);
    assert!(matches!(
        env.store.head(&first_key).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert_eq!(log.read(100, 1).await.unwrap(), None);
    assert!(log.read(segs[1].1, 1).await.unwrap().is_some());
    // Nothing more to do: no new version.
    let (same, none) = log.apply_retention(&policy, 2).await.unwrap();
    assert_eq!((same.version, none.len()), (m.version, 0));
    // By size: keep at least the last segment's bytes.
    let last_bytes = m.segments[1].segment_bytes;
    let (m, deleted) = log
        .apply_retention(
            &RetentionPolicy {
                retention_bytes: Some(last_bytes),
                ..Default::default()
            },
            2,
        )
        .await
        .unwrap();
    assert_eq!((m.segments.len(), deleted.len()), (1, 1));
    assert_eq!(m.remote_log_start_offset, segs[2].1);
    // By time: records are stamped 0.., far older than a day before the clock.
    let (m, deleted) = log
        .apply_retention(
            &RetentionPolicy {
                retention_ms: Some(86_400_000),
                ..Default::default()
            },
            2,
        )
        .await
        .unwrap();
    assert!(m.segments.is_empty());
    assert_eq!(deleted.len(), 1);
    assert!(list_segs(&env.store).await.is_empty());
    // A stale leader cannot apply retention.
    let err = log.apply_retention(&policy, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced);
}

pub async fn scrub_removes_garbage_only_past_the_grace_period(env: Env) {
    // Ages are judged by the store's clock; the broker's clock stays where it is.
    let store_clock = ManualClock::new(now_ms());
    let store: Arc<dyn ObjectStore> = Arc::new(ClockedStore::new(
        Arc::clone(&env.store),
        store_clock.clone(),
    ));
    let log = env.log_with(Arc::clone(&store), true);
    let segs = three_segments(0);
    upload_all(&log, &segs, 1).await;
    for _ in 0..3 {
        // Three more manifest versions: retention moving the start within the first segment.
        let m = log.latest_manifest().await.unwrap().unwrap();
        let policy = RetentionPolicy {
            start_offset: Some(m.remote_log_start_offset + 1),
            ..Default::default()
        };
        log.apply_retention(&policy, 1).await.unwrap();
    }
    let garbage = log.paths().segment_key(999, 1, uuid::Uuid::new_v4());
    store
        .put(&garbage, PutPayload::from_static(b"orphan"))
        .await
        .unwrap();
    let grace = Duration::from_secs(3600);
    let report = log.scrub(grace).await.unwrap();
    assert!(report.deleted_objects.is_empty());
    assert!(report.deleted_manifests.is_empty());
    assert_eq!(report.young_unlisted, 1);
    store_clock.advance_ms(2 * 3_600_000);
    let report = log.scrub(grace).await.unwrap();
    assert_eq!(report.deleted_objects, vec![garbage]);
    assert_eq!(report.deleted_manifests, vec![1, 2, 3]);
    // Listed segments are intact and readable.
    assert_eq!(list_segs(&env.store).await.len(), 3);
    let latest = log.latest_manifest().await.unwrap().unwrap();
    assert_eq!(latest.version, 6);
    assert!(log.read(segs[2].1, 1).await.unwrap().is_some());
}

/// Two writers over one store whose own clock a test moves: `a` uploads and is held between
/// its object PUT and its manifest write; `b`, whose broker clock is `b_skew_ms` off, scrubs.
struct PausedWriter {
    store: Arc<dyn ObjectStore>,
    store_clock: Arc<ManualClock>,
    a_clock: Arc<ManualClock>,
    b: RemoteLog,
    hold: Arc<strata_tiering::testing::Hold>,
    upload: tokio::task::JoinHandle<strata_tiering::Result<strata_tiering::Manifest>>,
    segment: Bytes,
}

const GRACE: Duration = Duration::from_secs(600);

async fn paused_writer(env: &Env, b_skew_ms: i64) -> PausedWriter {
    let store_clock = ManualClock::new(now_ms());
    let clocked = Arc::new(ClockedStore::new(
        Arc::clone(&env.store),
        store_clock.clone(),
    ));
    let store: Arc<dyn ObjectStore> = clocked.clone();
    let a_clock = ManualClock::new(now_ms());
    let a = Arc::new(
        env.log_with(Arc::clone(&store), false)
            .with_clock(a_clock.clone()),
    );
    let b = env
        .log_with(Arc::clone(&store), false)
        .with_clock(ManualClock::new(now_ms() + b_skew_ms));
    let (segment, _) = uniform_segment(10, 5, 100, 0, 1, 0);
    let hold = clocked.hold_next_put(".seg");
    let upload = tokio::spawn({
        let segment = segment.clone();
        async move { a.upload(segment, 0, 1).await }
    });
    hold.reached().await;
    PausedWriter {
        store,
        store_clock,
        a_clock,
        b,
        hold,
        upload,
        segment,
    }
}

/// `b`'s clock runs two hours fast. Judged by the store's clock, `a`'s object is seconds old:
/// the scrub keeps it, `a` lists it, and it reads back.
pub async fn a_fast_broker_clock_cannot_scrub_a_paused_writers_object(env: Env) {
    let w = paused_writer(&env, 2 * 3_600_000).await;
    w.store_clock.advance_ms(5_000);
    w.a_clock.advance_ms(5_000);
    let report = w.b.scrub(GRACE).await.unwrap();
    assert!(report.deleted_objects.is_empty(), "{report:?}");
    assert_eq!(report.young_unlisted, 1);
    w.hold.release();
    let m = w.upload.await.unwrap().unwrap();
    assert_eq!(m.segments.len(), 1);
    let reader = env.log_with(Arc::clone(&w.store), false);
    assert!(reader.read(0, 1).await.unwrap().is_some());
}

/// `a` is held past the grace while `b` (its clock an hour slow) scrubs: by the store's clock
/// the object is 650 s old and unlisted, so the scrub deletes it. When `a` goes on it must
/// not list the deleted object: it abandons the manifest write (more than half the grace has
/// passed since its PUT), the manifest stays empty, and the next attempt uploads afresh.
pub async fn a_writer_held_past_half_the_grace_abandons_its_manifest_write(env: Env) {
    let w = paused_writer(&env, -3_600_000).await;
    w.store_clock.advance_ms(650_000);
    w.a_clock.advance_ms(650_000);
    let report = w.b.scrub(GRACE).await.unwrap();
    assert_eq!(report.deleted_objects.len(), 1, "{report:?}");
    w.hold.release();
    let err = w.upload.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("abandoned"), "{err}");
    let reader = env.log_with(Arc::clone(&w.store), false);
    let listed = reader.latest_manifest().await.unwrap();
    assert!(
        listed.as_ref().is_none_or(|m| m.segments.is_empty()),
        "no manifest lists the scrubbed object: {listed:?}"
    );
    assert_eq!(reader.read(0, 1).await.unwrap(), None);
    let again = env.log_with(Arc::clone(&w.store), false);
    let m = again.upload(w.segment.clone(), 0, 1).await.unwrap();
    assert_eq!(m.segments.len(), 1);
    assert!(reader.read(0, 1).await.unwrap().is_some());
}

/// After an unclean election the new leader drops the remote tail from where its log diverges:
/// the manifest first (the segment holding the offset and every later one), then the objects;
/// uploads go on from the new end, and each segment records its records' epochs.
pub async fn a_diverged_remote_tail_is_dropped_from_the_segment_holding_the_offset(env: Env) {
    let log = env.log();
    let segs = three_segments(0);
    upload_all(&log, &segs, 1).await;
    let m = log.latest_manifest().await.unwrap().unwrap();
    assert!(m
        .segments
        .iter()
        .all(|s| s.epochs == vec![(1, s.base_offset)]));
    let inside_second = segs[1].1 + 3;
    let (after, deleted) = log.truncate_end(inside_second, 2).await.unwrap();
    assert_eq!(after.segments.len(), 1);
    assert_eq!(after.end_offset(), Some(segs[1].1));
    assert_eq!(after.leader_epoch, 2);
    assert_eq!(deleted.len(), 2);
    assert_eq!(list_segs(&env.store).await.len(), 1);
    assert_eq!(log.read(segs[1].1, 1).await.unwrap(), None);
    // A stale leader cannot drop anything; a truncation past the end changes nothing.
    let err = log.truncate_end(segs[0].1, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced);
    let (same, none) = log.truncate_end(i64::MAX, 2).await.unwrap();
    assert_eq!(same.version, after.version);
    assert!(none.is_empty());
    // The new leader's own records go up from the new end.
    let (seg, _) = uniform_segment(5, 5, 100, segs[1].1, 2, 0);
    let m = log.upload(seg, segs[1].1, 2).await.unwrap();
    assert_eq!(m.segments.len(), 2);
    assert_eq!(m.segments[1].epochs, vec![(2, segs[1].1)]);
}

/// A segment bigger than a part goes up as a multipart upload, frame by frame, and reads back
/// whole; a store that refuses the upload leaves no object and no manifest entry.
pub async fn big_segments_stream_up_as_multipart_uploads(env: Env) {
    let faulty = Arc::new(FaultyStore::new(Arc::clone(&env.store)));
    let small_parts = |store: Arc<dyn ObjectStore>| {
        env.log_with(store, false).with_upload_config(UploadConfig {
            frame_bytes: 4096,
            zstd_level: 1,
            part_bytes: 8192,
            ..Default::default()
        })
    };
    let log = small_parts(faulty.clone());
    let (seg, next) = uniform_segment(200, 5, 200, 0, 1, 0);
    let m = log.upload(seg, 0, 1).await.unwrap();
    let meta = &m.segments[0];
    assert_eq!(meta.next_offset, next);
    assert!(
        meta.object_bytes > 3 * 8192,
        "several parts: {}",
        meta.object_bytes
    );
    let reader = env.log_with(Arc::clone(&env.store), false);
    let mut offset = 0;
    let mut seen = 0;
    while offset < next {
        let bytes = reader.read(offset, 1 << 20).await.unwrap().unwrap();
        for item in BatchIter::new(&bytes) {
            let (h, _) = item.unwrap();
            assert_eq!(h.base_offset, offset);
            offset = h.last_offset() + 1;
            seen += h.record_count as i64;
        }
    }
    assert_eq!(seen, next);

    let other = small_parts(faulty.clone());
    let (seg2, _) = uniform_segment(200, 5, 200, next, 1, 0);
    faulty.set_failing(true);
    let err = other.upload(seg2, next, 1).await.unwrap_err();
    faulty.set_failing(false);
    assert!(err.to_string().contains("injected fault"), "{err}");
    assert_eq!(
        list_segs(&env.store).await.len(),
        1,
        "the failed upload left no object"
    );
    let latest = reader.latest_manifest().await.unwrap().unwrap();
    assert_eq!(latest.segments.len(), 1);
}

pub async fn corrupt_frames_are_errors_never_records(env: Env) {
    let faulty = Arc::new(FaultyStore::new(Arc::clone(&env.store)));
    let log = env.log_with(faulty.clone(), false);
    let segs = three_segments(0);
    upload_all(&log, &segs, 1).await;
    // Footers cached by the upload; frames fetched now come back damaged.
    faulty.set_corrupt_gets(true);
    let err = log.read(100, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(".seg"), "names the object: {err}");
    faulty.set_corrupt_gets(false);
    assert!(log.read(100, 1).await.unwrap().is_some());

    // An object overwritten with a flipped byte in a frame, read by a cold reader.
    let m = log.latest_manifest().await.unwrap().unwrap();
    let key = Path::from(m.segments[1].key.as_str());
    let mut bytes = env
        .store
        .get(&key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    bytes[10] ^= 0x01;
    env.store.put(&key, PutPayload::from(bytes)).await.unwrap();
    let cold = env.log_with(Arc::clone(&env.store), true);
    let err = cold.read(segs[1].1, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    // A damaged footer too.
    let key = Path::from(m.segments[2].key.as_str());
    let mut bytes = env
        .store
        .get(&key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let n = bytes.len();
    bytes[n - 30] ^= 0x01;
    env.store.put(&key, PutPayload::from(bytes)).await.unwrap();
    let err = cold.read(segs[2].1, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

pub async fn retrying_store_recovers_from_transient_failures(env: Env) {
    let faulty = Arc::new(FaultyStore::new(Arc::clone(&env.store)));
    let cfg = RetryConfig {
        max_retries: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        ..Default::default()
    };
    let retrying: Arc<dyn ObjectStore> = Arc::new(RetryingStore::new(faulty.clone(), cfg));
    let log = env.log_with(retrying, true);
    let segs = three_segments(0);
    faulty.fail_next(2);
    log.upload(segs[0].0.clone(), segs[0].1, 1).await.unwrap();
    assert_eq!(faulty.injected(), 2);
    faulty.fail_next(2);
    assert!(log.read(100, 1).await.unwrap().is_some());
    assert_eq!(faulty.injected(), 4);
    // Past the retry budget the error surfaces as unavailable.
    faulty.set_failing(true);
    let err = log
        .upload(segs[1].0.clone(), segs[1].1, 1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    faulty.set_failing(false);
    log.upload(segs[1].0.clone(), segs[1].1, 1).await.unwrap();
}

pub async fn delete_all_removes_the_partition(env: Env) {
    let log = env.log();
    let segs = three_segments(0);
    upload_all(&log, &segs, 1).await;
    let n = log.delete_all().await.unwrap();
    assert_eq!(n, 6, "3 segments and 3 manifest versions");
    assert!(log.latest_manifest().await.unwrap().is_none());
    assert!(list_segs(&env.store).await.is_empty());
    assert_eq!(log.read(100, 1).await.unwrap(), None);
}

pub async fn sequential_replay_is_prefetched(env: Env) {
    let log = env.log();
    let segs = three_segments(0);
    let end = upload_all(&log, &segs, 1).await;
    let mut offset = 100;
    let mut replay = Vec::new();
    while let Some(bytes) = log.read(offset, 1 << 20).await.unwrap() {
        for item in BatchIter::new(&bytes) {
            offset = item.unwrap().0.next_offset();
        }
        replay.extend_from_slice(&bytes);
        tokio::task::yield_now().await;
    }
    assert_eq!(offset, end);
    let all: Vec<u8> = segs.iter().flat_map(|(s, _)| s.to_vec()).collect();
    assert_eq!(replay, all);
}

/// A sequential replay through a cold reader costs a footer GET per segment and one ranged
/// GET per `fetch_chunk_bytes` of frames, not one GET per frame.
pub async fn sequential_replay_reads_in_large_ranges(env: Env) {
    let writer = env.log();
    let segs = three_segments(0);
    let end = upload_all(&writer, &segs, 1).await;
    let m = writer.latest_manifest().await.unwrap().unwrap();
    let mut frames = 0;
    for seg in &m.segments {
        let object = env
            .store
            .get(&Path::from(seg.key.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        frames += strata_tiering::parse_footer(&object).unwrap().frames.len();
    }
    assert!(frames >= 9, "several frames per segment: {frames}");
    let replay = |chunk_bytes: usize, dir: &str| {
        let faulty = Arc::new(FaultyStore::new(Arc::clone(&env.store)));
        let cache = ChunkCache::new(env.cache_dir.path().join(dir), 1 << 24).unwrap();
        let mut ctx = ReadContext::new(4, Some(cache));
        ctx.fetch_chunk_bytes = chunk_bytes;
        let log = RemoteLog::new(
            faulty.clone(),
            root_path(&Path::from("strata"), "c1"),
            "orders",
            "6f1c",
            0,
            ctx,
        );
        async move {
            let mut offset = 100;
            while let Some(bytes) = log.read(offset, 1 << 20).await.unwrap() {
                for item in BatchIter::new(&bytes) {
                    offset = item.unwrap().0.next_offset();
                }
            }
            assert_eq!(offset, end);
            faulty.calls()
        }
    };
    // Whole segments per GET: the manifest (a LIST and GETs), 3 footers, 3 chunks.
    let calls = replay(16 << 20, "big").await;
    assert!(calls <= 10, "{calls} store calls for {frames} frames");
    // One frame per GET: at least a GET per frame.
    let per_frame = replay(1, "small").await;
    assert!(per_frame >= frames, "{per_frame} calls for {frames} frames");
}

/// Replays of many partitions at once hold at most the broker's chunk budget (four chunks) in
/// ranged GETs, whatever the number of partitions: demand reads wait for their share and
/// prefetches are skipped when it is spent. Every replay still returns every record.
pub async fn concurrent_replays_stay_within_the_chunk_budget(env: Env) {
    const PARTITIONS: u32 = 6;
    let log_of = |store: Arc<dyn ObjectStore>, partition: u32, ctx: ReadContext| {
        RemoteLog::new(
            store,
            root_path(&Path::from("strata"), "c1"),
            "orders",
            "6f1c",
            partition,
            ctx,
        )
    };
    let segs = three_segments(0);
    let mut end = 0;
    let mut largest_frame = 0;
    for p in 0..PARTITIONS {
        let writer = log_of(Arc::clone(&env.store), p, ReadContext::new(4, None))
            .with_upload_config(UploadConfig {
                frame_bytes: 4096,
                zstd_level: 1,
                ..Default::default()
            });
        end = upload_all(&writer, &segs, 1).await;
        for seg in &writer.latest_manifest().await.unwrap().unwrap().segments {
            let object = env.store.get(&Path::from(seg.key.as_str())).await.unwrap();
            let footer = strata_tiering::parse_footer(&object.bytes().await.unwrap()).unwrap();
            for f in &footer.frames {
                largest_frame = largest_frame.max(f.compressed_len as u64);
            }
        }
    }
    let faulty = Arc::new(FaultyStore::new(Arc::clone(&env.store)));
    faulty.set_get_delay(Duration::from_millis(20));
    let cache = ChunkCache::new(env.cache_dir.path().join("budget"), 1 << 26).unwrap();
    // One frame per chunk; 16 GET permits would let far more than four chunks overlap.
    let ctx = ReadContext::new(16, Some(cache)).with_fetch_chunk_bytes(largest_frame as usize);
    assert_eq!(ctx.chunk_budget_bytes as u64, 4 * largest_frame);
    // Footers (tail GETs, outside the budget) are loaded first, one at a time.
    for p in 0..PARTITIONS {
        let log = log_of(faulty.clone(), p, ctx.clone());
        for (_, base) in &segs {
            log.read(*base, 1).await.unwrap().unwrap();
        }
    }
    faulty.take_max_ranged_bytes_in_flight();
    let replays = (0..PARTITIONS).map(|p| {
        let log = log_of(faulty.clone(), p, ctx.clone());
        async move {
            let mut offset = 100;
            let mut records = 0;
            while let Some(bytes) = log.read(offset, 1 << 20).await.unwrap() {
                for item in BatchIter::new(&bytes) {
                    let h = item.unwrap().0;
                    records += h.record_count as i64;
                    offset = h.next_offset();
                }
            }
            (offset, records)
        }
    });
    for (offset, records) in futures::future::join_all(replays).await {
        assert_eq!(offset, end);
        assert_eq!(records, end - 100);
    }
    let max = faulty.take_max_ranged_bytes_in_flight();
    assert!(
        max <= 4 * largest_frame,
        "{max} bytes of ranged GETs in flight at once; the budget is {}",
        4 * largest_frame
    );
}

/// Reading a segment's last frame prefetches the next segment's footer and first chunk.
pub async fn read_ahead_crosses_segment_boundaries(env: Env) {
    let writer = env.log();
    let segs = three_segments(0);
    upload_all(&writer, &segs, 1).await;
    let m = writer.latest_manifest().await.unwrap().unwrap();
    let cache = ChunkCache::new(env.cache_dir.path().join("cross"), 1 << 24).unwrap();
    let reader = RemoteLog::new(
        Arc::clone(&env.store),
        root_path(&Path::from("strata"), "c1"),
        "orders",
        "6f1c",
        0,
        ReadContext::new(4, Some(cache.clone())),
    );
    let last_of_first = segs[1].1 - 1;
    reader.read(last_of_first, 1).await.unwrap().unwrap();
    let next_key = m.segments[1].key.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cache.contains(&next_key, 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the next segment's first frame was never prefetched"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (hits, _) = cache.stats();
    reader.read(segs[1].1, 1).await.unwrap().unwrap();
    assert_eq!(cache.stats().0, hits + 1, "served from the cache");
}

pub async fn reads_prefetch_the_next_frame(env: Env) {
    let cache = ChunkCache::new(env.cache_dir.path().join("prefetch"), 1 << 20).unwrap();
    let log = RemoteLog::new(
        Arc::clone(&env.store),
        root_path(&Path::from("strata"), "c1"),
        "orders",
        "6f1c",
        0,
        ReadContext::new(2, Some(cache.clone())),
    )
    .with_upload_config(UploadConfig {
        frame_bytes: 4096,
        zstd_level: 1,
        ..Default::default()
    });
    let segs = three_segments(0);
    let m = log.upload(segs[0].0.clone(), segs[0].1, 1).await.unwrap();
    let key = m.segments[0].key.clone();
    let object = env
        .store
        .get(&Path::from(key.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let footer = strata_tiering::parse_footer(&object).unwrap();
    assert!(footer.frames.len() >= 3);
    log.read(100, 1).await.unwrap().unwrap();
    assert!(cache.contains(&key, 0));
    let next = footer.frames[1].position;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cache.contains(&key, next) {
        assert!(
            std::time::Instant::now() < deadline,
            "frame 1 was never prefetched"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The next read is served from the cache.
    let (hits, _) = cache.stats();
    log.read(footer.frames[1].first_offset, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cache.stats().0, hits + 1);
}

pub async fn racing_uploads_of_one_segment_list_it_once(env: Env) {
    let a = env.log();
    let b = env.log_with(Arc::clone(&env.store), false);
    let segs = three_segments(0);
    let (ra, rb) = tokio::join!(
        a.upload(segs[0].0.clone(), segs[0].1, 1),
        b.upload(segs[0].0.clone(), segs[0].1, 1)
    );
    let (ma, mb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ma, mb, "both see the one manifest that lists the segment");
    assert_eq!((ma.version, ma.segments.len()), (1, 1));
    // The loser's object is gone (or left for scrub); the winner's is listed.
    let segs_now = list_segs(&env.store).await;
    assert!(segs_now.contains(&ma.segments[0].key));
    assert_eq!(segs_now.len(), 1, "{segs_now:?}");
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod in_memory {
            $(#[tokio::test] async fn $name() { super::$name(super::memory()).await })*
        }
        mod local_fs {
            $(#[tokio::test] async fn $name() { super::$name(super::local()).await })*
        }
    };
}

both_stores!(
    upload_then_read_every_offset,
    offsets_for_timestamps_come_from_the_time_indexes,
    uploads_are_idempotent_contiguous_and_fenced,
    retention_moves_the_start_then_deletes,
    scrub_removes_garbage_only_past_the_grace_period,
    a_fast_broker_clock_cannot_scrub_a_paused_writers_object,
    a_writer_held_past_half_the_grace_abandons_its_manifest_write,
    a_diverged_remote_tail_is_dropped_from_the_segment_holding_the_offset,
    big_segments_stream_up_as_multipart_uploads,
    corrupt_frames_are_errors_never_records,
    retrying_store_recovers_from_transient_failures,
    delete_all_removes_the_partition,
    sequential_replay_is_prefetched,
    reads_prefetch_the_next_frame,
    sequential_replay_reads_in_large_ranges,
    read_ahead_crosses_segment_boundaries,
    concurrent_replays_stay_within_the_chunk_budget,
    racing_uploads_of_one_segment_list_it_once,
);

/// The leader's manifest lives in memory: after `lead` at an epoch, uploads, reads and
/// retention checks make no request to find it; a new leader finds it from the version it was
/// told (GETs, no LIST), and the store's truth wins over a stale hint.
#[tokio::test]
async fn a_leader_keeps_its_manifest_in_memory_and_a_new_leader_finds_it_from_a_hint() {
    let env = memory();
    let faulty = Arc::new(FaultyStore::new(Arc::clone(&env.store)));
    let a = env.log_with(faulty.clone(), false);
    let first = a.lead(1, Some(0)).await.unwrap();
    assert_eq!(first.version, 0, "nothing uploaded yet");
    let mut version = 0;
    for (seg, base) in three_segments(now_ms()) {
        version = a.upload(seg, base, 1).await.unwrap().version;
    }
    assert_eq!(version, 3);
    let calls = faulty.calls();
    for _ in 0..10 {
        assert_eq!(a.lead(1, Some(3)).await.unwrap().version, 3);
        assert_eq!(a.manifest().await.unwrap().version, 3);
        let policy = RetentionPolicy {
            start_offset: None,
            retention_ms: None,
            retention_bytes: None,
        };
        let (m, deleted) = a.apply_retention(&policy, 1).await.unwrap();
        assert!(deleted.is_empty() && m.version == 3);
    }
    assert_eq!(faulty.calls(), calls, "the idle leader made requests");

    // A new leader told version 2 (its last fetch answer) reads 2, then 3, then finds no 4.
    let b = env.log_with(faulty.clone(), false);
    let calls = faulty.calls();
    assert_eq!(b.lead(2, Some(2)).await.unwrap().version, 3);
    assert_eq!(faulty.calls() - calls, 3, "GET 2, GET 3, GET 4 (missing)");
    // Without a hint it lists (one LIST, one GET).
    let c = env.log_with(faulty.clone(), false);
    let calls = faulty.calls();
    assert_eq!(c.lead(2, None).await.unwrap().version, 3);
    assert_eq!(faulty.calls() - calls, 2);
    // A hint to a version that is gone falls back to the listing.
    env.store.delete(&a.paths().manifest_key(1)).await.unwrap();
    let d = env.log_with(faulty.clone(), false);
    assert_eq!(d.lead(2, Some(1)).await.unwrap().version, 3);
    // A stale "nothing yet" is caught at the first write: version 1 is free again, but later
    // versions exist, so the write is refused and the uploader re-reads.
    let e = env.log_with(faulty.clone(), false);
    assert_eq!(e.lead(2, Some(0)).await.unwrap().version, 0);
    let (seg, base) = three_segments(now_ms()).remove(0);
    let after = e.upload(seg, base, 2).await.unwrap();
    assert_eq!(
        after.version, 3,
        "the segment was already listed at version 3"
    );
    assert_eq!(b.manifest().await.unwrap().version, 3);
}
