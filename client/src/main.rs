//! `offsnap`: back up folders into dated, hard-linked snapshots on another
//! disk or host, list them, and restore from them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand};
use offsnap::backup::{BackupOptions, backup};
use offsnap::config::Profile;
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
    /// Use this profile of the config file [default: its `default`]
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Read this config file [default: ~/.config/offsnap/config.toml]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Backup set: one per machine or profile [default: this machine's hostname]
    #[arg(long, value_name = "NAME")]
    set: Option<String>,
    /// The helper command on the backup host, like rsync's --rsync-path
    /// [default: offsnap-remote; a local destination needs none]
    #[arg(long, value_name = "CMD")]
    remote_cmd: Option<String>,
    /// Send at most RATE per second: KiB, or with a K, M or G suffix (2M)
    #[arg(long, value_name = "RATE", value_parser = offsnap::transport::parse_rate)]
    bwlimit: Option<u64>,
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
        /// Directories or files to back up, then the destination (a
        /// directory, or [user@]host:PATH) [default: the profile's]
        #[arg(value_name = "SOURCE... DEST")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Do not prune old snapshots after the backup
        #[arg(long)]
        no_prune: bool,
        /// Leave out what matches this gitignore-style pattern (anchored at
        /// each SOURCE with a leading /; repeatable)
        #[arg(long, value_name = "PATTERN")]
        exclude: Vec<String>,
        /// Read exclude patterns from FILE, one per line (repeatable)
        #[arg(long, value_name = "FILE")]
        exclude_from: Vec<PathBuf>,
        /// Do not cross into other filesystems (mounts under a SOURCE)
        #[arg(short = 'x', long)]
        one_file_system: bool,
        /// Back up cache directories too (those holding a CACHEDIR.TAG)
        #[arg(long)]
        no_cachedir_tag: bool,
        /// Print a summary of what was sent and linked, like rsync's --stats
        #[arg(long)]
        stats: bool,
        /// Show a progress bar even when stderr is not a terminal
        #[arg(long)]
        progress: bool,
        /// Print only errors: no progress bar, no summary line
        #[arg(short, long, conflicts_with_all = ["progress", "verbose"])]
        quiet: bool,
        /// List each file sent, and always print the summary line
        #[arg(short, long)]
        verbose: bool,
        /// Print the run's result as one JSON object (instead of the name)
        #[arg(long)]
        json: bool,
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
        /// Where the backups are [default: the profile's destination]
        dest: Option<String>,
    },
    /// Write a commented starter config file with one profile.
    ///
    /// Afterwards `offsnap backup` alone backs the profile's sources up.
    Init {
        #[command(flatten)]
        common: Common,
        /// Replace an existing config file
        #[arg(long)]
        force: bool,
        /// Where backups will go (a directory, or [user@]host:PATH).
        dest: String,
        /// What to back up [default: ~/Documents]
        sources: Vec<String>,
    },
    /// Say when the last good backup was (from this machine's run log);
    /// exits 1 if it is older than --max-age, for monitoring.
    Status {
        #[command(flatten)]
        common: Common,
        /// Exit 1 if the last successful backup is older than this (e.g. 2d, 12h)
        #[arg(long, value_name = "DURATION", value_parser = offsnap_remote::retention::parse_duration)]
        max_age: Option<i64>,
    },
    /// Manage the helper on a backup host.
    Remote {
        #[command(subcommand)]
        action: RemoteAction,
    },
    /// Run backups by themselves: a systemd user timer, or a crontab line.
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
    },
    /// List the snapshots at DEST, oldest first, with their sizes and
    /// changes.
    ///
    /// Columns: name, files, total size, unique size (held by no other
    /// snapshot), and entries added / changed / removed since the previous.
    Snapshots {
        #[command(flatten)]
        common: Common,
        /// Print one JSON array of objects instead
        #[arg(long)]
        json: bool,
        /// Where the backups are [default: the profile's destination]
        dest: Option<String>,
    },
    /// List a directory of a snapshot (its root by default).
    Ls {
        #[command(flatten)]
        common: Common,
        /// The snapshot: a name, or `latest`.
        #[arg(long, value_name = "NAME", default_value = "latest")]
        snapshot: String,
        /// Where the backups are.
        dest: String,
        /// A directory (or file) inside the snapshot.
        path: Option<PathBuf>,
    },
    /// List each distinct version of a file across the snapshots.
    Versions {
        #[command(flatten)]
        common: Common,
        /// Where the backups are.
        dest: String,
        /// The file inside the snapshots (e.g. Documents/notes.txt).
        path: PathBuf,
    },
    /// Show what was added (+), removed (-) and changed (M) between two
    /// snapshots.
    Diff {
        #[command(flatten)]
        common: Common,
        /// Where the backups are.
        dest: String,
        /// The older snapshot (a name, or `latest`).
        snap_a: String,
        /// The newer snapshot (a name, or `latest`).
        snap_b: String,
    },
    /// Re-read stored files and check them against the manifests; exits
    /// 1 if anything is missing, changed or unexpected.
    Verify {
        #[command(flatten)]
        common: Common,
        /// The snapshot to check [default: latest]
        #[arg(long, value_name = "NAME", conflicts_with = "all")]
        snapshot: Option<String>,
        /// Check every snapshot (each stored file is read once)
        #[arg(long)]
        all: bool,
        /// Where the backups are [default: the profile's destination]
        dest: Option<String>,
    },
    /// Browse the history in a web page on this machine, and restore from it.
    ///
    /// Serves 127.0.0.1 only, at an address with a secret token (printed);
    /// runs until stopped with Ctrl-C.
    Browse {
        #[command(flatten)]
        common: Common,
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

#[derive(Subcommand)]
enum RemoteAction {
    /// Copy this machine's offsnap-remote to ~/.local/bin on an SSH host
    /// (when the host's OS and architecture match this one's).
    Install {
        #[command(flatten)]
        common: Common,
        /// The host: [user@]host, an ~/.ssh/config alias, or ssh://…
        host: String,
    },
}

#[derive(Subcommand)]
enum ScheduleAction {
    /// Install a timer that backs the profile up every so often.
    Install {
        #[command(flatten)]
        common: Common,
        /// How often: 15m, 30m, 1h, 6h, 1d, 1w
        #[arg(long, value_name = "INTERVAL", default_value = "1h")]
        every: String,
        /// Print the unit files (or crontab line) instead of installing
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the installed timer.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Remove the timer.
    Remove {
        #[command(flatten)]
        common: Common,
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

impl Common {
    /// The profile in effect: the named one, or the config's default.
    fn profile(&self) -> Result<Option<Profile>> {
        Ok(self.named_profile()?.map(|(_, p)| p))
    }

    /// The profile in effect, with its name.
    fn named_profile(&self) -> Result<Option<(String, Profile)>> {
        let (config, path) = offsnap::config::load(self.config.as_deref())?;
        Ok(config.profile(self.profile.as_deref(), path.as_deref())?)
    }

    /// DEST as given, or the profile's destination.
    fn dest(&self, given: Option<&str>) -> Result<Dest> {
        let dest = match given {
            Some(d) => d.to_string(),
            None => self.profile()?.and_then(|p| p.destination).ok_or_else(|| {
                Error::Usage(
                    "no destination: name one, or set `destination` in a profile of the config file (see offsnap init)"
                        .into(),
                )
            })?,
        };
        Ok(Dest::parse(&dest)?)
    }
}

/// The set name: as given, the profile's, or this machine's hostname made valid.
fn set_name(common: &Common) -> Result<SetName> {
    let given = match &common.set {
        Some(s) => Some(s.clone()),
        None => common.profile()?.and_then(|p| p.set),
    };
    if let Some(s) = given {
        return SetName::new(&s).map_err(|e| Error::Usage(e.to_string()).into());
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
    let profile = common.profile()?.unwrap_or_default();
    let remote_cmd = match common.remote_cmd.as_ref().or(profile.remote_cmd.as_ref()) {
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
        port: common.port.or(profile.port),
        identity: common
            .identity
            .clone()
            .or(profile.identity.as_deref().map(offsnap::config::expand)),
        accept_new_host_key: common.accept_new_host_key,
        bwlimit: common.bwlimit,
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Backup {
            common,
            mut paths,
            policy,
            no_prune,
            exclude,
            exclude_from,
            one_file_system,
            no_cachedir_tag,
            stats,
            progress,
            quiet,
            verbose,
            json,
        } => {
            let profile = common.profile()?.unwrap_or_default();
            let paths_from_profile = paths.is_empty();
            let dest_text = match paths.last() {
                Some(d) if paths.len() > 1 => d.display().to_string(),
                _ => profile.destination.clone().unwrap_or_default(),
            };
            let (sources, dest) = match paths.len() {
                0 if !profile.sources.is_empty() => (
                    profile
                        .sources
                        .iter()
                        .map(|s| offsnap::config::expand(s))
                        .collect(),
                    common.dest(None)?,
                ),
                0 => {
                    return Err(Error::Usage(
                        "nothing to back up: give SOURCE... DEST, or write a profile in the config file (offsnap init DEST)"
                            .into(),
                    )
                    .into());
                }
                1 => {
                    return Err(Error::Usage(
                        "give the sources and then the destination: offsnap backup SOURCE... DEST"
                            .into(),
                    )
                    .into());
                }
                _ => {
                    let dest = paths.pop().ok_or_else(|| anyhow!("no destination"))?;
                    let dest = dest.to_str().ok_or_else(|| {
                        Error::Usage(format!("destination {} is not valid UTF-8", dest.display()))
                    })?;
                    (paths, common.dest(Some(dest))?)
                }
            };
            let retention = if policy.given() {
                policy.policy()
            } else {
                profile
                    .retention
                    .as_ref()
                    .map(|r| r.policy())
                    .unwrap_or_else(offsnap_protocol::Policy::thirty_days)
            };
            let mut excludes = profile.exclude.clone();
            excludes.extend(exclude);
            let mut from: Vec<PathBuf> = profile
                .exclude_from
                .iter()
                .map(|f| offsnap::config::expand(f))
                .collect();
            from.extend(exclude_from);
            let opts = BackupOptions {
                set: set_name(&common)?,
                sources,
                scan: offsnap::scan::ScanOptions {
                    excludes,
                    exclude_from: from,
                    one_file_system: one_file_system || profile.one_file_system,
                    keep_cachedir: no_cachedir_tag || profile.cachedir_tag == Some(false),
                },
                prune: (!no_prune).then_some(retention),
                show: offsnap::progress::Show {
                    progress: progress || (std::io::stderr().is_terminal() && !quiet && !json),
                    verbose,
                },
            };
            // Check the sources and patterns before starting anything remote.
            for src in offsnap::scan::resolve_sources(&opts.sources)? {
                offsnap::scan::excludes_for(&src.path, &opts.scan)?;
            }
            let started = std::time::Instant::now();
            let outcome = connect_opts(&common)
                .map_err(|e| Error::Usage(e.to_string()))
                .and_then(|o| connect(&dest, &o))
                .and_then(|session| backup(session, &opts));
            let profile_name = common.named_profile().ok().flatten().map(|(n, _)| n);
            let _ = offsnap::runlog::append(&offsnap::runlog::Run {
                time: jiff::Timestamp::now().to_string(),
                profile: if common.profile.is_some() || paths_from_profile {
                    profile_name
                } else {
                    None
                },
                dest: dest_text.clone(),
                set: opts.set.to_string(),
                ok: outcome.is_ok(),
                partial: outcome.as_ref().is_ok_and(|r| r.is_partial()),
                snapshot: outcome.as_ref().ok().map(|r| r.snapshot.to_string()),
                files: outcome.as_ref().map(|r| r.files).unwrap_or(0),
                bytes: outcome.as_ref().map(|r| r.content_bytes).unwrap_or(0),
                seconds: started.elapsed().as_secs_f64(),
                error: outcome.as_ref().err().map(|e| e.to_string()),
            });
            let report = outcome?;
            for p in &report.problems {
                eprintln!("offsnap: {p}");
            }
            if report.stats.link_limit_copies > 0 {
                eprintln!(
                    "offsnap: warning: {} file(s) stored as copies, not hard links: their stored inode is at the filesystem's hard-link limit",
                    report.stats.link_limit_copies
                );
            }
            if json {
                let removed: Vec<String> = report
                    .pruned
                    .iter()
                    .filter(|d| d.kept_by.is_empty())
                    .map(|d| d.name.to_string())
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "snapshot": report.snapshot.to_string(),
                        "files_scanned": report.files,
                        "entries_scanned": report.scanned,
                        "linked_unchanged": report.linked,
                        "linked_by_hash": report.linked_by_hash,
                        "hard_links": report.hard_links,
                        "copied_at_link_limit": report.stats.link_limit_copies,
                        "sent_delta": report.delta_files,
                        "sent_whole": report.sent,
                        "resent_whole": report.resent,
                        "content_bytes": report.content_bytes,
                        "literal_bytes": report.literal_bytes,
                        "matched_bytes": report.matched_bytes,
                        "wire_bytes_sent": report.wire_sent,
                        "wire_bytes_received": report.wire_received,
                        "elapsed_seconds": report.elapsed,
                        "problems": report.problems,
                        "pruned": removed,
                    })
                );
            } else {
                println!("{}", report.snapshot);
            }
            if stats {
                let out = format!(
                    "Number of files: {} ({} entries scanned)\n\
                     Unchanged, hard-linked: {}\n\
                     Already on the host, linked by content: {}\n\
                     Sent whole: {} ({} of content, {} chunks compressed)\n\
                     Sent as deltas: {} ({} literal, {} matched on the host)\n\
                     Bytes sent: {}\n\
                     Bytes received: {}\n\
                     Elapsed: {:.2} s",
                    report.files,
                    report.scanned,
                    report.linked,
                    report.linked_by_hash,
                    report.sent,
                    human_bytes(report.content_bytes),
                    report.compressed_chunks,
                    report.delta_files,
                    human_bytes(report.literal_bytes),
                    human_bytes(report.matched_bytes),
                    report.wire_sent,
                    report.wire_received,
                    report.elapsed
                );
                if json {
                    eprintln!("{out}");
                } else {
                    println!("{out}");
                }
            } else if (verbose || (std::io::stderr().is_terminal() && !quiet)) && !json {
                eprintln!(
                    "{} files: {} unchanged, {} found on the host, {} sent ({}), in {:.1}s",
                    report.files,
                    report.linked,
                    report.linked_by_hash,
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
        Command::Status { common, max_age } => {
            let name = common.named_profile()?.map(|(n, _)| n);
            let runs = offsnap::runlog::read();
            let mine: Vec<&offsnap::runlog::Run> = runs
                .iter()
                .filter(|r| name.is_none() || r.profile == name)
                .collect();
            let now = jiff::Timestamp::now();
            let age = |r: &offsnap::runlog::Run| {
                r.time
                    .parse::<jiff::Timestamp>()
                    .map(|t| now.as_second() - t.as_second())
                    .unwrap_or(i64::MAX)
            };
            let what = name
                .as_deref()
                .map(|n| format!("profile {n}"))
                .unwrap_or_else(|| "any profile".into());
            let last_ok = mine.iter().rev().find(|r| r.ok);
            let last_fail = mine.iter().rev().find(|r| !r.ok);
            match last_ok {
                Some(r) => println!(
                    "last backup: {} ({} ago), snapshot {} of set {} at {}: {} files, {} sent, {:.1}s{}",
                    r.time,
                    ago(age(r)),
                    r.snapshot.as_deref().unwrap_or("?"),
                    r.set,
                    r.dest,
                    r.files,
                    human_bytes(r.bytes),
                    r.seconds,
                    if r.partial { " (partial)" } else { "" }
                ),
                None => println!("no successful backup recorded for {what}"),
            }
            if let Some(f) = last_fail
                && last_ok.is_none_or(|ok| f.time > ok.time)
            {
                println!(
                    "last failure: {} ({} ago): {}",
                    f.time,
                    ago(age(f)),
                    f.error.as_deref().unwrap_or("?")
                );
            }
            let stale = match (last_ok, max_age) {
                (None, _) => true,
                (Some(r), Some(max)) => age(r) > max,
                (Some(_), None) => false,
            };
            if stale {
                eprintln!(
                    "offsnap: {} has no successful backup{}",
                    what,
                    max_age
                        .map(|m| format!(" in the last {}", ago(m)))
                        .unwrap_or_default()
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule { action } => schedule(action),
        Command::Remote {
            action: RemoteAction::Install { common, host },
        } => {
            let spec = if host.contains(':') {
                host.clone()
            } else {
                format!("{host}:")
            };
            let Dest::Ssh(d) = Dest::parse(&spec)? else {
                return Err(Error::Usage(format!("{host:?} is not an SSH host")).into());
            };
            let version = offsnap::install::install(&d, &connect_opts(&common)?)?;
            println!("{version}");
            if std::io::stderr().is_terminal() {
                eprintln!(
                    "installed ~/{}/offsnap-remote on {}; backups to {}:PATH now find it",
                    offsnap::install::INSTALL_DIR,
                    d.host,
                    host
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Init {
            common,
            force,
            dest,
            sources,
        } => {
            Dest::parse(&dest)?;
            let path = match &common.config {
                Some(p) => p.clone(),
                None => offsnap::config::default_path()
                    .ok_or_else(|| anyhow!("HOME is not set; name the file with --config"))?,
            };
            if path.exists() && !force {
                return Err(Error::Usage(format!(
                    "{} exists already (edit it, or pass --force to replace it)",
                    path.display()
                ))
                .into());
            }
            let name = common.profile.as_deref().unwrap_or("default");
            let text = offsnap::config::starter(name, &dest, &sources);
            offsnap::config::parse(&text).map_err(|e| anyhow!("starter config: {e}"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("{}", path.display());
            if std::io::stderr().is_terminal() {
                eprintln!("wrote profile {name:?}; edit it, then run: offsnap backup");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune {
            common,
            policy,
            dry_run,
            dest,
        } => {
            let dest = common.dest(dest.as_deref())?;
            let set = set_name(&common)?;
            let policy = if policy.given() {
                policy.policy()
            } else {
                common
                    .profile()?
                    .and_then(|p| p.retention)
                    .map(|r| r.policy())
                    .unwrap_or_else(offsnap_protocol::Policy::thirty_days)
            };
            let mut session = connect(&dest, &connect_opts(&common)?)?;
            let decisions = list::prune(&mut session, &set, &policy, dry_run)?;
            session.close()?;
            print_decisions(&decisions, dry_run);
            Ok(ExitCode::SUCCESS)
        }
        Command::Snapshots { common, json, dest } => {
            let dest = common.dest(dest.as_deref())?;
            let set = set_name(&common)?;
            let mut session = connect(&dest, &connect_opts(&common)?)?;
            let stats = list::stats(&mut session, &set)?;
            session.close()?;
            if json {
                let rows: Vec<serde_json::Value> = stats
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "name": s.name.to_string(),
                            "files": s.files,
                            "dirs": s.dirs,
                            "symlinks": s.symlinks,
                            "total_bytes": s.total_bytes,
                            "unique_bytes": s.unique_bytes,
                            "added": s.added,
                            "changed": s.changed,
                            "removed": s.removed,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
                return Ok(ExitCode::SUCCESS);
            }
            if std::io::stdout().is_terminal() {
                println!(
                    "{:<18}  {:>9}  {:>10}  {:>10}  {:>8} {:>8} {:>8}",
                    "SNAPSHOT", "FILES", "SIZE", "UNIQUE", "ADDED", "CHANGED", "REMOVED"
                );
            }
            for s in stats {
                println!(
                    "{}  {:>9}  {:>10}  {:>10}  {:>8} {:>8} {:>8}",
                    s.name,
                    s.files,
                    human_bytes(s.total_bytes),
                    human_bytes(s.unique_bytes),
                    format!("+{}", s.added),
                    format!("~{}", s.changed),
                    format!("-{}", s.removed)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls {
            common,
            snapshot,
            dest,
            path,
        } => {
            let dest = common.dest(Some(&dest))?;
            let set = set_name(&common)?;
            let which: Which = snapshot
                .parse()
                .map_err(|e: offsnap_protocol::NameError| Error::Usage(e.to_string()))?;
            let dir = path.as_deref().map(snapshot_path).transpose()?;
            let mut session = connect(&dest, &connect_opts(&common)?)?;
            let info = offsnap::restore::find_snapshot(&mut session, &set, which)?;
            let entries = offsnap::inspect::ls(&mut session, &set, &info, dir.as_ref())?;
            session.close()?;
            for e in entries {
                println!("{}", long_line(&e, true));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Versions { common, dest, path } => {
            let dest = common.dest(Some(&dest))?;
            let set = set_name(&common)?;
            let path = snapshot_path(&path)?;
            let mut session = connect(&dest, &connect_opts(&common)?)?;
            let snaps = list::snapshots(&mut session, &set)?;
            let versions = offsnap::inspect::versions(&mut session, &set, &snaps, &path)?;
            session.close()?;
            if versions.is_empty() {
                return Err(Error::Usage(format!("{path} is in no snapshot of set {set}")).into());
            }
            for v in versions {
                let hash = match &v.entry.kind {
                    offsnap_protocol::EntryKind::File { hash, .. } => {
                        hash.to_hex()[..12].to_string()
                    }
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
                    v.entry.size(),
                    mtime_text(&v.entry.meta)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff {
            common,
            dest,
            snap_a,
            snap_b,
        } => {
            let dest = common.dest(Some(&dest))?;
            let set = set_name(&common)?;
            let parse = |s: &str| -> Result<Which> {
                s.parse()
                    .map_err(|e: offsnap_protocol::NameError| Error::Usage(e.to_string()).into())
            };
            let (a, b) = (parse(&snap_a)?, parse(&snap_b)?);
            let mut session = connect(&dest, &connect_opts(&common)?)?;
            let a = offsnap::restore::find_snapshot(&mut session, &set, a)?;
            let b = offsnap::restore::find_snapshot(&mut session, &set, b)?;
            let changes = offsnap::inspect::diff(&mut session, &set, &a, &b)?;
            session.close()?;
            for c in changes {
                let mark = match c {
                    offsnap_protocol::compare::Change::Added(_) => '+',
                    offsnap_protocol::compare::Change::Removed(_) => '-',
                    offsnap_protocol::compare::Change::Changed(..) => 'M',
                };
                println!("{mark} {}", c.path());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            common,
            snapshot,
            all,
            dest,
        } => {
            let dest = common.dest(dest.as_deref())?;
            let set = set_name(&common)?;
            let mut session = connect(&dest, &connect_opts(&common)?)?;
            let chosen = if all {
                None
            } else {
                let which: Which = snapshot
                    .as_deref()
                    .unwrap_or("latest")
                    .parse()
                    .map_err(|e: offsnap_protocol::NameError| Error::Usage(e.to_string()))?;
                Some(offsnap::restore::find_snapshot(&mut session, &set, which)?.name)
            };
            let summary = list::verify(&mut session, &set, chosen, |f| {
                let what = match &f.kind {
                    offsnap_protocol::FindingKind::Missing => "missing".to_string(),
                    offsnap_protocol::FindingKind::Unexpected => "unexpected".to_string(),
                    offsnap_protocol::FindingKind::Changed(why) => format!("changed: {why}"),
                    offsnap_protocol::FindingKind::Manifest(why) => {
                        format!("manifest damaged: {why}")
                    }
                };
                println!(
                    "{}  {}: {what}",
                    f.snapshot,
                    String::from_utf8_lossy(&f.path)
                );
            })?;
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
        Command::Browse {
            common,
            listen_port,
            no_open,
            dest,
        } => browse(common, listen_port, !no_open, dest.as_deref()),
        Command::Restore {
            common,
            snapshot,
            to,
            overwrite,
            dest,
            paths,
        } => {
            let dest = common.dest(Some(&dest))?;
            let snapshot: Which = snapshot
                .parse()
                .map_err(|e: offsnap_protocol::NameError| Error::Usage(e.to_string()))?;
            let paths = paths
                .iter()
                .map(|p| snapshot_path(p))
                .collect::<Result<Vec<_>>>()?;
            let opts = RestoreOptions {
                set: set_name(&common)?,
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

/// `offsnap browse`: the destination and retention as other commands
/// take them, then the web server until stopped.
fn browse(common: Common, port: u16, open: bool, dest: Option<&str>) -> Result<ExitCode> {
    let dest = common.dest(dest)?;
    let policy = common
        .profile()?
        .and_then(|p| p.retention)
        .map(|r| r.policy())
        .unwrap_or_else(offsnap_protocol::Policy::thirty_days);
    let connect_with = connect_opts(&common)?;
    let label = match &dest {
        Dest::Local(p) => p.display().to_string(),
        Dest::Ssh(d) => format!("{}:{}", d.host, d.path),
    };
    offsnap::browse::run(offsnap::browse::BrowseOptions {
        set: set_name(&common)?,
        policy,
        connect: std::sync::Arc::new(move || connect(&dest, &connect_with)),
        port,
        open,
        dest_label: label,
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `ls -l`-like line for an entry; `name_only` shows its last component.
fn long_line(e: &offsnap_protocol::Entry, name_only: bool) -> String {
    use offsnap_protocol::EntryKind;
    let (t, extra) = match &e.kind {
        EntryKind::Dir => ('d', String::new()),
        EntryKind::File { .. } => ('-', String::new()),
        EntryKind::Symlink { target } => ('l', format!(" -> {}", String::from_utf8_lossy(target))),
        EntryKind::HardLink { target } => ('-', format!(" => {target}")),
        EntryKind::Fifo => ('p', String::new()),
        EntryKind::Socket => ('s', String::new()),
        EntryKind::Device { block, rdev } => (
            if *block { 'b' } else { 'c' },
            format!(" ({}, {})", libc::major(*rdev), libc::minor(*rdev)),
        ),
    };
    let bits = ["---", "--x", "-w-", "-wx", "r--", "r-x", "rw-", "rwx"];
    let m = e.meta.mode;
    let name = if name_only {
        String::from_utf8_lossy(e.path.file_name()).into_owned()
    } else {
        e.path.to_string()
    };
    format!(
        "{t}{}{}{}  {:>5} {:>5}  {:>10}  {}  {name}{extra}",
        bits[((m >> 6) & 7) as usize],
        bits[((m >> 3) & 7) as usize],
        bits[(m & 7) as usize],
        e.meta.uid,
        e.meta.gid,
        e.size(),
        mtime_text(&e.meta)
    )
}

/// An mtime as `YYYY-MM-DD HH:MM:SS` UTC.
fn mtime_text(meta: &offsnap_protocol::Meta) -> String {
    jiff::Timestamp::from_second(meta.mtime_sec)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| meta.mtime_sec.to_string())
}

/// A duration in seconds, roughly, for people.
fn ago(secs: i64) -> String {
    match secs {
        s if s < 0 || s == i64::MAX => "unknown time".into(),
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `offsnap schedule …`.
fn schedule(action: ScheduleAction) -> Result<ExitCode> {
    use offsnap::schedule as sch;
    let named = |common: &Common| -> Result<String> {
        common.named_profile()?.map(|(n, _)| n).ok_or_else(|| {
            Error::Usage(
                "schedule needs a profile with sources and a destination: write one with offsnap init"
                    .into(),
            )
            .into()
        })
    };
    match action {
        ScheduleAction::Install {
            common,
            every,
            dry_run,
        } => {
            let name = named(&common)?;
            let every = sch::parse_every(&every)?;
            let exe = std::env::current_exe()
                .and_then(std::fs::canonicalize)
                .context("finding the offsnap executable")?;
            let config = match &common.config {
                Some(c) => Some(std::path::absolute(c)?),
                None => None,
            };
            let state = offsnap::runlog::path().ok_or_else(|| anyhow!("HOME is not set"))?;
            let (service, timer) = sch::unit_names(&name);
            let service_text = sch::service_text(&exe, &name, config.as_deref());
            let timer_text = sch::timer_text(&name, every);
            let dir = sch::units_dir().ok_or_else(|| anyhow!("HOME is not set"))?;
            let log = state.join(format!("{name}.log"));
            let cron = sch::crontab_line(&exe, &name, config.as_deref(), every, &log);
            let plist = sch::launchd_plist(&exe, &name, config.as_deref(), every, &log);
            if dry_run {
                println!(
                    "# {}\n{service_text}\n# {}\n{timer_text}",
                    dir.join(&service).display(),
                    dir.join(&timer).display()
                );
                println!("# without systemd, this crontab line does the same:");
                println!("{cron}");
                println!(
                    "# on macOS, ~/Library/LaunchAgents/{}.plist:",
                    sch::launchd_label(&name)
                );
                print!("{plist}");
                return Ok(ExitCode::SUCCESS);
            }
            std::fs::create_dir_all(&state)
                .with_context(|| format!("creating {}", state.display()))?;
            if std::env::consts::OS == "macos" {
                let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set"))?;
                let agents = PathBuf::from(home).join("Library/LaunchAgents");
                std::fs::create_dir_all(&agents)?;
                let path = agents.join(format!("{}.plist", sch::launchd_label(&name)));
                std::fs::write(&path, plist)?;
                println!("{}", path.display());
                eprintln!("offsnap: load it with: launchctl load {}", path.display());
                return Ok(ExitCode::SUCCESS);
            }
            if !sch::systemd_user() {
                println!("{cron}");
                eprintln!(
                    "offsnap: no systemd user manager here; add the line above with `crontab -e`"
                );
                return Ok(ExitCode::SUCCESS);
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(dir.join(&service), service_text)?;
            std::fs::write(dir.join(&timer), timer_text)?;
            sch::systemctl(&["daemon-reload"])?;
            sch::systemctl(&["enable", "--now", &timer])?;
            println!(
                "installed {} and {}",
                dir.join(&service).display(),
                dir.join(&timer).display()
            );
            eprintln!(
                "runs {}; see them with: systemctl --user list-timers; offsnap status",
                every.on_calendar()
            );
            Ok(ExitCode::SUCCESS)
        }
        ScheduleAction::Status { common } => {
            let name = named(&common)?;
            let (_, timer) = sch::unit_names(&name);
            let dir = sch::units_dir().ok_or_else(|| anyhow!("HOME is not set"))?;
            if !dir.join(&timer).exists() {
                println!("no timer installed for profile {name}");
                return Ok(ExitCode::FAILURE);
            }
            println!("{}", dir.join(&timer).display());
            if sch::systemd_user() {
                let _ = std::process::Command::new("systemctl")
                    .args(["--user", "list-timers", &timer])
                    .status();
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleAction::Remove { common } => {
            let name = named(&common)?;
            let (service, timer) = sch::unit_names(&name);
            let dir = sch::units_dir().ok_or_else(|| anyhow!("HOME is not set"))?;
            if sch::systemd_user() {
                let _ = sch::systemctl(&["disable", "--now", &timer]);
            }
            let mut removed = false;
            for f in [&service, &timer] {
                removed |= std::fs::remove_file(dir.join(f)).is_ok();
            }
            if sch::systemd_user() {
                let _ = sch::systemctl(&["daemon-reload"]);
            }
            println!(
                "{}",
                if removed {
                    "removed the timer"
                } else {
                    "no timer was installed (remove a crontab line with crontab -e)"
                }
            );
            Ok(ExitCode::SUCCESS)
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
