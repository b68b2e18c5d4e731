//! The command line: the top-level parser, the subcommand list, and the
//! option groups several commands share. Each command's own arguments are
//! defined beside its code in [`crate::commands`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::{
    backup, browse, completions, diff, init, ls, prune, remote, restore, schedule, snapshots,
    status, verify, versions,
};

/// How `offsnap` ends (a macro, so that help texts can `concat!` it).
macro_rules! exit_codes {
    () => {
        "Exit status: 0 success, 1 failure, 2 bad arguments, 3 partial (the run \
completed but some files could not be read or restored), 4 refused (a \
restore would overwrite existing files; nothing was written), 130 \
interrupted (what a backup sent is kept for the next run)."
    };
}

/// How `offsnap` ends, for every command's help.
pub const EXIT_CODES: &str = exit_codes!();

/// Examples shown by each command's `--help` (`-h` leaves them out).
mod examples {
    pub const BACKUP: &str = concat!(
        "Examples:
  offsnap backup                                  the default profile's sources and destination
  offsnap backup ~/Documents ~/Photos /mnt/usb/backups
  offsnap backup --profile work --stats
  offsnap backup --if-older 1d                    only if the newest snapshot is a day old
  offsnap backup -n --itemize                     what the profile's run would do, changing nothing

",
        exit_codes!()
    );
    pub const PRUNE: &str = "Examples:
  offsnap prune --dry-run                         what the profile's rules would remove, and why
  offsnap prune --keep-daily 7 --keep-weekly 4 backup@nas:/srv/backups";
    pub const INIT: &str = "Examples:
  offsnap init /mnt/usb/backups ~/Documents ~/Pictures
  offsnap init --profile nas backup@nas:/srv/backups ~/";
    pub const STATUS: &str = "Examples:
  offsnap status                                  when the last good backup was
  offsnap status --profile nas --max-age 2d       exits 1 if older: for monitoring";
    pub const REMOTE: &str = "Examples:
  offsnap remote install backup@nas
  offsnap remote install -p 2222 backup@nas.example.org";
    pub const SCHEDULE: &str = "Examples:
  offsnap schedule install --every 1d --dry-run   show the units and crontab line first
  offsnap schedule install --every 6h
  offsnap schedule status";
    pub const SNAPSHOTS: &str = "Examples:
  offsnap snapshots                               the profile's set at its destination
  offsnap snapshots --set laptop backup@nas:/srv/backups";
    pub const LS: &str = "Examples:
  offsnap ls Documents                            at the profile's destination
  offsnap ls /mnt/usb/backups Documents
  offsnap ls --as-of 3d /mnt/usb/backups Documents/taxes
  offsnap ls -n --bytes --snapshot latest~1 backup@nas:/srv/backups Documents";
    pub const VERSIONS: &str = "Examples:
  offsnap versions Documents/notes.txt            at the profile's destination
  offsnap versions /mnt/usb/backups Documents/notes.txt
  offsnap versions --set laptop backup@nas:/srv/backups Documents/notes.txt";
    pub const DIFF: &str = "Examples:
  offsnap diff latest~1 latest                    what the last backup changed
  offsnap diff /mnt/usb/backups latest~1 latest
  offsnap diff /mnt/usb/backups 2026-11-01 2026-11-28";
    pub const VERIFY: &str = "Examples:
  offsnap verify                                  the latest snapshot of the profile's set
  offsnap verify --all backup@nas:/srv/backups";
    pub const RESTORE: &str = concat!(
        "Examples:
  offsnap restore --to ~/restored Documents                 from the profile's destination
  offsnap restore --to ~/restored /mnt/usb/backups          all of the latest snapshot
  offsnap restore --as-of 2026-11-28 --to /tmp/r /mnt/usb/backups Documents/notes.txt
  offsnap restore --snapshot latest~2 --to ~/old backup@nas:/srv/backups Documents

",
        exit_codes!()
    );
    pub const BROWSE: &str = "Examples:
  offsnap browse                                  the profile's set, in a web page
  offsnap browse --set laptop /mnt/usb/backups";
    pub const COMPLETIONS: &str = "Examples:
  offsnap completions bash > ~/.local/share/bash-completion/completions/offsnap
  offsnap completions zsh > ~/.zfunc/_offsnap
  offsnap completions fish > ~/.config/fish/completions/offsnap.fish";
    pub const MAN: &str = "Examples:
  offsnap man | man -l -
  offsnap man > ~/.local/share/man/man1/offsnap.1";
}

