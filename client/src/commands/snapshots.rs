//! `offsnap snapshots`: the snapshots of a set with their sizes and
//! changes.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Args;

use crate::cli::{ConnectArgs, ProfileArgs};
use crate::error::Result;
use crate::output::human_bytes;
use crate::requests;
use crate::settings::Settings;

/// `offsnap snapshots`' arguments.
#[derive(Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Print one JSON array of objects instead
    #[arg(long)]
    json: bool,
    /// Where the backups are [default: the profile's destination]
    dest: Option<String>,
}

/// Runs `offsnap snapshots`.
pub fn run(args: SnapshotsArgs) -> Result<ExitCode> {
    let settings = Settings::load(&args.profile)?;
    let (mut session, set) = settings.connect(args.dest.as_deref(), &args.connect)?;
    let stats = requests::stats(&mut session, &set)?;
    session.close()?;
    if args.json {
        let rows: Vec<serde_json::Value> = stats
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name.to_string(),
                    "files": s.files,
                    "dirs": s.dirs,
                    "symlinks": s.symlinks,
                    "total_bytes": s.total_bytes,
                    "unique_bytes": s.unique_bytes,
                    "added": s.added,
                    "changed": s.changed,
                    "removed": s.removed,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    if std::io::stdout().is_terminal() {
        println!(
            "{:<18}  {:>9}  {:>10}  {:>10}  {:>8} {:>8} {:>8}",
            "SNAPSHOT", "FILES", "SIZE", "UNIQUE", "ADDED", "CHANGED", "REMOVED"
        );
    }
    for s in stats {
        println!(
            "{}  {:>9}  {:>10}  {:>10}  {:>8} {:>8} {:>8}",
            s.name,
            s.files,
            human_bytes(s.total_bytes),
            human_bytes(s.unique_bytes),
            format!("+{}", s.added),
            format!("~{}", s.changed),
            format!("-{}", s.removed)
        );
    }
    Ok(ExitCode::SUCCESS)
}
