//! Pure byte codecs of the store's files, one module per file type of
//! store-format.md: no I/O here, only bytes in and typed values (or a
//! typed error naming what is wrong) out. Uses `error` and `util` (the
//! clock, for a new store id) only.

pub mod compress;
pub mod config;
pub mod header;
pub mod id;
pub mod index;
pub mod pack;
pub mod path;
pub mod snapshot;
pub mod statcache;
pub mod statdelta;
pub mod tree;
pub mod watch_token;
