//! The helper's errors: what went wrong, with its cause kept as a source,
//! and the one mapping to the wire's [`RemoteError`] (its kind and the
//! message the user reads), made where a session answers its client
//! ([`crate::serve`]).

use std::io;

use offsnap_protocol::manifest::ManifestError;
use offsnap_protocol::{ErrorKind, FrameError, RemoteError};

/// What went wrong on the helper.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client broke the protocol or sent an invalid value.
    #[error("{0}")]
    Protocol(String),
    /// This host's settings or limits refuse it.
    #[error("{0}")]
    Refused(String),
    /// Another run holds the set's lock.
    #[error("{0}")]
    Locked(String),
    /// The set, snapshot or path does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The backup root or a set is not laid out as this helper expects.
    #[error("{0}")]
    Layout(String),
    /// A file's content did not match its hash.
    #[error("{0}")]
    Mismatch(String),
    /// Stored data does not read: a manifest, a content index.
    #[error("{context}: {source}")]
    Corrupt {
        /// What was being read.
        context: String,
        /// Why it does not read.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A filesystem call failed.
    #[error("{}", io_message(context, source))]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        source: io::Error,
    },
    /// A manifest failed to be written or read (other than by I/O: that is
    /// [`Error::Io`]).
    #[error("{context}: {source}")]
    Manifest {
        /// What was being done.
        context: String,
        /// The failure.
        source: ManifestError,
    },
    /// An answer could not be sent to the client.
    #[error("sending to the client: {0}")]
    Send(#[source] FrameError),
}

/// The message of a filesystem error. A full disk is said in words: "No
/// space left on device" alone does not tell a client which machine's disk
/// is full.
fn io_message(context: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::StorageFull => format!(
            "{context}: no space left on the disk holding the backups (remove old snapshots with offsnap prune, or free space there)"
        ),
        io::ErrorKind::QuotaExceeded => {
            format!("{context}: disk quota exceeded on the disk holding the backups")
        }
        _ => format!("{context}: {e}"),
    }
}

impl Error {
    /// The kind the client is told.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Protocol(_) => ErrorKind::Protocol,
            Error::Refused(_) => ErrorKind::Refused,
            Error::Locked(_) => ErrorKind::Locked,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Mismatch(_) | Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Layout(_) | Error::Manifest { .. } | Error::Send(_) => ErrorKind::Io,
            Error::Io { source, .. } => match source.kind() {
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::Io,
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::InvalidInput | io::ErrorKind::AlreadyExists => ErrorKind::Protocol,
                io::ErrorKind::InvalidData => ErrorKind::Corrupt,
                _ => ErrorKind::Io,
            },
        }
    }

    /// What the client is told: the one mapping to the wire.
    pub fn to_wire(&self) -> RemoteError {
        RemoteError {
            kind: self.kind(),
            message: self.to_string(),
        }
    }

    /// Stored data that does not read, with why.
    pub fn corrupt(
        context: impl std::fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Corrupt {
            context: context.to_string(),
            source: source.into(),
        }
    }
}

/// The client broke the protocol.
pub fn protocol(message: impl Into<String>) -> Error {
    Error::Protocol(message.into())
}

/// A filesystem error, with what was being done.
pub fn io(context: impl std::fmt::Display, e: io::Error) -> Error {
    Error::Io {
        context: context.to_string(),
        source: e,
    }
}

/// A manifest that failed to be written or read; its I/O failures read
/// like any other ([`io`]).
pub fn manifest(context: impl std::fmt::Display, e: ManifestError) -> Error {
    match e {
        ManifestError::Io(e) => io(context, e),
        e => Error::Manifest {
            context: context.to_string(),
            source: e,
        },
    }
}

/// Adds context to an `io::Result`.
pub trait Context<T> {
    /// Maps the error with [`io`].
    fn ctx(self, context: impl std::fmt::Display) -> Result<T, Error>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, context: impl std::fmt::Display) -> Result<T, Error> {
        self.map_err(|e| io(context, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_said_in_words() {
        let enospc = rustix::io::Errno::NOSPC.raw_os_error();
        let e = io("src/big.bin", io::Error::from_raw_os_error(enospc)).to_wire();
        assert_eq!(e.kind, ErrorKind::Io);
        assert!(
            e.message
                .starts_with("src/big.bin: no space left on the disk holding the backups"),
            "{}",
            e.message
        );
    }

    #[test]
    fn io_errors_keep_their_cause_and_map_to_the_wire_kinds() {
        let cases = [
            (io::ErrorKind::NotFound, ErrorKind::NotFound),
            (io::ErrorKind::AlreadyExists, ErrorKind::Protocol),
            (io::ErrorKind::InvalidInput, ErrorKind::Protocol),
            (io::ErrorKind::InvalidData, ErrorKind::Corrupt),
            (io::ErrorKind::PermissionDenied, ErrorKind::Io),
        ];
        for (io_kind, wire) in cases {
            let e = io("a/b", io::Error::new(io_kind, "why"));
            assert_eq!(e.kind(), wire, "{io_kind:?}");
            assert_eq!(e.to_wire().message, "a/b: why");
            let source = std::error::Error::source(&e).map(ToString::to_string);
            assert_eq!(source.as_deref(), Some("why"));
        }
    }

    #[test]
    fn a_manifest_failure_by_io_reads_like_any_io_failure() {
        let e = manifest("writing", ManifestError::Io(io::Error::other("disk")));
        assert!(matches!(e, Error::Io { .. }));
        assert_eq!(e.to_string(), "writing: disk");
    }
}
