//! The store's `config` file: parameters every writer of the store must
//! share so that the same content always cuts into the same chunks.
//!
//! Layout: header (`MOATCONF`, version) | postcard(`StoreConfig`). Created
//! once, by hard-linking a finished temp file to `config`, so two processes
//! creating a store at the same time agree on one file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::header;

pub const MAGIC: &[u8; 8] = b"MOATCONF";
pub const VERSION: u32 = 1;

/// Defaults chosen by measurement (see `store-format.md`, "Choosing the
/// parameters"): source files are mostly below 16 KiB and are stored whole;
/// larger files cut at 64 KiB on average so an edit re-stores ~64 KiB.
pub const CHUNK_MIN: u32 = 16 * 1024;
pub const CHUNK_AVG: u32 = 64 * 1024;
pub const CHUNK_MAX: u32 = 256 * 1024;
pub const ZSTD_LEVEL: i32 = 3;
pub const PACK_TARGET: u32 = 16 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Random id of this store.
    pub id: [u8; 16],
    pub chunk_min: u32,
    pub chunk_avg: u32,
    pub chunk_max: u32,
    pub zstd_level: i32,
    pub pack_target: u32,
}

impl StoreConfig {
    pub fn new_default() -> Self {
        let seed = format!("{}-{}", std::process::id(), crate::util::now_ns());
        let mut id = [0u8; 16];
        id.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
        StoreConfig {
            id,
            chunk_min: CHUNK_MIN,
            chunk_avg: CHUNK_AVG,
            chunk_max: CHUNK_MAX,
            zstd_level: ZSTD_LEVEL,
            pack_target: PACK_TARGET,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        header::write(&mut out, MAGIC, VERSION);
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }

    pub fn decode(data: &[u8], path: &Path) -> Result<Self> {
        let body = header::check(data, MAGIC, VERSION, "config", path)?;
        let (c, rest): (StoreConfig, _) =
            postcard::take_from_bytes(body).map_err(|e| Error::corrupt(path, "config", e.to_string()))?;
        if !rest.is_empty() {
            return Err(Error::corrupt(path, "config", "trailing bytes"));
        }
        c.validate().map_err(|d| Error::corrupt(path, "config", d))?;
        Ok(c)
    }

    /// FastCDC's own limits (which also keep a chunk within the u32
    /// lengths of packs and index), and even sizes: fastcdc asserts both
    /// in debug builds and otherwise silently shifts odd bounds by a byte,
    /// so a config breaking them would panic or cut unlike its text.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let (min, avg, max) = (
            self.chunk_min as usize,
            self.chunk_avg as usize,
            self.chunk_max as usize,
        );
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && [min, avg, max].iter().all(|n| n.is_multiple_of(2));
        if !ok {
            return Err(format!(
                "chunk sizes {}/{}/{} are not even and min <= avg <= max within fastcdc's limits",
                self.chunk_min, self.chunk_avg, self.chunk_max
            ));
        }
        crate::format::compress::level_ok(self.zstd_level)?;
        if self.pack_target == 0 {
            return Err("pack target size is 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = StoreConfig::new_default();
        assert_eq!(StoreConfig::decode(&c.encode(), Path::new("c")).unwrap(), c);
        let bad = StoreConfig { chunk_min: 1, ..c };
        assert!(StoreConfig::decode(&bad.encode(), Path::new("c")).is_err());
        // fastcdc's debug assertions: max of at least 1 KiB, even sizes.
        for (min, avg, max) in [(64, 256, 512), (64, 256, 1025), (65, 256, 1024), (64, 257, 1024)] {
            let bad = StoreConfig {
                chunk_min: min,
                chunk_avg: avg,
                chunk_max: max,
                ..c.clone()
            };
            assert!(
                StoreConfig::decode(&bad.encode(), Path::new("c")).is_err(),
                "{min}/{avg}/{max}"
            );
        }
        let ok = StoreConfig {
            chunk_min: 64,
            chunk_avg: 256,
            chunk_max: 1024,
            ..c.clone()
        };
        assert!(StoreConfig::decode(&ok.encode(), Path::new("c")).is_ok());
        let mut trailing = c.encode();
        trailing.push(0);
        assert!(StoreConfig::decode(&trailing, Path::new("c")).is_err());
    }
}
