//! One module per subcommand; each wires config → graph → exec → report.

pub mod cache;
pub mod completions;
pub mod doctor;
pub mod explain;
pub mod graph;
pub mod init;
pub mod inputs;
pub mod list;
pub mod partitions;
pub mod run;
pub mod start;
pub mod strict;
pub mod watch;

use crate::Context;
use crate::cli::Command;
use crate::error::Error;

/// Runs one subcommand and returns its exit code.
pub fn dispatch(ctx: &Context, command: Command) -> Result<u8, Error> {
    match command {
        Command::Run(args) => run::run(ctx, &args),
        Command::Watch(args) => watch::run(ctx, &args),
        Command::List { json } => list::run(ctx, json),
        Command::Graph {
            selectors,
            format,
            partitions,
        } => graph::run(ctx, &selectors, format, &partitions),
        Command::Explain { instance } => explain::run(ctx, &instance),
        Command::Audit {
            instance,
            json,
            jobs,
        } => run::audit(ctx, &instance, json, jobs),
        Command::Partitions {
            task,
            json,
            partitions: flags,
        } => partitions::run(ctx, &task, json, &flags),
        Command::Inputs { instance, json } => inputs::run(ctx, &instance, json),
        Command::Cache { command } => cache::run(ctx, command),
        Command::Init { force } => init::run(ctx, force),
        Command::Doctor => doctor::run(ctx),
        Command::Completions { shell } => completions::run(shell),
    }
}
