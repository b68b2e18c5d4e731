//! `offsnap backup`: one run from the sources to a new snapshot, its entry
//! in the run log, and what it prints.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use offsnap_protocol::retention::PolicyArgs;

use crate::backup::{BackupOptions, BackupReport, backup, dry::dry_run};
use crate::cli::{ConnectArgs, ProfileArgs, ProgressArgs};
use crate::config;
use crate::dest::{Dest, connect};
use crate::error::{Error, Result};
use crate::progress::Itemize;
use crate::settings::Settings;
use crate::{output, runlog, scan};

/// `offsnap backup`'s arguments.
#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    connect: ConnectArgs,
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
    /// Scan and compare with the last snapshot, print what a run would
    /// do; send nothing and make no snapshot
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// List each entry the run changes with a change code (+ new, >
    /// content changed, . metadata only, - deleted, = linked by content, x
    /// skipped as cache; JSON lines with --json). `-i` is --identity's
    #[arg(long)]
    itemize: bool,
    #[command(flatten)]
    progress: ProgressArgs,
    /// Print only errors: no progress bar, no summary line
    #[arg(short, long, conflicts_with_all = ["progress", "verbose"])]
    quiet: bool,
    /// Itemize each entry the run changes (as --itemize), and always
    /// print the summary line
    #[arg(short, long)]
    verbose: bool,
    /// Print the run's result as one JSON object (instead of the name)
    #[arg(long)]
    json: bool,
    /// Back up only if the set's newest snapshot is older than AGE (1d,
    /// 12h), else exit 0: for a frequent timer that catches up after sleep
    #[arg(long, value_name = "AGE", value_parser = offsnap_protocol::retention::parse_duration)]
    if_older: Option<i64>,
}

/// The sources and the destination: from the command line, or the profile.
struct Target {
    sources: Vec<PathBuf>,
    dest: Dest,
    /// The destination as the user wrote it, for the run log.
    dest_text: String,
    /// Whether they came from the profile (the run is then the profile's).
    from_profile: bool,
}

fn target(settings: &Settings, mut paths: Vec<PathBuf>) -> Result<Target> {
    let profile = &settings.profile;
    match paths.len() {
        0 if !profile.sources.is_empty() => Ok(Target {
            sources: profile.sources.iter().map(|s| config::expand(s)).collect(),
            dest: settings.dest(None)?,
            dest_text: profile.destination.clone().unwrap_or_default(),
            from_profile: true,
        }),
        0 => Err(Error::Usage(
            "nothing to back up: give SOURCE... DEST, or write a profile in the config file (offsnap init DEST)"
                .into(),
        )),
        1 => Err(Error::Usage(
            "give the sources and then the destination: offsnap backup SOURCE... DEST".into(),
        )),
        _ => {
            let dest = paths.pop().unwrap_or_default();
            let text = dest.to_str().ok_or_else(|| {
                Error::Usage(format!("destination {} is not valid UTF-8", dest.display()))
            })?;
            Ok(Target {
                dest: settings.dest(Some(text))?,
                dest_text: text.to_string(),
                sources: paths,
                from_profile: false,
            })
        }
    }
}

fn options(settings: &Settings, args: &BackupArgs, sources: Vec<PathBuf>) -> Result<BackupOptions> {
    let profile = &settings.profile;
    let mut excludes = profile.exclude.clone();
    excludes.extend(args.exclude.iter().cloned());
    let mut exclude_from: Vec<PathBuf> = profile
        .exclude_from
        .iter()
        .map(|f| config::expand(f))
        .collect();
    exclude_from.extend(args.exclude_from.iter().cloned());
    Ok(BackupOptions {
        set: settings.set()?,
        sources,
        scan: scan::ScanOptions {
            excludes,
            exclude_from,
            one_file_system: args.one_file_system || profile.one_file_system,
            keep_cachedir: args.no_cachedir_tag || profile.cachedir_tag == Some(false),
        },
        prune: (!args.no_prune).then(|| settings.retention(&args.policy)),
        deltas: true,
        show: crate::progress::Show {
            progress: args.progress.shown(args.quiet || args.json),
            itemize: match (args.itemize || args.verbose, args.json) {
                (false, _) => Itemize::No,
                (true, false) => Itemize::Text,
                (true, true) => Itemize::Json,
            },
        },
    })
}

