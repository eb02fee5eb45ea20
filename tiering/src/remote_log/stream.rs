//! Writing one segment object as a stream. Batches come from a blocking source a chunk at a
//! time; a blocking task validates and encodes them frame by frame; the frames go up as a
//! multipart upload with at most [`PARTS_IN_FLIGHT`] parts in flight, or as one PUT when the
//! object is smaller than a part (`UploadConfig::part_bytes`, [`PART_BYTES`] by default).
//!
//! Invariant: the memory an upload holds is bounded whatever the segment's size: one source
//! chunk, the frame being built, [`FRAMES_QUEUED`] encoded frames, and the parts in flight.
//! The frames' bytes are handed to the upload without a copy.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use strata_log::batch::BatchIter;

use crate::error::{Result, TieringError};
use crate::format::{Footer, SegmentEncoder};

use super::UploadConfig;

/// Whole batches of a segment, a chunk per call, in offset order; `Ok(None)` at the end. It
/// runs on the blocking pool.
pub type BatchSource = Box<dyn FnMut() -> std::result::Result<Option<Bytes>, String> + Send>;

/// Size of a multipart part (S3 wants at least 5 MiB for every part but the last).
pub const PART_BYTES: usize = 8 << 20;
/// Parts of one upload in flight at once.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Encoded frames waiting for the upload.
pub const FRAMES_QUEUED: usize = 2;

/// What [`write_object`] wrote.
#[derive(Debug)]
pub(super) struct Written {
    pub object_bytes: u64,
    pub footer: Footer,
    /// The leader-epoch runs of the batches: `(epoch, first offset)`.
    pub epochs: Vec<(i32, i64)>,
}

enum Piece {
    Frame(Bytes),
    Last(Bytes, Footer, Vec<(i32, i64)>),
}

/// Encodes the batches `source` yields into the object at `key` (see the module).
pub(super) async fn write_object(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    base_offset: i64,
    cfg: UploadConfig,
    source: BatchSource,
) -> Result<Written> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Piece>>(FRAMES_QUEUED);
    let encoder = tokio::task::spawn_blocking(move || encode(source, base_offset, cfg, tx));
    let mut upload: Option<WriteMultipart> = None;
    let outcome = send(store, key, cfg.part_bytes.max(1), &mut rx, &mut upload).await;
    if outcome.is_err() {
        if let Some(w) = upload.take() {
            if let Err(e) = w.abort().await {
                tracing::debug!(key = %key, error = %e, "aborting a failed multipart upload failed; the store expires it");
            }
        }
    }
    drop(rx);
    if let Err(e) = encoder.await {
        return Err(TieringError::Unavailable(format!(
            "the segment encoder stopped: {e}"
        )));
    }
    outcome
}

async fn send(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    part_bytes: usize,
    rx: &mut tokio::sync::mpsc::Receiver<Result<Piece>>,
    upload: &mut Option<WriteMultipart>,
) -> Result<Written> {
    let mut small: Vec<Bytes> = Vec::new();
    let mut small_len = 0usize;
    let mut total = 0u64;
    let store_err = |e| TieringError::store(key, e);
    while let Some(piece) = rx.recv().await {
        let (bytes, last) = match piece? {
            Piece::Frame(b) => (b, None),
            Piece::Last(b, footer, epochs) => (b, Some((footer, epochs))),
        };
        total += bytes.len() as u64;
        match upload.as_mut() {
            None if small_len + bytes.len() < part_bytes => {
                small_len += bytes.len();
                small.push(bytes);
            }
            None => {
                let parts = store.put_multipart(key).await.map_err(store_err)?;
                let mut w = WriteMultipart::new_with_chunk_size(parts, part_bytes);
                for b in small.drain(..) {
                    w.put(b);
                }
                w.put(bytes);
                *upload = Some(w);
            }
            Some(w) => {
                w.wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(store_err)?;
                w.put(bytes);
            }
        }
        if let Some((footer, epochs)) = last {
            match upload.take() {
                None => {
                    store
                        .put(key, small.drain(..).collect::<PutPayload>())
                        .await
                        .map_err(store_err)?;
                }
                Some(w) => {
                    w.finish().await.map_err(store_err)?;
                }
            }
            return Ok(Written {
                object_bytes: total,
                footer,
                epochs,
            });
        }
    }
    Err(TieringError::Unavailable(
        "the segment encoder stopped before the footer".to_string(),
    ))
}

/// The blocking side: reads the source, validates and encodes, sends frames in order. Stops
/// quietly when the receiver is gone (the upload failed).
fn encode(
    mut source: BatchSource,
    base_offset: i64,
    cfg: UploadConfig,
    tx: tokio::sync::mpsc::Sender<Result<Piece>>,
) {
    let result = (|| -> Result<bool> {
        let mut enc = SegmentEncoder::new(base_offset, cfg.frame_bytes, cfg.zstd_level);
        let mut epochs: Vec<(i32, i64)> = Vec::new();
        while let Some(chunk) = source().map_err(|e| {
            TieringError::Unavailable(format!(
                "reading the local segment at base offset {base_offset}: {e}"
            ))
        })? {
            for item in BatchIter::new(&chunk) {
                let (h, bytes) = item.map_err(|e| {
                    TieringError::InvalidInput(format!(
                        "the local segment at base offset {base_offset} is unreadable: {e}"
                    ))
                })?;
                if epochs
                    .last()
                    .is_none_or(|&(e, _)| e != h.partition_leader_epoch)
                {
                    epochs.push((h.partition_leader_epoch, h.base_offset));
                }
                if let Some(frame) = enc.push(bytes)? {
                    if tx.blocking_send(Ok(Piece::Frame(frame.into()))).is_err() {
                        return Ok(false);
                    }
                }
            }
        }
        let (tail, footer) = enc.finish()?;
        Ok(tx
            .blocking_send(Ok(Piece::Last(tail.into(), footer, epochs)))
            .is_ok())
    })();
    if let Err(e) = result {
        let _ = tx.blocking_send(Err(e));
    }
}
