//! `offsnap diff`: what was added, removed and changed between two
//! snapshots.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Args;
use offsnap_protocol::compare::Change;

use crate::cli::{ConnectArgs, ProfileArgs};
use crate::error::{Error, Result};
use crate::settings::{self, Settings};
use crate::{inspect, restore};

/// `offsnap diff`'s arguments.
#[derive(Args)]
pub struct DiffArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Where the backups are (default: the profile's destination), then
    /// the older and the newer snapshot (latest, latest~N, a name, or the
    /// start of one)
    #[arg(value_name = "[DEST] OLDER NEWER", num_args = 2..=3, required = true)]
    words: Vec<OsString>,
}

/// Runs `offsnap diff`.
pub fn run(args: DiffArgs) -> Result<ExitCode> {
    let settings = Settings::load(&args.profile)?;
    let (dest, rest) = settings.dest_and_rest(&args.words, 2, Some(0))?;
    let [a, b] = rest else {
        return Err(Error::Usage(
            "name two snapshots: offsnap diff [DEST] OLDER NEWER".into(),
        ));
    };
    let word = |w: &OsString| {
        w.to_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Usage(format!("{w:?} is not a snapshot name")))
    };
    let (a, b) = (
        settings::which(&word(a)?, None)?,
        settings::which(&word(b)?, None)?,
    );
    let (mut session, set) = settings.connect_to(&dest, &args.connect)?;
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
