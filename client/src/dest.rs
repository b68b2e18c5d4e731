//! Backup destinations as users write them, and connecting to them.

use std::ffi::OsStr;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::remote_cmd::RemoteCommand;
use crate::session::Session;
use crate::ssh::external::{ExternalSsh, ExternalTarget};
use crate::ssh::hostkeys::HostKeyPolicy;
use crate::ssh::resolve::{self, Resolver, Wanted};
use crate::ssh::{SshTarget, SshTransport};
use crate::transport::{ChildTransport, InProcess, Transport};

/// Where the backups live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A directory on this machine (a mounted disk, a NAS mount, …).
    Local(PathBuf),
    /// A directory on an SSH host.
    Ssh(SshDest),
}

/// An SSH destination: `[user@]host:PATH` or `ssh://[user@]host[:port]/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshDest {
    /// The user, if given.
    pub user: Option<String>,
    /// The host name, address or `~/.ssh/config` alias.
    pub host: String,
    /// The port, if given in the URL form.
    pub port: Option<u16>,
    /// The directory on the host (relative paths are from the login's home).
    pub path: String,
}

impl Dest {
    /// Parses a destination argument the way scp and rsync do: a colon
    /// before any slash means `host:path`; `ssh://` is a URL; anything
    /// else is a local path (write `./a:b` for a local name with a colon).
    pub fn parse(s: &str) -> Result<Dest> {
        if s.is_empty() {
            return Err(Error::Usage("the destination is empty".into()));
        }
        if let Some(rest) = s.strip_prefix("ssh://") {
            return parse_url(s, rest).map(Dest::Ssh);
        }
        if looks_like_bare_ipv6(s) {
            return Err(Error::Usage(format!(
                "{s:?}: an IPv6 address goes in brackets, as with scp: [::1]:PATH, \
                 user@[::1]:PATH or ssh://user@[::1]:22/PATH"
            )));
        }
        if let Some(colon) = host_colon(s) {
            let (authority, path) = (&s[..colon], &s[colon + 1..]);
            let (user, host) = split_user(authority);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            check_host(s, host)?;
            return Ok(Dest::Ssh(SshDest {
                user,
                host: host.to_string(),
                port: None,
                path: if path.is_empty() {
                    ".".into()
                } else {
                    path.into()
                },
            }));
        }
        Ok(Dest::Local(PathBuf::from(s)))
    }
}

/// Where the `host:path` colon is, if `s` has that form: a colon before any
/// slash (an IPv6 address goes in brackets: `[::1]:path`).
fn host_colon(s: &str) -> Option<usize> {
    let search_from = if s.starts_with('[') || s.contains("@[") {
        s.find(']')?
    } else {
        0
    };
    let colon = s[search_from..].find(':')? + search_from;
    match s.find('/') {
        Some(slash) if slash < colon => None,
        _ if colon == 0 => None,
        _ => Some(colon),
    }
}

/// Whether `s` starts with an IPv6 address outside brackets (`::1:/x`,
/// `alice@fe80::1:x`): its colons would be read as the `host:path` one.
fn looks_like_bare_ipv6(s: &str) -> bool {
    let head = s.split('/').next().unwrap_or(s);
    let head = head.rsplit_once('@').map_or(head, |(_, h)| h);
    if head.starts_with('[') {
        return false;
    }
    let first = head.split(':').next().unwrap_or("");
    head.contains("::")
        || (head.matches(':').count() >= 2
            && (1..=4).contains(&first.len())
            && first.chars().all(|c| c.is_ascii_hexdigit()))
}

fn split_user(authority: &str) -> (Option<String>, &str) {
    match authority.rfind('@') {
        Some(at) => (Some(authority[..at].to_string()), &authority[at + 1..]),
        None => (None, authority),
    }
}

fn check_host(whole: &str, host: &str) -> Result<()> {
    if host.is_empty() || host.starts_with('-') || host.contains(char::is_whitespace) {
        return Err(Error::Usage(format!(
            "{whole:?}: {host:?} is not a host name"
        )));
    }
    Ok(())
}

