//! Recognising the commands that should trigger a snapshot: git commands
//! that make commits and builds. Pure functions over (command basename,
//! arguments).

use std::path::{Path, PathBuf};

use crate::format::snapshot::Trigger;

/// git's global options that take a separate value.
const GIT_OPTS_WITH_VALUE: [&str; 7] = [
    "-C",
    "-c",
    "--git-dir",
    "--work-tree",
    "--namespace",
    "--config-env",
    "--super-prefix",
];

/// The subcommand of a git invocation and its arguments, skipping global
/// options.
fn git_subcommand(args: &[String]) -> Option<(&str, &[String])> {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if GIT_OPTS_WITH_VALUE.contains(&a.as_str()) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return Some((a, &args[i + 1..]));
        }
    }
    None
}

/// The git subcommands that make commits when they succeed.
const COMMITTING: [&str; 7] = ["commit", "merge", "cherry-pick", "revert", "am", "rebase", "pull"];

/// Options with which those subcommands end without a commit.
fn commits_nothing(sub: &str, rest: &[String]) -> bool {
    rest.iter().any(|a| match a.as_str() {
        "--abort" | "--quit" | "--edit-todo" | "--show-current-patch" => true,
        "--dry-run" => sub == "commit",
        "--no-commit" => matches!(sub, "merge" | "cherry-pick" | "revert" | "pull"),
        "-n" => matches!(sub, "cherry-pick" | "revert"),
        _ => false,
    })
}

const INTERPRETERS: [&str; 10] = [
    "sh", "bash", "dash", "zsh", "node", "nodejs", "python3", "python", "perl", "ruby",
];

/// The tool a process really runs. A script started through its `#!` line
/// appears as `sh /path/gradlew build` or `node /usr/lib/.../npm-cli.js run
/// build`; the tool is then the script, named without its extension or a
/// `-cli` suffix.
pub fn effective<'a>(command: &'a str, args: &'a [String]) -> (&'a str, &'a [String]) {
    match args.split_first() {
        Some((script, rest))
            if INTERPRETERS.contains(&command) && script.contains('/') && !script.starts_with('-') =>
        {
            let name = basename(script);
            let name = name.split('.').next().unwrap_or(name);
            (name.strip_suffix("-cli").unwrap_or(name), rest)
        }
        _ => (command, args),
    }
}

/// A git command that makes a commit when it succeeds: `commit` (and
/// `--amend`), `merge`, `cherry-pick`, `revert`, `am`, `rebase` (and
/// `--continue`, `--skip`), `pull`; not `--abort`, `--no-commit`, ...
/// (any path to git, global options skipped).
pub fn is_git_commit(command: &str, args: &[String]) -> bool {
    let (command, args) = effective(command, args);
    command == "git"
        && git_subcommand(args)
            .is_some_and(|(sub, rest)| COMMITTING.contains(&sub) && !commits_nothing(sub, rest))
}

/// The directory a command works on: `cwd`, moved by git's global `-C`
/// options (each relative to the one before) or make's `-C`.
pub fn work_dir(cwd: &Path, command: &str, args: &[String]) -> PathBuf {
    let (command, args) = effective(command, args);
    let mut dir = cwd.to_path_buf();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (command, a.as_str()) {
            ("git", "-C") | ("make" | "gmake", "-C") => {
                if let Some(d) = it.next() {
                    dir = dir.join(d);
                }
            }
            ("make" | "gmake", d) if d.starts_with("--directory=") => {
                dir = dir.join(&d["--directory=".len()..]);
            }
            ("git", o) if GIT_OPTS_WITH_VALUE.contains(&o) => {
                it.next();
            }
            // git's options end at the subcommand; make's go on.
            ("git", o) if !o.starts_with('-') => break,
            _ => {}
        }
    }
    dir
}

/// The snapshot a program's successful exit calls for, if any.
pub fn moment(command: &str, args: &[String]) -> Option<Trigger> {
    if is_git_commit(command, args) {
        Some(Trigger::GitCommit)
    } else if is_build(command, args) {
        Some(Trigger::Build)
    } else {
        None
    }
}

/// Arguments that are not options (`-x`, `--x`), in order.
fn words(args: &[String]) -> Vec<&str> {
    args.iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect()
}

/// `make`, `make all`, `make build`, `make -j8 all`: every target is a
/// build target (no target means the default one).
fn is_make_build(args: &[String]) -> bool {
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-j" | "-l" => {
                // `-j 8`: the count is not a target.
                if it
                    .clone()
                    .next()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                {
                    it.next();
                }
            }
            "-C" | "-f" | "-o" | "-W" | "-I" => {
                it.next();
            }
            s if s.starts_with('-') || s.contains('=') => {}
            s => targets.push(s),
        }
    }
    targets.iter().all(|t| *t == "all" || *t == "build")
}

/// A package-manager script run: `npm run build`, `yarn build`, ...
/// The script name must be exactly one of `scripts` (`build-docker` and
/// `builder` are other scripts).
fn runs_script(args: &[String], direct: bool, scripts: &[&str]) -> bool {
    let w = words(args);
    let script = match w.as_slice() {
        ["run" | "run-script", s, ..] => *s,
        [s, ..] if direct => *s,
        _ => return false,
    };
    scripts.contains(&script)
}

