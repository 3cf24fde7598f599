#![no_main]

use libfuzzer_sys::fuzz_target;
use moat::format::tree::Tree;

// Byte-exact re-encoding does not hold: postcard accepts non-canonical
// (over-long) varints, e.g. 8f 00 for 0x0f, so `decode` accepts several
// encodings of one tree. What must hold is that encode/decode round-trips.
fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tree::decode(data) {
        let bytes = t.encode();
        let again = Tree::decode(&bytes).expect("an encoded tree must decode");
        assert_eq!(again, t, "decode(encode(t)) != t");
        assert_eq!(again.encode(), bytes, "encoding is not stable");
    }
});
