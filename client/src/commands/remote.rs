//! `offsnap remote`: managing the helper on a backup host.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Subcommand;

use crate::cli::{ConfigArgs, ConnectArgs};
use crate::dest::Dest;
use crate::error::{Error, Result};
use crate::install;
use crate::settings::Settings;

/// What `offsnap remote` does.
// Flattened option groups are documented where they are defined.
#[allow(missing_docs)]
#[derive(Subcommand)]
pub enum RemoteAction {
    /// Copy this machine's offsnap-remote to ~/.local/bin on an SSH host
    /// (when the host's OS and architecture match this one's).
    #[command(after_long_help = "Examples:
  offsnap remote install backup@nas
  offsnap remote install -p 2222 -i ~/.ssh/offsnap backup@nas.example.org")]
    Install {
        #[command(flatten)]
        profile: ConfigArgs,
        #[command(flatten)]
        connect: ConnectArgs,
        /// The host: [user@]host, an ~/.ssh/config alias, or ssh://…
        host: String,
    },
}

/// Runs `offsnap remote …`.
pub fn run(action: RemoteAction) -> Result<ExitCode> {
    let RemoteAction::Install {
        profile,
        connect,
        host,
    } = action;
    let spec = if host.contains(':') {
        host.clone()
    } else {
        format!("{host}:")
    };
    let Dest::Ssh(d) = Dest::parse(&spec)? else {
        return Err(Error::Usage(format!("{host:?} is not an SSH host")));
    };
    let opts = Settings::load(&(&profile).into())?.connect_options(&connect)?;
    let version = install::install(&d, &opts)?;
    println!("{version}");
    if std::io::stderr().is_terminal() {
        eprintln!(
            "installed ~/{}/offsnap-remote on {}; backups to {}:PATH now find it",
            install::INSTALL_DIR,
            d.host,
            host
        );
    }
    Ok(ExitCode::SUCCESS)
}
