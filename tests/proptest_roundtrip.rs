//! Property test: any generated tree survives capture → restore through the
//! library, byte for byte.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use moat::capture::{CaptureOptions, Outcome, capture};
use moat::ops::restore::{RestoreOptions, restore};
use moat::util::progress::NoProgress;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>, bool),
    Link(Vec<u8>),
    Dir(Vec<(Vec<u8>, Node)>),
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![b'a'..=b'z', Just(b'.'), Just(0xffu8), Just(b' ')],
        1..6,
    )
    .prop_filter("not . or .. or .git", |n| n != b"." && n != b".." && n != b".git")
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        (prop::collection::vec(any::<u8>(), 0..3000), any::<bool>()).prop_map(|(d, x)| Node::File(d, x)),
        name().prop_map(Node::Link),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop::collection::vec((name(), inner), 0..5).prop_map(Node::Dir)
    })
}

fn build(path: &Path, n: &Node) {
    use std::os::unix::fs::PermissionsExt;
    match n {
        Node::File(d, x) => {
            std::fs::write(path, d).unwrap();
            let mode = if *x { 0o755 } else { 0o644 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Node::Link(t) => std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t), path).unwrap(),
        Node::Dir(children) => {
            std::fs::create_dir(path).unwrap();
            for (name, c) in children {
                let p = path.join(std::ffi::OsStr::from_bytes(name));
                if std::fs::symlink_metadata(&p).is_err() {
                    build(&p, c);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn capture_restore_round_trip(children in prop::collection::vec((name(), node()), 0..8)) {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        build(&ws, &Node::Dir(children));
        let store = moat::Store::open_or_create(&tmp.path().join("store")).unwrap();
        let rep = capture(&store, &ws, &CaptureOptions::default(), &NoProgress).unwrap();
        prop_assert!(matches!(rep.outcome, Outcome::Written(_)));
        prop_assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
        let store = moat::Store::open(&tmp.path().join("store")).unwrap();
        let out = tmp.path().join("out");
        restore(&store, &rep.snapshot, &out, &RestoreOptions::default(), &NoProgress).unwrap();
        prop_assert_eq!(common::listing(&ws), common::listing(&out));
    }
}
