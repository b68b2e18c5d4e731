//! `offsnap diff`: what was added, removed and changed between two
//! snapshots.

use std::process::ExitCode;

use clap::Args;
use offsnap_protocol::compare::Change;

use crate::cli::{ConnectArgs, ProfileArgs};
use crate::error::Result;
use crate::settings::{self, Settings};
use crate::{inspect, restore};

/// `offsnap diff`'s arguments.
#[derive(Args)]
pub struct DiffArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Where the backups are.
    dest: String,
    /// The older snapshot (latest, latest~N, a name, or the start of one).
    snap_a: String,
    /// The newer snapshot (latest, latest~N, a name, or the start of one).
    snap_b: String,
}

/// Runs `offsnap diff`.
pub fn run(args: DiffArgs) -> Result<ExitCode> {
    let settings = Settings::load(&args.profile)?;
    let (a, b) = (
        settings::which(&args.snap_a, None)?,
        settings::which(&args.snap_b, None)?,
    );
    let (mut session, set) = settings.connect(Some(&args.dest), &args.connect)?;
    let a = restore::find_snapshot(&mut session, &set, &a)?;
    let b = restore::find_snapshot(&mut session, &set, &b)?;
    let changes = inspect::diff(&mut session, &set, &a, &b)?;
    session.close()?;
    for c in changes {
        let mark = match c {
            Change::Added(_) => '+',
            Change::Removed(_) => '-',
            Change::Changed(..) => 'M',
        };
        println!("{mark} {}", c.path());
    }
    Ok(ExitCode::SUCCESS)
}
