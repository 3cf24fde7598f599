//! `moat man [COMMAND...] [--out DIR]`: man pages (roff) generated from the
//! clap definitions (`clap_mangen`): `moat(1)` and one page per command,
//! named as git names its own (`moat-gc(1)`, `moat-system-clean-temp(1)`).

use std::path::PathBuf;

use clap::{Args, CommandFactory};

use super::{Ctx, out};

#[derive(Args)]
pub struct ManArgs {
    /// The command whose page to print (e.g. `gc`, `system clean-temp`) [default: moat itself]
    command: Vec<String>,
    /// Write every page into DIR (created if missing) instead of printing one
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    out: Option<PathBuf>,
}

/// The whole command tree, built (so each subcommand knows its full name).
fn tree() -> clap::Command {
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

fn render(cmd: &clap::Command) -> moat::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .map_err(|e| moat::Error::io("man page", e))?;
    Ok(page)
}

pub fn run(_ctx: &Ctx, a: ManArgs) -> moat::Result<i32> {
    let root = tree();
    if let Some(dir) = a.out {
        std::fs::create_dir_all(&dir).map_err(|e| moat::Error::io(&dir, e))?;
        let mut n = 0;
        write_all(&root, &dir, &mut n)?;
        outln!("wrote {n} pages to {}", out::quote_path(&dir));
        return Ok(0);
    }
    let mut cmd = &root;
    for name in &a.command {
        cmd = cmd.find_subcommand(name).ok_or_else(|| {
            moat::Error::io(
                format!("moat man {}", a.command.join(" ")),
                std::io::Error::other(format!("no command '{name}'; see `moat --help`")),
            )
        })?;
    }
    out::raw(&render(cmd)?);
    Ok(0)
}

/// Writes the page of `cmd` and of every subcommand below it.
fn write_all(cmd: &clap::Command, dir: &std::path::Path, n: &mut usize) -> moat::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_all(sub, dir, n)?;
    }
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, render(cmd)?).map_err(|e| moat::Error::io(&path, e))?;
    *n += 1;
    Ok(())
}
