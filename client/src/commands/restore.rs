//! `offsnap restore`: copy a snapshot, or paths inside it, out to a
//! directory.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::cli::{ConnectArgs, ProfileArgs, ProgressArgs};
use crate::dest::connect;
use crate::error::Result;
use crate::output::{self, human_bytes};
use crate::restore::{RestoreOptions, restore};
use crate::settings::{self, Settings};

/// `offsnap restore`'s arguments.
#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// The snapshot to restore from: latest, latest~N, a name, or the
    /// start of one (2026-11-28)
    #[arg(long, value_name = "NAME", default_value = "latest")]
    snapshot: String,
    /// The newest snapshot at or before TIME: a date (the whole day), a
    /// date and time ("2026-11-28 14:00", local time), or a time ago (3d, 12h)
    #[arg(long, value_name = "TIME", conflicts_with = "snapshot")]
    as_of: Option<String>,
    /// Directory to restore into (created when missing).
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Replace existing files in the target instead of refusing.
    #[arg(long)]
    overwrite: bool,
    /// Print what was restored as JSON on stdout
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    progress: ProgressArgs,
    /// Where the backups are (default: the profile's destination), then
    /// paths inside the snapshot to restore [default: all of it]
    #[arg(value_name = "[DEST] [PATH]")]
    words: Vec<OsString>,
}

/// Runs `offsnap restore`.
pub fn run(args: RestoreArgs) -> Result<ExitCode> {
    let settings = Settings::load(&args.profile)?;
    let (dest, rest) = settings.dest_and_rest(&args.words, 0, None)?;
    let paths = rest
        .iter()
        .map(|p| settings::snapshot_path(Path::new(p)))
        .collect::<Result<Vec<_>>>()?;
    let opts = RestoreOptions {
        set: settings.set()?,
        snapshot: settings::which(&args.snapshot, args.as_of.as_deref())?,
        to: args.to,
        paths,
        overwrite: args.overwrite,
        progress: args.progress.shown(args.json),
    };
    let session = connect(&dest, &settings.connect_options(&args.connect)?)?;
    let report = restore(session, &opts)?;
    for p in &report.problems {
        eprintln!("offsnap: {p}");
    }
    if args.json {
        println!("{}", output::restore_json(&report));
    } else if std::io::stderr().is_terminal() {
        eprintln!(
            "restored {} ({}) from {} into {}",
            output::entries(report.entries),
            human_bytes(report.bytes),
            report.snapshot,
            opts.to.display()
        );
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
