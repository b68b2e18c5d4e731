//! What a host name means once `~/.ssh/config` and the command line are
//! applied: the address, port, user, keys and host-key settings of the
//! host, and how it is reached (directly, through ProxyJump hosts, or
//! through a ProxyCommand), each jump host resolved the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::hostkeys::HostKeyPolicy;
use super::{SshError, SshTarget, Via, config};

/// Jump chains longer than this are refused (a config whose jump hosts
/// jump through each other would otherwise never end).
const MAX_HOPS: usize = 8;

/// What applies to every host of a connection.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// The home directory (`~/.ssh` is under it).
    pub home: PathBuf,
    /// `-i KEY`, tried first after the agent on every hop.
    pub identity: Option<PathBuf>,
    /// Unknown-host policy, for every hop.
    pub policy: HostKeyPolicy,
    /// Keepalive interval.
    pub keepalive: Duration,
}

/// A host to resolve: the name as written and what the command line says.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// The host name, address or alias.
    pub host: String,
    /// The user, if given.
    pub user: Option<String>,
    /// The port, if given (over the config's).
    pub port: Option<u16>,
    /// A jump chain given on the command line (`-J`), over the config's
    /// ProxyJump; an empty chain is `-J none`.
    pub jump: Option<Vec<String>>,
}

impl Resolver {
    fn ssh_dir(&self) -> PathBuf {
        self.home.join(".ssh")
    }

    /// Resolves `w` and every jump host on its way.
    pub fn resolve(&self, w: &Wanted) -> Result<SshTarget, SshError> {
        self.resolve_at(w, 0)
    }

    fn resolve_at(&self, w: &Wanted, depth: usize) -> Result<SshTarget, SshError> {
        if depth > MAX_HOPS {
            return Err(SshError::Config(format!(
                "more than {MAX_HOPS} jump hosts on the way to {}: do the ProxyJump \
                 entries loop?",
                w.host
            )));
        }
        let ssh_dir = self.ssh_dir();
        let cfg = config::lookup(&ssh_dir.join("config"), &w.host, &self.home)?;
        let host_name = cfg.host_name.clone().unwrap_or_else(|| w.host.clone());
        let user = match w.user.clone().or(cfg.user.clone()) {
            Some(u) => u,
            None => local_user()
                .ok_or_else(|| SshError::Config(format!("name the user: USER@{}", w.host)))?,
        };
        let port = w.port.or(cfg.port).unwrap_or(22);
        let mut identity_files: Vec<PathBuf> = self.identity.iter().cloned().collect();
        identity_files.extend(cfg.identity_files.iter().cloned());
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            identity_files.push(ssh_dir.join(name));
        }
        let mut seen = std::collections::HashSet::new();
        identity_files.retain(|p| seen.insert(p.clone()));
        let chain = match &w.jump {
            Some(chain) => Some(chain.clone()),
            None if cfg.proxy_command.is_some() => None,
            None => cfg.proxy_jump.clone().map(without_none),
        };
        let via = match chain {
            Some(chain) if !chain.is_empty() => self.jump_via(&chain, depth)?,
            Some(_) => Via::Direct,
            None => match cfg.proxy_command.as_deref() {
                None | Some("none") => Via::Direct,
                Some(cmd) => Via::Command(expand_tokens(cmd, &host_name, port, &user, &w.host)),
            },
        };
        Ok(SshTarget {
            alias: w.host.clone(),
            known_hosts_name: cfg
                .host_key_alias
                .clone()
                .unwrap_or_else(|| host_name.clone()),
            host_name,
            port,
            user,
            known_hosts: cfg
                .known_hosts
                .clone()
                .unwrap_or_else(|| ssh_dir.join("known_hosts")),
            policy: self.policy,
            identity_files,
            keepalive: self.keepalive,
            via,
        })
    }

    /// The last hop of `chain`, reached through the hops before it (as
    /// `ssh -J a,b` reaches `b` with `-J a`); the first hop is reached as
    /// its own config says.
    fn jump_via(&self, chain: &[String], depth: usize) -> Result<Via, SshError> {
        let Some((last, before)) = chain.split_last() else {
            return Ok(Via::Direct);
        };
        let mut hop = parse_jump(last)?;
        if !before.is_empty() {
            hop.jump = Some(before.to_vec());
        }
        Ok(Via::Jump(Box::new(self.resolve_at(&hop, depth + 1)?)))
    }
}

/// `ProxyJump none` (alone) means no jump.
fn without_none(chain: Vec<String>) -> Vec<String> {
    if chain.len() == 1 && chain[0].eq_ignore_ascii_case("none") {
        Vec::new()
    } else {
        chain
    }
}

/// Splits a `-J` argument (`a,b,c`; `none`) into hops.
pub fn parse_chain(s: &str) -> Result<Vec<String>, SshError> {
    let hops: Vec<String> = s.split(',').map(|h| h.trim().to_string()).collect();
    if hops.iter().any(String::is_empty) {
        return Err(SshError::Config(format!(
            "-J {s:?}: name each jump host, separated by commas"
        )));
    }
    for h in &hops {
        parse_jump(h)?;
    }
    Ok(without_none(hops))
}

