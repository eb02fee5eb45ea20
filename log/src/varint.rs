//! Zig-zag varints as Kafka's record format uses them. A codec with no I/O.

use crate::error::LogError;

/// Bytes a zig-zag varint of `v` takes.
pub fn varint_len(v: i64) -> usize {
    let mut z = zigzag(v);
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

/// Appends the zig-zag varint of `v` to `out`.
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = zigzag(v);
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Reads a zig-zag varint at `*pos`, advancing it. At most 10 bytes are read.
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Result<i64, LogError> {
    let mut z: u64 = 0;
    let mut shift = 0;
    loop {
        let Some(&b) = buf.get(*pos) else {
            return Err(LogError::CorruptBatch(
                "a record varint runs past the end of the batch".to_string(),
            ));
        };
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err(LogError::CorruptBatch(
                "a record varint is longer than 64 bits".to_string(),
            ));
        }
        z |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return Err(LogError::CorruptBatch(
                "a record varint is longer than 10 bytes".to_string(),
            ));
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(v in any::<i64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            let mut pos = 0;
            prop_assert_eq!(get_varint(&out, &mut pos).unwrap(), v);
            prop_assert_eq!(pos, out.len());
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut pos = 0;
            let _ = get_varint(&bytes, &mut pos);
        }
    }

    #[test]
    fn known_encodings() {
        for (v, expect) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (64, vec![0x80, 1]),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, expect, "encoding of {v}");
        }
    }
}
