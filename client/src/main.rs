//! `offsnap`: back up folders into dated, hard-linked snapshots on another
//! disk or host, list them, and restore from them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand};
use offsnap::backup::{BackupOptions, backup};
use offsnap::dest::{ConnectOptions, Dest, connect};
use offsnap::restore::{RestoreOptions, Which, restore};
use offsnap::{Error, list};
use offsnap_protocol::{RelPath, SetName};
use offsnap_remote::retention::PolicyArgs;

const EXIT_CODES: &str = "\
Exit status: 0 success, 1 failure, 2 bad arguments, 3 partial (the run \
completed but some files could not be read or restored).";

/// Incremental, hard-linked, dated snapshots of your files on another disk
/// or host.
#[derive(Parser)]
#[command(name = "offsnap", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Backup set: one per machine or profile [default: this machine's hostname]
    #[arg(long, value_name = "NAME")]
    set: Option<String>,
    /// The helper command on the backup host, like rsync's --rsync-path
    /// [default: offsnap-remote; a local destination needs none]
    #[arg(long, value_name = "CMD")]
    remote_cmd: Option<String>,
    /// SSH port of the backup host
    #[arg(short = 'p', long, value_name = "PORT")]
    port: Option<u16>,
    /// SSH private key to log in with (after ssh-agent's keys)
    #[arg(short = 'i', long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Trust an SSH host not yet in known_hosts and record its key (like
    /// StrictHostKeyChecking=accept-new); a changed key is always refused
    #[arg(long)]
    accept_new_host_key: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Back SOURCEs up into a new snapshot at DEST.
    ///
    /// Each SOURCE is stored under its own name at the snapshot's root.
    /// Files unchanged since the previous snapshot are hard links to it.
    /// Prints the new snapshot's name.
    #[command(after_help = EXIT_CODES)]
    Backup {
        #[command(flatten)]
        common: Common,
        /// Directories or files to back up, then the destination (a directory).
        #[arg(required = true, num_args = 2.., value_name = "SOURCE... DEST")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Do not prune old snapshots after the backup
        #[arg(long)]
        no_prune: bool,
    },
    /// Delete snapshots that the retention policy no longer keeps.
    ///
    /// Without rules, keeps 30 days. The newest snapshot is always kept, and
    /// nothing is pruned by age while the newest snapshot is itself older
    /// than the window. Times come from the backup host's clock.
    Prune {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Only show what would be removed, and why each other snapshot stays
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Where the backups are.
        dest: String,
    },
    /// List the snapshots at DEST, oldest first.
    Snapshots {
        #[command(flatten)]
        common: Common,
        /// Where the backups are.
        dest: String,
    },
    /// Copy a snapshot, or paths inside it, out to a directory.
    #[command(after_help = EXIT_CODES)]
    Restore {
        #[command(flatten)]
        common: Common,
        /// The snapshot to restore from: a name, or `latest`.
        #[arg(long, value_name = "NAME", default_value = "latest")]
        snapshot: String,
        /// Directory to restore into (created when missing).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Replace existing files in the target instead of refusing.
        #[arg(long)]
        overwrite: bool,
        /// Where the backups are.
        dest: String,
        /// Paths inside the snapshot to restore [default: all of it]
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("offsnap: {e:#}");
            match e.downcast_ref::<Error>() {
                Some(Error::Usage(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// The set name: as given, or this machine's hostname made valid.
fn set_name(given: &Option<String>) -> Result<SetName> {
    if let Some(s) = given {
        return SetName::new(s).map_err(|e| Error::Usage(e.to_string()).into());
    }
    let host =
        hostname::get().context("cannot read this machine's hostname; name the set with --set")?;
    let cleaned: String = host
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches(['.', '-']);
    SetName::new(if cleaned.is_empty() {
        "default"
    } else {
        cleaned
    })
    .map_err(|e| anyhow!("{e}; name the set with --set"))
}

fn connect_opts(common: &Common) -> Result<ConnectOptions> {
    let remote_cmd = match &common.remote_cmd {
        Some(cmd) => {
            let words = shell_words::split(cmd)
                .map_err(|e| Error::Usage(format!("--remote-cmd {cmd:?}: {e}")))?;
            if words.is_empty() {
                return Err(Error::Usage("--remote-cmd is empty".into()).into());
            }
            Some(words)
        }
        None => None,
    };
    Ok(ConnectOptions {
        remote_cmd,
        port: common.port,
        identity: common.identity.clone(),
        accept_new_host_key: common.accept_new_host_key,
    })
}

fn dest_of(s: &str) -> Result<Dest> {
    Ok(Dest::parse(s)?)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Backup {
            common,
            mut paths,
            policy,
            no_prune,
        } => {
            let dest = paths.pop().ok_or_else(|| anyhow!("no destination"))?;
            let dest = dest_of(dest.to_str().ok_or_else(|| {
                Error::Usage(format!("destination {} is not valid UTF-8", dest.display()))
            })?)?;
            let opts = BackupOptions {
                set: set_name(&common.set)?,
                sources: paths,
                prune: (!no_prune).then(|| policy.policy()),
            };
            // Check the sources before starting anything remote.
            offsnap::scan::resolve_sources(&opts.sources)?;
            let session = connect(&dest, &connect_opts(&common)?)?;
            let report = backup(session, &opts)?;
            for p in &report.problems {
                eprintln!("offsnap: {p}");
            }
            println!("{}", report.snapshot);
            if std::io::stderr().is_terminal() {
                eprintln!(
                    "{} entries: {} files unchanged (linked), {} sent ({}), in {:.1}s",
                    report.scanned,
                    report.stats.linked,
                    report.sent,
                    human_bytes(report.content_bytes),
                    report.elapsed
                );
            }
            let removed: Vec<_> = report
                .pruned
                .iter()
                .filter(|d| d.kept_by.is_empty())
                .collect();
            if !removed.is_empty() && std::io::stderr().is_terminal() {
                eprintln!("pruned {} old snapshot(s)", removed.len());
            }
            if let Some(e) = &report.prune_error {
                eprintln!(
                    "offsnap: snapshot {} was made, but pruning failed: {e}",
                    report.snapshot
                );
                return Ok(ExitCode::FAILURE);
            }
            if report.is_partial() {
                eprintln!(
                    "offsnap: snapshot {} is partial: {} item(s) could not be backed up",
                    report.snapshot,
                    report.problems.len()
                );
                return Ok(ExitCode::from(3));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune {
            common,
            policy,
            dry_run,
            dest,
        } => {
            let dest = dest_of(&dest)?;
            let set = set_name(&common.set)?;
            let mut session = connect(&dest, &connect_opts(&common)?)?;
            let decisions = list::prune(&mut session, &set, &policy.policy(), dry_run)?;
            session.close()?;
            print_decisions(&decisions, dry_run);
            Ok(ExitCode::SUCCESS)
        }
        Command::Snapshots { common, dest } => {
            let dest = dest_of(&dest)?;
            let set = set_name(&common.set)?;
            let mut session = connect(&dest, &connect_opts(&common)?)?;
            let snaps = list::snapshots(&mut session, &set)?;
            session.close()?;
            for s in snaps {
                println!("{}", s.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            common,
            snapshot,
            to,
            overwrite,
            dest,
            paths,
        } => {
            let dest = dest_of(&dest)?;
            let snapshot: Which = snapshot
                .parse()
                .map_err(|e: offsnap_protocol::NameError| Error::Usage(e.to_string()))?;
            let paths = paths
                .iter()
                .map(|p| snapshot_path(p))
                .collect::<Result<Vec<_>>>()?;
            let opts = RestoreOptions {
                set: set_name(&common.set)?,
                snapshot,
                to,
                paths,
                overwrite,
            };
            let session = connect(&dest, &connect_opts(&common)?)?;
            let report = restore(session, &opts)?;
            for p in &report.problems {
                eprintln!("offsnap: {p}");
            }
            if std::io::stderr().is_terminal() {
                eprintln!(
                    "restored {} entries ({}) from {} into {}",
                    report.entries,
                    human_bytes(report.bytes),
                    report.snapshot,
                    opts.to.display()
                );
            }
            Ok(if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}

/// One line per snapshot: kept (and by which rules) or removed.
fn print_decisions(decisions: &[offsnap_protocol::PruneDecision], dry_run: bool) {
    for d in decisions {
        if d.kept_by.is_empty() {
            println!(
                "{}  {}",
                d.name,
                if dry_run { "would remove" } else { "removed" }
            );
        } else {
            println!("{}  keep ({})", d.name, d.kept_by.join(", "));
        }
    }
}

/// A path inside a snapshot as the user typed it: slashes at either end
/// and `./` prefixes are forgiven.
fn snapshot_path(p: &std::path::Path) -> Result<RelPath> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = p.as_os_str().as_bytes();
    while let Some(rest) = bytes.strip_prefix(b"./") {
        bytes = rest;
    }
    let trimmed: &[u8] = {
        let mut b = bytes;
        while let Some(r) = b.strip_prefix(b"/") {
            b = r;
        }
        while let Some(r) = b.strip_suffix(b"/") {
            b = r;
        }
        b
    };
    RelPath::new(trimmed.to_vec()).map_err(|e| Error::Usage(format!("{}: {e}", p.display())).into())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
