//! `offsnap versions`: each distinct version of a file across the
//! snapshots of a set.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use offsnap_protocol::EntryKind;

use crate::cli::{ConnectArgs, ProfileArgs};
use crate::error::{Error, Result};
use crate::settings::{self, Settings};
use crate::{inspect, output, requests};

/// `offsnap versions`' arguments.
#[derive(Args)]
pub struct VersionsArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Where the backups are (default: the profile's destination), then
    /// the file inside the snapshots (e.g. Documents/notes.txt)
    #[arg(value_name = "[DEST] PATH", num_args = 1..=2, required = true)]
    words: Vec<OsString>,
}

/// Runs `offsnap versions`.
pub fn run(args: VersionsArgs) -> Result<ExitCode> {
    let settings = Settings::load(&args.profile)?;
    let (dest, rest) = settings.dest_and_rest(&args.words, 1, Some(0))?;
    let Some(path) = rest.first() else {
        return Err(Error::Usage(
            "name the file: offsnap versions [DEST] PATH".into(),
        ));
    };
    let path = settings::snapshot_path(Path::new(path))?;
    let (mut session, set) = settings.connect_to(&dest, &args.connect)?;
    let snaps = requests::snapshots(&mut session, &set)?;
    let versions = inspect::versions(&mut session, &set, &snaps, &path)?;
    session.close()?;
    if versions.is_empty() {
        return Err(Error::Usage(format!(
            "{path} is in no snapshot of set {set}"
        )));
    }
    println!(
        "{:<18}  {:>10}  {:<19}  {:<12}",
        "SNAPSHOT", "SIZE", "MODIFIED (UTC)", "CONTENT"
    );
    for v in versions {
        let hash = match &v.entry.kind {
            EntryKind::File { hash, .. } => hash.to_hex()[..12].to_string(),
            other => other.word().to_string(),
        };
        let through = if v.last.name == v.first.name {
            String::new()
        } else {
            format!("  (through {})", v.last.name)
        };
        println!(
            "{}  {:>10}  {}  {hash}{through}",
            v.first.name,
            output::human_bytes(v.entry.size()),
            output::mtime_text(&v.entry.meta)
        );
    }
    Ok(ExitCode::SUCCESS)
}
