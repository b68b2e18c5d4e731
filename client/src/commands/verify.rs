//! `offsnap verify`: re-read stored files and check them against the
//! manifests.

use std::process::ExitCode;

use clap::Args;
use offsnap_protocol::{Finding, FindingKind};

use crate::cli::{ConnectArgs, ProfileArgs, ProgressArgs};
use crate::error::Result;
use crate::output::human_bytes;
use crate::settings::{self, Settings};
use crate::{progress, requests, restore};

/// `offsnap verify`'s arguments.
#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// The snapshot to check: latest, latest~N, a name, or the start of
    /// one [default: latest]
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    snapshot: Option<String>,
    /// The newest snapshot at or before TIME: a date (the whole day), a
    /// date and time ("2026-11-28 14:00", local time), or a time ago (3d, 12h)
    #[arg(long, value_name = "TIME", conflicts_with_all = ["snapshot", "all"])]
    as_of: Option<String>,
    /// Check every snapshot (each stored file is read once)
    #[arg(long)]
    all: bool,
    /// Read stored files at most RATE per second on the backup host, so a
    /// check leaves its disk to others: KiB, or with a K, M or G suffix (50M)
    #[arg(long, value_name = "RATE", value_parser = crate::transport::parse_rate)]
    read_limit: Option<u64>,
    #[command(flatten)]
    progress: ProgressArgs,
    /// Where the backups are [default: the profile's destination]
    dest: Option<String>,
}

/// One finding as a line: snapshot, path, what is wrong.
fn finding_line(f: &Finding) -> String {
    let what = match &f.kind {
        FindingKind::Missing => "missing".to_string(),
        FindingKind::Unexpected => "unexpected".to_string(),
        FindingKind::Changed(why) => format!("changed: {why}"),
        FindingKind::Manifest(why) => format!("manifest damaged: {why}"),
    };
    format!(
        "{}  {}: {what}",
        f.snapshot,
        offsnap_protocol::text::shown(&f.path)
    )
}

/// Runs `offsnap verify`.
pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let settings = Settings::load(&args.profile)?;
    let which = (!args.all)
        .then(|| {
            settings::which(
                args.snapshot.as_deref().unwrap_or("latest"),
                args.as_of.as_deref(),
            )
        })
        .transpose()?;
    let (mut session, set) = settings.connect(args.dest.as_deref(), &args.connect)?;
    let chosen = match which {
        Some(w) => Some(restore::find_snapshot(&mut session, &set, &w)?.name),
        None => None,
    };
    let what = match &chosen {
        Some(name) => format!("verifying {set} {name}"),
        None => format!("verifying every snapshot of {set}"),
    };
    let bar = progress::Progress::verifying(args.progress.shown(false), what);
    let found = std::cell::Cell::new(0u64);
    let summary = requests::verify(
        &mut session,
        &set,
        requests::Verify {
            snapshot: chosen,
            read_limit: args.read_limit,
            found: |f: &Finding| {
                found.set(found.get() + 1);
                bar.above(&finding_line(f));
            },
            progress: |p: &offsnap_protocol::VerifyProgress| bar.checked(p, found.get()),
        },
    )?;
    bar.stop();
    session.close()?;
    eprintln!(
        "verified {} snapshot(s), {} entries, {} files read ({}): {} problem(s)",
        summary.snapshots,
        summary.entries,
        summary.inodes_hashed,
        human_bytes(summary.bytes_hashed),
        summary.findings
    );
    Ok(if summary.findings == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
