//! `~/.ssh/config`: what a `Host` alias means (HostName, User, Port,
//! IdentityFile, HostKeyAlias, UserKnownHostsFile), read the way OpenSSH
//! reads it (first value wins; IdentityFile accumulates).

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
    Ok(HostConfig {
        host_name: p.host_name.clone(),
        port: p.port,
        user: p.user.clone(),
        identity_files: p.identity_file.clone().unwrap_or_default(),
        host_key_alias: first("hostkeyalias"),
        known_hosts: first("userknownhostsfile").map(|s| expand_tilde(&s, home)),
    })
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
}