fn parse_url(whole: &str, rest: &str) -> Result<SshDest> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (user, hostport) = split_user(authority);
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let end = h
            .find(']')
            .ok_or_else(|| Error::Usage(format!("{whole:?}: unclosed [ in the host")))?;
        let port = h[end + 1..].strip_prefix(':');
        (&h[..end], port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    check_host(whole, host)?;
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| Error::Usage(format!("{whole:?}: bad port {p:?}")))?,
        ),
        None => None,
    };
    // `ssh://host/~/x` and `ssh://host/~` mean the home directory.
    let path = match path.strip_prefix("/~") {
        Some("") => ".".to_string(),
        Some(r) if r.starts_with('/') => r[1..].to_string(),
        _ => path.to_string(),
    };
    Ok(SshDest {
        user,
        host: host.to_string(),
        port,
        path,
    })
}

/// How to reach the helper.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The helper command, split into words; `None` for the default.
    pub remote_cmd: Option<Vec<String>>,
    /// SSH port (`-p`), over the URL's and the config's.
    pub port: Option<u16>,
    /// SSH key file (`-i`), tried first after the agent.
    pub identity: Option<PathBuf>,
    /// Record an unknown host's key instead of refusing it.
    pub accept_new_host_key: bool,
    /// Move at most this many bytes per second each way (`--bwlimit`).
    pub bwlimit: Option<u64>,
    /// Jump hosts (`-J a,b`; `none`), over the config's ProxyJump.
    pub jump: Option<String>,
    /// An external SSH client (`--ssh`, `OFFSNAP_RSH`), split into words;
    /// `None` for the built-in one.
    pub ssh: Option<Vec<String>>,
}

/// The helper command run on SSH hosts unless `--remote-cmd` says otherwise.
pub const DEFAULT_REMOTE_CMD: &str = crate::remote_cmd::DEFAULT_HELPER;

/// Resolves an SSH destination with `~/.ssh/config` and the options.
pub fn ssh_target(d: &SshDest, opts: &ConnectOptions) -> Result<SshTarget> {
    let resolver = Resolver {
        home: resolve::home()?,
        identity: opts.identity.clone(),
        policy: if opts.accept_new_host_key {
            HostKeyPolicy::AcceptNew
        } else {
            HostKeyPolicy::Strict
        },
        keepalive: std::time::Duration::from_secs(15),
    };
    let jump = match &opts.jump {
        Some(j) => Some(resolve::parse_chain(j)?),
        None => None,
    };
    Ok(resolver.resolve(&Wanted {
        host: d.host.clone(),
        user: d.user.clone(),
        port: opts.port.or(d.port),
        jump,
    })?)
}

/// The host as the user named it, for messages: `[user@]host`.
fn named(d: &SshDest) -> String {
    let host = if d.host.contains(':') {
        format!("[{}]", d.host)
    } else {
        d.host.clone()
    };
    match &d.user {
        Some(u) => format!("{u}@{host}"),
        None => host,
    }
}

/// The command line that starts the helper on an SSH host.
pub fn remote_command(d: &SshDest, opts: &ConnectOptions) -> RemoteCommand {
    RemoteCommand::helper(opts.remote_cmd.as_deref(), &d.path, &named(d))
}

/// Runs `command` on the SSH host of `d`, with the built-in client or
/// the external one (`--ssh`).
pub fn start_remote(
    d: &SshDest,
    opts: &ConnectOptions,
    command: &RemoteCommand,
) -> Result<Box<dyn Transport>> {
    match &opts.ssh {
        Some(ssh) => Ok(Box::new(ExternalSsh::start(
            ssh,
            &ExternalTarget {
                host: d.host.clone(),
                user: d.user.clone(),
                port: opts.port.or(d.port),
                identity: opts.identity.clone(),
                jump: opts.jump.clone(),
                accept_new_host_key: opts.accept_new_host_key,
            },
            command,
        )?)),
        None => Ok(Box::new(SshTransport::start(
            &ssh_target(d, opts)?,
            command,
        )?)),
    }
}

