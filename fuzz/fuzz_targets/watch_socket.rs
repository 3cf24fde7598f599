#![no_main]

//! The watcher socket protocol (`worktree::watch::socket`): a request as
//! the watcher reads it, an answer as a capture reads it. Neither may
//! panic or allocate beyond its bounds, and what decodes survives a round
//! trip through its encoding.

use libfuzzer_sys::fuzz_target;
use moat::worktree::watch::socket::{read_answer, read_request, write_answer, write_request};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = read_request(&mut &data[..]) {
        let again = read_request(&mut &write_request(req)[..]).expect("an encoded request decodes");
        assert_eq!(again, req);
    }
    if let Ok(a) = read_answer(&mut &data[..]) {
        let again = read_answer(&mut &write_answer(&a)[..]).expect("an encoded answer decodes");
        assert_eq!(again, a);
    }
});
