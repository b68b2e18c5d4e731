//! `--ssh CMD`: the system's SSH client (or any program called like it)
//! as the transport, for what the built-in client cannot do (security
//! keys, certificates, ControlMaster, GSSAPI, `Match` blocks). It runs
//! `CMD [OPTIONS] [user@]host COMMAND`; the command line is the same as
//! with the built-in client, and so is everything above the two streams.
//! Its stderr, which carries the helper's, is shown escaped
//! ([`crate::stderr_relay`]).
//! The client's exit status is the remote command's, or 255 for its own
//! failures, as OpenSSH's and dropbear's are.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command};

use super::SshError;
use crate::error::{Error, Result};
use crate::remote_cmd::RemoteCommand;
use crate::transport::{Streams, Transport};

/// What the external client is told, besides its own configuration.
#[derive(Debug, Clone, Default)]
pub struct ExternalTarget {
    /// The host as the user wrote it (a `~/.ssh/config` alias works).
    pub host: String,
    /// The user, if given.
    pub user: Option<String>,
    /// `-p PORT`, if given.
    pub port: Option<u16>,
    /// `-i KEY`, if given.
    pub identity: Option<PathBuf>,
    /// `-J JUMPS`, if given.
    pub jump: Option<String>,
    /// `--accept-new-host-key`: passed as `-o StrictHostKeyChecking=accept-new`.
    pub accept_new_host_key: bool,
}

impl ExternalTarget {
    /// The arguments after the client's own words: options, then
    /// `[user@]host`.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        if let Some(p) = self.port {
            a.extend(["-p".into(), p.to_string().into()]);
        }
        if let Some(i) = &self.identity {
            a.extend(["-i".into(), i.clone().into_os_string()]);
        }
        if let Some(j) = &self.jump {
            a.extend(["-J".into(), j.into()]);
        }
        if self.accept_new_host_key {
            a.extend(["-o".into(), "StrictHostKeyChecking=accept-new".into()]);
        }
        a.push(match &self.user {
            Some(u) => format!("{u}@{}", self.host).into(),
            None => self.host.clone().into(),
        });
        a
    }
}

/// A command running on a host through an external SSH client.
pub struct ExternalSsh {
    child: Child,
    /// Its stderr (the helper's too), shown escaped.
    stderr: crate::stderr_relay::Relay,
    program: String,
    host: String,
    command: RemoteCommand,
}

impl ExternalSsh {
    /// Starts `ssh` (program and leading arguments) to run `command`.
    pub fn start(
        ssh: &[String],
        target: &ExternalTarget,
        command: &RemoteCommand,
    ) -> Result<ExternalSsh> {
        let Some((program, lead)) = ssh.split_first() else {
            return Err(Error::Usage("--ssh is empty".into()));
        };
        let mut cmd = Command::new(program);
        cmd.args(lead).args(target.args()).arg(&command.line);
        let (child, stderr) =
            crate::transport::spawn_piped(cmd, program, ("the SSH client", "--ssh"))?;
        Ok(ExternalSsh {
            child,
            stderr,
            program: program.clone(),
            host: target.host.clone(),
            command: command.clone(),
        })
    }
}

/// As for the helper's own process (see `transport::ChildTransport`): the
/// last lines on the SSH client's stderr are shown before the client exits.
impl Drop for ExternalSsh {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        self.stderr.finish();
    }
}

impl Transport for ExternalSsh {
    fn streams(&mut self) -> Result<Streams> {
        let (Some(to), Some(from)) = (self.child.stdin.take(), self.child.stdout.take()) else {
            return Err(Error::Transport(
                "the SSH client's streams were taken".into(),
            ));
        };
        Ok(Streams {
            from: Box::new(from),
            to: Box::new(to),
        })
    }

    fn finish(&mut self) -> Result<()> {
        drop(self.child.stdin.take());
        let status = self
            .child
            .wait()
            .map_err(|e| Error::Transport(format!("waiting for {}: {e}", self.program)))?;
        self.stderr.finish();
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(()),
            (Some(127), _) => Err(Error::Transport(self.command.missing(&self.host))),
            (Some(255), _) => Err(SshError::Connect(format!(
                "{} could not reach {} or lost the connection (exit status 255; its \
                 messages are above)",
                self.program, self.host
            ))
            .into()),
            (Some(n), _) => Err(Error::Transport(format!(
                "the helper on {} failed (exit status {n})",
                self.host
            ))),
            (None, sig) => Err(Error::Transport(format!(
                "the SSH client {} was killed by signal {}",
                self.program,
                sig.unwrap_or(0)
            ))),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_go_before_the_host() {
        let t = ExternalTarget {
            host: "nas".into(),
            user: Some("alice".into()),
            port: Some(2222),
            identity: Some("/k".into()),
            jump: Some("gw".into()),
            accept_new_host_key: true,
        };
        let a: Vec<String> = t
            .args()
            .iter()
            .map(|s| s.to_string_lossy().into())
            .collect();
        assert_eq!(
            a,
            [
                "-p",
                "2222",
                "-i",
                "/k",
                "-J",
                "gw",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "alice@nas"
            ]
        );
        assert_eq!(
            ExternalTarget {
                host: "h".into(),
                ..Default::default()
            }
            .args(),
            ["h"]
        );
    }
}
