//! Checking the server's host key against `known_hosts`, as OpenSSH does
//! with `StrictHostKeyChecking yes` (default) or `accept-new` (on request).
//!
//! An unknown host is refused with its fingerprint; a changed key is a hard
//! error that no option overrides; a host known only with keys of other
//! types is refused too (accepting it would defeat the check). `@revoked`
//! lines are honoured (the known_hosts reader we build on skips them).

use std::path::{Path, PathBuf};

use russh::keys::known_hosts::{known_host_keys_path, learn_known_hosts_path};
use russh::keys::{Algorithm, HashAlg, PublicKey, PublicKeyBase64};

use super::SshError;

/// What to do with a host that `known_hosts` does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse it.
    Strict,
    /// Record its key and go on (changed keys are still refused).
    AcceptNew,
}

/// Checks presented host keys for one host.
#[derive(Clone, Debug)]
pub struct HostKeyVerifier {
    /// The name the key is recorded under (HostName, or HostKeyAlias).
    pub host: String,
    /// The port (entries for ports other than 22 read `[host]:port`).
    pub port: u16,
    /// The `known_hosts` file.
    pub known_hosts: PathBuf,
    /// Unknown-host policy.
    pub policy: HostKeyPolicy,
}

/// `SHA256:…` as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl HostKeyVerifier {
    fn shown(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }

    /// Accepts `key` or says why not.
    pub fn verify(&self, key: &PublicKey) -> Result<(), SshError> {
        let fp = fingerprint(key);
        let host = self.host.to_ascii_lowercase();
        if is_revoked(key, &self.known_hosts)? {
            return Err(SshError::HostKey(format!(
                "the host key of {} ({fp}) is marked @revoked in {}",
                self.shown(),
                self.known_hosts.display()
            )));
        }
        let recorded = known_host_keys_path(&host, self.port, &self.known_hosts).map_err(|e| {
            SshError::HostKey(format!("reading {}: {e}", self.known_hosts.display()))
        })?;
        if recorded.iter().any(|(_, k)| k.key_data() == key.key_data()) {
            return Ok(());
        }
        if !recorded.is_empty() {
            return Err(SshError::HostKey(format!(
                "WARNING: THE HOST KEY OF {} HAS CHANGED. It now presents {} {fp}, which does not \
                 match what {} records for it. Someone may be intercepting the connection, or the \
                 server was reinstalled. Nothing was sent. If the change is expected, remove the \
                 old entry (ssh-keygen -R '{}' -f {}) and connect again.",
                self.shown(),
                key.algorithm(),
                self.known_hosts.display(),
                self.shown(),
                self.known_hosts.display(),
            )));
        }
        match self.policy {
            HostKeyPolicy::AcceptNew => {
                learn_known_hosts_path(&host, self.port, key, &self.known_hosts).map_err(|e| {
                    SshError::HostKey(format!(
                        "recording the host key in {}: {e}",
                        self.known_hosts.display()
                    ))
                })?;
                eprintln!(
                    "offsnap: permanently added {} ({} {fp}) to {}",
                    self.shown(),
                    key.algorithm(),
                    self.known_hosts.display()
                );
                Ok(())
            }
            HostKeyPolicy::Strict => Err(SshError::HostKey(format!(
                "{} is not a known host: its {} key fingerprint is {fp}. If that is the right \
                 key, accept it with --accept-new-host-key (or connect once with ssh).",
                self.shown(),
                key.algorithm()
            ))),
        }
    }

    /// Key types recorded for this host, to ask the server for one of them first.
    pub fn known_algorithms(&self) -> Vec<Algorithm> {
        let mut out: Vec<Algorithm> = Vec::new();
        let host = self.host.to_ascii_lowercase();
        if let Ok(keys) = known_host_keys_path(&host, self.port, &self.known_hosts) {
            for (_, k) in keys {
                let a = k.algorithm();
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }
}

/// Whether an `@revoked` line names `key`.
fn is_revoked(key: &PublicKey, path: &Path) -> Result<bool, SshError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(SshError::HostKey(format!(
                "reading {}: {e}",
                path.display()
            )));
        }
    };
    let ours = key.public_key_base64();
    Ok(text.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.next() == Some("@revoked") && f.nth(2) == Some(ours.as_str())
    }))
}
