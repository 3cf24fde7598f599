//! moat: a content-addressed, deduplicating snapshot store for developer
//! workspaces.
//!
//! The library owns all logic; the `moat` binary is a thin CLI over it.
//! Modules mirror the store's file types (`config`, `pack`, `index`,
//! `tree`, `snapshot`, `statcache`) and its commands (`capture`, `restore`,
//! `check`, `inspect`).

pub mod capture;
pub mod check;
pub mod chunker;
pub mod cleanup;
pub mod clone;
pub mod compress;
pub mod config;
pub mod diff;
pub mod error;
pub mod fsutil;
pub mod gc;
pub mod git;
pub mod header;
pub mod id;
pub mod index;
pub mod inspect;
pub mod log;
pub mod materialize;
pub mod pack;
pub mod patch;
pub mod progress;
pub mod resolve;
pub mod restore;
pub mod retention;
pub mod reuse;
pub mod rollback;
pub mod run;
pub mod snapshot;
pub mod statcache;
pub mod store;
pub mod trace;
pub mod tree;
pub mod walk;
pub mod workspace_config;
pub mod writer;

pub use error::{Error, Result};
pub use id::ObjectId;
pub use store::Store;
