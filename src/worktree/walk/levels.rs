//! The ignore rules of the directories between the walk's start and the
//! directory being read: one `Level` per directory that has rules, linked
//! to its parent's, built from the directory's own listing (no probing for
//! ignore files that are not there).
//!
//! Invariant: a path is matched exactly as the `ignore` crate's walker
//! built by `walk::rules` matches it (`tests/walk_rules.rs` compares the
//! two on random trees): the `--exclude` overrides first; then, from the
//! deepest level up, the first `.ignore` match, else the first
//! `.gitignore` match, else the first `info/exclude` match decides
//! (`require_git(false)`: every level's `.gitignore` applies, repository
//! boundaries or not). Ignore files are read here, never by the crate:
//! each is opened non-blocking and must be a regular file of at most
//! `ignore_files::MAX_IGNORE_FILE` bytes.

use std::path::Path;
use std::sync::Arc;

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::util::fs::{open_regular, read_at_most};
use crate::worktree::ignore_files::MAX_IGNORE_FILE;

/// One directory's rules and its parent's.
#[derive(Default)]
pub(super) struct Level {
    parent: Option<Arc<Level>>,
    ignore: Option<Gitignore>,
    gitignore: Option<Gitignore>,
    exclude: Option<Gitignore>,
}

impl Level {
    /// No rules at all (the start of a walk, or `--no-ignore`).
    pub(super) fn none() -> Arc<Level> {
        Arc::new(Level::default())
    }

    /// Whether any level holds a rule (else matching can be skipped).
    pub(super) fn any(&self) -> bool {
        self.ignore.is_some() || self.gitignore.is_some() || self.exclude.is_some() || self.parent.is_some()
    }

    /// The level of directory `dir` (absolute) below `parent`, from the
    /// ignore files its listing holds; `parent` itself when it has none.
    /// `exclude` is the `info/exclude` file a `.git` there points to.
    /// Lines that are not valid patterns (or not UTF-8) are skipped, as
    /// the crate skips them.
    pub(super) fn child(
        parent: &Arc<Level>,
        dir: &Path,
        has_ignore: bool,
        has_gitignore: bool,
        exclude: Option<&Path>,
    ) -> Arc<Level> {
        let ignore = has_ignore.then(|| build(dir, &dir.join(".ignore"))).flatten();
        let gitignore = has_gitignore
            .then(|| build(dir, &dir.join(".gitignore")))
            .flatten();
        let exclude = exclude.and_then(|x| build(dir, x));
        if ignore.is_none() && gitignore.is_none() && exclude.is_none() {
            return parent.clone();
        }
        Arc::new(Level {
            parent: parent.any().then(|| parent.clone()),
            ignore,
            gitignore,
            exclude,
        })
    }

    /// Whether `path` (absolute, below the directory of this level) is
    /// ignored by the rules of this level and those above it.
    pub(super) fn ignored(&self, path: &Path, is_dir: bool) -> bool {
        let (mut mi, mut mg, mut mx) = (Match::None, Match::None, Match::None);
        let mut at = Some(self);
        while let Some(l) = at {
            let test = |m: &mut Match<()>, g: &Option<Gitignore>| {
                if m.is_none()
                    && let Some(g) = g
                {
                    *m = g.matched(path, is_dir).map(|_| ());
                }
            };
            test(&mut mi, &l.ignore);
            test(&mut mg, &l.gitignore);
            test(&mut mx, &l.exclude);
            at = l.parent.as_deref();
        }
        mi.or(mg).or(mx).is_ignore()
    }
}

/// The matcher of the ignore file `file` rooted at `dir`; None when the
/// file cannot be read as a small regular file (the caller has refused a
/// directory whose ignore files are special) or holds no pattern.
fn build(dir: &Path, file: &Path) -> Option<Gitignore> {
    let (f, _) = open_regular(file, true).ok()?;
    let data = read_at_most(f, MAX_IGNORE_FILE).ok()??;
    let mut b = GitignoreBuilder::new(dir);
    // As `GitignoreBuilder::add` reads a file: lines split at `\n` with a
    // trailing `\r` dropped, a leading BOM dropped from the first, a line
    // that is not UTF-8 skipped.
    let body = data.strip_suffix(b"\n").unwrap_or(&data);
    if data.is_empty() {
        return None;
    }
    for (i, line) in body.split(|&c| c == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(mut line) = std::str::from_utf8(line) else {
            continue;
        };
        if i == 0 {
            line = line.trim_start_matches('\u{feff}');
        }
        let _ = b.add_line(Some(file.to_path_buf()), line);
    }
    let g = b.build().ok()?;
    (!g.is_empty()).then_some(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeper_levels_and_ignore_files_decide_first() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join(".gitignore"), "*.log\nbuild/\n").unwrap();
        std::fs::write(root.join("a/.gitignore"), "!keep.log\r\n").unwrap();
        std::fs::write(root.join(".ignore"), "keep2.log\n").unwrap();
        let top = Level::child(&Level::none(), root, true, true, None);
        let a = Level::child(&top, &root.join("a"), false, true, None);
        assert!(top.ignored(&root.join("x.log"), false));
        assert!(top.ignored(&root.join("build"), true));
        assert!(!top.ignored(&root.join("build"), false));
        assert!(!a.ignored(&root.join("a/keep.log"), false));
        assert!(a.ignored(&root.join("a/other.log"), false));
        // `.ignore` anywhere above wins over `.gitignore` anywhere.
        std::fs::write(root.join("a/.gitignore"), "!keep2.log\n").unwrap();
        let a = Level::child(&top, &root.join("a"), false, true, None);
        assert!(a.ignored(&root.join("a/keep2.log"), false));
        // No ignore files: the parent's level is reused.
        let b = Level::child(&a, &root.join("a/b"), false, false, None);
        assert!(Arc::ptr_eq(&a, &b));
    }
}
