//! The configuration file: named profiles (sources, destination, set,
//! excludes, retention, SSH settings), so that `offsnap backup` alone does
//! the right thing. `~/.config/offsnap/config.toml` (`$XDG_CONFIG_HOME`
//! respected; `--config FILE` overrides). Unknown keys and bad values are
//! errors naming the file, the line and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use offsnap_protocol::retention::PolicyArgs;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The profile used when none is named.
    pub default: Option<String>,
    /// Profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// What to back up (`~/` is the home directory).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Where to (a path, `host:path` or `ssh://…`).
    pub destination: Option<String>,
    /// The backup set [default: hostname].
    pub set: Option<String>,
    /// Exclude patterns (gitignore syntax).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Files of exclude patterns.
    #[serde(default)]
    pub exclude_from: Vec<String>,
    /// Stay on each source's filesystem.
    #[serde(default)]
    pub one_file_system: bool,
    /// Skip directories holding a `CACHEDIR.TAG` [default: true].
    pub cachedir_tag: Option<bool>,
    /// SSH key file.
    pub identity: Option<String>,
    /// SSH port.
    pub port: Option<u16>,
    /// Helper command on the backup host.
    pub remote_cmd: Option<String>,
    /// An external SSH client to reach the host with (`--ssh`).
    pub ssh: Option<String>,
    /// Let scheduled runs start on battery power too [default: false:
    /// the systemd unit has `ConditionACPower=true`].
    #[serde(default)]
    pub on_battery: bool,
    /// A shell command run after a backup that failed (or was partial),
    /// with the run as JSON on its stdin (see [`crate::hooks`]).
    pub on_failure: Option<String>,
    /// A shell command run after a backup that succeeded, likewise.
    pub on_success: Option<String>,
    /// What to keep (the `keep_*` rules; durations as text).
    pub retention: Option<PolicyArgs>,
}

/// The config file's default location.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))?;
    Some(base.join("offsnap").join("config.toml"))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// Expands a leading `~/` (or a lone `~`) to the home directory.
pub fn expand(p: &str) -> PathBuf {
    match (p, home()) {
        ("~", Some(h)) => h,
        (p, Some(h)) if p.starts_with("~/") => h.join(&p[2..]),
        (p, _) => PathBuf::from(p),
    }
}

/// Reads the config: `explicit` must exist; the default location may not
/// (then there are no profiles).
pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>)> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match default_path() {
            Some(p) if p.exists() => p,
            _ => return Ok((Config::default(), None)),
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let config = parse(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    Ok((config, Some(path)))
}

/// Parses config text; errors say where.
pub fn parse(text: &str) -> std::result::Result<Config, String> {
    let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    if let Some(d) = &config.default
        && !config.profiles.contains_key(d)
    {
        return Err(format!("default = {d:?} names no [profiles.{d}] table"));
    }
    for (name, p) in &config.profiles {
        if let Some(s) = &p.set {
            offsnap_protocol::SetName::new(s).map_err(|e| format!("[profiles.{name}] set: {e}"))?;
        }
    }
    Ok(config)
}

impl Config {
    /// The profile `name`, or the default one (`None` if there is none).
    pub fn profile(
        &self,
        name: Option<&str>,
        path: Option<&Path>,
    ) -> Result<Option<(String, Profile)>> {
        let shown = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the config file".into());
        match name {
            Some(n) => self
                .profiles
                .get(n)
                .map(|p| Some((n.to_string(), p.clone())))
                .ok_or_else(|| Error::Usage(format!("{shown} has no profile {n:?}"))),
            None => Ok(match &self.default {
                Some(d) => self.profiles.get(d).map(|p| (d.clone(), p.clone())),
                None if self.profiles.len() == 1 => self
                    .profiles
                    .iter()
                    .next()
                    .map(|(n, p)| (n.clone(), p.clone())),
                None => None,
            }),
        }
    }
}

/// A commented starter file for `offsnap init`.
pub fn starter(profile: &str, destination: &str, sources: &[String]) -> String {
    let sources = if sources.is_empty() {
        vec!["~/Documents".to_string()]
    } else {
        sources.to_vec()
    };
    let list = sources
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"# offsnap configuration. `offsnap backup` with no arguments backs up the
# default profile; `offsnap backup --profile NAME` another one. Flags on the
# command line override what is written here.

default = "{profile}"

[profiles.{profile}]
# What to back up (each source is stored under its own name).
sources = [{list}]
# Where: a directory, or user@host:/path over SSH.
destination = {destination:?}
# The backup set on the destination (default: this machine's hostname).
# set = "laptop"
# Leave out (gitignore syntax; a .offsnapignore file in any directory works too).
exclude = ["*.tmp", "**/node_modules", ".cache/"]
# exclude_from = ["~/.config/offsnap/excludes"]
# one_file_system = false
# cachedir_tag = true      # skip directories holding a CACHEDIR.TAG
# SSH settings (~/.ssh/config is read too).
# identity = "~/.ssh/id_ed25519"
# port = 22
# remote_cmd = "offsnap-remote"
# ssh = "ssh"              # the system's ssh instead of the built-in client
# Scheduled runs (offsnap schedule install) wait for mains power unless:
# on_battery = true
# Commands run after each backup, with the run as JSON on stdin and
# OFFSNAP_STATUS (success, partial or failure), OFFSNAP_PROFILE,
# OFFSNAP_SNAPSHOT and OFFSNAP_ERROR in the environment:
# on_failure = "notify-send 'offsnap backup failed' \"$OFFSNAP_ERROR\""
# on_failure = "mail -s 'offsnap backup failed' me@example.org"
# on_success = "curl -fsS -m 10 --retry 3 https://hc-ping.com/YOUR-UUID"

[profiles.{profile}.retention]
# Keep every snapshot of the last 30 days...
keep_within = "30d"
# ...then one a month for a year.
# keep_monthly = 12
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_parses() -> std::result::Result<(), String> {
        let c = parse(&starter("laptop", "/mnt/usb/backups", &[]))?;
        let p = &c.profiles["laptop"];
        assert_eq!(p.destination.as_deref(), Some("/mnt/usb/backups"));
        assert_eq!(
            p.retention.as_ref().map(|r| r.policy()),
            Some(offsnap_protocol::Policy::thirty_days())
        );
        Ok(())
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = parse("default = \"a\"\n[profiles.a]\nsources = []\nfrobnicate = 1\n")
            .expect_err("must fail");
        assert!(e.contains("line 4") && e.contains("frobnicate"), "{e}");
        let e = parse("[profiles.a]\n\n[profiles.a.retention]\nkeep_within = \"soon\"\n")
            .expect_err("must fail");
        assert!(e.contains("line 4") && e.contains("soon"), "{e}");
        let e = parse("[profiles.a]\nport = \"ssh\"\n").expect_err("must fail");
        assert!(e.contains("line 2") && e.contains("port"), "{e}");
        let e = parse("default = \"b\"\n[profiles.a]\n").expect_err("must fail");
        assert!(e.contains("no [profiles.b]"), "{e}");
        let e = parse("[profiles.a]\nset = \"../x\"\n").expect_err("must fail");
        assert!(e.contains("set"), "{e}");
    }
}
