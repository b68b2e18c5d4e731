//! `offsnap`: back up folders into dated, hard-linked snapshots on another
//! disk or host, list them, and restore from them.
//!
//! This file only parses the command line and turns the outcome into an
//! exit status; the commands live in `offsnap::commands`.

use std::process::ExitCode;

use clap::Parser;
use offsnap::cli::Cli;

fn main() -> ExitCode {
    match offsnap::commands::run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("offsnap: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}
