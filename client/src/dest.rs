//! Backup destinations as users write them, and connecting to them.

use std::ffi::OsStr;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::session::Session;
use crate::transport::{ChildTransport, InProcess, Transport};

/// Where the backups live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A directory on this machine (a mounted disk, a NAS mount, …).
    Local(PathBuf),
}

impl Dest {
    /// Parses a destination argument.
    pub fn parse(s: &str) -> Result<Dest> {
        if s.is_empty() {
            return Err(Error::Usage("the destination is empty".into()));
        }
        if s.starts_with("ssh://") || looks_like_host_path(s) {
            return Err(Error::Usage(format!(
                "{s:?} looks like an SSH destination, which this build does not support yet; use a local path (write ./{s} for a local directory with a colon in its name)"
            )));
        }
        Ok(Dest::Local(PathBuf::from(s)))
    }
}

/// `host:path` the way scp and rsync read it: a colon before any slash.
fn looks_like_host_path(s: &str) -> bool {
    match (s.find(':'), s.find('/')) {
        (Some(c), Some(sl)) => c < sl && c > 0,
        (Some(c), None) => c > 0,
        _ => false,
    }
}

/// How to reach the helper.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The helper command, split into words; `None` for the default.
    pub remote_cmd: Option<Vec<String>>,
}

/// Starts a helper for `dest` and opens a session with it. A local
/// destination is served by the helper library inside this process,
/// unless a helper command is given.
pub fn connect(dest: &Dest, opts: &ConnectOptions) -> Result<Session> {
    let transport: Box<dyn Transport> = match (dest, &opts.remote_cmd) {
        (Dest::Local(root), None) => {
            let root = std::path::absolute(root).map_err(|e| Error::io(root, e))?;
            Box::new(InProcess::start(offsnap_remote::Config {
                root,
                access: offsnap_remote::Access::Full,
                clock: offsnap_remote::Clock::from_env().map_err(Error::Usage)?,
            })?)
        }
        (Dest::Local(root), Some(cmd)) => {
            let root = std::path::absolute(root).map_err(|e| Error::io(root, e))?;
            Box::new(ChildTransport::spawn(
                cmd,
                &[OsStr::new("serve"), OsStr::new("--root"), root.as_os_str()],
            )?)
        }
    };
    Session::connect(transport)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_are_recognised() {
        assert!(looks_like_host_path("host:/srv"));
        assert!(looks_like_host_path("user@host:backups"));
        assert!(!looks_like_host_path("/mnt/usb:x"));
        assert!(!looks_like_host_path("./a:b"));
        assert!(!looks_like_host_path(":x"));
        assert!(matches!(Dest::parse("/tmp/b"), Ok(Dest::Local(_))));
    }
}
