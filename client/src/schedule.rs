//! Running backups by themselves: a systemd user service and timer, a
//! launchd agent on macOS, or, without either, a crontab line to add by
//! hand. For an interval over an hour all three fire hourly and run
//! `backup --if-older`, so a laptop that slept or was off catches up
//! within the hour after it wakes.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// Every N minutes (N divides 60).
    Minutes(u32),
    /// Every N hours (N divides 24).
    Hours(u32),
    /// Once a day.
    Daily,
    /// Once a week.
    Weekly,
}

/// Parses `15m`, `1h`, `6h`, `1d`, `1w`.
pub fn parse_every(s: &str) -> Result<Every> {
    let bad = || {
        Error::Usage(format!(
            "--every {s:?}: use minutes dividing 60 (15m), hours dividing 24 (1h, 6h), 1d or 1w"
        ))
    };
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u32 = num.parse().map_err(|_| bad())?;
    match (unit, n) {
        ("m", n) if n > 0 && 60 % n == 0 => Ok(Every::Minutes(n)),
        ("h", n) if n > 0 && 24 % n == 0 => Ok(Every::Hours(n)),
        ("d", 1) => Ok(Every::Daily),
        ("w", 1) => Ok(Every::Weekly),
        _ => Err(bad()),
    }
}

impl Every {
    /// systemd's `OnCalendar=`.
    pub fn on_calendar(self) -> String {
        match self {
            Every::Minutes(m) => format!("*:0/{m}"),
            Every::Hours(h) => format!("*-*-* 0/{h}:00:00"),
            Every::Daily => "daily".into(),
            Every::Weekly => "weekly".into(),
        }
    }

    /// cron's schedule fields.
    pub fn cron(self) -> String {
        match self {
            Every::Minutes(m) => format!("*/{m} * * * *"),
            Every::Hours(1) => "0 * * * *".into(),
            Every::Hours(h) => format!("0 */{h} * * *"),
            Every::Daily => "@daily".into(),
            Every::Weekly => "@weekly".into(),
        }
    }
}

/// The unit names for a profile.
pub fn unit_names(profile: &str) -> (String, String) {
    (
        format!("offsnap-{profile}.service"),
        format!("offsnap-{profile}.timer"),
    )
}

/// Where user units live: `$XDG_CONFIG_HOME/systemd/user`.
pub fn units_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|c| c.join("systemd").join("user"))
}

/// What a schedule runs: the profile, how, and what the unit must carry.
#[derive(Debug, Clone)]
pub struct Job {
    /// The `offsnap` executable.
    pub exe: PathBuf,
    /// The profile backed up.
    pub profile: String,
    /// The config file named on the command line, if any.
    pub config: Option<PathBuf>,
    /// How often.
    pub every: Every,
    /// Whether runs may start on battery (else `ConditionACPower=true`).
    pub on_battery: bool,
    /// The ssh-agent socket to hand the service (`%t/…` for one under the
    /// user's runtime directory), if there is one.
    pub agent: Option<String>,
    /// The profile's hooks, shown as comments in the unit: (key, command).
    pub hooks: Vec<(&'static str, String)>,
}

impl Every {
    /// The `--if-older` age a check runs the backup with, for an interval
    /// over an hour: every scheduler (systemd timer, cron, launchd) then
    /// fires hourly and backs up once the newest snapshot is an hour short
    /// of the interval old, so a run is never more than the hour late and
    /// a run missed while the machine was off or asleep is made at the
    /// first check after it wakes. `None`: an hour or less, run at the
    /// interval itself.
    pub fn if_older(self) -> Option<&'static str> {
        match self {
            Every::Minutes(_) | Every::Hours(1) => None,
            Every::Hours(2) => Some("1h"),
            Every::Hours(3) => Some("2h"),
            Every::Hours(4) => Some("3h"),
            Every::Hours(6) => Some("5h"),
            Every::Hours(8) => Some("7h"),
            Every::Hours(12) => Some("11h"),
            Every::Hours(_) | Every::Daily => Some("23h"),
            Every::Weekly => Some("6d23h"),
        }
    }

    /// How often a crontab line fires, and the `--if-older` age it runs
    /// with (see [`Every::if_older`]).
    pub fn cron_check(self) -> (String, Option<&'static str>) {
        match self.if_older() {
            None => (self.cron(), None),
            age => ("0 * * * *".into(), age),
        }
    }

    /// The timer's `OnCalendar=`: hourly checks for an interval over an
    /// hour (see [`Every::if_older`]), else the interval itself.
    pub fn timer_calendar(self) -> String {
        match self.if_older() {
            None => self.on_calendar(),
            Some(_) => "hourly".into(),
        }
    }

    /// launchd's `StartInterval` in seconds: an hour for an interval over
    /// an hour (see [`Every::if_older`]), else the interval itself.
    pub fn start_interval(self) -> u32 {
        match (self.if_older(), self) {
            (Some(_), _) => 3600,
            (None, Every::Minutes(m)) => m * 60,
            (None, Every::Hours(h)) => h * 3600,
            (None, Every::Daily) => 86_400,
            (None, Every::Weekly) => 7 * 86_400,
        }
    }