/// Incremental, hard-linked, dated snapshots of your files on another disk
/// or host.
#[derive(Parser)]
#[command(name = "offsnap", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Back SOURCEs up into a new snapshot at DEST.
    ///
    /// Each SOURCE is stored under its own name at the snapshot's root.
    /// Files unchanged since the previous snapshot are hard links to it.
    /// Prints the new snapshot's name.
    #[command(after_help = EXIT_CODES, after_long_help = examples::BACKUP)]
    Backup(backup::BackupArgs),
    /// Delete snapshots that the retention policy no longer keeps.
    ///
    /// Without rules, keeps 30 days. The newest snapshot is always kept, and
    /// time without any backup (a laptop away) does not age the history.
    /// Times come from the backup host's clock.
    #[command(after_long_help = examples::PRUNE)]
    Prune(prune::PruneArgs),
    /// Write a commented starter config file with one profile.
    ///
    /// Afterwards `offsnap backup` alone backs the profile's sources up.
    #[command(after_long_help = examples::INIT)]
    Init(init::InitArgs),
    /// Say when the last good backup was (from this machine's run log);
    /// exits 1 if it is older than --max-age, for monitoring.
    #[command(after_long_help = examples::STATUS)]
    Status(status::StatusArgs),
    /// Manage the helper on a backup host.
    #[command(after_long_help = examples::REMOTE)]
    Remote {
        /// What to do with it.
        #[command(subcommand)]
        action: remote::RemoteAction,
    },
    /// Run backups by themselves: a systemd user timer, or a crontab line.
    #[command(after_long_help = examples::SCHEDULE)]
    Schedule {
        /// What to do with the timer.
        #[command(subcommand)]
        action: schedule::ScheduleAction,
    },
    /// List the snapshots at DEST, oldest first, with their sizes and
    /// changes.
    ///
    /// Columns: name, files, total size, unique size (held by no other
    /// snapshot), and entries added / changed / removed since the previous.
    #[command(after_long_help = examples::SNAPSHOTS)]
    Snapshots(snapshots::SnapshotsArgs),
    /// List a directory of a snapshot (its root by default).
    #[command(after_long_help = examples::LS)]
    Ls(ls::LsArgs),
    /// List each distinct version of a file across the snapshots.
    #[command(after_long_help = examples::VERSIONS)]
    Versions(versions::VersionsArgs),
    /// Show what was added (+), removed (-) and changed (M) between two
    /// snapshots.
    #[command(after_long_help = examples::DIFF)]
    Diff(diff::DiffArgs),
    /// Re-read stored files and check them against the manifests; exits
    /// 1 if anything is missing, changed or unexpected.
    #[command(after_long_help = examples::VERIFY)]
    Verify(verify::VerifyArgs),
    /// Copy a snapshot, or paths inside it, out to a directory.
    #[command(after_help = EXIT_CODES, after_long_help = examples::RESTORE)]
    Restore(restore::RestoreArgs),
    /// Browse the history in a web page on this machine, and restore from it.
    ///
    /// Serves 127.0.0.1 only, at an address with a secret token (printed);
    /// runs until stopped with Ctrl-C.
    #[command(after_long_help = examples::BROWSE)]
    Browse(browse::BrowseArgs),
    /// Print a shell completion script.
    ///
    /// bash: `offsnap completions bash > ~/.local/share/bash-completion/completions/offsnap`;
    /// zsh: into a directory of your `$fpath` as `_offsnap`;
    /// fish: `offsnap completions fish > ~/.config/fish/completions/offsnap.fish`.
    #[command(after_long_help = examples::COMPLETIONS)]
    Completions(completions::CompletionsArgs),
    /// Print offsnap's manual page (roff): `offsnap man | man -l -`.
    #[command(after_long_help = examples::MAN)]
    Man,
}

/// The help heading of the profile options.
const PROFILE: &str = "Profile options";
/// The help heading of the connection options.
const CONNECTION: &str = "Connection options";

