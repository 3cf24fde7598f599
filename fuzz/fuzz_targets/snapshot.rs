#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = moat::format::snapshot::Snapshot::decode(data, Path::new("fuzz"));
});