/// Runs `offsnap backup`.
pub fn run(args: BackupArgs) -> Result<ExitCode> {
    let settings = Settings::load(&args.profile)?;
    let target = target(&settings, args.paths.clone())?;
    let mut opts = options(&settings, &args, target.sources.clone())?;
    // Check the sources and patterns before starting anything remote.
    for src in scan::resolve_sources(&opts.sources)? {
        scan::excludes_for(&src.path, &opts.scan)?;
    }
    let started = std::time::Instant::now();
    crate::interrupt::watch();
    let connect_opts = settings.connect_options(&args.connect);
    if let Ok(o) = &connect_opts {
        opts.deltas = !crate::dest::in_process(&target.dest, o);
    }
    let session = connect_opts.and_then(|o| connect(&target.dest, &o));
    if args.dry_run {
        return report(&args, &session.and_then(|s| dry_run(s, &opts))?);
    }
    let session = match (session, args.if_older) {
        (Ok(s), Some(max)) => {
            let tell = args.verbose || std::io::stderr().is_terminal();
            match crate::freshness::due(s, &opts.set, max, tell) {
                Ok(Some(s)) => Ok(s),
                Ok(None) => return Ok(ExitCode::SUCCESS),
                Err(e) => Err(e),
            }
        }
        (s, _) => s,
    };
    let outcome = session.and_then(|session| backup(session, &opts));
    let run = log_run(&settings, &target, &opts, &outcome, started);
    let result = outcome.and_then(|r| report(&args, &r).map(|code| (code, r)));
    crate::hooks::after_backup(&settings.profile, &run, &result);
    result.map(|(code, _)| code)
}

/// Appends the run to this machine's run log (what `offsnap status` reads).
fn log_run(
    settings: &Settings,
    target: &Target,
    opts: &BackupOptions,
    outcome: &Result<BackupReport>,
    started: std::time::Instant,
) -> runlog::Run {
    let profile = if settings.args.profile.is_some() || target.from_profile {
        settings.profile_name.clone()
    } else {
        None
    };
    let ok = outcome.as_ref().ok();
    let run = runlog::Run {
        time: jiff::Timestamp::now().to_string(),
        profile,
        dest: target.dest_text.clone(),
        set: opts.set.to_string(),
        ok: ok.is_some(),
        partial: ok.is_some_and(|r| r.is_partial()),
        snapshot: ok.and_then(|r| r.snapshot).map(|s| s.to_string()),
        files: ok.map_or(0, |r| r.tally.files),
        bytes: ok.map_or(0, |r| r.tally.content_bytes),
        seconds: started.elapsed().as_secs_f64(),
        error: outcome.as_ref().err().map(|e| e.to_string()),
    };
    // A run log that cannot be written must not fail the backup.
    let _ = runlog::append(&run);
    run
}

/// Prints what the run did and picks the exit status.
fn report(args: &BackupArgs, report: &BackupReport) -> Result<ExitCode> {
    for p in report.problems() {
        eprintln!("offsnap: {p}");
    }
    if report.stats.link_limit_copies > 0 {
        eprintln!(
            "offsnap: warning: {} file(s) stored as copies, not hard links: their stored inode is at the filesystem's hard-link limit",
            report.stats.link_limit_copies
        );
    }
    let snapshot = report.snapshot.map(|s| s.to_string()).unwrap_or_default();
    if let Some(line) = output::backup_resumed(report)
        && !args.quiet
    {
        eprintln!("{line}");
    }
    if args.json {
        println!("{}", output::backup_json(report));
    } else if !report.dry_run {
        println!("{snapshot}");
    }
    if args.stats {
        let out = output::backup_stats(report);
        if args.json {
            eprintln!("{out}");
        } else {
            println!("{out}");
        }
    } else if (args.verbose || report.dry_run || (std::io::stderr().is_terminal() && !args.quiet))
        && !args.json
    {
        eprintln!("{}", output::backup_summary(report));
    }
    let removed = output::removed(&report.pruned);
    if !removed.is_empty() && std::io::stderr().is_terminal() {
        eprintln!("pruned {} old snapshot(s)", removed.len());
    }
    if let Some(e) = &report.prune_error {
        eprintln!("offsnap: snapshot {snapshot} was made, but pruning failed: {e}");
        return Ok(ExitCode::FAILURE);
    }
    if report.is_partial() {
        let what = if report.dry_run {
            "the dry run".to_string()
        } else {
            format!("snapshot {snapshot}")
        };
        eprintln!(
            "offsnap: {what} is partial: {} item(s) could not be backed up",
            report.problems().len()
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
