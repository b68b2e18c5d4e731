//! `~/.ssh/config`: what a `Host` alias means (HostName, User, Port,
//! IdentityFile, HostKeyAlias, UserKnownHostsFile, ProxyJump,
//! ProxyCommand), read the way OpenSSH reads it (first value wins;
//! IdentityFile accumulates). `Match` blocks are not understood by the
//! parser: their options are ignored (`--ssh ssh` reads them).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use ssh2_config::{ParseRule, SshConfig};

use super::SshError;

/// What the config says about one host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostConfig {
    /// HostName, if set.
    pub host_name: Option<String>,
    /// Port, if set.
    pub port: Option<u16>,
    /// User, if set.
    pub user: Option<String>,
    /// IdentityFile entries, in order.
    pub identity_files: Vec<PathBuf>,
    /// HostKeyAlias, if set.
    pub host_key_alias: Option<String>,
    /// UserKnownHostsFile, if set.
    pub known_hosts: Option<PathBuf>,
    /// ProxyJump hops, in order (`none` included as written).
    pub proxy_jump: Option<Vec<String>>,
    /// ProxyCommand, as written (`none` included).
    pub proxy_command: Option<String>,
}

fn expand_tilde(p: &str, home: &Path) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(p),
    }
}

/// Reads `path` (missing: empty) and looks `alias` up.
pub fn lookup(path: &Path, alias: &str, home: &Path) -> Result<HostConfig, SshError> {
    let config = match std::fs::File::open(path) {
        Ok(f) => SshConfig::default()
            .parse(
                &mut BufReader::new(f),
                ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
            )
            .map_err(|e| SshError::Config(format!("{}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HostConfig::default()),
        Err(e) => return Err(SshError::Config(format!("{}: {e}", path.display()))),
    };
    let p = config.query(alias);
    let first = |k: &str| p.unsupported_fields.get(k).and_then(|v| v.first()).cloned();
    let (proxy_jump, proxy_command) = proxy(&config, alias);
    Ok(HostConfig {
        host_name: p.host_name.clone(),
        port: p.port,
        user: p.user.clone(),
        identity_files: p.identity_file.clone().unwrap_or_default(),
        host_key_alias: first("hostkeyalias"),
        known_hosts: first("userknownhostsfile").map(|s| expand_tilde(&s, home)),
        proxy_jump,
        proxy_command,
    })
}

/// ProxyJump or ProxyCommand, whichever comes first for `alias` (the first
/// one found keeps the other from applying, as in OpenSSH).
fn proxy(config: &SshConfig, alias: &str) -> (Option<Vec<String>>, Option<String>) {
    for host in config.intersecting_hosts(alias) {
        if let Some(jump) = &host.params.proxy_jump {
            return (Some(jump.clone()), None);
        }
        if let Some(words) = host.params.unsupported_fields.get("proxycommand")
            && !words.is_empty()
        {
            return (None, Some(words.join(" ")));
        }
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("config");
        std::fs::write(
            &cfg,
            "Host backup\n  HostName 127.0.0.1\n  Port 2222\n  User alice\n  IdentityFile ~/.ssh/backup_key\n\
             Host *\n  User bob\n  IdentityFile ~/.ssh/other\n",
        )?;
        let home = Path::new("/home/alice");
        let h = lookup(&cfg, "backup", home)?;
        assert_eq!(h.host_name.as_deref(), Some("127.0.0.1"));
        assert_eq!(h.port, Some(2222));
        assert_eq!(h.user.as_deref(), Some("alice"));
        assert_eq!(h.identity_files.len(), 2);
        let other = lookup(&cfg, "elsewhere", home)?;
        assert_eq!(other.user.as_deref(), Some("bob"));
        assert_eq!(other.host_name, None);
        assert_eq!(
            lookup(&dir.path().join("none"), "x", home)?,
            HostConfig::default()
        );
        Ok(())
    }

    #[test]
    fn proxies_are_read_first_value_first() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("config");
        std::fs::write(
            &cfg,
            "Host nas\n  ProxyJump alice@bastion:2200,gw\n\
             Host viacmd\n  ProxyCommand ssh -W \"%h:%p\" gw\n\
             Host direct\n  ProxyJump none\n\
             Host *\n  ProxyJump other\n",
        )?;
        let home = Path::new("/home/alice");
        let nas = lookup(&cfg, "nas", home)?;
        assert_eq!(
            nas.proxy_jump,
            Some(vec!["alice@bastion:2200".to_string(), "gw".to_string()])
        );
        let cmd = lookup(&cfg, "viacmd", home)?;
        assert_eq!(cmd.proxy_command.as_deref(), Some("ssh -W \"%h:%p\" gw"));
        assert_eq!(cmd.proxy_jump, None, "the first of the two wins");
        assert_eq!(
            lookup(&cfg, "direct", home)?.proxy_jump,
            Some(vec!["none".to_string()])
        );
        assert_eq!(
            lookup(&cfg, "elsewhere", home)?.proxy_jump,
            Some(vec!["other".to_string()])
        );
        Ok(())
    }
}
