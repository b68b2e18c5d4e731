//! `offsnap schedule`: back a profile up by itself, with a systemd user
//! timer, a launchd agent on macOS, or a crontab line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::cli::ProfileArgs;
use crate::error::{Error, Result};
use crate::schedule as sch;
use crate::settings::Settings;

/// What `offsnap schedule` does.
// Flattened option groups are documented where they are defined.
#[allow(missing_docs)]
#[derive(Subcommand)]
pub enum ScheduleAction {
    /// Install a timer that backs the profile up every so often.
    Install {
        #[command(flatten)]
        profile: ProfileArgs,
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
        profile: ProfileArgs,
    },
    /// Remove the timer.
    Remove {
        #[command(flatten)]
        profile: ProfileArgs,
    },
}

/// Runs `offsnap schedule …`.
pub fn run(action: ScheduleAction) -> Result<ExitCode> {
    match action {
        ScheduleAction::Install {
            profile,
            every,
            dry_run,
        } => install(&Settings::load(&profile)?, &every, dry_run),
        ScheduleAction::Status { profile } => status(&Settings::load(&profile)?),
        ScheduleAction::Remove { profile } => remove(&Settings::load(&profile)?),
    }
}

fn profile_name(settings: &Settings) -> Result<String> {
    settings.require_profile(
        "schedule needs a profile with sources and a destination: write one with offsnap init",
    )
}

fn no_home() -> Error {
    Error::Environment("HOME is not set".into())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

fn install(settings: &Settings, every: &str, dry_run: bool) -> Result<ExitCode> {
    let name = profile_name(settings)?;
    let every = sch::parse_every(every)?;
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| Error::io("the offsnap executable", e))?;
    let config = settings.config_path()?;
    let state = crate::runlog::path().ok_or_else(no_home)?;
    let (service, timer) = sch::unit_names(&name);
    let service_text = sch::service_text(&exe, &name, config.as_deref());
    let timer_text = sch::timer_text(&name, every);
    let dir = sch::units_dir().ok_or_else(no_home)?;
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
    create_dir(&state)?;
    if std::env::consts::OS == "macos" {
        let home = std::env::var_os("HOME").ok_or_else(no_home)?;
        let agents = PathBuf::from(home).join("Library/LaunchAgents");
        create_dir(&agents)?;
        let path = agents.join(format!("{}.plist", sch::launchd_label(&name)));
        write(&path, &plist)?;
        println!("{}", path.display());
        eprintln!("offsnap: load it with: launchctl load {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if !sch::systemd_user() {
        println!("{cron}");
        eprintln!("offsnap: no systemd user manager here; add the line above with `crontab -e`");
        return Ok(ExitCode::SUCCESS);
    }
    create_dir(&dir)?;
    write(&dir.join(&service), &service_text)?;
    write(&dir.join(&timer), &timer_text)?;
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

fn status(settings: &Settings) -> Result<ExitCode> {
    let name = profile_name(settings)?;
    let (_, timer) = sch::unit_names(&name);
    let dir = sch::units_dir().ok_or_else(no_home)?;
    if !dir.join(&timer).exists() {
        println!("no timer installed for profile {name}");
        return Ok(ExitCode::FAILURE);
    }
    println!("{}", dir.join(&timer).display());
    if sch::systemd_user() {
        // What systemd says is shown as it is; its absence changes nothing.
        let _ = std::process::Command::new("systemctl")
            .args(["--user", "list-timers", &timer])
            .status();
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(settings: &Settings) -> Result<ExitCode> {
    let name = profile_name(settings)?;
    let (service, timer) = sch::unit_names(&name);
    let dir = sch::units_dir().ok_or_else(no_home)?;
    if sch::systemd_user() {
        // A timer that is not enabled cannot be disabled: not an error here.
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
