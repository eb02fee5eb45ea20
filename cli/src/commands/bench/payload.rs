//! Record values that compress like real data rather than like a repeated string: a pool of
//! pseudo-random lowercase letters (about 4.7 bits of entropy a byte, zstd ratio ~1.6), sliced
//! without copying. Consecutive values are consecutive slices, so the producer reads the pool
//! sequentially (the CPU prefetches it; random slices cost a cache miss per record, which
//! showed as a fifth of the producer's time), and a value recurs only after 16 MiB, beyond
//! zstd's window: it never repeats inside one compressed frame.

use bytes::Bytes;

const POOL_BYTES: usize = 16 << 20;

/// Slices of a shared random pool; each producer walks its own sequence of offsets.
#[derive(Clone)]
pub struct Payloads {
    pool: Bytes,
    size: usize,
}

impl Payloads {
    pub fn new(size: usize) -> Payloads {
        let len = POOL_BYTES.max(size * 2);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            x = xorshift(x);
            // Eight letters from one 64-bit draw.
            for k in 0..8 {
                data.push(b'a' + ((x >> (k * 8)) as u8 % 26));
            }
        }
        data.truncate(len);
        Payloads {
            pool: Bytes::from(data),
            size,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The value for draw `seed` (any number; consecutive seeds give unrelated offsets).
    pub fn value(&self, seed: u64) -> Bytes {
        let span = (self.pool.len() - self.size) as u64;
        let start =
            (xorshift(seed.wrapping_add(1).wrapping_mul(0x2545_f491_4f6c_dd1d)) % span) as usize;
        self.pool.slice(start..start + self.size)
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_size_asked_and_differ() {
        let p = Payloads::new(100);
        let (a, b) = (p.value(1), p.value(2));
        assert_eq!(a.len(), 100);
        assert_ne!(a, b);
        assert!(a.iter().all(|c| c.is_ascii_lowercase()));
    }

    #[test]
    fn values_compress_like_text_not_like_a_repeat() {
        use strata_log::{BatchBuilder, Compression};
        let p = Payloads::new(100);
        let build = |compression| {
            let mut b = BatchBuilder::new(compression);
            for i in 0..10_000 {
                b.append(0, None, Some(&p.value(i)), &[]);
            }
            b.build().unwrap().len()
        };
        let ratio = build(Compression::None) as f64 / build(Compression::Zstd) as f64;
        assert!(ratio < 2.5, "ratio {ratio}");
    }
}
