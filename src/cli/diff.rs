//! `moat diff`: git-like views of changes (shared with `log` and
//! `rollback --dry-run`).

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use clap::Args;
use moat::ObjectId;
use moat::ops::diff::{self, Change, Status, Trees};
use moat::ops::patch::{self, Body};
use moat::util::progress::NoProgress;
use serde_json::{Value, json};

use super::{Ctx, json, out};

#[derive(Args)]
pub struct DiffArgs {
    /// Old snapshot (id prefix, `latest`, `latest~N`)
    a: String,
    /// New snapshot [default: the workspace as it is now]
    b: Option<String>,
    /// One line per path: A/M/D/T/R and the path (the default)
    #[arg(long, group = "mode")]
    name_status: bool,
    /// Lines added and removed per file, and a summary
    #[arg(long, group = "mode")]
    stat: bool,
    /// Unified diffs of text files
    #[arg(short = 'p', long, group = "mode")]
    patch: bool,
    /// One JSON array of changes
    #[arg(long, group = "mode")]
    json: bool,
    /// Never colour the output
    #[arg(long)]
    no_color: bool,
    /// Only these paths
    #[arg(last = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// What the two sides of a diff are.
pub struct Sides<'a> {
    pub trees: Trees<'a>,
    /// The live workspace when the new side is not a snapshot.
    pub live: Option<PathBuf>,
}

pub struct Colors(bool);

pub fn plain() -> Colors {
    Colors(false)
}