/// One jump host: `[user@]host[:port]` or `ssh://[user@]host[:port]`, an
/// IPv6 address in brackets.
pub fn parse_jump(s: &str) -> Result<Wanted, SshError> {
    let bad = |why: &str| SshError::Config(format!("jump host {s:?}: {why}"));
    let rest = s.strip_prefix("ssh://").unwrap_or(s);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (user, hostport) = match rest.rfind('@') {
        Some(at) => (Some(rest[..at].to_string()), &rest[at + 1..]),
        None => (None, rest),
    };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let end = h.find(']').ok_or_else(|| bad("unclosed ["))?;
        (&h[..end], h[end + 1..].strip_prefix(':'))
    } else if hostport.matches(':').count() > 1 {
        return Err(bad("write an IPv6 address in brackets: [::1]:22"));
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || host.starts_with('-') || host.contains(char::is_whitespace) {
        return Err(bad("not a host name"));
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("bad port"))?,
        ),
        None => None,
    };
    Ok(Wanted {
        host: host.to_string(),
        user: user.filter(|u| !u.is_empty()),
        port,
        jump: None,
    })
}

/// ProxyCommand's tokens: `%h` host, `%p` port, `%r` user, `%n` the name
/// as written, `%%` a percent sign.
pub fn expand_tokens(cmd: &str, host: &str, port: u16, user: &str, alias: &str) -> String {
    let mut out = String::with_capacity(cmd.len());
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(host),
            Some('p') => out.push_str(&port.to_string()),
            Some('r') => out.push_str(user),
            Some('n') => out.push_str(alias),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// This login's name: `USER`, `LOGNAME`, or the passwd entry of our uid.
fn local_user() -> Option<String> {
    if let Some(u) = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
    {
        return Some(u);
    }
    let uid = rustix::process::getuid().as_raw().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
    })
}

/// The home directory from `HOME`.
pub fn home() -> Result<PathBuf, SshError> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h != Path::new(""))
        .ok_or_else(|| SshError::Config("HOME is not set".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(home: &Path) -> Resolver {
        Resolver {
            home: home.to_path_buf(),
            identity: None,
            policy: HostKeyPolicy::Strict,
            keepalive: Duration::from_secs(15),
        }
    }

    fn hops(t: &SshTarget) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = t;
        while let Via::Jump(j) = &cur.via {
            out.push(format!("{}@{}:{}", j.user, j.host_name, j.port));
            cur = j;
        }
        out
    }

    #[test]
    fn jump_chains_resolve_each_hop_through_the_config() -> Result<(), Box<dyn std::error::Error>> {
        let home = tempfile::tempdir()?;
        std::fs::create_dir(home.path().join(".ssh"))?;
        std::fs::write(
            home.path().join(".ssh/config"),
            "Host nas\n  HostName 10.0.0.5\n  User backup\n  ProxyJump gw\n\
             Host gw\n  HostName gw.example.org\n  Port 2200\n  User alice\n  ProxyJump edge\n\
             Host edge\n  User eve\n\
             Host lan\n  ProxyJump none\n\
             Host piped\n  ProxyCommand ssh -W %h:%p%% %r@gw\n  HostName 10.0.0.6\n",
        )?;
        let r = resolver(home.path());
        let want = |host: &str, jump: Option<Vec<String>>| Wanted {
            host: host.into(),
            user: None,
            port: None,
            jump,
        };
        // Config: nas through gw, and gw through its own ProxyJump.
        let t = r.resolve(&want("nas", None))?;
        assert_eq!(
            (t.host_name.as_str(), t.user.as_str()),
            ("10.0.0.5", "backup")
        );
        assert_eq!(
            hops(&t),
            ["alice@gw.example.org:2200", "eve@edge:22"].map(String::from)
        );
        // -J replaces the config's chain; a,b reaches b through a only.
        let t = r.resolve(&want("nas", Some(parse_chain("bob@one:2022,gw")?)))?;
        assert_eq!(
            hops(&t),
            ["alice@gw.example.org:2200", "bob@one:2022"].map(String::from)
        );
        assert!(matches!(
            r.resolve(&want("nas", Some(parse_chain("none")?)))?.via,
            Via::Direct
        ));
        assert!(matches!(r.resolve(&want("lan", None))?.via, Via::Direct));
        match r.resolve(&want("piped", None))?.via {
            Via::Command(c) => assert!(c.starts_with("ssh -W 10.0.0.6:22% "), "{c}"),
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    #[test]
    fn jump_specs_parse_like_ssh() -> Result<(), SshError> {
        let j = parse_jump("ssh://bob@[::1]:2222")?;
        assert_eq!(
            (j.user.as_deref(), j.host.as_str(), j.port),
            (Some("bob"), "::1", Some(2222))
        );
        let j = parse_jump("gw")?;
        assert_eq!((j.user, j.port), (None, None));
        assert!(parse_jump("::1").is_err() && parse_jump("h:0").is_err());
        assert!(parse_jump("-oProxyCommand=x").is_err());
        assert!(parse_chain("a,,b").is_err());
        Ok(())
    }

    #[test]
    fn a_jump_loop_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let home = tempfile::tempdir()?;
        std::fs::create_dir(home.path().join(".ssh"))?;
        std::fs::write(
            home.path().join(".ssh/config"),
            "Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n",
        )?;
        let e = resolver(home.path())
            .resolve(&Wanted {
                host: "a".into(),
                ..Wanted::default()
            })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("loop"), "{e}");
        Ok(())
    }
}
