//! `moat snapshots`, `moat show`, `moat ls`.

use std::path::PathBuf;

use clap::Args;
use moat::ObjectId;
use moat::format::snapshot::Snapshot;
use moat::format::tree::Content;
use serde_json::{Value, json};

use super::{Ctx, fmt, json, out, scope};

#[derive(clap::Subcommand)]
pub enum SnapshotsCmd {
    /// Remove snapshots (their data goes at the next `moat gc`)
    Delete(ManageArgs),
    /// Protect snapshots from every retention policy
    Pin(ManageArgs),
    /// Remove the protection of `pin`
    Unpin(ManageArgs),
}

#[derive(Args)]
pub struct ManageArgs {
    /// Snapshots (id prefix, `latest`, `latest~N`); all are resolved before any changes
    #[arg(required = true)]
    ids: Vec<String>,
    /// One JSON object: the full ids done, under `deleted`, `pinned` or `unpinned`
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SnapshotsArgs {
    #[command(subcommand)]
    cmd: Option<SnapshotsCmd>,
    /// Workspace whose snapshots to list [default: current directory]
    workspace: Option<PathBuf>,
    /// List the snapshots of every workspace
    #[arg(long)]
    all: bool,
    /// One JSON array
    #[arg(long)]
    json: bool,
    /// Only the snapshots of this run (all workspaces)
    #[arg(long, value_name = "RUN_ID")]
    run: Option<String>,
}

#[derive(Args)]
pub struct ShowArgs {
    /// Snapshot id (6+ hex characters), `latest` or `latest~N`
    id: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct LsArgs {
    /// Snapshot id (6+ hex characters), `latest` or `latest~N`
    id: String,
    /// Path inside the snapshot to list
    path: Option<String>,
    #[arg(long)]
    json: bool,
}

/// A snapshot as JSON (names by the JSON convention, `json`).
pub fn snapshot_json(id: &ObjectId, s: &Snapshot) -> Value {
    let mut v = json!({
        "id": id.to_hex(),
        "root": s.root.to_hex(),
        "parent": s.parent.map(|p| p.to_hex()),
        "host": s.host,
        "time": fmt::time(s.time_ns),
        "time_ns": s.time_ns,
        "trigger": s.trigger.name(),
        "message": s.message,
        "git": s.git.as_ref().map(|g| json!({"commit": g.commit, "branch": g.branch})),
        "run_id": s.run_id,
        "stats": {
            "files": s.stats.files, "dirs": s.stats.dirs, "symlinks": s.stats.symlinks,
            "bytes": s.stats.bytes, "files_read": s.stats.files_read,
            "new_objects": s.stats.new_objects, "new_bytes": s.stats.new_bytes,
            "skipped": s.stats.skipped, "duration_ns": s.stats.duration_ns,
        },
        "skipped": s.skipped_paths().map(json::path_object).collect::<Vec<_>>(),
        "exact": s.exact,
        "scan": s.scan.name(),
    });
    json::put_name(&mut v, "workspace", &s.workspace);
    v
}

fn manage(ctx: &Ctx, cmd: SnapshotsCmd) -> moat::Result<i32> {
    let store = ctx.open()?;
    let (verb, a) = match &cmd {
        SnapshotsCmd::Delete(a) => ("deleted", a),
        SnapshotsCmd::Pin(a) => ("pinned", a),
        SnapshotsCmd::Unpin(a) => ("unpinned", a),
    };
    // Resolve every id before changing anything.
    let records = a
        .ids
        .iter()
        .map(|i| scope::snapshot(&store, i))
        .collect::<moat::Result<Vec<_>>>()?;
    let _lock = store.lock_shared()?;
    let mut done = Vec::with_capacity(records.len());
    for r in records {
        match cmd {
            SnapshotsCmd::Delete(_) => store.delete_snapshot(&r.id)?,
            SnapshotsCmd::Pin(_) => store.pin(&r.id)?,
            SnapshotsCmd::Unpin(_) => store.unpin(&r.id)?,
        }
        if !a.json {
            outln!("{verb} {}", r.id);
        }
        done.push(r.id.to_hex());
    }
    if a.json {
        outln!("{}", json!({ verb: done }));
    }
    Ok(0)
}

pub fn snapshots(ctx: &Ctx, a: SnapshotsArgs) -> moat::Result<i32> {
    if let Some(cmd) = a.cmd {
        return manage(ctx, cmd);
    }
    let store = ctx.open()?;
    let pins = store.pinned()?;
    let (all, problems) = store.list_snapshots()?;
    for p in &problems {
        errln!("moat: warning: {p}");
    }
    let every = a.all || a.run.is_some();
    let scope = scope::resolve(
        ctx,
        &store,
        a.workspace.as_deref(),
        every,
        scope::NAME_OR_ALL,
        a.json,
    )?;
    let ws = scope.workspace();
    let list: Vec<_> = all
        .iter()
        .filter(|r| ws.is_none_or(|w| r.snap.workspace_path() == w))
        .filter(|r| {
            a.run
                .as_ref()
                .is_none_or(|id| r.snap.run_id.as_ref().is_some_and(|s| s.starts_with(id.as_str())))
        })
        .collect();
    if a.json {
        let v: Vec<Value> = list
            .iter()
            .map(|r| {
                let mut v = snapshot_json(&r.id, &r.snap);
                v["pinned"] = pins.contains(&r.id).into();
                v
            })
            .collect();
        outln!("{}", Value::Array(v));
        return Ok(0);
    }
    outln!(
        "{:<13}  {:<19}  {:<10}  {:>7}  {:>10}  message",
        "id",
        "time (UTC)",
        "trigger",
        "files",
        "new"
    );
    for r in list {
        let s = &r.snap;
        let mut msg = out::escape(&s.message).into_owned();
        if a.all {
            msg = format!("[{}] {msg}", out::quote(&s.workspace));
        }
        outln!(
            "{:<13}  {:<19}  {:<10}  {:>7}  {:>10}  {msg}",
            format!("{}{}", r.id.short(), if pins.contains(&r.id) { "*" } else { "" }),
            fmt::time(s.time_ns),
            // `~`: not exact, taken some time after its moment.
            format!("{}{}", s.trigger.name(), if s.exact { "" } else { "~" }),
            s.stats.files,
            fmt::bytes(s.stats.new_bytes),
        );
    }
    Ok(0)
}

pub fn show(ctx: &Ctx, a: ShowArgs) -> moat::Result<i32> {
    let store = ctx.open()?;
    let r = scope::snapshot(&store, &a.id)?;
    let v = snapshot_json(&r.id, &r.snap);
    if a.json {
        outln!("{v}");
        return Ok(0);
    }
    let s = &r.snap;
    outln!("snapshot   {}", r.id);
    outln!("root tree  {}", s.root);
    outln!(
        "parent     {}",
        s.parent.map(|p| p.to_hex()).unwrap_or_else(|| "-".into())
    );
    outln!("workspace  {}", out::quote(&s.workspace));
    outln!("host       {}", out::quote(s.host.as_bytes()));
    outln!("time       {} UTC", fmt::time(s.time_ns));
    outln!("trigger    {}", s.trigger.name());
    if let Some(g) = &s.git {
        outln!(
            "git        {} ({})",
            out::quote(g.commit.as_bytes()),
            out::quote(g.branch.as_deref().unwrap_or("detached").as_bytes())
        );
    }
    if !s.message.is_empty() {
        outln!("message    {}", out::escape(&s.message));
    }
    let st = &s.stats;
    outln!(
        "stats      {} files, {} dirs, {} symlinks, {}; {} files read, {} objects / {} new",
        st.files,
        st.dirs,
        st.symlinks,
        fmt::bytes(st.bytes),
        st.files_read,
        st.new_objects,
        fmt::bytes(st.new_bytes)
    );
    Ok(0)
}

pub fn ls(ctx: &Ctx, a: LsArgs) -> moat::Result<i32> {
    let store = ctx.open()?;
    let r = scope::snapshot(&store, &a.id)?;
    let path = a.path.unwrap_or_default();
    // Each entry is printed as the walk reaches it: a listing is never
    // collected (a JSON array then has one element per line).
    if a.json {
        outln!("[");
    }
    let mut first = true;
    moat::ops::inspect::list(&store, &r.snap.root, path.as_bytes(), |l| {
        let e = &l.entry;
        if a.json {
            let mut v = json!({
                "kind": e.kind_name(),
                "mode": e.mode,
                "size": e.size,
                "mtime_ns": e.mtime_ns,
            });
            json::put_name(&mut v, "path", &l.path);
            let target = match &e.content {
                Content::Symlink(t) => Some(t.as_slice()),
                _ => None,
            };
            json::put_opt_name(&mut v, "target", target);
            outln!("{}{v}", if first { "" } else { "," });
        } else {
            let name = out::quote(&l.path);
            let suffix = match &e.content {
                Content::Symlink(t) => format!(" -> {}", out::quote(t)),
                Content::Dir(_) => "/".into(),
                Content::File(_) => String::new(),
            };
            outln!(
                "{} {:>10}  {}  {name}{suffix}",
                fmt::mode(e.kind_name(), e.mode),
                e.size,
                fmt::time(e.mtime_ns)
            );
        }
        first = false;
        Ok(())
    })?;
    if a.json {
        outln!("]");
    }
    Ok(0)
}
