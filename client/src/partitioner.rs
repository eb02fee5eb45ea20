//! Choosing a partition for a record, as Kafka's Java client does.
//!
//! - an explicit partition wins (checked against the topic's partition count by the caller);
//! - a key is hashed with Kafka's murmur2, so keys land where a Java producer would put them;
//! - keyless records stick to one partition until its batch is sealed, then move to another
//!   chosen at random (the "sticky" partitioner), which keeps batches full.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives `key` among `partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

/// The sticky choice for keyless records, per topic.
#[derive(Debug)]
pub(crate) struct Sticky {
    current: HashMap<String, u32>,
    rng: u64,
}

impl Default for Sticky {
    fn default() -> Self {
        // Seed from std's per-process random hasher keys: no extra dependency needed.
        let seed = RandomState::new().hash_one(0u64) | 1;
        Sticky {
            current: HashMap::new(),
            rng: seed,
        }
    }
}

impl Sticky {
    /// The partition keyless records of `topic` go to now.
    pub fn partition(&mut self, topic: &str, partitions: u32) -> u32 {
        if let Some(&p) = self.current.get(topic) {
            if p < partitions {
                return p;
            }
        }
        let p = self.random(partitions);
        self.current.insert(topic.to_string(), p);
        p
    }

    /// Called when the batch of `topic`/`sealed` was sealed: move to another partition.
    pub fn on_sealed(&mut self, topic: &str, sealed: u32, partitions: u32) {
        if self.current.get(topic) != Some(&sealed) {
            return;
        }
        let next = if partitions <= 1 {
            0
        } else {
            // Any partition but the one just filled.
            (sealed + 1 + self.random(partitions - 1)) % partitions
        };
        self.current.insert(topic.to_string(), next);
    }

    fn random(&mut self, below: u32) -> u32 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        ((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % below as u64) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        let cases: [(&str, i32); 6] = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn key_partition_is_positive_modulo() {
        // (-973932308 & 0x7fffffff) % 10 = 1173551340 % 10
        assert_eq!(partition_for_key(b"21", 10), 0);
        assert_eq!(partition_for_key(b"foobar", 7), (1357151166u32) % 7);
    }

    #[test]
    fn sticky_moves_only_when_sealed() {
        let mut s = Sticky::default();
        let first = s.partition("t", 4);
        assert_eq!(s.partition("t", 4), first);
        s.on_sealed("t", (first + 1) % 4, 4);
        assert_eq!(
            s.partition("t", 4),
            first,
            "sealing another partition changes nothing"
        );
        s.on_sealed("t", first, 4);
        let second = s.partition("t", 4);
        assert_ne!(second, first);
        assert!(second < 4);
    }
}
