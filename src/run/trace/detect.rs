//! Recognising the commands that should trigger a snapshot: `git commit`
//! and builds. Pure functions over (command basename, arguments).

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

/// The subcommand of a git invocation, skipping global options.
fn git_subcommand(args: &[String]) -> Option<&str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if GIT_OPTS_WITH_VALUE.contains(&a.as_str()) {
            it.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
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

/// `git [global options] commit ...` (any path to git).
pub fn is_git_commit(command: &str, args: &[String]) -> bool {
    let (command, args) = effective(command, args);
    command == "git" && git_subcommand(args) == Some("commit")
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
