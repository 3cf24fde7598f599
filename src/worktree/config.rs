//! The per-workspace configuration file, `moat.yaml` (or `agent.yaml`),
//! with the original moat's schema. Unknown keys, wrong types and values out
//! of range are errors naming the key and the line; an explicit 0 means 0.
//!
//! The file sits in a workspace anyone may write, so it is read as untrusted
//! input: a regular file only (a FIFO, device or symlink in its place is an
//! error, never opened or waited on), at most `MAX_SIZE` bytes, nested at
//! most `MAX_DEPTH` levels (the YAML parser's time grows with the square of
//! the nesting), each an error naming the file. `scan` is the one place
//! that turns a workspace, its configuration and a command's flags into
//! the walk every scanning command uses.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::worktree::walk::WalkOptions;

pub const FILE_NAMES: [&str; 2] = ["moat.yaml", "agent.yaml"];

/// The largest configuration file read (a real one is a few hundred bytes).
pub const MAX_SIZE: u64 = 1 << 20;
/// The deepest nesting of collections accepted (the schema needs four).
pub const MAX_DEPTH: usize = 32;
/// The most flow collections (`[...]`, `{...}`) accepted in one file.
pub const MAX_FLOW_COLLECTIONS: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkspaceConfig {
    pub snapshots: Snapshots,
    pub tracing: Tracing,
    /// A store to copy this workspace's snapshots to.
    pub remote: Option<Remote>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remote {
    /// A directory or `s3://BUCKET/PREFIX`.
    pub url: String,
    /// `moat run` pushes each snapshot there in the background.
    #[serde(default)]
    pub auto_push: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Snapshots {
    pub disabled: bool,
    pub triggers: Triggers,
    pub exclude: Exclude,
    pub retention: Retention,
    /// Growth guard: an automatic snapshot that would add more is skipped.
    #[serde(deserialize_with = "bytes_limit")]
    pub max_new_bytes: u64,
    #[serde(deserialize_with = "files_limit")]
    pub max_new_files: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Triggers {
    pub disable_pre_run: bool,
    pub disable_git_commits: bool,
    pub disable_builds: bool,
    pub disable_idle: bool,
    #[serde(deserialize_with = "idle_seconds")]
    pub idle_threshold_seconds: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Exclude {
    /// Do not honour .gitignore files.
    pub ignore_gitignore: bool,
    /// Extra gitignore-style patterns.
    pub additional: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Keep the newest N; unset: the time-based default policy.
    #[serde(deserialize_with = "max_count")]
    pub max_count: Option<u64>,
    pub delete_initial: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tracing {
    pub disable_exec: bool,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots {
            disabled: false,
            triggers: Triggers::default(),
            exclude: Exclude::default(),
            retention: Retention::default(),
            max_new_bytes: 500_000_000,
            max_new_files: 20_000,
        }
    }
}

impl Default for Triggers {
    fn default() -> Self {
        Triggers {
            disable_pre_run: false,
            disable_git_commits: false,
            disable_builds: false,
            disable_idle: false,
            idle_threshold_seconds: 30,
        }
    }
}

fn ranged<'de, D: Deserializer<'de>>(
    d: D,
    lo: u64,
    hi: u64,
    unit: &str,
) -> std::result::Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is out of range {lo}..={hi} {unit}"
        )))
    }
}

fn idle_seconds<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    ranged(d, 0, 86_400, "seconds")
}

fn max_count<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    ranged(d, 0, 1_000_000, "snapshots").map(Some)
}

fn bytes_limit<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    ranged(d, 0, 1 << 50, "bytes")
}

fn files_limit<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    ranged(d, 0, 1 << 40, "files")
}

/// The line of the key an error message names in backquotes, for errors
/// the YAML parser reports without a position (unknown top-level keys).
fn key_line(text: &str, message: &str) -> Option<usize> {
    let key = message.split('`').nth(1)?;
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.starts_with(':'))
        })
        .map(|i| i + 1)
}

