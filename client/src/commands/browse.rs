//! `offsnap browse`: the history of a set as a web page on this machine,
//! to look at and restore from.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::browse::{self, BrowseOptions};
use crate::cli::{ConnectArgs, ProfileArgs};
use crate::dest::{Dest, connect};
use crate::error::Result;
use crate::settings::Settings;

/// `offsnap browse`'s arguments.
#[derive(Args)]
pub struct BrowseArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Listen on this port of 127.0.0.1 [default: any free one]
    #[arg(
        long = "http-port",
        visible_alias = "listen-port",
        value_name = "PORT",
        default_value_t = 0
    )]
    listen_port: u16,
    /// Only print the address; do not open a browser
    #[arg(long)]
    no_open: bool,
    /// Where the backups are [default: the profile's destination]
    dest: Option<String>,
}

/// Runs `offsnap browse` until it is stopped.
pub fn run(args: BrowseArgs) -> Result<ExitCode> {
    let settings = Settings::load(&args.profile)?;
    let dest = settings.dest(args.dest.as_deref())?;
    let connect_with = settings.connect_options(&args.connect)?;
    let dest_label = match &dest {
        Dest::Local(p) => p.display().to_string(),
        Dest::Ssh(d) => format!("{}:{}", d.host, d.path),
    };
    browse::run(BrowseOptions {
        set: settings.set()?,
        // The profile's policy (what the next prune would do) colours the
        // timeline; no rules on this command line.
        policy: settings.retention(&Default::default()),
        connect: Arc::new(move || connect(&dest, &connect_with)),
        port: args.listen_port,
        open: !args.no_open,
        dest_label,
    })?;
    Ok(ExitCode::SUCCESS)
}
