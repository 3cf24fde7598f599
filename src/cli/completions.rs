//! `moat completions SHELL`: a completion script generated from the clap
//! definitions (`clap_complete`), so it never drifts from the commands.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Ctx, out};

#[derive(Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell
    shell: Shell,
}

pub fn run(_ctx: &Ctx, a: CompletionsArgs) -> moat::Result<i32> {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "moat", &mut script);
    out::raw(&script);
    Ok(0)
}
