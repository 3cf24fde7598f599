//! Per-object compression: zstd, or stored as-is when zstd does not shrink
//! the object (already compressed media, random data).

use crate::error::Result;
use crate::format::id::ObjectId;

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

use std::cell::RefCell;

// One zstd context per thread, reused for every object: creating a context
// per 4 KiB chunk cost more than compressing it (measured in benches/micro).
thread_local! {
    static CCTX: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    CCTX.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, c)) => c.compress(raw),
            None => zstd::bulk::compress(raw, level),
        }
    })
}

fn decompress(stored: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DCTX.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => d.decompress(stored, capacity),
            None => zstd::bulk::decompress(stored, capacity),
        }
    })
}

/// Compresses `raw` at `level`; returns the stored form and how it is stored.
pub fn encode(raw: &[u8], level: i32) -> (Compression, Vec<u8>) {
    match compress(raw, level) {
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
        // Checked before copying: a raw object is exactly its stored bytes.
        Compression::None if stored.len() != raw_len as usize => {
            return Err(format!(
                "stored raw as {} bytes, the index says {raw_len}",
                stored.len()
            ));
        }
        Compression::None => stored.to_vec(),
        Compression::Zstd => unzstd(stored, raw_len)?,
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

/// Objects up to this size decompress in one call into a buffer of their
/// declared size; larger ones stream, so memory follows the real output.
const BULK_MAX: u32 = 16 << 20;

/// Decompresses one zstd frame that must declare exactly `raw_len` bytes.
/// A hostile frame cannot make us reserve more than it really produces
/// (bounded by `raw_len`) beyond `BULK_MAX` (found by fuzzing).
fn unzstd(stored: &[u8], raw_len: u32) -> std::result::Result<Vec<u8>, String> {
    match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(n)) if n == raw_len as u64 => {}
        Ok(Some(n)) => return Err(format!("zstd frame declares {n} bytes, the index says {raw_len}")),
        Ok(None) => return Err("zstd frame does not declare its size".into()),
        Err(_) => return Err("not a zstd frame".into()),
    }
    if raw_len <= BULK_MAX {
        return decompress(stored, raw_len as usize).map_err(|e| format!("zstd decompression failed: {e}"));
    }
    use std::io::Read;
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(stored)
        .map_err(|e| format!("zstd decoder: {e}"))?
        .take(raw_len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd decompression failed: {e}"))?;
    Ok(out)
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
    fn hostile_declared_sizes() {
        // One byte of zstd claiming 4 GiB: refused before any allocation.
        let (c, stored) = encode(&[0u8; 1000], 3);
        assert_eq!(c, Compression::Zstd);
        let id = ObjectId::hash(&[0u8; 1000]);
        assert!(
            decode(&id, c, u32::MAX, &stored)
                .unwrap_err()
                .contains("declares 1000")
        );
        assert!(decode(&id, c, 1000, b"garbage").is_err());
        // A large object takes the streaming path and still verifies.
        let big = vec![7u8; (BULK_MAX + 10) as usize];
        let (c, s) = encode(&big, 1);
        assert_eq!(
            decode(&ObjectId::hash(&big), c, big.len() as u32, &s).unwrap(),
            big
        );
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
