//! `offsnap schedule`: back a profile up by itself, with a systemd user
//! timer, a launchd agent on macOS, or a crontab line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::cli::{ConfigArgs, ConnectArgs};
use crate::dest::{Dest, ssh_target};
use crate::error::{Error, Result};
use crate::schedule as sch;
use crate::settings::Settings;
use crate::ssh::auth;

/// What `offsnap schedule` does.
// Flattened option groups are documented where they are defined.
#[allow(missing_docs)]
#[derive(Subcommand)]
pub enum ScheduleAction {
    /// Install a timer that backs the profile up every so often.
    ///
    /// The systemd unit runs on mains power only unless the profile sets
    /// `on_battery = true`, and is given the ssh-agent socket when there
    /// is one at a fixed place; the crontab line checks hourly and backs up
    /// once the newest snapshot is nearly the interval old.
    #[command(after_long_help = "Examples:
  offsnap schedule install --dry-run              print the units and crontab line only
  offsnap schedule install --every 1d --profile nas
  offsnap schedule install --every 15m")]
    Install {
        #[command(flatten)]
        profile: ConfigArgs,
        /// How often: 15m, 30m, 1h, 6h, 1d, 1w
        #[arg(long, value_name = "INTERVAL", default_value = "1h")]
        every: String,
        /// Print the unit files (or crontab line) instead of installing
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the installed timer.
    #[command(after_long_help = "Examples:
  offsnap schedule status
  offsnap schedule status --profile nas")]
    Status {
        #[command(flatten)]
        profile: ConfigArgs,
    },
    /// Remove the timer.
    #[command(after_long_help = "Examples:
  offsnap schedule remove
  offsnap schedule remove --profile nas")]
    Remove {
        #[command(flatten)]
        profile: ConfigArgs,
    },
}

/// Runs `offsnap schedule …`.
pub fn run(action: ScheduleAction) -> Result<ExitCode> {
    match action {
        ScheduleAction::Install {
            profile,
            every,
            dry_run,
        } => install(&Settings::load(&(&profile).into())?, &every, dry_run),
        ScheduleAction::Status { profile } => status(&Settings::load(&(&profile).into())?),
        ScheduleAction::Remove { profile } => remove(&Settings::load(&(&profile).into())?),
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

/// The job the profile in `settings` schedules.
fn job(settings: &Settings, every: sch::Every) -> Result<(sch::Job, Option<AgentNote>)> {
    let name = profile_name(settings)?;
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| Error::io("the offsnap executable", e))?;
    let profile = &settings.profile;
    let hooks = [
        ("on_failure", &profile.on_failure),
        ("on_success", &profile.on_success),
    ]
    .into_iter()
    .filter_map(|(k, c)| c.clone().map(|c| (k, c)))
    .collect();
    let (agent, note) = agent(settings)?;
    let job = sch::Job {
        exe,
        profile: name,
        config: settings.config_path()?,
        every,
        on_battery: profile.on_battery,
        agent,
        hooks,
    };
    Ok((job, note))
}

/// What `schedule install` must tell about logging in without a person.
enum AgentNote {
    /// The agent's socket changes with each login.
    Unstable(String),
    /// No agent, and no key file that opens without a passphrase.
    Missing(String),
}

fn runtime_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The agent socket for the service, and what to tell about it.
fn agent(settings: &Settings) -> Result<(Option<String>, Option<AgentNote>)> {
    let auth_sock = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from);
    let found = sch::agent_socket(auth_sock.as_deref(), runtime_dir().as_deref());
    let Dest::Ssh(d) = settings.dest(None)? else {
        return Ok((None, None));
    };
    let opts = settings.connect_options(&ConnectArgs::default())?;
    match found {
        Some((sock, true)) => Ok((Some(sock), None)),
        Some((sock, false)) => Ok((Some(sock.clone()), Some(AgentNote::Unstable(sock)))),
        None if opts.ssh.is_some() => Ok((None, None)),
        None => {
            // A host the config cannot resolve fails at the first run, with
            // its own message; here it only means no key file to check.
            let keys = ssh_target(&d, &opts)
                .map(|t| t.identity_files)
                .unwrap_or_default();
            let existing: Vec<&PathBuf> = keys.iter().filter(|k| k.exists()).collect();
            if existing.iter().any(|k| auth::opens_without_passphrase(k)) {
                return Ok((None, None));
            }
            let what = match existing.first() {
                Some(k) => format!("the key {} needs a passphrase", k.display()),
                None => "there is no key file to log in with".into(),
            };
            Ok((None, Some(AgentNote::Missing(what))))
        }
    }
}

fn tell(note: &AgentNote) {
    match note {
        AgentNote::Unstable(sock) => eprintln!(
            "offsnap: warning: the ssh-agent socket {sock} changes with each login, so scheduled runs \
             will not find it after the next one; a per-user agent at a fixed place works for every \
             run (systemctl --user enable --now ssh-agent.socket, or your desktop's keyring), then \
             install again"
        ),
        AgentNote::Missing(what) => eprintln!(
            "offsnap: warning: {what}, and no ssh-agent will be there for scheduled runs: they would \
             fail to log in. Start a per-user agent (systemctl --user enable --now ssh-agent.socket, \
             or your desktop's keyring), add the key to it with ssh-add, and install again; or give \
             the profile a key without a passphrase for backups (identity = \"~/.ssh/offsnap\")"
        ),
    }
}

fn install(settings: &Settings, every: &str, dry_run: bool) -> Result<ExitCode> {
    let every = sch::parse_every(every)?;
    let (job, note) = job(settings, every)?;
    let name = job.profile.clone();
    let state = crate::runlog::path().ok_or_else(no_home)?;
    let (service, timer) = job.unit_names();
    let service_text = job.service_text();
    let timer_text = job.timer_text();
    let dir = sch::units_dir().ok_or_else(no_home)?;
    let log = state.join(format!("{name}.log"));
    let cron = job.crontab_line(&log, runtime_dir().as_deref());
    let plist = job.launchd_plist(&log);
    if let Some(n) = &note {
        tell(n);
    }
    if dry_run {
        println!(
            "# {}\n{service_text}\n# {}\n{timer_text}",
            dir.join(&service).display(),
            dir.join(&timer).display()
        );
        println!("# without systemd, this crontab line does the same (hourly checks catch up):");
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
    let checks = if every.if_older().is_some() {
        " (checked hourly, so a missed run is made within the hour after wake)"
    } else {
        ""
    };
    eprintln!(
        "backs up {}{checks}; see the runs with: systemctl --user list-timers; offsnap status",
        every.words()
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
