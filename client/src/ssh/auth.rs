//! Logging in: keys from ssh-agent first (`SSH_AUTH_SOCK`), then key files
//! in order (`-i`, the config's IdentityFile, `~/.ssh/id_ed25519`,
//! `id_ecdsa`, `id_rsa`). An encrypted key asks for its passphrase on the
//! terminal (three tries; an empty answer skips the key); without a
//! terminal it is a clear error.

use std::path::Path;
use std::sync::Arc;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, load_secret_key};

use super::{Handler, SshError, SshTarget};

/// Tries the agent, then each key file, until one is accepted.
pub(super) async fn authenticate(
    handle: &mut Handle<Handler>,
    target: &SshTarget,
) -> Result<(), SshError> {
    let user = target.user.as_str();
    let mut tried: Vec<String> = Vec::new();
    if let Ok(mut agent) = AgentClient::connect_env().await {
        if let Some(binding) = handle.agent_session_binding() {
            let _ = agent.bind_session(binding, false).await;
        }
        for id in agent.request_identities().await.unwrap_or_default() {
            let AgentIdentity::PublicKey { key, comment } = &id else {
                continue;
            };
            let hash = if key.algorithm().is_rsa() {
                handle.best_supported_rsa_hash().await?.flatten()
            } else {
                None
            };
            tried.push(format!("agent key {comment}"));
            if let Ok(AuthResult::Success) = handle
                .authenticate_publickey_with(user, key.clone(), hash, &mut agent)
                .await
            {
                return Ok(());
            }
        }
    }
    for path in &target.identity_files {
        let Some(key) = load_key(path)? else {
            continue;
        };
        let hash = if key.algorithm().is_rsa() {
            handle.best_supported_rsa_hash().await?.flatten()
        } else {
            None
        };
        tried.push(path.display().to_string());
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        if handle.authenticate_publickey(user, key).await?.success() {
            return Ok(());
        }
    }
    Err(SshError::Auth(if tried.is_empty() {
        format!(
            "no key to log in to {} as {user}: no ssh-agent keys and no key file found \
             (name one with -i KEY)",
            target.alias
        )
    } else {
        format!(
            "{} refused every key for user {user} (tried {}); is the public key in the \
             server's authorized_keys?",
            target.alias,
            tried.join(", ")
        )
    }))
}

/// Loads a private key, asking for its passphrase on the terminal if it is
/// encrypted. `None` when the file does not exist.
fn load_key(path: &Path) -> Result<Option<PrivateKey>, SshError> {
    use russh::keys::Error as KE;
    match load_secret_key(path, None) {
        Ok(k) => return Ok(Some(k)),
        Err(KE::IO(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(KE::IO(e)) => {
            return Err(SshError::Auth(format!(
                "cannot read key {}: {e}",
                path.display()
            )));
        }
        Err(e) if !looks_encrypted(path, &e) => {
            return Err(SshError::Auth(format!(
                "cannot use key {}: {e}",
                path.display()
            )));
        }
        Err(_) => {}
    }
    // Three tries, as OpenSSH allows; an empty answer skips the key.
    let prompt = format!("Enter passphrase for key '{}': ", path.display());
    for attempt in 1..=PASSPHRASE_TRIES {
        let passphrase = rpassword::prompt_password(&prompt).map_err(|_| {
            SshError::Auth(format!(
                "key {} is encrypted and there is no terminal to ask for its passphrase; \
                 add it to ssh-agent (ssh-add {}) or use a key without a passphrase",
                path.display(),
                path.display()
            ))
        })?;
        if passphrase.is_empty() {
            return Ok(None);
        }
        match load_secret_key(path, Some(&passphrase)) {
            Ok(k) => return Ok(Some(k)),
            Err(_) if attempt < PASSPHRASE_TRIES => {
                eprintln!("offsnap: wrong passphrase, try again");
            }
            Err(_) => {}
        }
    }
    Err(SshError::Auth(format!(
        "wrong passphrase for key {} ({PASSPHRASE_TRIES} tries)",
        path.display()
    )))
}

/// Whether the key file at `path` opens without a passphrase (as a run
/// with no terminal and no agent needs).
pub fn opens_without_passphrase(path: &Path) -> bool {
    load_secret_key(path, None).is_ok()
}

/// How many times a key's passphrase is asked for.
const PASSPHRASE_TRIES: usize = 3;

/// Whether a load error means "encrypted": the error for a missing
/// passphrase differs between key formats.
fn looks_encrypted(path: &Path, e: &russh::keys::Error) -> bool {
    if matches!(e, russh::keys::Error::KeyIsEncrypted) {
        return true;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}
