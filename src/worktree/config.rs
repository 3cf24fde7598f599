//! The per-workspace configuration file, `moat.yaml` (or `agent.yaml`),
//! with the original moat's schema. Unknown keys, wrong types and values out
//! of range are errors naming the key and the line; an explicit 0 means 0.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::worktree::walk::WalkOptions;

pub const FILE_NAMES: [&str; 2] = ["moat.yaml", "agent.yaml"];

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkspaceConfig {
    pub snapshots: Snapshots,
    pub tracing: Tracing,
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

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    #[serde(deserialize_with = "max_count")]
    pub max_count: u64,
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

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_count: 10,
            delete_initial: false,
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

fn max_count<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    ranged(d, 0, 1_000_000, "snapshots")
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

impl WorkspaceConfig {
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| {
            let mut detail = e.to_string();
            if !detail.contains(" line ")
                && let Some(line) = key_line(text, &detail)
            {
                detail = format!("{detail} at line {line}");
            }
            Error::Config {
                path: path.to_path_buf(),
                detail,
            }
        })
    }

    /// `--config FILE`, else `moat.yaml` or `agent.yaml` in the workspace,
    /// else the defaults. Returns the file used, if any.
    pub fn load(workspace: &Path, explicit: Option<&Path>) -> Result<(Self, Option<PathBuf>)> {
        let candidates: Vec<PathBuf> = match explicit {
            Some(p) => vec![p.to_path_buf()],
            None => FILE_NAMES.iter().map(|n| workspace.join(n)).collect(),
        };
        for p in candidates {
            match std::fs::read_to_string(&p) {
                Ok(text) => return Ok((Self::parse(&text, &p)?, Some(p))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => continue,
                Err(e) => return Err(Error::io(&p, e)),
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
            (3, true)
        );
        assert_eq!((c.snapshots.max_new_bytes, c.snapshots.max_new_files), (1000, 0));
        assert!(c.tracing.disable_exec);
        let w = c.walk_options(WalkOptions::default());
        assert!(w.no_ignore && w.excludes.len() == 2);
        assert_eq!(parse("").unwrap(), WorkspaceConfig::default());
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
}
