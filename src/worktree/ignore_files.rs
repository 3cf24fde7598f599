//! Which of a directory's ignore files must not be read: `.gitignore`,
//! `.ignore` and git's `info/exclude` (found through a `.git` file's
//! `gitdir:` line and `commondir` when `.git` is a file). The `ignore`
//! crate's walker (the watcher lists its directories with it) opens them
//! with a plain blocking `open` and reads them without a bound: a FIFO
//! there would hang it, a link to `/dev/zero` take all memory. `check`
//! names the first such file of a directory, so the walk and the listing
//! leave that directory out (or refuse the root), both alike.
//!
//! Invariant: paths are resolved as the crate resolves them (following
//! links), and what this module itself reads goes through
//! `util::fs::open_regular` with a bound, as does the walk's own reading
//! of the rules (`walk::levels`). Limit: a file swapped in between this
//! check and the crate's own open (the watcher's listing) is not caught;
//! only the crate opening non-blocking could close that.

use std::path::{Path, PathBuf};

use crate::util::fs::{open_regular, read_at_most, type_name};

/// The largest ignore file the crate is let read.
pub const MAX_IGNORE_FILE: u64 = 16 << 20;

/// The first ignore file of `dir` the crate must not read, and why; None
/// when every one it would read is absent or a regular file of at most
/// `MAX_IGNORE_FILE` bytes.
pub fn check(dir: &Path) -> Option<(PathBuf, String)> {
    inspect(dir).bad
}

/// What the crate would read in one directory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inspected {
    /// The first ignore file it must not read, and why.
    pub bad: Option<(PathBuf, String)>,
    /// The git `info/exclude` it reads, when the directory holds a `.git`
    /// (and nothing before it is bad).
    pub exclude: Option<PathBuf>,
}

/// `check`, also naming the `info/exclude` file the crate reads for `dir`
/// (the watcher polls it: it lies in `.git`, which is not watched).
pub fn inspect(dir: &Path) -> Inspected {
    let bad = |p: PathBuf| refusal(&p).map(|why| (p, why));
    let only = |bad| Inspected { bad, exclude: None };
    if let Some(found) = bad(dir.join(".gitignore")).or_else(|| bad(dir.join(".ignore"))) {
        return only(Some(found));
    }
    let dot_git = dir.join(".git");
    let Ok(meta) = std::fs::metadata(&dot_git) else {
        return only(None);
    };
    let git_dir = if meta.is_file() {
        if let Some(found) = bad(dot_git.clone()) {
            return only(Some(found));
        }
        let Some(real) = first_line(&dot_git).and_then(|l| l.strip_prefix("gitdir: ").map(PathBuf::from))
        else {
            return only(None);
        };
        let commondir = real.join("commondir");
        if let Some(found) = bad(commondir.clone()) {
            return only(Some(found));
        }
        let Some(line) = first_line(&commondir) else {
            return only(None);
        };
        if line.starts_with('.') {
            real.join(line)
        } else {
            PathBuf::from(line)
        }
    } else {
        dot_git
    };
    let exclude = git_dir.join("info/exclude");
    Inspected {
        bad: bad(exclude.clone()),
        exclude: Some(exclude),
    }
}

/// Why the crate must not open `p`: not a regular file, or too large.
fn refusal(p: &Path) -> Option<String> {
    let m = std::fs::metadata(p).ok()?;
    if !m.is_file() {
        Some(format!("a {}, not a regular file", type_name(m.file_type())))
    } else if m.len() > MAX_IGNORE_FILE {
        Some(format!("larger than {} MiB", MAX_IGNORE_FILE >> 20))
    } else {
        None
    }
}

/// The first line of a (checked) small regular file, as the crate reads it.
fn first_line(p: &Path) -> Option<String> {
    let (file, _) = open_regular(p, true).ok()?;
    let data = read_at_most(file, MAX_IGNORE_FILE).ok()??;
    let text = String::from_utf8(data).ok()?;
    text.lines().next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testing::mkfifo;

    #[test]
    fn names_the_file_the_crate_must_not_read() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        assert_eq!(check(dir), None);
        std::fs::write(dir.join(".gitignore"), "*.log\n").unwrap();
        std::fs::create_dir_all(dir.join(".git/info")).unwrap();
        std::fs::write(dir.join(".git/info/exclude"), "tmp/\n").unwrap();
        assert_eq!(check(dir), None);
        assert_eq!(inspect(dir).exclude, Some(dir.join(".git/info/exclude")));
        mkfifo(&dir.join(".ignore"));
        let (p, why) = check(dir).unwrap();
        assert_eq!(
            (p, why.as_str()),
            (dir.join(".ignore"), "a FIFO, not a regular file")
        );
        std::fs::remove_file(dir.join(".ignore")).unwrap();
        std::fs::remove_file(dir.join(".git/info/exclude")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join(".git/info/exclude")).unwrap();
        let (p, why) = check(dir).unwrap();
        assert_eq!(
            (p, why.as_str()),
            (
                dir.join(".git/info/exclude"),
                "a character device, not a regular file"
            )
        );
        // A worktree's `.git` file, through gitdir and commondir.
        std::fs::remove_dir_all(dir.join(".git")).unwrap();
        let real = d.path().join("real");
        std::fs::create_dir_all(real.join("common/info")).unwrap();
        std::fs::write(dir.join(".git"), format!("gitdir: {}\n", real.display())).unwrap();
        std::fs::write(real.join("commondir"), "./common\n").unwrap();
        assert_eq!(check(dir), None);
        let exclude = real.join("./common").join("info/exclude");
        assert_eq!(inspect(dir).exclude, Some(exclude));
        mkfifo(&real.join("common/info/exclude"));
        assert_eq!(
            check(dir).map(|f| f.0),
            Some(real.join("./common").join("info/exclude"))
        );
        std::fs::remove_file(real.join("commondir")).unwrap();
        mkfifo(&real.join("commondir"));
        assert_eq!(check(dir).map(|f| f.0), Some(real.join("commondir")));
    }
}
