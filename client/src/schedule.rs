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

/// The scheduled command, word by word.
fn words(exe: &Path, profile: &str, config: Option<&Path>) -> Vec<String> {
    let mut words = vec![exe.display().to_string(), "backup".into()];
    if let Some(c) = config {
        words.push("--config".into());
        words.push(c.display().to_string());
    }
    words.push("--profile".into());
    words.push(profile.into());
    words
}

fn command(exe: &Path, profile: &str, config: Option<&Path>) -> String {
    shell_words::join(words(exe, profile, config))
}

/// The service unit: one backup of the profile, its output appended to
/// `$XDG_STATE_HOME/offsnap/PROFILE.log`.
pub fn service_text(exe: &Path, profile: &str, config: Option<&Path>) -> String {
    format!(
        "[Unit]\nDescription=offsnap backup (profile {profile})\nAfter=network-online.target\n\n\
         [Service]\nType=oneshot\nExecStart={}\nStandardOutput=append:%S/offsnap/{profile}.log\n\
         StandardError=append:%S/offsnap/{profile}.log\nNice=10\nIOSchedulingClass=idle\n",
        command(exe, profile, config)
    )
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

/// A crontab line for systems without systemd.
pub fn crontab_line(
    exe: &Path,
    profile: &str,
    config: Option<&Path>,
    every: Every,
    log: &Path,
) -> String {
    format!(
        "{} {} >> {} 2>&1",
        every.cron(),
        command(exe, profile, config),
        shell_words::quote(&log.display().to_string())
    )
}

/// A launchd agent for macOS (`~/Library/LaunchAgents/LABEL.plist`).
pub fn launchd_plist(
    exe: &Path,
    profile: &str,
    config: Option<&Path>,
    every: Every,
    log: &Path,
) -> String {
    let seconds = match every {
        Every::Minutes(m) => m * 60,
        Every::Hours(h) => h * 3600,
        Every::Daily => 86_400,
        Every::Weekly => 7 * 86_400,
    };
    let args = words(exe, profile, config);
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
        .map_err(|e| Error::Transport(format!("systemctl: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Transport(format!(
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
