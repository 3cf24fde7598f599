#![no_main]

//! Names found by listing a store (a directory or a bucket's keys): which
//! are store files, and where each lives. A name that is accepted maps to
//! one path below its directory and back to itself; nothing else does.
//! Also the `s3://BUCKET/PREFIX` location syntax.

use libfuzzer_sys::fuzz_target;
use moat::store::backend::FileKind;
use moat::store::backend::layout::{name_of, path};
use moat::store::backend::remote::S3Url;

const KINDS: [FileKind; 7] = [
    FileKind::Pack,
    FileKind::Index,
    FileKind::Snapshot,
    FileKind::Pin,
    FileKind::Cache,
    FileKind::CacheDelta,
    FileKind::WatchToken,
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for kind in KINDS {
        if let Some(name) = name_of(kind, text) {
            let p = path(kind, name).expect("an accepted name has a path");
            assert_eq!(p.file_name().and_then(|f| f.to_str()), Some(text));
            assert!(p.components().count() <= 3);
        }
    }
    if let Some(Ok(u)) = S3Url::parse(text) {
        assert!(!u.prefix.starts_with('/') && !u.prefix.ends_with('/'));
        assert!(u.prefix.is_empty() || u.prefix.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
    }
});
