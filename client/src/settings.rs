//! The command line and the config file's profile merged, once: which
//! profile is in effect, the destination, the set, how to connect, the
//! retention policy, and which snapshot a command means.
//!
//! A value on the command line wins over the profile's; the profile's wins
//! over the built-in default.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use offsnap_protocol::retention::PolicyArgs;
use offsnap_protocol::{Policy, RelPath, SetName};

use crate::cli::{ConnectArgs, ProfileArgs};
use crate::config::{self, Profile};
use crate::dest::{ConnectOptions, Dest, connect};
use crate::error::{Error, Result};
use crate::restore::Which;
use crate::session::Session;

/// The profile in effect and the set, resolved from [`ProfileArgs`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The command line's profile options.
    pub args: ProfileArgs,
    /// The profile's name, when one is in effect.
    pub profile_name: Option<String>,
    /// The profile in effect (empty when none).
    pub profile: Profile,
}

impl Settings {
    /// Reads the config file (if any) and picks the profile.
    pub fn load(args: &ProfileArgs) -> Result<Settings> {
        let (config, path) = config::load(args.config.as_deref())?;
        let named = config.profile(args.profile.as_deref(), path.as_deref())?;
        let (profile_name, profile) = match named {
            Some((n, p)) => (Some(n), p),
            None => (None, Profile::default()),
        };
        Ok(Settings {
            args: args.clone(),
            profile_name,
            profile,
        })
    }

    /// DEST as given, or the profile's destination.
    pub fn dest(&self, given: Option<&str>) -> Result<Dest> {
        match given.map(str::to_string).or(self.profile.destination.clone()) {
            Some(d) => Dest::parse(&d),
            None => Err(Error::Usage(
                "no destination: name one, or set `destination` in a profile of the config file (see offsnap init)"
                    .into(),
            )),
        }
    }

    /// Splits a command's words `[DEST] REST...` where DEST may come from
    /// the profile: `fixed` words after DEST are required and at most
    /// `optional` more may follow (`None`: any number). Without a profile
    /// destination the first word is DEST. With one, the first word is
    /// DEST when there are more words than the rest can take, or when it
    /// reads as a destination: `host:path`, `ssh://…`, or a directory on
    /// this machine that holds this set's backups. Otherwise every word is
    /// the rest and the profile's destination is used.
    pub fn dest_and_rest<'a>(
        &self,
        words: &'a [OsString],
        fixed: usize,
        optional: Option<usize>,
    ) -> Result<(Dest, &'a [OsString])> {
        let first_is_dest = match (&self.profile.destination, words.first()) {
            (_, None) => false,
            // Without one to fall back on, DEST is the first word, unless
            // the words are only the rest: then the destination is missing.
            (None, Some(_)) => words.len() > fixed,
            (Some(_), Some(first)) => {
                optional.is_some_and(|o| words.len() > fixed + o)
                    || (words.len() > fixed && self.reads_as_dest(first))
            }
        };
        if !first_is_dest {
            return Ok((self.dest(None)?, words));
        }
        let first = words[0]
            .to_str()
            .ok_or_else(|| Error::Usage(format!("the destination {:?} is not UTF-8", words[0])))?;
        Ok((self.dest(Some(first))?, &words[1..]))
    }

    /// Whether `word` names a destination rather than a path inside a
    /// snapshot (see [`Settings::dest_and_rest`]).
    fn reads_as_dest(&self, word: &OsStr) -> bool {
        let Some(s) = word.to_str() else {
            return false;
        };
        match Dest::parse(s) {
            Ok(Dest::Ssh(_)) => true,
            Ok(Dest::Local(dir)) => self
                .set()
                .is_ok_and(|set| dir.join(set.as_str()).join(".offsnap").is_dir()),
            Err(_) => false,
        }
    }

    /// The set name: as given, the profile's, or this machine's hostname
    /// made valid.
    pub fn set(&self) -> Result<SetName> {
        if let Some(s) = self.args.set.as_ref().or(self.profile.set.as_ref()) {
            return SetName::new(s).map_err(|e| Error::Usage(e.to_string()));
        }
        let host = hostname::get().map_err(|e| {
            Error::Environment(format!(
                "cannot read this machine's hostname ({e}); name the set with --set"
            ))
        })?;
        SetName::new(&set_from_hostname(&host.to_string_lossy()))
            .map_err(|e| Error::Usage(format!("{e}; name the set with --set")))
    }

    /// How to reach the helper: the command line's options over the
    /// profile's.
    pub fn connect_options(&self, args: &ConnectArgs) -> Result<ConnectOptions> {
        let remote_cmd = match args
            .remote_cmd
            .as_ref()
            .or(self.profile.remote_cmd.as_ref())
        {
            Some(cmd) => {
                let words = shell_words::split(cmd)
                    .map_err(|e| Error::Usage(format!("--remote-cmd {cmd:?}: {e}")))?;
                if words.is_empty() {
                    return Err(Error::Usage("--remote-cmd is empty".into()));
                }
                Some(words)
            }
            None => None,
        };
        Ok(ConnectOptions {
            remote_cmd,
            port: args.port.or(self.profile.port),
            identity: args.identity.clone().or(self
                .profile
                .identity
                .as_deref()
                .map(config::expand)),
            accept_new_host_key: args.accept_new_host_key,
            bwlimit: args.bwlimit,
            jump: args.jump.clone(),
            ssh: ssh_client(args.ssh.as_deref(), self.profile.ssh.as_deref())?,
        })
    }

    /// Connects to the destination `given` (or the profile's).
    pub fn connect(&self, given: Option<&str>, args: &ConnectArgs) -> Result<(Session, SetName)> {
        self.connect_to(&self.dest(given)?, args)
    }

    /// Connects to `dest`; returns the session and the set.
    pub fn connect_to(&self, dest: &Dest, args: &ConnectArgs) -> Result<(Session, SetName)> {
        let set = self.set()?;
        let session = connect(dest, &self.connect_options(args)?)?;
        Ok((session, set))
    }

    /// The retention policy: the command line's rules, else the profile's,
    /// else 30 days.
    pub fn retention(&self, given: &PolicyArgs) -> Policy {
        if given.given() {
            given.policy()
        } else {
            self.profile
                .retention
                .as_ref()
                .map(|r| r.policy())
                .unwrap_or_else(Policy::thirty_days)
        }
    }

    /// The profile's name if one is in effect, for messages that need one.
    pub fn require_profile(&self, why: &str) -> Result<String> {
        self.profile_name
            .clone()
            .ok_or_else(|| Error::Usage(why.into()))
    }

    /// The config file the command line names, made absolute.
    pub fn config_path(&self) -> Result<Option<PathBuf>> {
        self.args
            .config
            .as_ref()
            .map(|c| std::path::absolute(c).map_err(|e| Error::io(c, e)))
            .transpose()
    }
}

