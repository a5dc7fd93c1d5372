//! `hotpass completions SHELL`: a completion script from the clap model.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::Error;

/// Prints the completion script for `shell` on stdout.
pub fn run(shell: clap_complete::Shell) -> Result<u8, Error> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "hotpass", &mut std::io::stdout());
    Ok(0)
}
