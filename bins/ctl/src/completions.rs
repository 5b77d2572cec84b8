//! `agentry completions <shell>`: a completion script on stdout, e.g.
//! `agentry completions bash > ~/.local/share/bash-completion/completions/agentry`.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    pub shell: Shell,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "agentry", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
