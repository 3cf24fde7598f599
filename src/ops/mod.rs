//! The commands over a store, one module each: restore, rollback, diff
//! (and its text patches), log, mount, inspect (show, ls), resolve (naming
//! snapshots), check, gc, watch and transfer (push, pull). Uses `capture`, `worktree`, `store`, `format`
//! and `util`; the CLI turns their typed results into output.

pub mod check;
pub mod diff;
pub mod gc;
pub mod inspect;
pub mod log;
pub mod mount;
pub mod patch;
pub mod resolve;
pub mod restore;
pub mod rollback;
pub mod transfer;
pub mod trees;
pub mod watch;
