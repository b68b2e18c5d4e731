//! `offsnap-remote`: the helper that sshd (or a local `offsnap`) starts on
//! the backup host. It speaks the offsnap protocol on stdin/stdout and
//! touches nothing outside `--root`.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use offsnap_protocol::SetName;
use offsnap_protocol::retention::PolicyArgs;
use offsnap_remote::limits::{Limits, parse_size};
use offsnap_remote::prune::prune;
use offsnap_remote::set::Root;
use offsnap_remote::{Access, Clock, Config, ServeError, serve};

/// The offsnap helper on the backup host.
#[derive(Parser)]
#[command(name = "offsnap-remote", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one offsnap session on stdin/stdout (started by sshd or offsnap).
    Serve {
        /// The directory holding the backup sets.
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// Allow backups and reads only: no pruning, deleting or overwriting.
        #[arg(long, conflicts_with = "read_only")]
        append_only: bool,
        /// Allow listing and restoring only.
        #[arg(long)]
        read_only: bool,
        /// Refuse files larger than this (e.g. 50G) [default: no limit]
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_file_size: Option<u64>,
        /// Refuse a backup that would write more new data than this
        /// (e.g. 200G) [default: no limit]
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_snapshot_size: Option<u64>,
    },
    /// Delete snapshots the retention policy no longer keeps (for the
    /// host's cron, when clients are --append-only).
    Prune {
        /// The directory holding the backup sets.
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// Only this set [default: every set under the root]
        #[arg(long, value_name = "NAME")]
        set: Option<SetName>,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Only show what would be removed, and why each other snapshot stays
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is::<Quiet>() {
                eprintln!("offsnap-remote: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A failure already reported to the client.
#[derive(Debug, thiserror::Error)]
#[error("reported to the client")]
struct Quiet;

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Prune {
            root,
            set,
            policy,
            dry_run,
        } => {
            let clock = Clock::from_env().map_err(anyhow::Error::msg)?;
            let root = Root::open(&root, false).map_err(|e| anyhow::Error::msg(e.to_string()))?;
            let sets = match set {
                Some(s) => vec![s],
                None => root.sets().map_err(|e| anyhow::Error::msg(e.to_string()))?,
            };
            // One busy or broken set must not stop the others being pruned.
            let mut failed = 0;
            for set in sets {
                let decisions = match prune(&root, &set, &policy.policy(), clock.now(), dry_run) {
                    Ok(d) => d,
                    Err(e) => {
                        eprintln!("offsnap-remote: set {set}: {e}");
                        failed += 1;
                        continue;
                    }
                };
                for d in decisions {
                    if d.kept_by.is_empty() {
                        let what = if dry_run { "would remove" } else { "removed" };
                        println!("{set}  {}  {what}", d.name);
                    } else {
                        println!("{set}  {}  keep ({})", d.name, d.kept_by.join(", "));
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} set(s) could not be pruned");
            }
            Ok(())
        }
        Command::Serve {
            root,
            append_only,
            read_only,
            max_file_size,
            max_snapshot_size,
        } => {
            let access = if read_only {
                Access::ReadOnly
            } else if append_only {
                Access::AppendOnly
            } else {
                Access::Full
            };
            let clock = Clock::from_env().map_err(anyhow::Error::msg)?;
            let cfg = Config {
                root,
                access,
                clock,
                refuse: None,
                limits: Limits {
                    max_file_size,
                    max_snapshot_size,
                },
            }
            .confine(std::env::var("SSH_ORIGINAL_COMMAND").ok().as_deref());
            // Raw descriptors: no line buffering between frames and the pipe.
            let stdin = File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
            let stdout = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
            match serve(stdin, stdout, &cfg) {
                Ok(()) => Ok(()),
                // The client was told already: exit non-zero, say nothing twice.
                Err(ServeError::Failed(_)) => Err(Quiet.into()),
                Err(e) => Err(e).context("session failed"),
            }
        }
    }
}
