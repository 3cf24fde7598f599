//! The watch token (`cache/<wsid>.watch`, store-format.md "Watch token"):
//! the watcher epoch and sequence number at which the scan that wrote a
//! stat cache began, so the next capture can ask the watcher what changed
//! since exactly then.
//!
//! Invariant: a token is used only when its checksum holds and it names the
//! header checksum of the cache beside it; anything else is ignored.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::header::{self, HEADER_LEN};

pub const TOKEN_MAGIC: &[u8; 8] = b"MOATWTOK";
pub const TOKEN_VERSION: u32 = 1;
const TOKEN_LEN: usize = HEADER_LEN + 32 + 16 + 8 + 32;

/// A watch token: the watcher epoch and sequence number at which the scan
/// that wrote the cache with header checksum `cache_check` began (the
/// `.watch` file beside the cache; see `worktree::watch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub cache_check: [u8; 32],
    pub epoch: [u8; 16],
    pub seq: u64,
}

impl Token {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TOKEN_LEN);
        header::write(&mut out, TOKEN_MAGIC, TOKEN_VERSION);
        out.extend_from_slice(&self.cache_check);
        out.extend_from_slice(&self.epoch);
        out.extend_from_slice(&self.seq.to_le_bytes());
        let check = blake3::hash(&out);
        out.extend_from_slice(check.as_bytes());
        out
    }

    pub fn decode(data: &[u8], path: &Path) -> Result<Self> {
        let body = header::check(data, TOKEN_MAGIC, TOKEN_VERSION, "watch token", path)?;
        if data.len() != TOKEN_LEN
            || blake3::hash(&data[..TOKEN_LEN - 32]).as_bytes() != &data[TOKEN_LEN - 32..]
        {
            return Err(Error::corrupt(path, "watch token", "checksum mismatch"));
        }
        let mut t = Token {
            cache_check: [0; 32],
            epoch: [0; 16],
            seq: u64::from_le_bytes(
                body[48..56]
                    .try_into()
                    .map_err(|_| Error::corrupt(path, "watch token", "truncated"))?,
            ),
        };
        t.cache_check.copy_from_slice(&body[..32]);
        t.epoch.copy_from_slice(&body[32..48]);
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_damage() {
        let t = Token {
            cache_check: [1; 32],
            epoch: [2; 16],
            seq: 9,
        };
        let b = t.encode();
        assert_eq!(Token::decode(&b, Path::new("t")).unwrap(), t);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 1;
            assert!(Token::decode(&d, Path::new("t")).is_err());
        }
    }
}
