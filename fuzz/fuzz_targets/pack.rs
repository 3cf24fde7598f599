#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = moat::format::pack::parse(data, Path::new("fuzz")) else {
        return;
    };
    for e in &entries {
        // parse guarantees every object lies inside the data section.
        let stored = &data[e.offset as usize..][..e.stored_len as usize];
        let _ = moat::format::compress::decode(&e.id, e.compression, e.raw_len, stored);
    }
});