/// The external SSH client: `--ssh`, then `OFFSNAP_RSH`, then the
/// profile's `ssh`; empty (or none) means the built-in client.
fn ssh_client(flag: Option<&str>, profile: Option<&str>) -> Result<Option<Vec<String>>> {
    let env = std::env::var("OFFSNAP_RSH").ok();
    let Some((cmd, from)) = flag
        .map(|c| (c.to_string(), "--ssh"))
        .or(env.map(|c| (c, "OFFSNAP_RSH")))
        .or(profile.map(|c| (c.to_string(), "the profile's ssh")))
    else {
        return Ok(None);
    };
    let words =
        shell_words::split(&cmd).map_err(|e| Error::Usage(format!("{from} {cmd:?}: {e}")))?;
    Ok(if words.is_empty() { None } else { Some(words) })
}

/// A set name from a hostname: characters a set name cannot hold become
/// `-`, leading dots and dashes go, and an empty result is `default`.
fn set_from_hostname(host: &str) -> String {
    let cleaned: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    match cleaned.trim_start_matches(['.', '-']) {
        "" => "default".into(),
        s => s.into(),
    }
}

/// The snapshot a command names: `--as-of TIME` when given, else the
/// snapshot text (`latest`, `latest~N`, a name or a prefix of one).
pub fn which(snapshot: &str, as_of: Option<&str>) -> Result<Which> {
    match as_of {
        Some(t) => Which::as_of(t, jiff::Timestamp::now()),
        None => Which::parse(snapshot),
    }
}

/// A path inside a snapshot as the user typed it: slashes at either end
/// and `./` prefixes are forgiven.
pub fn snapshot_path(p: &std::path::Path) -> Result<RelPath> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = p.as_os_str().as_bytes();
    while let Some(rest) = bytes.strip_prefix(b"./") {
        bytes = rest;
    }
    while let Some(r) = bytes.strip_prefix(b"/") {
        bytes = r;
    }
    while let Some(r) = bytes.strip_suffix(b"/") {
        bytes = r;
    }
    RelPath::new(bytes.to_vec()).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn hostnames_become_valid_set_names() {
        assert_eq!(set_from_hostname("laptop.local"), "laptop.local");
        assert_eq!(set_from_hostname("my laptop"), "my-laptop");
        assert_eq!(set_from_hostname("--x"), "x");
        assert_eq!(set_from_hostname("..."), "default");
        assert!(SetName::new(&set_from_hostname("ünï cödé")).is_ok());
    }

    #[test]
    fn snapshot_paths_forgive_slashes_and_dots() {
        let p = |s: &str| snapshot_path(Path::new(s)).map(|r| r.to_string());
        assert_eq!(
            p("./Documents/a.txt/").ok().as_deref(),
            Some("Documents/a.txt")
        );
        assert_eq!(p("/Documents").ok().as_deref(), Some("Documents"));
        assert!(matches!(p("a/../b"), Err(Error::Usage(_))));
    }

    #[test]
    fn the_command_line_policy_wins_over_the_profile_and_30_days_is_the_default() {
        let mut s = Settings {
            args: ProfileArgs::default(),
            profile_name: None,
            profile: Profile::default(),
        };
        assert_eq!(s.retention(&PolicyArgs::default()), Policy::thirty_days());
        s.profile.retention = Some(PolicyArgs {
            keep_last: Some(3),
            ..PolicyArgs::default()
        });
        assert_eq!(s.retention(&PolicyArgs::default()).keep_last, Some(3));
        let given = PolicyArgs {
            keep_daily: Some(7),
            ..PolicyArgs::default()
        };
        let p = s.retention(&given);
        assert_eq!((p.keep_daily, p.keep_last), (Some(7), None));
    }

    #[test]
    fn a_bad_set_or_remote_command_is_a_usage_error() {
        let s = Settings {
            args: ProfileArgs {
                set: Some("../x".into()),
                ..ProfileArgs::default()
            },
            profile_name: None,
            profile: Profile::default(),
        };
        assert!(matches!(s.set(), Err(Error::Usage(_))));
        let bad = ConnectArgs {
            remote_cmd: Some("'unclosed".into()),
            ..ConnectArgs::default()
        };
        assert!(matches!(s.connect_options(&bad), Err(Error::Usage(_))));
    }
}