/// Why `text` nests too deeply for a configuration, if it does: the line
/// where nesting first exceeds `MAX_DEPTH`, or too many flow collections
/// in all. The depth counts block indentation levels, compact `- `/`? `
/// entries and flow brackets outside quotes and comments: a cheap reading
/// of YAML, run before the parser. Its quote rule can be fooled, so the
/// count of `[` and `{` anywhere in the text is bounded too: the parser's
/// time grows with tokens times flow depth, and that bound holds whatever
/// the quoting.
pub fn too_deep(text: &str) -> Option<String> {
    let openers = text.bytes().filter(|&b| b == b'[' || b == b'{').count();
    if openers > MAX_FLOW_COLLECTIONS {
        return Some(format!(
            "holds {openers} '[' and '{{' (at most {MAX_FLOW_COLLECTIONS}): too many nested collections"
        ));
    }
    let deep = |n: usize| {
        Some(format!(
            "collections nested deeper than {MAX_DEPTH} levels at line {}",
            n + 1
        ))
    };
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    let mut quote: Option<char> = None;
    for (n, line) in text.lines().enumerate() {
        let mut block = 0;
        if flow == 0 && quote.is_none() {
            let body = line.trim_start_matches(' ');
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let indent = line.len() - body.len();
            while indents.last().is_some_and(|&i| i > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
            block = indents.len();
        }
        // `last`: the character before; `sig`: the last one not blank. A
        // quote, bracket or entry marker only counts at a token's start.
        let (mut last, mut sig) = (' ', ' ');
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            let next_blank = chars.peek().is_none_or(|d| *d == ' ' || *d == '\t');
            match (quote, c) {
                (Some('\''), '\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                }
                (Some('"'), '\\') => {
                    chars.next();
                }
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '#') if last == ' ' || last == '\t' => break,
                (None, '\'' | '"') if ":-?[{,".contains(sig) || sig == ' ' => quote = Some(c),
                (None, '[' | '{') if flow > 0 || ":-?".contains(sig) || sig == ' ' => flow += 1,
                (None, ']' | '}') if flow > 0 => flow -= 1,
                (None, '-' | '?') if flow == 0 && next_blank && "-? ".contains(sig) => block += 1,
                _ => {}
            }
            if block + flow > MAX_DEPTH {
                return deep(n);
            }
            last = c;
            if c != ' ' && c != '\t' {
                sig = c;
            }
        }
    }
    None
}

/// What every command that scans a workspace scans by: its configuration
/// and the walk built from it and the command's own flags.
#[derive(Clone, Debug)]
pub struct ScanRules {
    pub config: WorkspaceConfig,
    /// The configuration file used, if any.
    pub file: Option<PathBuf>,
    pub walk: WalkOptions,
}

/// The configuration of `workspace` (`explicit`, else its `moat.yaml` or
/// `agent.yaml`, else the defaults) merged with a command's walk flags
/// `cli`: the one function snapshot, diff, rollback and run build their
/// scans with, so they all see the same files.
pub fn scan(workspace: &Path, explicit: Option<&Path>, cli: WalkOptions) -> Result<ScanRules> {
    let (config, file) = WorkspaceConfig::load(workspace, explicit)?;
    let walk = config.walk_options(cli);
    Ok(ScanRules { config, file, walk })
}

