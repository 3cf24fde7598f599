//! Per-object compression: zstd, or stored as-is when zstd does not shrink
//! the object (already compressed media, random data).

use crate::error::Result;
use crate::id::ObjectId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    None = 0,
    Zstd = 1,
}

impl Compression {
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Compresses `raw` at `level`; returns the stored form and how it is stored.
pub fn encode(raw: &[u8], level: i32) -> (Compression, Vec<u8>) {
    match zstd::bulk::compress(raw, level) {
        Ok(c) if c.len() < raw.len() => (Compression::Zstd, c),
        _ => (Compression::None, raw.to_vec()),
    }
}

/// Decodes a stored object and checks it against its id. `raw_len` (from the
/// index) bounds the output, so a hostile object cannot inflate without limit.
pub fn decode(
    id: &ObjectId,
    compression: Compression,
    raw_len: u32,
    stored: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    let raw = match compression {
        Compression::None => stored.to_vec(),
        Compression::Zstd => zstd::bulk::decompress(stored, raw_len as usize)
            .map_err(|e| format!("zstd decompression failed: {e}"))?,
    };
    if raw.len() != raw_len as usize {
        return Err(format!(
            "decoded length {} differs from the indexed length {raw_len}",
            raw.len()
        ));
    }
    let actual = ObjectId::hash(&raw);
    if actual != *id {
        return Err(format!("content hashes to {actual}, not to its id"));
    }
    Ok(raw)
}

pub fn level_ok(level: i32) -> Result<i32, String> {
    let range = zstd::compression_level_range();
    if range.contains(&level) {
        Ok(level)
    } else {
        Err(format!(
            "zstd level {level} is out of range {}..={}",
            range.start(),
            range.end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_verification() {
        let text = b"fn main() { println!(\"hi\"); }\n".repeat(100);
        let id = ObjectId::hash(&text);
        let (c, stored) = encode(&text, 3);
        assert_eq!(c, Compression::Zstd);
        assert!(stored.len() < text.len());
        assert_eq!(decode(&id, c, text.len() as u32, &stored).unwrap(), text);
        // wrong length bound, wrong id
        assert!(decode(&id, c, 10, &stored).is_err());
        assert!(decode(&ObjectId::hash(b"x"), c, text.len() as u32, &stored).is_err());
    }

    #[test]
    fn incompressible_is_stored_raw() {
        let data: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let (c, stored) = encode(&data, 3);
        if c == Compression::None {
            assert_eq!(stored, data);
        }
        assert_eq!(encode(b"", 3).0, Compression::None);
    }
}
