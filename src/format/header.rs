//! The 12-byte header every store file starts with: an 8-byte magic naming
//! the file type and a little-endian u32 format version.
//!
//! Invariant: a reader checks both before it looks at anything else, so a
//! wrong file or a newer format is a clear error, never a garbled decode.

use std::path::Path;

use crate::error::{Error, Result};

pub const HEADER_LEN: usize = 12;

pub fn write(out: &mut Vec<u8>, magic: &[u8; 8], version: u32) {
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
}

/// Checks the header and returns the bytes after it.
pub fn check<'a>(
    data: &'a [u8],
    magic: &[u8; 8],
    version: u32,
    what: &'static str,
    path: &Path,
) -> Result<&'a [u8]> {
    if data.len() < HEADER_LEN || &data[..8] != magic {
        if data.len() < HEADER_LEN && magic.starts_with(&data[..data.len().min(8)]) {
            return Err(Error::corrupt(path, what, "file is truncated"));
        }
        return Err(Error::BadMagic {
            path: path.to_path_buf(),
            what,
        });
    }
    let found = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if found != version {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            what,
            found,
            supported: version,
        });
    }
    Ok(&data[HEADER_LEN..])
}

/// Checks the header of a file type with several readable versions (the
/// newest one is written); returns the version found and the bytes after
/// the header.
pub fn check_any<'a>(
    data: &'a [u8],
    magic: &[u8; 8],
    versions: &[u32],
    what: &'static str,
    path: &Path,
) -> Result<(u32, &'a [u8])> {
    let newest = versions.iter().copied().max().unwrap_or(1);
    match check(data, magic, newest, what, path) {
        Ok(body) => Ok((newest, body)),
        Err(Error::UnsupportedVersion { found, .. }) if versions.contains(&found) => {
            Ok((found, &data[HEADER_LEN..]))
        }
        Err(e) => Err(e),
    }
}

/// A bounds-checked little-endian reader over a byte slice.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    pub fn id(&mut self) -> Option<crate::format::id::ObjectId> {
        crate::format::id::ObjectId::from_slice(self.bytes(32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_errors() {
        let p = Path::new("x");
        let mut v = Vec::new();
        write(&mut v, b"MOATTEST", 1);
        assert!(check(&v, b"MOATTEST", 1, "test", p).is_ok());
        assert!(matches!(
            check(&v, b"MOATTEST", 2, "test", p),
            Err(Error::UnsupportedVersion { found: 1, .. })
        ));
        assert!(matches!(
            check(&v, b"MOATOTHR", 1, "test", p),
            Err(Error::BadMagic { .. })
        ));
        assert!(matches!(
            check(&v[..5], b"MOATTEST", 1, "test", p),
            Err(Error::Corrupt { .. })
        ));
    }
}
