//! `offsnap prune`: apply the retention policy to a set, or show what it
//! would do.

use std::process::ExitCode;

use clap::Args;
use offsnap_protocol::retention::PolicyArgs;

use crate::cli::{ConnectArgs, ProfileArgs};
use crate::error::Result;
use crate::settings::Settings;
use crate::{output, requests};

/// `offsnap prune`'s arguments.
#[derive(Args)]
pub struct PruneArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Only show what would be removed, and why each other snapshot stays
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Where the backups are [default: the profile's destination]
    dest: Option<String>,
}

/// Runs `offsnap prune`.
pub fn run(args: PruneArgs) -> Result<ExitCode> {
    let settings = Settings::load(&args.profile)?;
    let policy = settings.retention(&args.policy);
    let (mut session, set) = settings.connect(args.dest.as_deref(), &args.connect)?;
    let decisions = requests::prune(&mut session, &set, &policy, args.dry_run)?;
    session.close()?;
    print!("{}", output::decisions(&decisions, args.dry_run));
    Ok(ExitCode::SUCCESS)
}