    /// The interval in words, for descriptions and messages.
    pub fn words(self) -> String {
        match self {
            Every::Minutes(m) => format!("every {m} minutes"),
            Every::Hours(1) => "hourly".into(),
            Every::Hours(h) => format!("every {h} hours"),
            Every::Daily => "daily".into(),
            Every::Weekly => "weekly".into(),
        }
    }
}

impl Job {
    /// The scheduled command, word by word.
    fn words(&self, if_older: Option<&str>) -> Vec<String> {
        let mut words = vec![self.exe.display().to_string(), "backup".into()];
        if let Some(c) = &self.config {
            words.push("--config".into());
            words.push(c.display().to_string());
        }
        words.push("--profile".into());
        words.push(self.profile.clone());
        if let Some(age) = if_older {
            words.push("--if-older".into());
            words.push(age.into());
        }
        words
    }

    /// The scheduled command line, with the interval's `--if-older`.
    fn command(&self) -> String {
        shell_words::join(self.words(self.every.if_older()))
    }

    /// The unit names.
    pub fn unit_names(&self) -> (String, String) {
        unit_names(&self.profile)
    }

    /// The service unit: one backup of the profile, its output appended
    /// to `$XDG_STATE_HOME/offsnap/PROFILE.log`; on mains power only
    /// unless the profile allows battery; the agent socket passed on.
    pub fn service_text(&self) -> String {
        let profile = &self.profile;
        let power = if self.on_battery {
            "# on_battery = true in the profile: runs on battery power too\n".to_string()
        } else {
            "# on mains power only (set on_battery = true in the profile to change it)\n\
             ConditionACPower=true\n"
                .to_string()
        };
        let agent = match &self.agent {
            Some(sock) => format!("Environment=SSH_AUTH_SOCK={}\n", unit_value(sock)),
            None => String::new(),
        };
        let hooks: String = self
            .hooks
            .iter()
            .map(|(key, cmd)| {
                format!(
                    "# after each run offsnap runs the profile's {key} command: {}\n",
                    cmd.replace(['\n', '\r'], " ")
                )
            })
            .collect();
        format!(
            "[Unit]\nDescription=offsnap backup (profile {profile})\nAfter=network-online.target\n\
             {power}\n\
             [Service]\nType=oneshot\nExecStart={}\n{agent}{hooks}\
             StandardOutput=append:%S/offsnap/{profile}.log\n\
             StandardError=append:%S/offsnap/{profile}.log\nNice=10\nIOSchedulingClass=idle\n",
            self.command()
        )
    }

    /// The timer unit.
    pub fn timer_text(&self) -> String {
        timer_text(&self.profile, self.every)
    }

    /// A crontab line for systems without systemd: checks often (see
    /// [`Every::cron_check`]), with the agent socket if there is one.
    pub fn crontab_line(&self, log: &Path, runtime: Option<&Path>) -> String {
        let (when, if_older) = self.every.cron_check();
        let agent = self
            .agent
            .as_deref()
            .and_then(|a| match a.strip_prefix("%t/") {
                Some(rel) => runtime.map(|r| r.join(rel).display().to_string()),
                None => Some(a.to_string()),
            })
            .map(|a| format!("SSH_AUTH_SOCK={} ", shell_words::quote(&a)))
            .unwrap_or_default();
        format!(
            "{when} {agent}{} >> {} 2>&1",
            shell_words::join(self.words(if_older)),
            shell_words::quote(&log.display().to_string())
        )
    }

    /// A launchd agent for macOS (`~/Library/LaunchAgents/LABEL.plist`),
    /// checking as the timer does.
    pub fn launchd_plist(&self, log: &Path) -> String {
        launchd_plist(
            &self.words(self.every.if_older()),
            &self.profile,
            self.every.start_interval(),
            log,
        )
    }
}

/// `%` is systemd's specifier sign: a literal one is doubled (a `%t/`
/// prefix, the runtime directory, is kept as the specifier it is).
fn unit_value(s: &str) -> String {
    match s.strip_prefix("%t/") {
        Some(rest) => format!("%t/{}", rest.replace('%', "%%")),
        None => s.replace('%', "%%"),
    }
}

/// The timer unit: fires at the interval, or hourly with the service's
/// `--if-older` deciding (see [`Every::if_older`]); `Persistent=true`
/// fires once on wake or boot for a time passed meanwhile.
pub fn timer_text(profile: &str, every: Every) -> String {
    let checked = if every.if_older().is_some() {
        ", checked hourly"
    } else {
        ""
    };
    format!(
        "[Unit]\nDescription=offsnap backup (profile {profile}), {}{checked}\n\n\
         [Timer]\nOnCalendar={}\nPersistent=true\nRandomizedDelaySec=60\n\n\
         [Install]\nWantedBy=timers.target\n",
        every.words(),
        every.timer_calendar()
    )
}