/// Reads a configuration file: a regular file (`follow`: possibly through
/// a symlink) of at most `MAX_SIZE` bytes. `Ok(None)` when it does not
/// exist.
fn read_config(path: &Path, follow: bool) -> Result<Option<String>> {
    let meta = if follow {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    let bad = |detail: String| Error::Config {
        path: path.to_path_buf(),
        detail,
    };
    match meta {
        Ok(m) if !m.is_file() => {
            let what = crate::util::fs::type_name(m.file_type());
            return Err(bad(format!("is a {what}, not a regular file")));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    }
    let (file, _) = crate::util::fs::open_regular(path, follow).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => bad(format!("is {e}")),
        _ => Error::io(path, e),
    })?;
    let data = crate::util::fs::read_at_most(file, MAX_SIZE)
        .map_err(|e| Error::io(path, e))?
        .ok_or_else(|| {
            bad(format!(
                "is larger than {} MiB; a configuration holds a few settings",
                MAX_SIZE >> 20
            ))
        })?;
    String::from_utf8(data).map(Some).map_err(|e| {
        bad(format!(
            "is not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

impl WorkspaceConfig {
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let err = |detail: String| Error::Config {
            path: path.to_path_buf(),
            detail,
        };
        if text.len() as u64 > MAX_SIZE {
            return Err(err(format!("is larger than {} MiB", MAX_SIZE >> 20)));
        }
        if let Some(why) = too_deep(text) {
            return Err(err(why));
        }
        serde_yaml_ng::from_str(text).map_err(|e| {
            let mut detail = e.to_string();
            if !detail.contains(" line ")
                && let Some(line) = key_line(text, &detail)
            {
                detail = format!("{detail} at line {line}");
            }
            err(detail)
        })
    }

    /// `--config FILE` (which may be a symlink), else `moat.yaml` or
    /// `agent.yaml` in the workspace (which must be regular files), else
    /// the defaults. Returns the file used, if any.
    pub fn load(workspace: &Path, explicit: Option<&Path>) -> Result<(Self, Option<PathBuf>)> {
        if let Some(p) = explicit {
            let text = read_config(p, true)?
                .ok_or_else(|| Error::io(p, std::io::Error::from(std::io::ErrorKind::NotFound)))?;
            return Ok((Self::parse(&text, p)?, Some(p.to_path_buf())));
        }
        for p in FILE_NAMES.iter().map(|n| workspace.join(n)) {
            if let Some(text) = read_config(&p, false)? {
                return Ok((Self::parse(&text, &p)?, Some(p)));
            }
        }
        Ok((Self::default(), None))
    }

    /// The walk every snapshotting command uses for this workspace.
    pub fn walk_options(&self, mut extra: WalkOptions) -> WalkOptions {
        extra.no_ignore |= self.snapshots.exclude.ignore_gitignore;
        extra
            .excludes
            .extend(self.snapshots.exclude.additional.iter().cloned());
        extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<WorkspaceConfig> {
        WorkspaceConfig::parse(t, Path::new("moat.yaml"))
    }

    #[test]
    fn full_file_round_trip() {
        let c = parse(
            "snapshots:\n  disabled: false\n  triggers:\n    disable_pre_run: true\n    disable_git_commits: false\n    \
             disable_builds: true\n    disable_idle: false\n    idle_threshold_seconds: 0\n  exclude:\n    \
             ignore_gitignore: true\n    additional: ['*.log', 'tmp/']\n  retention:\n    max_count: 3\n    \
             delete_initial: true\n  max_new_bytes: 1000\n  max_new_files: 0\ntracing:\n  disable_exec: true\n",
        )
        .unwrap();
        assert!(c.snapshots.triggers.disable_pre_run && c.snapshots.triggers.disable_builds);
        assert_eq!(
            c.snapshots.triggers.idle_threshold_seconds, 0,
            "an explicit 0 is 0"
        );
        assert_eq!(c.snapshots.exclude.additional, ["*.log", "tmp/"]);
        assert_eq!(
            (
                c.snapshots.retention.max_count,
                c.snapshots.retention.delete_initial
            ),
            (Some(3), true)
        );
        assert_eq!((c.snapshots.max_new_bytes, c.snapshots.max_new_files), (1000, 0));
        assert!(c.tracing.disable_exec);
        let w = c.walk_options(WalkOptions::default());
        assert!(w.no_ignore && w.excludes.len() == 2);
        assert_eq!(parse("").unwrap(), WorkspaceConfig::default());
        assert_eq!(WorkspaceConfig::default().snapshots.retention.max_count, None);
        assert_eq!(
            parse("snapshots: {}\n")
                .unwrap()
                .snapshots
                .triggers
                .idle_threshold_seconds,
            30
        );
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        let cases = [
            (
                "snapshots:\n  triggers:\n    idle_treshold_seconds: 5\n",
                "idle_treshold_seconds",
                "line 3",
            ),
            (
                "snapshots:\n  triggers:\n    idle_threshold_seconds: soon\n",
                "idle_threshold_seconds",
                "line 3",
            ),
            (
                "snapshots:\n  retention:\n    max_count: -1\n",
                "max_count",
                "line 3",
            ),
            (
                "snapshots:\n  triggers:\n    idle_threshold_seconds: 100000\n",
                "out of range",
                "line 3",
            ),
            ("snapshots:\n  disabled: maybe\n", "disabled", "line 2"),
            ("snapshot:\n  disabled: true\n", "snapshot", "line 1"),
            ("tracing:\n  disable_exec: 1\n", "disable_exec", "line 2"),
            (
                "snapshots:\n  exclude:\n    additional: '*.log'\n",
                "additional",
                "line 3",
            ),
        ];
        for (text, key, line) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(line), "{text:?} gave: {err}");
        }
    }

    #[test]
    fn nesting_is_bounded_and_quotes_and_comments_do_not_count() {
        let ok = [
            "snapshots:\n  exclude:\n    additional:\n      - '*.log'\n      - \"[ab]*\"\n",
            "snapshots: {exclude: {additional: ['[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[', \"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\"]}}\n",
            "# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\nsnapshots: {} # {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\n",
            "snapshots:\n  exclude:\n    additional: [a[b, it's]\n",
        ];
        for t in ok {
            assert_eq!(too_deep(t), None, "{t}");
        }
        let deep: String = (0..40).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        let bad = [
            "[".repeat(33),
            format!("a: {}", "{b: ".repeat(40)),
            format!("{}x\n", "- ".repeat(40)),
            deep,
            format!("a: [{}]\n", "[], ".repeat(300)),
        ];
        for t in &bad {
            let why = too_deep(t).unwrap_or_default();
            assert!(why.contains("nested"), "{t:.60}: {why}");
        }
        assert!(parse(&bad[0]).unwrap_err().to_string().contains("line 1"));
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path();
        std::fs::write(ws.join("real.yaml"), "tracing:\n  disable_exec: true\n").unwrap();
        std::os::unix::fs::symlink(ws.join("real.yaml"), ws.join("moat.yaml")).unwrap();
        let err = WorkspaceConfig::load(ws, None).unwrap_err().to_string();
        assert!(
            err.contains("moat.yaml: is a symlink, not a regular file"),
            "{err}"
        );
        // Named on the command line, a link to a regular file is fine.
        let (c, _) = WorkspaceConfig::load(ws, Some(&ws.join("moat.yaml"))).unwrap();
        assert!(c.tracing.disable_exec);
        std::fs::remove_file(ws.join("moat.yaml")).unwrap();
        std::fs::write(ws.join("moat.yaml"), vec![b'#'; MAX_SIZE as usize + 1]).unwrap();
        let err = WorkspaceConfig::load(ws, None).unwrap_err().to_string();
        assert!(err.contains("larger than 1 MiB"), "{err}");
        std::fs::write(ws.join("agent.yaml"), b"\xff\xfe").unwrap();
        std::fs::remove_file(ws.join("moat.yaml")).unwrap();
        let err = WorkspaceConfig::load(ws, None).unwrap_err().to_string();
        assert!(err.contains("agent.yaml: is not UTF-8"), "{err}");
        let missing = WorkspaceConfig::load(ws, Some(&ws.join("nope.yaml"))).unwrap_err();
        assert!(missing.to_string().contains("nope.yaml"), "{missing}");
    }
}
