//! Bounded caches for remote reads: [`ChunkCache`] keeps raw (still compressed, still
//! CRC-carrying) frames on local disk, [`FooterCache`] keeps parsed footers in memory.
//!
//! Invariants kept here: neither cache grows past its bound (bytes on disk, footer count);
//! the chunk cache holds frames exactly as fetched, so every hit is re-checked by
//! [`crate::format::decode_frame`] (a damaged cache file is detected, evicted and refetched,
//! never served). Nothing survives a restart: the directory is wiped when the cache opens.
//! Hits, misses, evictions and bytes held are metrics (`crate::metrics`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::error::{Result, TieringError};
use crate::format::Footer;
use crate::metrics;

/// (object key, frame position)
type ChunkKey = (String, u64);

#[derive(Debug)]
struct Entry {
    file: PathBuf,
    len: u64,
    tick: u64,
}

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<ChunkKey, Entry>,
    /// tick -> key, oldest first.
    order: BTreeMap<u64, ChunkKey>,
    total: u64,
    tick: u64,
}

impl Lru {
    fn touch(&mut self, key: &ChunkKey) -> Option<PathBuf> {
        self.tick += 1;
        let tick = self.tick;
        let e = self.entries.get_mut(key)?;
        self.order.remove(&e.tick);
        e.tick = tick;
        self.order.insert(tick, key.clone());
        Some(e.file.clone())
    }

    fn remove(&mut self, key: &ChunkKey) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.order.remove(&e.tick);
        self.total -= e.len;
        metrics::CACHE_BYTES.sub(e.len as i64);
        Some(e)
    }
}

