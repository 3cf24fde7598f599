#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = moat::format::index::IndexFile::decode(data, Path::new("fuzz"));
    // The trailing blake3 checksum rejects almost every mutation before the
    // tables are read; decode once more with the checksum made to match, so
    // the fuzzer reaches the table parsing.
    if data.len() >= 32 {
        let mut fixed = data.to_vec();
        let n = fixed.len() - 32;
        let sum = moat::ObjectId::hash(&fixed[..n]);
        fixed[n..].copy_from_slice(&sum.0);
        let _ = moat::format::index::IndexFile::decode(&fixed, Path::new("fuzz"));
    }
});