/// A launchd agent for macOS running `args` every `seconds`.
fn launchd_plist(args: &[String], profile: &str, seconds: u32, log: &Path) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let args: String = args
        .iter()
        .map(|a| format!("    <string>{}</string>\n", esc(a)))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n<dict>\n  <key>Label</key>\n  <string>{}</string>\n\
         <key>ProgramArguments</key>\n  <array>\n{args}  </array>\n\
         <key>StartInterval</key>\n  <integer>{seconds}</integer>\n\
         <key>StandardOutPath</key>\n  <string>{log}</string>\n\
         <key>StandardErrorPath</key>\n  <string>{log}</string>\n</dict>\n</plist>\n",
        launchd_label(profile),
        log = esc(&log.display().to_string()),
    )
}

/// The ssh-agent socket scheduled runs can use: `SSH_AUTH_SOCK` if it
/// names a socket (as `%t/…` when under the runtime directory, which
/// outlives a login), else a well-known socket in the runtime directory
/// (systemd's `ssh-agent.socket`, GNOME's keyring or gcr). The bool says
/// whether the socket is stable (under the runtime directory).
pub fn agent_socket(auth_sock: Option<&Path>, runtime: Option<&Path>) -> Option<(String, bool)> {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket());
    if let Some(sock) = auth_sock.filter(|s| is_socket(s)) {
        if let Some(rel) = runtime.and_then(|r| sock.strip_prefix(r).ok()) {
            return Some((format!("%t/{}", rel.display()), true));
        }
        return Some((sock.display().to_string(), false));
    }
    let runtime = runtime?;
    [
        "ssh-agent.socket",
        "gcr/ssh",
        "keyring/ssh",
        "openssh_agent",
    ]
    .iter()
    .find(|rel| is_socket(&runtime.join(rel)))
    .map(|rel| (format!("%t/{rel}"), true))
}

/// The launchd label for a profile.
pub fn launchd_label(profile: &str) -> String {
    format!("org.offsnap.{profile}")
}

/// Whether a systemd user manager answers.
pub fn systemd_user() -> bool {
    std::process::Command::new("systemctl")
        .args(["--user", "show-environment"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `systemctl --user ARGS`, returning its error output on failure.
pub fn systemctl(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("systemctl")
        .arg("--user")
        .args(args)
        .output()
        .map_err(|e| Error::Environment(format!("systemctl: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Environment(format!(
            "systemctl --user {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parses() -> Result<()> {
        assert_eq!(parse_every("15m")?, Every::Minutes(15));
        assert_eq!(parse_every("6h")?.on_calendar(), "*-*-* 0/6:00:00");
        assert_eq!(parse_every("1d")?.cron(), "@daily");
        for bad in ["7m", "5h", "2d", "h", "", "1x"] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    fn job(every: Every) -> Job {
        Job {
            exe: PathBuf::from("/usr/bin/offsnap"),
            profile: "home".into(),
            config: None,
            every,
            on_battery: false,
            agent: None,
            hooks: Vec::new(),
        }
    }

    #[test]
    fn intervals_over_an_hour_are_checked_hourly_by_every_scheduler() {
        let log = Path::new("/l");
        for (every, age) in [
            (Every::Daily, "23h"),
            (Every::Hours(6), "5h"),
            (Every::Weekly, "6d23h"),
        ] {
            let j = job(every);
            let exec =
                format!("\nExecStart=/usr/bin/offsnap backup --profile home --if-older {age}\n");
            assert!(j.service_text().contains(&exec), "{}", j.service_text());
            let timer = j.timer_text();
            assert!(
                timer.contains("\nOnCalendar=hourly\nPersistent=true\n")
                    && timer.contains("checked hourly"),
                "{timer}"
            );
            let plist = j.launchd_plist(log);
            assert!(
                plist.contains("<key>StartInterval</key>\n  <integer>3600</integer>")
                    && plist.contains(&format!(
                        "<string>--if-older</string>\n    <string>{age}</string>"
                    )),
                "{plist}"
            );
            assert!(j.crontab_line(log, None).starts_with("0 * * * * "));
        }
    }

    #[test]
    fn an_hour_or_less_runs_at_the_interval_itself() {
        let log = Path::new("/l");
        for (every, calendar, seconds) in [
            (Every::Minutes(15), "*:0/15", 900),
            (Every::Hours(1), "*-*-* 0/1:00:00", 3600),
        ] {
            let j = job(every);
            assert!(!j.service_text().contains("--if-older"));
            assert!(
                j.timer_text()
                    .contains(&format!("\nOnCalendar={calendar}\nPersistent=true\n")),
                "{}",
                j.timer_text()
            );
            let plist = j.launchd_plist(log);
            assert!(
                plist.contains(&format!("<integer>{seconds}</integer>"))
                    && !plist.contains("--if-older"),
                "{plist}"
            );
            assert!(!j.crontab_line(log, None).contains("--if-older"));
        }
    }
}
