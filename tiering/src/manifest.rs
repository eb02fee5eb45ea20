//! The partition manifest: the versioned list of a partition's remote segments, and the only
//! truth about what the remote log holds.
//!
//! Invariants kept here:
//! - A manifest version is immutable. Version N is written once, with create-if-absent
//!   (`PutMode::Create`, a conditional PUT), so two writers cannot both write version N.
//! - A writer carries its leader epoch and never writes after a manifest with a higher epoch:
//!   a deposed leader is fenced and cannot overwrite its successor's view.
//! - Readers take the highest version present.
//!
//! # Keys
//!
//! ```text
//! <root>/<topic>-<topic_id>/<partition>/manifest/<version:020>.json
//! <root>/<topic>-<topic_id>/<partition>/<base_offset:020>-<epoch>-<uuid>.seg
//! ```
//! where `<root>` is the store prefix followed by the cluster name ([`root_path`]).
//!
//! # Persisted format
//!
//! One JSON object per version: an envelope carrying a magic string, the CRC-32C of the
//! manifest's exact JSON text, and that text:
//!
//! ```text
//! {"magic":"STRATAMF","crc32c":<u32 over the bytes of "manifest">,"manifest":{
//!    "format_version":1,"version":7,"leader_epoch":3,"remote_log_start_offset":0,
//!    "segments":[{"key":"..","base_offset":0,"next_offset":100,"max_timestamp":..,
//!                 "object_bytes":..,"segment_bytes":..,"records":100,"leader_epoch":3}]}}
//! ```
//! Versions the reader accepts: [`READABLE_MANIFEST_VERSIONS`] (= `[1]`).

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Result, TieringError};

pub const MANIFEST_MAGIC: &str = "STRATAMF";
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
pub const READABLE_MANIFEST_VERSIONS: &[u32] = &[1];

/// One remote segment as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Object key of the segment object.
    pub key: String,
    pub base_offset: i64,
    /// The offset after the segment's last record.
    pub next_offset: i64,
    pub max_timestamp: i64,
    /// Size of the object (frames + footer).
    pub object_bytes: u64,
    /// Uncompressed size of the batches.
    pub segment_bytes: u64,
    pub records: i64,
    /// Epoch of the leader that uploaded it.
    pub leader_epoch: i32,
    /// The leader epochs of its records: `(epoch, first offset)` for each run, oldest first
    /// (KIP-405's segment leader epochs), for a new leader's lineage check. Empty in manifests
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epochs: Vec<(i32, i64)>,
}

/// One version of a partition's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// 0 for the empty manifest that exists before any is written; the first written is 1.
    pub version: u64,
    /// Epoch of the leader that wrote this version.
    pub leader_epoch: i32,
    /// No offset below this is readable from the remote tier.
    pub remote_log_start_offset: i64,
    /// In offset order, contiguous: each segment's base offset is the previous next offset.
    pub segments: Vec<SegmentMeta>,
}

#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    magic: String,
    crc32c: u32,
    #[serde(borrow)]
    manifest: &'a RawValue,
}

impl Manifest {
    /// The manifest of a partition that has never uploaded anything (version 0, not stored).
    pub fn empty() -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            version: 0,
            leader_epoch: -1,
            remote_log_start_offset: 0,
            segments: Vec::new(),
        }
    }

    /// The offset after the last remote record, or `None` when no segment is listed.
    pub fn end_offset(&self) -> Option<i64> {
        self.segments.last().map(|s| s.next_offset)
    }

    /// The segment holding `offset`, if the remote log holds it (at or after the start).
    pub fn segment_for(&self, offset: i64) -> Option<&SegmentMeta> {
        if offset < self.remote_log_start_offset {
            return None;
        }
        let i = self.segments.partition_point(|s| s.next_offset <= offset);
        self.segments.get(i).filter(|s| s.base_offset <= offset)
    }

    /// Index of the segment after the one with this key.
    pub fn segment_after(&self, key: &str) -> Option<&SegmentMeta> {
        let i = self.segments.iter().position(|s| s.key == key)?;
        self.segments.get(i + 1)
    }

    /// Total uncompressed bytes listed.
    pub fn total_segment_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.segment_bytes).sum()
    }

    /// The stored form (see the module doc).
    pub fn to_bytes(&self) -> Bytes {
        let body = serde_json::to_string(self).expect("a manifest serializes");
        let crc = crc32c::crc32c(body.as_bytes());
        let raw = RawValue::from_string(body).expect("serde_json output is valid JSON");
        let env = Envelope {
            magic: MANIFEST_MAGIC.to_string(),
            crc32c: crc,
            manifest: &raw,
        };
        Bytes::from(serde_json::to_vec(&env).expect("an envelope serializes"))
    }

    /// Parses and checks a stored manifest (magic, CRC, format version).
    pub fn from_bytes(key: &str, bytes: &[u8]) -> Result<Manifest> {
        let bad = |reason: String| TieringError::CorruptManifest {
            key: key.to_string(),
            reason,
        };
        let env: Envelope<'_> =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
        if env.magic != MANIFEST_MAGIC {
            return Err(bad(format!(
                "magic is {:?}, not {MANIFEST_MAGIC}",
                env.magic
            )));
        }
        let body = env.manifest.get();
        let crc = crc32c::crc32c(body.as_bytes());
        if crc != env.crc32c {
            return Err(bad(format!(
                "CRC-32C mismatch: stored {:#010x}, computed {crc:#010x}",
                env.crc32c
            )));
        }
        let m: Manifest = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
        if !READABLE_MANIFEST_VERSIONS.contains(&m.format_version) {
            return Err(bad(format!(
                "format version {} is not one this broker reads ({READABLE_MANIFEST_VERSIONS:?})",
                m.format_version
            )));
        }
        Ok(m)
    }
}

