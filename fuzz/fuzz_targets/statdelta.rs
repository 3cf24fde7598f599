#![no_main]

//! A stat cache delta (`cache/<wsid>.delta`): the base check it names, the
//! version-2 cache embedded after it, and lookups in that cache (the
//! binary search over its fan-out and offsets, the records below a
//! directory). Run once as given and once with the embedded header
//! checksum made to match, so mutations reach the tables behind it.

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use moat::format::statcache::{self, Table};
use moat::format::statdelta;

/// Where the embedded cache's header check lies (parsed as the format
/// says), if the bytes get that far.
fn header_check_at(c: &[u8]) -> Option<usize> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(c.get(at..at + 4)?.try_into().ok()?) as usize);
    let mut at: usize = 12 + 8 + 32 + 16;
    at = at.checked_add(4 + u32_at(at)?)?;
    let n = u32_at(at)?;
    at += 4;
    for _ in 0..n.min(1 << 16) {
        at = at.checked_add(4 + u32_at(at)? + 44)?;
    }
    let count = u64::from_le_bytes(c.get(at..at + 8)?.try_into().ok()?) as usize;
    at = at.checked_add(8 + 256 * 8)?.checked_add(count.checked_mul(8)?)?;
    (at + 32 <= c.len()).then_some(at)
}

fn exercise(data: &[u8]) {
    let Ok((_base, at)) = statdelta::split(data, Path::new("fuzz")) else {
        return;
    };
    let Ok(t) = Table::open(&data[at..], Path::new("fuzz")) else {
        return;
    };
    let _ = t.get(b"");
    let _ = t.below(b"");
    for i in 0..t.len().min(64) {
        if let Ok(raw) = t.raw(i) {
            let p = statcache::record_path(raw).to_vec();
            let _ = statcache::is_listed(raw);
            let _ = t.get(&p);
            let _ = t.find(&p);
            let _ = t.below(&p);
            for (dir, _) in statdelta::ancestors(&p) {
                let _ = t.get(dir);
            }
        }
    }
    let _ = t.files();
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    let Some(c) = data.get(44..) else { return };
    if let Some(h) = header_check_at(c) {
        let mut fixed = data.to_vec();
        let sum = moat::ObjectId::hash(&c[..h]);
        fixed[44 + h..44 + h + 32].copy_from_slice(&sum.0);
        exercise(&fixed);
    }
});