pub fn is_build(command: &str, args: &[String]) -> bool {
    let (command, args) = effective(command, args);
    let w = words(args);
    match command {
        "npm" => runs_script(args, false, &["build", "compile"]),
        "yarn" | "pnpm" => runs_script(args, true, &["build"]),
        "bun" => runs_script(args, false, &["build"]),
        "go" => matches!(w.first(), Some(&("build" | "install"))),
        "make" | "gmake" => is_make_build(args),
        "cargo" => {
            let sub = args.iter().find(|a| !a.starts_with('-') && !a.starts_with('+'));
            matches!(sub.map(String::as_str), Some("build" | "b"))
        }
        "mvn" | "mvnw" => w.iter().any(|p| matches!(*p, "package" | "compile")),
        "gradle" | "gradlew" => w.contains(&"build"),
        _ => false,
    }
}

/// The basename of argv[0] (`/usr/bin/git` → `git`).
pub fn basename(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(cmdline: &str) -> (String, Vec<String>) {
        let mut parts = cmdline.split_whitespace().map(String::from);
        let cmd = parts.next().unwrap_or_default();
        (basename(&cmd).to_string(), parts.collect())
    }

    #[test]
    fn git_commit_table() {
        let yes = [
            "git commit -m x",
            "git commit",
            "git commit --amend --no-edit",
            "git -C /some/dir commit -m x",
            "git -c user.name=a -c user.email=b commit -am x",
            "/usr/bin/git commit -q",
            "/usr/local/bin/git --no-pager commit",
            "git --git-dir /x/.git --work-tree /x commit",
            "git --git-dir=/x/.git commit",
            "git merge feature",
            "git cherry-pick abc123",
            "git revert --no-edit HEAD",
            "git rebase --continue",
            "git rebase main",
            "git -c core.editor=true rebase --skip",
            "git am 0001.patch",
            "git pull --rebase",
            "git commit -n -m skip-hooks",
        ];
        let no = [
            "git log commit",
            "git commit-tree abc",
            "git show commit",
            "git status",
            "git -C commit status",
            "gitk commit",
            "echo git commit",
            "git",
            "git merge --abort",
            "git merge --no-commit feature",
            "git cherry-pick -n abc123",
            "git revert --no-commit HEAD",
            "git rebase --abort",
            "git rebase --edit-todo",
            "git commit --dry-run",
            "git stash",
            "git checkout main",
        ];
        for c in yes {
            let (cmd, args) = split(c);
            assert!(is_git_commit(&cmd, &args), "{c}");
        }
        for c in no {
            let (cmd, args) = split(c);
            assert!(!is_git_commit(&cmd, &args), "{c}");
        }
    }

    #[test]
    fn work_dirs() {
        let dir = |c: &str| {
            let (cmd, args) = split(c);
            work_dir(Path::new("/w"), &cmd, &args)
        };
        assert_eq!(dir("git commit -m x"), Path::new("/w"));
        assert_eq!(dir("git -C sub -C deeper commit"), Path::new("/w/sub/deeper"));
        assert_eq!(dir("git -C /tmp/other commit"), Path::new("/tmp/other"));
        assert_eq!(
            dir("git commit -C HEAD"),
            Path::new("/w"),
            "-C after the subcommand is commit's"
        );
        assert_eq!(dir("make -C lib all"), Path::new("/w/lib"));
        assert_eq!(dir("make --directory=/x"), Path::new("/x"));
        assert_eq!(dir("cargo build"), Path::new("/w"));
    }

    #[test]
    fn build_table() {
        let yes = [
            "npm run build",
            "npm run compile",
            "npm run build -- --prod",
            "npm run-script build",
            "yarn build",
            "yarn run build",
            "pnpm build",
            "pnpm run build",
            "bun run build",
            "go build ./...",
            "go install ./cmd/x",
            "make",
            "make all",
            "make build",
            "make -j8",
            "make -j 8 all",
            "/usr/bin/make -j4 build",
            "cargo build --release",
            "cargo b",
            "cargo +nightly build",
            "mvn package",
            "mvn clean compile",
            "gradle build",
            "./gradlew build",
            "sh /work/repo/gradlew build",
            "/bin/sh /tmp/ws/bin/make",
            "node /usr/lib/node_modules/npm/bin/npm-cli.js run build",
            "node /usr/share/yarn/bin/yarn.js build",
            "node /usr/lib/node_modules/pnpm/bin/pnpm.cjs run build",
        ];
        let no = [
            "npm run build-docker",
            "npm run builder",
            "npm install",
            "npm build",
            "yarn test",
            "yarn builder",
            "pnpm run build:docs",
            "bun build.ts",
            "go test ./...",
            "go run .",
            "make clean",
            "make test",
            "make all install",
            "cargo test",
            "cargo bench",
            "mvn test",
            "gradle test",
            "./gradlew assemble",
            "echo make",
            "sh -c make",
            "node build.js",
            "node /usr/lib/node_modules/npm/bin/npm-cli.js test",
        ];
        for c in yes {
            let (cmd, args) = split(c);
            assert!(is_build(&cmd, &args), "{c}");
        }
        for c in no {
            let (cmd, args) = split(c);
            assert!(!is_build(&cmd, &args), "{c}");
        }
    }
}
