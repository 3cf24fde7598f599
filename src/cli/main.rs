//! The `moat` command line: argument parsing and dispatch. Each command
//! lives in its own file and only turns library results into output and
//! exit codes; all logic is in the library. The top layer: it may use
//! every library layer (`run`, `ops`, `capture`, `worktree`, `store`,
//! `format`, `util`).

#[macro_use]
mod out;

mod bar;
mod check;
mod completions;
mod diff;
mod fmt;
mod gc;
mod inspect;
mod json;
mod log;
mod man;
mod mount;
mod pager;
mod restore;
mod rollback;
mod run;
mod scope;
mod snapshot;
mod transfer;
mod watch;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use moat::Store;

#[derive(Parser)]
#[command(
    name = "moat",
    version,
    about = "Content-addressed, deduplicating snapshots of developer workspaces"
)]
pub struct Cli {
    /// Store: a directory or s3://BUCKET/PREFIX [default: $MOAT_STORE, else $MOAT_HOME/store, else ~/.moat/store]
    #[arg(long, global = true, value_name = "DIR|URL")]
    store: Option<PathBuf>,
    /// No progress bars or informational messages
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Say how the work was done (staging, clones, fallbacks)
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Take a snapshot of a workspace (the last stdout line is its id)
    Snapshot(snapshot::SnapshotArgs),
    /// List snapshots, oldest first
    Snapshots(inspect::SnapshotsArgs),
    /// Show one snapshot's metadata and stats
    Show(inspect::ShowArgs),
    /// List the files of a snapshot
    Ls(inspect::LsArgs),
    /// Restore a snapshot into a directory
    Restore(restore::RestoreArgs),
    /// Show changes between two snapshots, or a snapshot and the workspace
    Diff(diff::DiffArgs),
    /// Snapshots in which a path changed, newest first (like git log)
    Log(log::LogArgs),
    /// Return a workspace to a snapshot (after a safety snapshot)
    Rollback(rollback::RollbackArgs),
    /// Run a command, snapshotting on start, commits, builds, idle and exit
    Run(run::RunArgs),
    /// List recorded runs
    Runs(run::RunsArgs),
    /// Show the commands a run executed
    Trace(run::TraceArgs),
    /// Apply retention and reclaim unreferenced data and orphaned temp files
    Gc(gc::GcArgs),
    /// Maintenance commands
    #[command(subcommand)]
    System(gc::SystemCmd),
    /// Verify the store: every snapshot complete; with --read-data every byte
    Check(check::CheckArgs),
    /// Watch a workspace so its snapshots cost only what changed (foreground)
    Watch(watch::WatchArgs),
    /// Mount snapshots read-only (FUSE): one, or all of a workspace
    Mount(mount::MountArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(completions::CompletionsArgs),
    /// Print man pages (roff), or write them all with --out DIR
    Man(man::ManArgs),
    /// Copy snapshots, and the objects they need, to another store
    Push(transfer::TransferArgs),
    /// Copy snapshots, and the objects they need, from another store
    Pull(transfer::TransferArgs),
}

pub struct Ctx {
    pub store_path: PathBuf,
    pub quiet: bool,
    pub verbose: bool,
}

impl Ctx {
    pub fn open(&self) -> moat::Result<Store> {
        Store::open(&self.store_path)
    }

    pub fn open_or_create(&self) -> moat::Result<Store> {
        Store::open_or_create(&self.store_path)
    }
}

fn main() {
    std::process::exit(run());
}

/// Runs the CLI and returns the process exit code.
fn run() -> i32 {
    let cli = Cli::parse();
    let store_path = match moat::store::default_location(cli.store.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let ctx = Ctx {
        store_path,
        quiet: cli.quiet,
        verbose: cli.verbose,
    };
    let res = match cli.cmd {
        Cmd::Snapshot(a) => snapshot::run(&ctx, a),
        Cmd::Snapshots(a) => inspect::snapshots(&ctx, a),
        Cmd::Show(a) => inspect::show(&ctx, a),
        Cmd::Ls(a) => inspect::ls(&ctx, a),
        Cmd::Restore(a) => restore::run(&ctx, a),
        Cmd::Check(a) => check::run(&ctx, a),
        Cmd::Gc(a) => gc::run_gc(&ctx, a),
        Cmd::Run(a) => run::run_run(&ctx, a),
        Cmd::Runs(a) => run::run_runs(&ctx, a),
        Cmd::Trace(a) => run::run_trace(&ctx, a),
        Cmd::System(c) => gc::run_system(&ctx, c),
        Cmd::Diff(a) => diff::run_diff(&ctx, a),
        Cmd::Log(a) => log::run(&ctx, a),
        Cmd::Rollback(a) => rollback::run(&ctx, a),
        Cmd::Watch(a) => watch::run(&ctx, a),
        Cmd::Mount(a) => mount::run(&ctx, a),
        Cmd::Completions(a) => completions::run(&ctx, a),
        Cmd::Man(a) => man::run(&ctx, a),
        Cmd::Push(a) => transfer::run(&ctx, a, transfer::Way::Push),
        Cmd::Pull(a) => transfer::run(&ctx, a, transfer::Way::Pull),
    };
    // The pager goes first, so an error is not printed under it.
    let res = res.and_then(|code| pager::finish().map(|()| code));
    match res {
        Ok(code) => code,
        Err(e) => {
            let _ = pager::finish();
            fail(&e)
        }
    }
}

fn fail(e: &moat::Error) -> i32 {
    errln!("moat: error: {e}");
    1
}
