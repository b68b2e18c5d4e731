//! The client library's error type.

use std::io;
use std::path::PathBuf;

use offsnap_protocol::{FrameError, RemoteError};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The helper reported an error.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The connection to the helper failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The SSH connection could not be made or failed, by kind (host
    /// key, login, config, connection, protocol).
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
    /// The helper could not be started or ended badly.
    #[error("{0}")]
    Transport(String),
    /// The helper answered something the protocol does not allow here.
    #[error("unexpected answer from the helper: {0}")]
    Unexpected(String),
    /// A local file operation failed (the path shown escaped: it may
    /// hold a name from a manifest).
    #[error("{}: {error}", offsnap_protocol::text::shown(path.as_os_str().as_encoded_bytes()))]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What failed (its message is shown here, not as a cause).
        error: io::Error,
    },
    /// The command line or its arguments are wrong.
    #[error("{0}")]
    Usage(String),
    /// Received data does not match its recorded hash.
    #[error("{0}")]
    Corrupt(String),
    /// The command was refused to protect what exists (a restore that
    /// would overwrite files); nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// Something on this machine that is no file failed: a runtime, a
    /// listening socket, the web server.
    #[error("{0}")]
    Local(String),
    /// This machine lacks what the command needs (`HOME`, a hostname, a
    /// program it runs).
    #[error("{0}")]
    Environment(String),
    /// SIGINT or SIGTERM stopped the run; says what was kept.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl Error {
    /// A local I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, error: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            error,
        }
    }

    /// The exit status this error ends `offsnap` with: 2 for bad
    /// arguments, 4 for a refusal that protects existing files, 130 when
    /// interrupted, 1 for everything else (see [`crate::cli::EXIT_CODES`]).
    pub fn exit_status(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Refused(_) => 4,
            Error::Interrupted(_) => crate::interrupt::EXIT_STATUS,
            _ => 1,
        }
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::SshError;

    #[test]
    fn the_exit_status_comes_from_the_kind() {
        assert_eq!(Error::Usage("bad".into()).exit_status(), 2);
        assert_eq!(Error::Refused("exists".into()).exit_status(), 4);
        assert_eq!(
            Error::Interrupted("kept".into()).exit_status(),
            crate::interrupt::EXIT_STATUS
        );
        for e in [
            Error::from(SshError::HostKey("changed".into())),
            Error::from(SshError::Connect("refused".into())),
            Error::Local("no runtime".into()),
            Error::Environment("HOME is not set".into()),
            Error::Transport("the helper failed".into()),
            Error::io("/x", io::Error::from(io::ErrorKind::NotFound)),
        ] {
            assert_eq!(e.exit_status(), 1, "{e}");
        }
    }

    #[test]
    fn a_connection_kind_reads_as_its_message() {
        let e = Error::from(SshError::Connect("connecting to h timed out".into()));
        assert_eq!(e.to_string(), "connecting to h timed out");
        let e = Error::io("/a\x1b[2Jb", io::Error::from(io::ErrorKind::NotFound));
        assert!(!e.to_string().contains('\x1b'), "{e}");
    }
}
