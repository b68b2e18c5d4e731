//! The command line: the top-level parser, the subcommand list, and the
//! option groups several commands share. Each command's own arguments are
//! defined beside its code in [`crate::commands`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::{
    backup, browse, completions, diff, init, ls, prune, remote, restore, schedule, snapshots,
    status, verify, versions,
};

/// How `offsnap` ends, for every command's help.
pub const EXIT_CODES: &str = "\
Exit status: 0 success, 1 failure, 2 bad arguments, 3 partial (the run \
completed but some files could not be read or restored).";

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
    #[command(after_help = backup::AFTER_HELP)]
    Backup(backup::BackupArgs),
    /// Delete snapshots that the retention policy no longer keeps.
    ///
    /// Without rules, keeps 30 days. The newest snapshot is always kept, and
    /// time without any backup (a laptop away) does not age the history.
    /// Times come from the backup host's clock.
    Prune(prune::PruneArgs),
    /// Write a commented starter config file with one profile.
    ///
    /// Afterwards `offsnap backup` alone backs the profile's sources up.
    Init(init::InitArgs),
    /// Say when the last good backup was (from this machine's run log);
    /// exits 1 if it is older than --max-age, for monitoring.
    Status(status::StatusArgs),
    /// Manage the helper on a backup host.
    Remote {
        /// What to do with it.
        #[command(subcommand)]
        action: remote::RemoteAction,
    },
    /// Run backups by themselves: a systemd user timer, or a crontab line.
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
    Snapshots(snapshots::SnapshotsArgs),
    /// List a directory of a snapshot (its root by default).
    Ls(ls::LsArgs),
    /// List each distinct version of a file across the snapshots.
    Versions(versions::VersionsArgs),
    /// Show what was added (+), removed (-) and changed (M) between two
    /// snapshots.
    Diff(diff::DiffArgs),
    /// Re-read stored files and check them against the manifests; exits
    /// 1 if anything is missing, changed or unexpected.
    Verify(verify::VerifyArgs),
    /// Copy a snapshot, or paths inside it, out to a directory.
    #[command(after_help = EXIT_CODES)]
    Restore(restore::RestoreArgs),
    /// Browse the history in a web page on this machine, and restore from it.
    ///
    /// Serves 127.0.0.1 only, at an address with a secret token (printed);
    /// runs until stopped with Ctrl-C.
    Browse(browse::BrowseArgs),
    /// Print a shell completion script.
    ///
    /// bash: `offsnap completions bash > ~/.local/share/bash-completion/completions/offsnap`;
    /// zsh: into a directory of your `$fpath` as `_offsnap`;
    /// fish: `offsnap completions fish > ~/.config/fish/completions/offsnap.fish`.
    Completions(completions::CompletionsArgs),
    /// Print offsnap's manual page (roff): `offsnap man | man -l -`.
    Man,
}

/// Which profile of which config file, and which backup set: every command
/// that works on a set takes these.
#[derive(Args, Clone, Debug, Default)]
pub struct ProfileArgs {
    /// Use this profile of the config file [default: its `default`]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Read this config file [default: ~/.config/offsnap/config.toml]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Backup set: one per machine or profile [default: this machine's hostname]
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
}

/// How to reach the helper: every command that talks to a destination
/// takes these.
#[derive(Args, Clone, Debug, Default)]
pub struct ConnectArgs {
    /// The helper command on the backup host, like rsync's --rsync-path
    /// [default: offsnap-remote; a local destination needs none]
    #[arg(long, value_name = "CMD")]
    pub remote_cmd: Option<String>,
    /// Send at most RATE per second: KiB, or with a K, M or G suffix (2M)
    #[arg(long, value_name = "RATE", value_parser = crate::transport::parse_rate)]
    pub bwlimit: Option<u64>,
    /// SSH port of the backup host
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,
    /// SSH private key to log in with (after ssh-agent's keys)
    #[arg(short = 'i', long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Trust an SSH host not yet in known_hosts and record its key (like
    /// StrictHostKeyChecking=accept-new); a changed key is always refused
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Reach the backup host through these jump hosts, as ssh -J does
    /// ([user@]host[:port], comma-separated; `none` ignores ProxyJump)
    #[arg(short = 'J', long = "jump", value_name = "JUMPS")]
    pub jump: Option<String>,
    /// Use this SSH client instead of the built-in one, e.g. `ssh` or
    /// `ssh -o ControlMaster=auto` [env: OFFSNAP_RSH; default: built-in]
    #[arg(long, value_name = "CMD")]
    pub ssh: Option<String>,
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
