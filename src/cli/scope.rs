//! Which workspace a command acts on, said out loud: a command whose
//! workspace is implicit (the current directory) names it on stderr, so a
//! policy or a listing is never applied to the wrong place unnoticed; the
//! library refuses an implicit workspace with no snapshots
//! (`ops::resolve::scope`).

use std::path::Path;

use moat::Store;
use moat::ops::resolve::{self, Scope};

use super::{Ctx, out};

/// The hint for commands with a WORKSPACE argument and `--all`.
pub const NAME_OR_ALL: &str = "name a WORKSPACE or pass --all";

/// Resolves the scope and, when the workspace was implicit, says which it
/// is (unless quiet or the output is JSON).
pub fn resolve(
    ctx: &Ctx,
    store: &Store,
    named: Option<&Path>,
    all: bool,
    hint: &'static str,
    json: bool,
) -> moat::Result<Scope> {
    let scope = resolve::scope(store, named, all, hint)?;
    if let Scope::Workspace { path, implicit: true } = &scope
        && !ctx.quiet
        && !json
    {
        errln!("moat: workspace {}", out::quote_path(path));
    }
    Ok(scope)
}

/// How a summary names its scope: `workspace DIR` or `all workspaces`.
pub fn describe(scope: &Scope) -> String {
    match scope {
        Scope::All => "all workspaces".into(),
        Scope::Workspace { path, .. } => format!("workspace {}", out::quote_path(path)),
    }
}

/// The snapshot the user named. `latest` means the newest of the
/// workspace a snapshot taken here would be of (the root of the current
/// directory's, `resolve::implicit_workspace`, found only for `latest`),
/// else of the store.
pub fn snapshot(store: &Store, spec: &str) -> moat::Result<moat::store::SnapshotRecord> {
    let here = match spec.starts_with("latest") {
        true => resolve::implicit_workspace(store).ok().map(|(p, _)| p),
        false => None,
    };
    resolve::snapshot(store, spec, here.as_deref())
}
