//! moat: a content-addressed, deduplicating snapshot store for developer
//! workspaces.
//!
//! The library owns all logic; the `moat` binary (`src/cli/`) is a thin
//! CLI over it. The folders are the layers, lowest first; a module may use
//! the layers below its own, never one above:
//!
//! | layer | owns |
//! |---|---|
//! | `util` | the progress trait, clocks, temp names, crash-safe writes, failpoints |
//! | `format` | pure byte codecs of every store file (mirrors store-format.md) |
//! | `store` | the store: the `Backend` seam (local directory, in-memory twin), the `Lock`, the index, verified reads, the writer session, temp cleanup |
//! | `worktree` | the live directory: walk, stat cache, watcher, git HEAD, `moat.yaml`, writing entries, clones |
//! | `capture` | taking a snapshot: stage, read, chunk, assemble, growth guard |
//! | `ops` | one module per command over a store: restore, rollback, diff, log, check, gc, ... |
//! | `run` | `moat run`: triggers, snapshots of a traced run, the tracers |
//! | `cli` | the `moat` binary: clap parsing and output (not part of the library) |
//!
//! `error` sits beside them all: every layer returns its typed errors.

pub mod capture;
pub mod error;
pub mod format;
pub mod ops;
pub mod run;
pub mod store;
pub mod util;
pub mod worktree;

pub use error::{Error, Result};
pub use format::id::ObjectId;
pub use store::Store;
