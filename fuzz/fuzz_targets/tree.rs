#![no_main]

use libfuzzer_sys::fuzz_target;
use moat::format::tree::Tree;

// `decode` accepts only the canonical encoding (postcard alone would take
// over-long varints, e.g. 8f 00 for 0x0f), so one tree has one id: what it
// accepts re-encodes to exactly its input, and round-trips.
fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tree::decode(data) {
        let bytes = t.encode();
        assert_eq!(bytes, data, "a non-canonical encoding was accepted");
        let again = Tree::decode(&bytes).expect("an encoded tree must decode");
        assert_eq!(again, t, "decode(encode(t)) != t");
        assert_eq!(again.encode(), bytes, "encoding is not stable");
    }
});
