//! `offsnap ls`: a directory of a snapshot, like `ls -l`.

use std::ffi::OsString;
use std::path::Path;
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
    /// The snapshot: latest, latest~N, a name, or the start of one (2026-11-28)
    #[arg(long, value_name = "NAME", default_value = "latest")]
    snapshot: String,
    /// The newest snapshot at or before TIME: a date (the whole day), a
    /// date and time ("2026-11-28 14:00", local time), or a time ago (3d, 12h)
    #[arg(long, value_name = "TIME", conflicts_with = "snapshot")]
    as_of: Option<String>,
    /// Show user and group ids as numbers, not this machine's names for them
    #[arg(short = 'n', long = "numeric-uid-gid")]
    numeric: bool,
    /// Show sizes as exact byte counts, not in KiB/MiB/GiB
    #[arg(long)]
    bytes: bool,
    /// Where the backups are (default: the profile's destination), then a
    /// directory or file inside the snapshot
    #[arg(value_name = "[DEST] [PATH]", num_args = 0..=2)]
    words: Vec<OsString>,
}

/// Runs `offsnap ls`.
pub fn run(args: LsArgs) -> Result<ExitCode> {
    let settings = Settings::load(&args.profile)?;
    let which = settings::which(&args.snapshot, args.as_of.as_deref())?;
    let (dest, rest) = settings.dest_and_rest(&args.words, 0, Some(1))?;
    let dir = rest
        .first()
        .map(|p| settings::snapshot_path(Path::new(p)))
        .transpose()?;
    let (mut session, set) = settings.connect_to(&dest, &args.connect)?;
    let info = restore::find_snapshot(&mut session, &set, &which)?;
    let entries = inspect::ls(&mut session, &set, &info, dir.as_ref())?;
    session.close()?;
    let style = output::LsStyle::new(&entries, args.numeric, args.bytes);
    for e in &entries {
        println!("{}", output::long_line(e, true, &style));
    }
    Ok(ExitCode::SUCCESS)
}
