//! Building the errors the helper reports to the client.

use std::io;

use offsnap_protocol::manifest::ManifestError;
use offsnap_protocol::{ErrorKind, RemoteError};

/// An error of `kind` with a message for the user.
pub fn err(kind: ErrorKind, message: impl Into<String>) -> RemoteError {
    RemoteError {
        kind,
        message: message.into(),
    }
}

/// The client broke the protocol.
pub fn protocol(message: impl Into<String>) -> RemoteError {
    err(ErrorKind::Protocol, message)
}

/// A filesystem error, with what was being done. A full disk is said in
/// words: "No space left on device" alone does not tell a client which
/// machine's disk is full.
pub fn io(context: impl std::fmt::Display, e: io::Error) -> RemoteError {
    match e.kind() {
        io::ErrorKind::StorageFull => {
            return err(
                ErrorKind::Io,
                format!(
                    "{context}: no space left on the disk holding the backups (remove old snapshots with offsnap prune, or free space there)"
                ),
            );
        }
        io::ErrorKind::QuotaExceeded => {
            return err(
                ErrorKind::Io,
                format!("{context}: disk quota exceeded on the disk holding the backups"),
            );
        }
        _ => {}
    }
    let kind = match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::InvalidInput | io::ErrorKind::AlreadyExists => ErrorKind::Protocol,
        io::ErrorKind::InvalidData => ErrorKind::Corrupt,
        _ => ErrorKind::Io,
    };
    err(kind, format!("{context}: {e}"))
}

/// A manifest that failed to be written or read; its I/O failures read
/// like any other ([`io`]).
pub fn manifest(context: impl std::fmt::Display, e: ManifestError) -> RemoteError {
    match e {
        ManifestError::Io(e) => io(context, e),
        e => err(ErrorKind::Io, format!("{context}: {e}")),
    }
}

/// Adds context to an `io::Result`.
pub trait Context<T> {
    /// Maps the error with [`io`].
    fn ctx(self, context: impl std::fmt::Display) -> Result<T, RemoteError>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, context: impl std::fmt::Display) -> Result<T, RemoteError> {
        self.map_err(|e| io(context, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_said_in_words() {
        let enospc = rustix::io::Errno::NOSPC.raw_os_error();
        let e = io("src/big.bin", io::Error::from_raw_os_error(enospc));
        assert_eq!(e.kind, ErrorKind::Io);
        assert!(
            e.message
                .starts_with("src/big.bin: no space left on the disk holding the backups"),
            "{}",
            e.message
        );
    }
}