/// The largest manifest a broker loads: about 300,000 segments' entries.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// `<prefix>/<cluster>`: the root under which every partition of a cluster lives.
pub fn root_path(prefix: &Path, cluster: &str) -> Path {
    prefix.clone().join(cluster)
}

/// The object keys of one partition's remote log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPaths {
    root: Path,
    topic: String,
    topic_id: String,
    partition: u32,
}

impl PartitionPaths {
    pub fn new(
        root: Path,
        topic: impl Into<String>,
        topic_id: impl Into<String>,
        partition: u32,
    ) -> Self {
        PartitionPaths {
            root,
            topic: topic.into(),
            topic_id: topic_id.into(),
            partition,
        }
    }

    /// `<prefix>/<cluster>`, which holds every partition of the cluster.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<topic>-<topic_id>/<partition>`
    pub fn partition_prefix(&self) -> Path {
        self.root
            .clone()
            .join(format!("{}-{}", self.topic, self.topic_id))
            .join(self.partition.to_string())
    }

    /// `<partition prefix>/manifest`
    pub fn manifest_prefix(&self) -> Path {
        self.partition_prefix().join("manifest")
    }

    /// `<partition prefix>/manifest/<version:020>.json`
    pub fn manifest_key(&self, version: u64) -> Path {
        self.manifest_prefix().join(format!("{version:020}.json"))
    }

    /// `<partition prefix>/<base_offset:020>-<epoch>-<uuid>.seg`
    pub fn segment_key(&self, base_offset: i64, leader_epoch: i32, id: uuid::Uuid) -> Path {
        self.partition_prefix()
            .join(format!("{base_offset:020}-{leader_epoch}-{id}.seg"))
    }

    /// The version a manifest key names, if it is one.
    pub fn manifest_version(key: &Path) -> Option<u64> {
        let name = key.filename()?;
        let digits = name.strip_suffix(".json")?;
        if digits.len() != 20 {
            return None;
        }
        digits.parse().ok()
    }

    /// `topic/partition` for messages.
    pub fn describe(&self) -> String {
        format!("{}-{}/{}", self.topic, self.topic_id, self.partition)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }
}

/// Reads and writes one partition's manifest versions.
#[derive(Debug, Clone)]
pub struct ManifestStore {
    store: Arc<dyn ObjectStore>,
    paths: PartitionPaths,
}

impl ManifestStore {
    pub fn new(store: Arc<dyn ObjectStore>, paths: PartitionPaths) -> Self {
        ManifestStore { store, paths }
    }

    pub fn paths(&self) -> &PartitionPaths {
        &self.paths
    }