/// Whether `dest` is served by the helper library inside this process (a
/// local path without a helper command).
pub fn in_process(dest: &Dest, opts: &ConnectOptions) -> bool {
    matches!(dest, Dest::Local(_)) && opts.remote_cmd.is_none()
}

/// Starts a helper for `dest` and opens a session with it. A local
/// destination is served by the helper library inside this process,
/// unless a helper command is given.
pub fn connect(dest: &Dest, opts: &ConnectOptions) -> Result<Session> {
    let transport: Box<dyn Transport> = match (dest, &opts.remote_cmd) {
        (Dest::Local(root), None) => {
            let root = std::path::absolute(root).map_err(|e| Error::io(root, e))?;
            Box::new(InProcess::start(offsnap_remote::Config {
                root,
                access: offsnap_remote::Access::Full,
                clock: offsnap_remote::Clock::from_env().map_err(Error::Usage)?,
                refuse: None,
                limits: Default::default(),
            })?)
        }
        (Dest::Local(root), Some(cmd)) => {
            let root = std::path::absolute(root).map_err(|e| Error::io(root, e))?;
            Box::new(ChildTransport::spawn(
                cmd,
                &[OsStr::new("serve"), OsStr::new("--root"), root.as_os_str()],
            )?)
        }
        (Dest::Ssh(d), _) => start_remote(d, opts, &remote_command(d, opts))?,
    };
    let transport: Box<dyn Transport> = match opts.bwlimit {
        Some(rate) => Box::new(crate::transport::Limited {
            inner: transport,
            rate,
        }),
        None => transport,
    };
    Session::connect(transport)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(s: &str) -> SshDest {
        match Dest::parse(s) {
            Ok(Dest::Ssh(d)) => d,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn destinations_parse_like_scp_and_rsync() {
        assert_eq!(
            Dest::parse("/tmp/b").ok(),
            Some(Dest::Local("/tmp/b".into()))
        );
        assert_eq!(Dest::parse("./a:b").ok(), Some(Dest::Local("./a:b".into())));
        assert_eq!(
            Dest::parse("dir/a:b").ok(),
            Some(Dest::Local("dir/a:b".into()))
        );
        let d = ssh("alice@host:/srv/backups");
        assert_eq!(
            (d.user.as_deref(), d.host.as_str(), d.port, d.path.as_str()),
            (Some("alice"), "host", None, "/srv/backups")
        );
        let d = ssh("host:backups");
        assert_eq!((d.user, d.path.as_str()), (None, "backups"));
        assert_eq!(ssh("host:").path, ".");
        let d = ssh("[::1]:/x");
        assert_eq!((d.host.as_str(), d.path.as_str()), ("::1", "/x"));
        let d = ssh("ssh://bob@example.org:2222/srv/b");
        assert_eq!(
            (d.user.as_deref(), d.host.as_str(), d.port, d.path.as_str()),
            (Some("bob"), "example.org", Some(2222), "/srv/b")
        );
        let d = ssh("ssh://[::1]:22/~/b");
        assert_eq!(
            (d.host.as_str(), d.port, d.path.as_str()),
            ("::1", Some(22), "b")
        );
        assert_eq!(ssh("ssh://h").path, "/");
        assert!(Dest::parse("ssh://h:0/x").is_err());
        assert!(Dest::parse("ssh://h:x/x").is_err());
        assert!(Dest::parse("-oProxyCommand=x:y").is_err());
        for v6 in [
            "::1:/x",
            "alice@::1:/x",
            "fe80::1:b",
            "2001:db8:0:0:0:0:0:1:/b",
        ] {
            let e = Dest::parse(v6)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains("in brackets") && e.contains("[::1]:PATH"),
                "{v6}: {e}"
            );
        }
        assert_eq!(ssh("nas:backups:2").path, "backups:2");
        assert!(Dest::parse("").is_err());
    }
}
