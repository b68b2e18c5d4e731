//! Notes the helper prints on stderr while it works, prefixed with the
//! running program's name: `offsnap-remote:` from the helper on a backup
//! host, `offsnap:` when the client serves a local destination in its own
//! process, so that each reads as the message of the tool the user ran.

use std::sync::OnceLock;

/// The running program's file name (`offsnap-remote` when unknown).
pub fn program() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "offsnap-remote".into())
    })
}

/// Prints `PROGRAM: MESSAGE` on stderr.
pub fn note(message: &str) {
    eprintln!("{}: {message}", program());
}
