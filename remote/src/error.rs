//! Building the errors the helper reports to the client.

use std::io;

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

/// A filesystem error, with what was being done.
pub fn io(context: impl std::fmt::Display, e: io::Error) -> RemoteError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::InvalidInput | io::ErrorKind::AlreadyExists => ErrorKind::Protocol,
        io::ErrorKind::InvalidData => ErrorKind::Corrupt,
        _ => ErrorKind::Io,
    };
    err(kind, format!("{context}: {e}"))
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
