#![no_main]

//! `compress::decode` on any stored bytes, compression and declared length
//! (the first 5 input bytes), and `encode` then `decode` round trips.

use libfuzzer_sys::fuzz_target;
use moat::ObjectId;
use moat::format::compress::{self, Compression};

fuzz_target!(|input: &[u8]| {
    let Some((head, stored)) = input.split_first_chunk::<5>() else {
        return;
    };
    let comp = if head[0] & 1 == 1 { Compression::Zstd } else { Compression::None };
    let raw_len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let _ = compress::decode(&ObjectId::hash(stored), comp, raw_len, stored);
    let (c, enc) = compress::encode(stored, 1);
    let back = compress::decode(&ObjectId::hash(stored), c, stored.len() as u32, &enc);
    assert_eq!(back.as_deref(), Ok(stored), "encode/decode round trip");
});
