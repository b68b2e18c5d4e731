//! One module per command: each defines its own arguments and does its
//! own work over the library; [`run`] dispatches to them.

pub mod backup;
pub mod browse;
pub mod completions;
pub mod diff;
pub mod init;
pub mod ls;
pub mod prune;
pub mod remote;
pub mod restore;
pub mod schedule;
pub mod snapshots;
pub mod status;
pub mod verify;
pub mod versions;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::error::Result;

/// Runs the command the command line names.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Backup(args) => backup::run(args),
        Command::Prune(args) => prune::run(args),
        Command::Init(args) => init::run(args),
        Command::Status(args) => status::run(args),
        Command::Remote { action } => remote::run(action),
        Command::Schedule { action } => schedule::run(action),
        Command::Snapshots(args) => snapshots::run(args),
        Command::Ls(args) => ls::run(args),
        Command::Versions(args) => versions::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Restore(args) => restore::run(args),
        Command::Browse(args) => browse::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man => completions::man(),
    }
}
