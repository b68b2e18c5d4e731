//! `offsnap ls`: a directory of a snapshot, like `ls -l`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::{ConnectArgs, ProfileArgs};
use crate::error::Result;
use crate::settings::{self, Settings};
use crate::{inspect, output, restore};

/// `offsnap ls`'s arguments.
#[derive(Args)]
pub struct LsArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// The snapshot: a name, or `latest`.
    #[arg(long, value_name = "NAME", default_value = "latest")]
    snapshot: String,
    /// Where the backups are.
    dest: String,
    /// A directory (or file) inside the snapshot.
    path: Option<PathBuf>,
}

/// Runs `offsnap ls`.
pub fn run(args: LsArgs) -> Result<ExitCode> {
    let settings = Settings::load(&args.profile)?;
    let which = settings::which(&args.snapshot)?;
    let dir = args
        .path
        .as_deref()
        .map(settings::snapshot_path)
        .transpose()?;
    let (mut session, set) = settings.connect(Some(&args.dest), &args.connect)?;
    let info = restore::find_snapshot(&mut session, &set, which)?;
    let entries = inspect::ls(&mut session, &set, &info, dir.as_ref())?;
    session.close()?;
    for e in entries {
        println!("{}", output::long_line(&e, true));
    }
    Ok(ExitCode::SUCCESS)
}