/// Which profile of which config file, and which backup set: every command
/// that works on a set takes these.
#[derive(Args, Clone, Debug, Default)]
pub struct ProfileArgs {
    /// Use this profile of the config file [default: its `default`]
    #[arg(long, value_name = "NAME", help_heading = PROFILE)]
    pub profile: Option<String>,
    /// Read this config file [default: ~/.config/offsnap/config.toml]
    #[arg(long, value_name = "FILE", help_heading = PROFILE)]
    pub config: Option<PathBuf>,
    /// Backup set: one per machine or profile [default: this machine's hostname]
    #[arg(long, value_name = "NAME", help_heading = PROFILE)]
    pub set: Option<String>,
}

/// Which profile of which config file, for commands that work on a profile
/// but not on a set (`status`, `schedule`, `init`, `remote install`).
#[derive(Args, Clone, Debug, Default)]
pub struct ConfigArgs {
    /// Use this profile of the config file [default: its `default`]
    #[arg(long, value_name = "NAME", help_heading = PROFILE)]
    pub profile: Option<String>,
    /// Read this config file [default: ~/.config/offsnap/config.toml]
    #[arg(long, value_name = "FILE", help_heading = PROFILE)]
    pub config: Option<PathBuf>,
}

impl From<&ConfigArgs> for ProfileArgs {
    fn from(c: &ConfigArgs) -> ProfileArgs {
        ProfileArgs {
            profile: c.profile.clone(),
            config: c.config.clone(),
            set: None,
        }
    }
}

/// How to reach the helper: every command that talks to a destination
/// takes these.
#[derive(Args, Clone, Debug, Default)]
pub struct ConnectArgs {
    /// The helper command on the backup host, like rsync's --rsync-path
    /// [default: offsnap-remote; a local destination needs none]
    #[arg(long, value_name = "CMD", help_heading = CONNECTION)]
    pub remote_cmd: Option<String>,
    /// Move at most RATE per second each way: KiB, or with a K, M or G
    /// suffix (2M)
    #[arg(long, value_name = "RATE", value_parser = crate::transport::parse_rate, help_heading = CONNECTION)]
    pub bwlimit: Option<u64>,
    /// SSH port of the backup host
    #[arg(short = 'p', long, value_name = "PORT", help_heading = CONNECTION)]
    pub port: Option<u16>,
    /// SSH private key to log in with (after ssh-agent's keys)
    #[arg(short = 'i', long, value_name = "FILE", help_heading = CONNECTION)]
    pub identity: Option<PathBuf>,
    /// Trust an SSH host not yet in known_hosts and record its key (like
    /// StrictHostKeyChecking=accept-new); a changed key is always refused
    #[arg(long, help_heading = CONNECTION)]
    pub accept_new_host_key: bool,
    /// Reach the backup host through these jump hosts, as ssh -J does
    /// ([user@]host[:port], comma-separated; `none` ignores ProxyJump)
    #[arg(short = 'J', long = "jump", value_name = "JUMPS", help_heading = CONNECTION)]
    pub jump: Option<String>,
    /// Use this SSH client instead of the built-in one, e.g. `ssh` or
    /// `ssh -o ControlMaster=auto` [env: OFFSNAP_RSH; default: built-in]
    #[arg(long, value_name = "CMD", help_heading = CONNECTION)]
    pub ssh: Option<String>,
}

/// Whether to draw a progress bar: `backup`, `restore` and `verify` take
/// these.
#[derive(Args, Clone, Debug, Default)]
pub struct ProgressArgs {
    /// Show a progress bar even when stderr is not a terminal
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,
    /// Never show a progress bar
    #[arg(long)]
    pub no_progress: bool,
}

impl ProgressArgs {
    /// Whether a bar is drawn: when forced, or on a terminal unless the
    /// command was asked to be `quiet`.
    pub fn shown(&self, quiet: bool) -> bool {
        use std::io::IsTerminal;
        !self.no_progress && (self.progress || (std::io::stderr().is_terminal() && !quiet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn commands_without_a_destination_list_no_connection_options() {
        let mut cmd = Cli::command();
        for name in ["status", "init"] {
            let sub = cmd.find_subcommand_mut(name).expect("subcommand");
            let help = sub.render_long_help().to_string();
            assert!(!help.contains("--bwlimit"), "{name} --help lists --bwlimit");
            assert!(help.contains("--profile"), "{name} --help lacks --profile");
        }
    }
}