    /// Every stored version with its object metadata, oldest first.
    pub async fn versions(&self) -> Result<Vec<(u64, ObjectMeta)>> {
        let prefix = self.paths.manifest_prefix();
        let list = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| TieringError::store(&prefix, e))?;
        let mut out: Vec<(u64, ObjectMeta)> = list
            .objects
            .into_iter()
            .filter_map(|m| PartitionPaths::manifest_version(&m.location).map(|v| (v, m)))
            .collect();
        out.sort_by_key(|(v, _)| *v);
        Ok(out)
    }

    /// One stored version.
    pub async fn load(&self, version: u64) -> Result<Manifest> {
        let key = self.paths.manifest_key(version);
        let object = self
            .store
            .get(&key)
            .await
            .map_err(|e| TieringError::store(&key, e))?;
        // Checked before the body is read: a manifest object of gigabytes is not loaded.
        if object.meta.size > MAX_MANIFEST_BYTES {
            return Err(TieringError::CorruptManifest {
                key: key.to_string(),
                reason: format!(
                    "it is {} bytes, more than the {MAX_MANIFEST_BYTES} any manifest has",
                    object.meta.size
                ),
            });
        }
        let bytes = object
            .bytes()
            .await
            .map_err(|e| TieringError::store(&key, e))?;
        let m = Manifest::from_bytes(key.as_ref(), &bytes)?;
        if m.version != version {
            return Err(TieringError::CorruptManifest {
                key: key.to_string(),
                reason: format!("it says it is version {}", m.version),
            });
        }
        Ok(m)
    }

    /// The highest stored version, or `None` before the first upload.
    pub async fn latest(&self) -> Result<Option<Manifest>> {
        match self.versions().await?.last() {
            None => Ok(None),
            Some((v, _)) => self.load(*v).await.map(Some),
        }
    }

    /// The highest stored version, found from `hint` (a version known to exist or to have
    /// existed; 0: none had been written) without listing: GET the hint, then GET the next
    /// versions until one is missing. A new leader learns the hint from its replica fetches,
    /// so taking over costs two GETs in the common case. Without a hint, or when the hint was
    /// scrubbed away (older than the versions kept), it falls back to [`Self::latest`] (one
    /// LIST). A wrong answer here cannot lose data: writes are create-if-absent, so a writer
    /// that missed a newer version is refused and re-reads.
    pub async fn latest_from(&self, hint: Option<u64>) -> Result<Option<Manifest>> {
        let Some(hint) = hint else {
            return self.latest().await;
        };
        let mut found = if hint == 0 {
            None
        } else {
            match self.load(hint).await {
                Ok(m) => Some(m),
                Err(TieringError::NotFound { .. }) => return self.latest().await,
                Err(e) => return Err(e),
            }
        };
        loop {
            let next = found.as_ref().map_or(1, |m| m.version + 1);
            match self.load(next).await {
                Ok(m) => found = Some(m),
                Err(TieringError::NotFound { .. }) => return Ok(found),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes `next` as version `current.version + 1`, where `current` is the latest version
    /// the caller read (or [`Manifest::empty`]). Returns what was written.
    ///
    /// **Invariant: a segment object is part of the remote log only once a manifest version
    /// lists it; objects are written first, manifests second.** Callers PUT every object that
    /// `next` lists before calling this, and delete an object only after a version that no
    /// longer lists it has been written here.
    ///
    /// Fencing: `next.leader_epoch` must be at least `current.leader_epoch`; the version is
    /// written with create-if-absent, so if anyone wrote it first this fails with
    /// [`TieringError::Fenced`] (their epoch is higher) or [`TieringError::ManifestConflict`]
    /// (re-read and decide again). After a successful write the predecessor version must still
    /// exist: if scrub had already removed it, this writer's view was older than the last kept
    /// versions, its write landed in a gap that readers never see, and it is refused as fenced.
    pub async fn write_next(&self, current: &Manifest, mut next: Manifest) -> Result<Manifest> {
        if next.leader_epoch < current.leader_epoch {
            return Err(self.fenced(next.leader_epoch, current.leader_epoch));
        }
        next.format_version = MANIFEST_FORMAT_VERSION;
        next.version = current.version + 1;
        let key = self.paths.manifest_key(next.version);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let put = self
            .store
            .put_opts(&key, PutPayload::from(next.to_bytes()), opts)
            .await;
        match put {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                if let Some(latest) = self.latest().await? {
                    if latest.leader_epoch > next.leader_epoch {
                        return Err(self.fenced(next.leader_epoch, latest.leader_epoch));
                    }
                }
                return Err(TieringError::ManifestConflict {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(TieringError::store(&key, e)),
        }
        if current.version == 0 {
            // The first version: no predecessor to check, so make sure no later versions exist
            // (a writer whose "nothing written yet" was wrong, their early versions scrubbed).
            // One LIST in a partition's life.
            if self.versions().await?.last().is_some_and(|(v, _)| *v > 1) {
                let _ = self.store.delete(&key).await;
                return Err(TieringError::ManifestConflict {
                    key: key.to_string(),
                });
            }
        } else {
            let prev = self.paths.manifest_key(current.version);
            if let Err(object_store::Error::NotFound { .. }) = self.store.head(&prev).await {
                let _ = self.store.delete(&key).await;
                let latest = self.latest().await?.map(|m| m.leader_epoch);
                return Err(self.fenced(next.leader_epoch, latest.unwrap_or(next.leader_epoch)));
            }
        }
        Ok(next)
    }

    fn fenced(&self, ours: i32, current: i32) -> TieringError {
        TieringError::Fenced {
            partition: self.paths.describe(),
            ours,
            current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use strata_log::ErrorKind;

    fn store() -> ManifestStore {
        let root = root_path(&Path::from("strata"), "c1");
        ManifestStore::new(
            Arc::new(InMemory::new()),
            PartitionPaths::new(root, "orders", "abc", 3),
        )
    }

    /// One segment of offsets 0..10 written at `epoch`.
    fn segment(epoch: i32) -> SegmentMeta {
        SegmentMeta {
            key: "k".into(),
            base_offset: 0,
            next_offset: 10,
            max_timestamp: 5,
            object_bytes: 100,
            segment_bytes: 300,
            records: 10,
            leader_epoch: epoch,
            epochs: vec![(epoch, 0)],
        }
    }

    fn with_epoch(epoch: i32) -> Manifest {
        Manifest {
            leader_epoch: epoch,
            ..Manifest::empty()
        }
    }

    #[test]
    fn keys_follow_the_layout() {
        let p = PartitionPaths::new(root_path(&Path::from("pre/fix"), "c1"), "orders", "id1", 7);
        assert_eq!(
            p.manifest_key(12).as_ref(),
            "pre/fix/c1/orders-id1/7/manifest/00000000000000000012.json"
        );
        let id = uuid::Uuid::nil();
        assert_eq!(
            p.segment_key(42, 3, id).as_ref(),
            format!("pre/fix/c1/orders-id1/7/00000000000000000042-3-{id}.seg")
        );
        assert_eq!(
            PartitionPaths::manifest_version(&p.manifest_key(12)),
            Some(12)
        );
    }

    #[test]
    fn bytes_round_trip_and_crc_is_checked() {
        let mut m = with_epoch(4);
        m.version = 9;
        m.segments.push(segment(4));
        let bytes = m.to_bytes();
        assert_eq!(Manifest::from_bytes("k", &bytes).unwrap(), m);
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let tampered = text.replace("\"records\":10", "\"records\":11");
        let err = Manifest::from_bytes("k", tampered.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Random bytes, and a valid manifest with bytes overwritten or cut: a clear error or
        /// the manifest, never a panic.
        #[test]
        fn mutated_manifests_never_panic(
            random in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 0..6),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let _ = Manifest::from_bytes("k", &random);
            let mut m = with_epoch(2);
            m.segments.push(segment(2));
            let mut bytes = m.to_bytes().to_vec();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(bytes.len() - cut.index(bytes.len() / 2 + 1));
            if let Err(e) = Manifest::from_bytes("k", &bytes) {
                proptest::prop_assert_eq!(e.kind(), ErrorKind::Corrupt);
            }
        }
    }

    #[tokio::test]
    async fn an_oversized_manifest_object_is_refused_unread() {
        let s = store();
        let key = s.paths.manifest_key(1);
        let big = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
        s.store.put(&key, big.into()).await.unwrap();
        let err = s.load(1).await.unwrap_err().to_string();
        assert!(
            err.contains("more than the 67108864 any manifest has"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn two_writers_race_for_one_version_and_one_wins() {
        let ms = store();
        let base = ms
            .write_next(&Manifest::empty(), with_epoch(1))
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            ms.write_next(&base, with_epoch(1)),
            ms.write_next(&base, with_epoch(1))
        );
        assert!(a.is_ok() != b.is_ok(), "exactly one wins: {a:?} {b:?}");
        let err = a.err().or(b.err()).unwrap();
        assert!(
            matches!(err, TieringError::ManifestConflict { .. }),
            "{err}"
        );
        assert_eq!(ms.latest().await.unwrap().unwrap().version, 2);
    }

    #[tokio::test]
    async fn an_older_epoch_is_fenced() {
        let ms = store();
        let v1 = ms
            .write_next(&Manifest::empty(), with_epoch(5))
            .await
            .unwrap();
        let err = ms.write_next(&v1, with_epoch(3)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fenced);
        // A stale writer that read version 0 loses the race for version 1 and learns why.
        let err = ms
            .write_next(&Manifest::empty(), with_epoch(3))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    }
}