impl Colors {
    pub fn paint(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

pub fn colors(no_color: bool) -> Colors {
    Colors(!no_color && out::stdout_is_terminal() && std::env::var_os("NO_COLOR").is_none())
}

fn path_args(paths: &[PathBuf]) -> Vec<Vec<u8>> {
    paths.iter().map(|p| p.as_os_str().as_bytes().to_vec()).collect()
}

pub fn run_diff(ctx: &Ctx, a: DiffArgs) -> moat::Result<i32> {
    let store = ctx.open()?;
    let old = super::scope::snapshot(&store, &a.a)?;
    let mut trees = Trees::new(&store);
    let (new_root, live): (ObjectId, Option<PathBuf>) = match &a.b {
        Some(b) => (super::scope::snapshot(&store, b)?.snap.root, None),
        None => {
            let ws = old.snap.workspace_path();
            // The workspace as a snapshot of it would see it now.
            let rules = moat::worktree::config::scan(&ws, None, Default::default())?;
            let (scan, mem) = moat::capture::scan_dry(&store, &ws, &rules.walk, &NoProgress)?;
            trees.mem = mem;
            (scan.root, Some(ws))
        }
    };
    let changes = diff::diff(
        &trees,
        Some(&old.snap.root),
        Some(&new_root),
        &path_args(&a.paths),
    )?;
    let sides = Sides { trees, live };
    let c = colors(a.no_color);
    if a.json {
        print_json(&sides, &changes)?;
    } else if a.stat {
        print_stat(&sides, &changes)?;
    } else if a.patch {
        print_patches(&sides, &changes, &c)?;
    } else {
        print_name_status(&changes, &c);
    }
    Ok(0)
}

fn load_pair(s: &Sides, c: &Change) -> moat::Result<(Body, Body)> {
    let from = c.from.as_deref().unwrap_or(&c.path);
    let old = match &c.old {
        Some(e) => patch::load(&s.trees, None, from, e)?,
        None => Body::Bytes(Vec::new()),
    };
    let new = match &c.new {
        Some(e) => patch::load(&s.trees, s.live.as_deref(), &c.path, e)?,
        None => Body::Bytes(Vec::new()),
    };
    Ok((old, new))
}

fn size(e: &Option<moat::format::tree::Entry>) -> u64 {
    e.as_ref().map_or(0, |e| e.size)
}

pub fn print_name_status(changes: &[Change], c: &Colors) {
    for ch in changes {
        let code = match ch.status {
            Status::Added => "32",
            Status::Deleted => "31",
            _ => "33",
        };
        match &ch.from {
            Some(from) => outln!(
                "{}\t{}\t{}",
                c.paint(code, "R100"),
                out::quote(from),
                out::quote(&ch.path)
            ),
            None => outln!("{}\t{}", c.paint(code, ch.status.letter()), out::quote(&ch.path)),
        }
    }
}

fn print_stat(s: &Sides, changes: &[Change]) -> moat::Result<()> {
    let (mut ins, mut del) = (0, 0);
    let mut rows = Vec::new();
    for ch in changes {
        let name = match &ch.from {
            Some(f) => format!("{} => {}", out::quote(f), out::quote(&ch.path)),
            None => out::quote(&ch.path).into_owned(),
        };
        let (old, new) = load_pair(s, ch)?;
        let cell = match patch::line_counts(&old, &new) {
            Some((a, d)) => {
                ins += a;
                del += d;
                format!("{:>5} {}{}", a + d, "+".repeat(a.min(40)), "-".repeat(d.min(40)))
            }
            None => format!("  Bin {} -> {} bytes", size(&ch.old), size(&ch.new)),
        };
        rows.push((name, cell));
    }
    let width = rows.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0);
    for (n, cell) in &rows {
        outln!(" {n:<width$} |{cell}");
    }
    outln!(
        " {} file{} changed, {ins} insertion{}(+), {del} deletion{}(-)",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        if ins == 1 { "" } else { "s" },
        if del == 1 { "" } else { "s" }
    );
    Ok(())
}

pub fn print_patches(s: &Sides, changes: &[Change], c: &Colors) -> moat::Result<()> {
    // Contents go out exact into a pipe (the patch must apply), escaped
    // onto a terminal.
    let terminal = out::stdout_is_terminal();
    for ch in changes {
        if ch.old.is_none() && ch.new.is_none() {
            continue; // an empty directory: git has no patch for it
        }
        let (old, new) = load_pair(s, ch)?;
        for line in patch::patch(ch, &old, &new).lines() {
            let line = if terminal { out::escape(line) } else { line.into() };
            let line = line.as_ref();
            let code = if line.starts_with("diff --git") || line.starts_with("+++") || line.starts_with("---")
            {
                "1"
            } else if line.starts_with("@@") {
                "36"
            } else if line.starts_with('+') {
                "32"
            } else if line.starts_with('-') {
                "31"
            } else {
                ""
            };
            if code.is_empty() {
                outln!("{line}")
            } else {
                outln!("{}", c.paint(code, line))
            }
        }
    }
    Ok(())
}

/// One change as JSON: status, path (and `from` for a rename, names by
/// the JSON convention), both sides' kind, mode and size.
pub fn change_json(ch: &Change) -> Value {
    let side = |e: &Option<moat::format::tree::Entry>| {
        e.as_ref()
            .map(|e| json!({"kind": e.kind_name(), "mode": format!("{:o}", e.mode), "size": e.size}))
    };
    let mut v = json!({
        "status": ch.status.letter(),
        "old": side(&ch.old),
        "new": side(&ch.new),
        "mode_changed": ch.mode_changed(),
    });
    json::put_name(&mut v, "path", &ch.path);
    json::put_opt_name(&mut v, "from", ch.from.as_deref());
    v
}

fn print_json(s: &Sides, changes: &[Change]) -> moat::Result<()> {
    let mut out = Vec::new();
    for ch in changes {
        let counts = if ch.old.is_some() || ch.new.is_some() {
            let (old, new) = load_pair(s, ch)?;
            let large = [&old, &new].iter().any(|b| matches!(b, Body::TooLarge(_)));
            (patch::line_counts(&old, &new), large)
        } else {
            (None, false)
        };
        let (counts, too_large) = counts;
        let mut v = change_json(ch);
        v["added_lines"] = counts.map(|c| c.0).into();
        v["removed_lines"] = counts.map(|c| c.1).into();
        v["binary"] = ((ch.old.is_some() || ch.new.is_some()) && counts.is_none() && !too_large).into();
        v["too_large"] = too_large.into();
        out.push(v);
    }
    outln!("{}", Value::Array(out));
    Ok(())
}

pub fn summary(changes: &[Change]) -> String {
    match changes {
        [one] => format!("{} {}", one.status.letter(), out::quote(&one.path)),
        many => format!("{} paths changed", many.len()),
    }
}