/// A bounded on-disk cache of frames, keyed by (object key, frame position), evicting the
/// least recently used frames once the total passes `max_bytes`.
#[derive(Debug)]
pub struct ChunkCache {
    dir: PathBuf,
    max_bytes: u64,
    lru: Mutex<Lru>,
    next_file: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ChunkCache {
    /// Opens the cache in `dir`, wiping whatever a previous run left there.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Arc<ChunkCache>> {
        let dir = dir.into();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(TieringError::io(
                    format!("cannot wipe the chunk cache directory {}", dir.display()),
                    e,
                ))
            }
        }
        std::fs::create_dir_all(&dir).map_err(|e| {
            TieringError::io(
                format!("cannot create the chunk cache directory {}", dir.display()),
                e,
            )
        })?;
        Ok(Arc::new(ChunkCache {
            dir,
            max_bytes,
            lru: Mutex::new(Lru::default()),
            next_file: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }))
    }

    /// The frame cached for (key, position), if any. A file that vanished or cannot be read
    /// is a miss.
    pub async fn get(&self, key: &str, position: u64) -> Option<Bytes> {
        let k = (key.to_string(), position);
        let file = self.lru.lock().touch(&k);
        let Some(file) = file else {
            self.miss();
            return None;
        };
        match tokio::fs::read(&file).await {
            Ok(v) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                metrics::CACHE_HITS.inc();
                Some(Bytes::from(v))
            }
            Err(_) => {
                self.lru.lock().remove(&k);
                self.miss();
                None
            }
        }
    }

    fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        metrics::CACHE_MISSES.inc();
    }

    /// Whether (key, position) is cached (no read, no LRU update).
    pub fn contains(&self, key: &str, position: u64) -> bool {
        self.lru
            .lock()
            .entries
            .contains_key(&(key.to_string(), position))
    }

    /// Caches a frame. A frame larger than the whole cache is not cached. Write failures are
    /// not errors for the reader (the frame is simply not cached); they are logged here.
    pub async fn put(&self, key: &str, position: u64, bytes: &Bytes) {
        let len = bytes.len() as u64;
        if len > self.max_bytes {
            return;
        }
        let k = (key.to_string(), position);
        if self.contains(key, position) {
            return;
        }
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let file = self.dir.join(format!("{n:016}.chunk"));
        if let Err(e) = tokio::fs::write(&file, bytes).await {
            tracing::warn!(file = %file.display(), error = %e, "cannot write to the chunk cache");
            let _ = tokio::fs::remove_file(&file).await;
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut lru = self.lru.lock();
            if let Some(old) = lru.remove(&k) {
                evicted.push(old.file);
            }
            lru.tick += 1;
            let tick = lru.tick;
            lru.entries.insert(k.clone(), Entry { file, len, tick });
            lru.order.insert(tick, k);
            lru.total += len;
            metrics::CACHE_BYTES.add(len as i64);
            while lru.total > self.max_bytes {
                let Some((_, oldest)) = lru.order.pop_first() else {
                    break;
                };
                if let Some(e) = lru.entries.remove(&oldest) {
                    lru.total -= e.len;
                    metrics::CACHE_BYTES.sub(e.len as i64);
                    metrics::CACHE_EVICTIONS.inc();
                    evicted.push(e.file);
                }
            }
        }
        for f in evicted {
            let _ = tokio::fs::remove_file(f).await;
        }
    }

    /// Drops one entry (a frame that failed its checks).
    pub async fn evict(&self, key: &str, position: u64) {
        let e = self.lru.lock().remove(&(key.to_string(), position));
        if let Some(e) = e {
            let _ = tokio::fs::remove_file(e.file).await;
        }
    }

    /// Bytes cached now.
    pub fn size_bytes(&self) -> u64 {
        self.lru.lock().total
    }

    /// Frames cached now.
    pub fn len(&self) -> usize {
        self.lru.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (hits, misses) since the cache opened.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Path of the cache directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for ChunkCache {
    /// What this cache held leaves the process-wide cache-bytes gauge with it.
    fn drop(&mut self) {
        metrics::CACHE_BYTES.sub(self.lru.get_mut().total as i64);
    }
}

type FooterEntry = (Arc<Footer>, u64);

/// Parsed footers by object key, at most `capacity` of them (least recently used evicted).
#[derive(Debug)]
pub struct FooterCache {
    capacity: usize,
    /// key -> (footer, last use tick), and the tick counter.
    inner: Mutex<(HashMap<String, FooterEntry>, u64)>,
}

impl FooterCache {
    pub fn new(capacity: usize) -> Arc<FooterCache> {
        Arc::new(FooterCache {
            capacity: capacity.max(1),
            inner: Mutex::new((HashMap::new(), 0)),
        })
    }

    pub fn get(&self, key: &str) -> Option<Arc<Footer>> {
        let mut g = self.inner.lock();
        g.1 += 1;
        let tick = g.1;
        let e = g.0.get_mut(key)?;
        e.1 = tick;
        Some(Arc::clone(&e.0))
    }

    pub fn put(&self, key: &str, footer: Arc<Footer>) {
        let mut g = self.inner.lock();
        g.1 += 1;
        let tick = g.1;
        g.0.insert(key.to_string(), (footer, tick));
        if g.0.len() > self.capacity {
            if let Some(oldest) =
                g.0.iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| k.clone())
            {
                g.0.remove(&oldest);
            }
        }
    }

    pub fn remove(&self, key: &str) {
        self.inner.lock().0.remove(key);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn evicts_least_recently_used_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::new(dir.path().join("c"), 300).unwrap();
        let chunk = |b: u8| Bytes::from(vec![b; 100]);
        cache.put("a", 0, &chunk(1)).await;
        cache.put("a", 100, &chunk(2)).await;
        cache.put("b", 0, &chunk(3)).await;
        assert_eq!(cache.size_bytes(), 300);
        // Touch ("a", 0) so ("a", 100) is the oldest.
        assert_eq!(cache.get("a", 0).await.unwrap(), chunk(1));
        cache.put("c", 0, &chunk(4)).await;
        assert_eq!(cache.size_bytes(), 300);
        assert!(cache.get("a", 100).await.is_none());
        assert_eq!(cache.get("b", 0).await.unwrap(), chunk(3));
        assert_eq!(cache.get("c", 0).await.unwrap(), chunk(4));
        // Files on disk match the entries.
        assert_eq!(std::fs::read_dir(cache.dir()).unwrap().count(), 3);
        // Too large for the cache: not cached.
        cache.put("d", 0, &Bytes::from(vec![0; 301])).await;
        assert!(!cache.contains("d", 0));
        cache.evict("b", 0).await;
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn open_wipes_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stale.chunk"), b"x").unwrap();
        let cache = ChunkCache::new(dir.path(), 10).unwrap();
        assert_eq!(std::fs::read_dir(cache.dir()).unwrap().count(), 0);
    }

    #[test]
    fn footer_cache_is_bounded() {
        let c = FooterCache::new(2);
        let f = Arc::new(Footer {
            version: 1,
            frames: vec![],
            base_offset: 0,
            next_offset: 0,
            max_timestamp: 0,
            record_count: 0,
            segment_bytes: 0,
        });
        c.put("a", f.clone());
        c.put("b", f.clone());
        c.get("a");
        c.put("c", f);
        assert_eq!(c.len(), 2);
        assert!(c.get("b").is_none());
        assert!(c.get("a").is_some());
    }
}
