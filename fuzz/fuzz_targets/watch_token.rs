#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use moat::format::watch_token::Token;

// A watch token (`cache/<wsid>.watch`): fixed size and checksummed; what
// decodes re-encodes to exactly its input.
fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Token::decode(data, Path::new("fuzz")) {
        assert_eq!(t.encode(), data, "a token decoded from other bytes than its encoding");
    }
});
