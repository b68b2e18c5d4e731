//! Running backups by themselves: a systemd user service and timer
//! (`Persistent=true`, so a laptop that slept catches up), or, without
//! systemd, a crontab line to add by hand.

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
    /// How often a crontab line checks, and the `--if-older` age that
    /// makes it back up once per interval: an interval over an hour is
    /// checked hourly and backs up once its newest snapshot is an hour
    /// short of the interval old (cron fires on the hour, so a run is
    /// never more than the hour late, and missed runs are caught up at
    /// the next check). Shorter intervals just run at their own times.
    pub fn cron_check(self) -> (String, Option<&'static str>) {
        match self {
            Every::Minutes(_) | Every::Hours(1) => (self.cron(), None),
            Every::Hours(2) => ("0 * * * *".into(), Some("1h")),
            Every::Hours(3) => ("0 * * * *".into(), Some("2h")),
            Every::Hours(4) => ("0 * * * *".into(), Some("3h")),
            Every::Hours(6) => ("0 * * * *".into(), Some("5h")),
            Every::Hours(8) => ("0 * * * *".into(), Some("7h")),
            Every::Hours(12) => ("0 * * * *".into(), Some("11h")),
            Every::Hours(_) | Every::Daily => ("0 * * * *".into(), Some("23h")),
            Every::Weekly => ("0 * * * *".into(), Some("6d23h")),
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

    fn command(&self) -> String {
        shell_words::join(self.words(None))
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

    /// A launchd agent for macOS (`~/Library/LaunchAgents/LABEL.plist`).
    pub fn launchd_plist(&self, log: &Path) -> String {
        launchd_plist(&self.words(None), &self.profile, self.every, log)
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

/// The timer unit.
pub fn timer_text(profile: &str, every: Every) -> String {
    format!(
        "[Unit]\nDescription=offsnap backup (profile {profile}), {}\n\n\
         [Timer]\nOnCalendar={}\nPersistent=true\nRandomizedDelaySec=60\n\n\
         [Install]\nWantedBy=timers.target\n",
        every.on_calendar(),
        every.on_calendar()
    )
}

/// A launchd agent for macOS running `args`.
fn launchd_plist(args: &[String], profile: &str, every: Every, log: &Path) -> String {
    let seconds = match every {
        Every::Minutes(m) => m * 60,
        Every::Hours(h) => h * 3600,
        Every::Daily => 86_400,
        Every::Weekly => 7 * 86_400,
    };
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
}
