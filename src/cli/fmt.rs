//! Small formatting helpers shared by the commands.

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// UTC timestamp `YYYY-MM-DD HH:MM:SS`.
pub fn time(ns: i64) -> String {
    moat::util::date::format_utc(ns)
}

pub fn mode(kind: &str, mode: u32) -> String {
    let t = match kind {
        "dir" => 'd',
        "symlink" => 'l',
        _ => '-',
    };
    let mut s = String::from(t);
    for shift in [6, 3, 0] {
        let b = (mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// How a snapshot read its files, for `--verbose`.
pub fn staging(s: &moat::capture::StagingReport) -> String {
    let mut line = format!(
        "staging took {:.1} ms: {} files ({}) read into memory, {} ({}) cloned with {}, {} read directly",
        s.stage_ns as f64 / 1e6,
        s.memory_files,
        bytes(s.memory_bytes),
        s.cloned_files,
        bytes(s.cloned_bytes),
        s.cloner,
        s.direct_files
    );
    if let Some(why) = &s.fallback {
        line.push_str(&format!(" ({why})"));
    }
    line
}

/// How a restore or rollback wrote its files, for `--verbose`.
pub fn clones(c: &moat::worktree::reuse::CloneStats, files: u64) -> String {
    let mut line = format!(
        "clones: {} of {files} files ({}) cloned with {} from content already on disk; the rest decompressed",
        c.cloned_files,
        bytes(c.cloned_bytes),
        c.cloner
    );
    if let Some(why) = &c.fallback {
        line.push_str(&format!(" ({why})"));
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::time(0), "1970-01-01 00:00:00");
        assert_eq!(super::time(1_700_000_000_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::mode("file", 0o755), "-rwxr-xr-x");
    }
}
