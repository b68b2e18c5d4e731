//! Reaching a host as its [`Via`] says: a TCP connection; a
//! `direct-tcpip` channel opened on a jump host, itself reached the same
//! way (each hop has its own host-key check and login); or a
//! ProxyCommand, run by the shell, whose stdin/stdout carry the SSH
//! connection. What the route needs kept alive lives in [`Route`].

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};

use super::hostkeys::HostKeyVerifier;
use super::{Handler, SshError, SshTarget, Via, auth, client_config};
use crate::error::Error;

/// The jump hosts' sessions and the ProxyCommand a connection runs over.
#[derive(Default)]
pub struct Route {
    /// Jump host sessions, nearest to us first.
    jumps: Vec<Handle<Handler>>,
    /// A ProxyCommand's process.
    proxy: Option<tokio::process::Child>,
}

impl Route {
    /// Ends the route once the session over it has ended.
    pub async fn close(&mut self) {
        while let Some(h) = self.jumps.pop() {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                h.disconnect(russh::Disconnect::ByApplication, "", "en"),
            )
            .await;
        }
        if let Some(mut child) = self.proxy.take() {
            // It sees the end of its input; give it a moment, then stop it.
            if tokio::time::timeout(Duration::from_secs(2), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

type Connecting<'a> =
    Pin<Box<dyn Future<Output = Result<(Handle<Handler>, Route), Error>> + Send + 'a>>;

/// Connects to `target` along its route and logs in.
pub(super) fn connect(target: &SshTarget) -> Connecting<'_> {
    Box::pin(async move {
        let verifier = HostKeyVerifier {
            host: target.known_hosts_name.clone(),
            port: target.port,
            known_hosts: target.known_hosts.clone(),
            policy: target.policy,
        };
        let config = Arc::new(client_config(target, &verifier));
        let handler = Handler { verifier };
        let mut route = Route::default();
        let connecting = async {
            match &target.via {
                Via::Direct => {
                    client::connect(config, (target.host_name.as_str(), target.port), handler).await
                }
                Via::Jump(jump) => {
                    let (handle, before) = connect(jump).await?;
                    route = before;
                    let channel = handle
                        .channel_open_direct_tcpip(
                            target.host_name.as_str(),
                            u32::from(target.port),
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|e| {
                            Error::Ssh(SshError::Connect(format!(
                                "the jump host {} could not connect to {}:{}: {e}",
                                jump.alias, target.host_name, target.port
                            )))
                        })?;
                    route.jumps.push(handle);
                    client::connect_stream(config, channel.into_stream(), handler).await
                }
                Via::Command(cmd) => {
                    let (stream, child) = spawn_proxy(cmd)?;
                    route.proxy = Some(child);
                    client::connect_stream(config, stream, handler).await
                }
            }
            .map_err(|e| explain(target, e))
        };
        let handle = match tokio::time::timeout(Duration::from_secs(30), connecting).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                route.close().await;
                return Err(e);
            }
            Err(_) => {
                route.close().await;
                return Err(SshError::Connect(format!(
                    "connecting to {} timed out",
                    shown(target)
                ))
                .into());
            }
        };
        let mut handle = handle;
        if let Err(e) = auth::authenticate(&mut handle, target).await {
            route.close().await;
            return Err(e.into());
        }
        Ok((handle, route))
    })
}

/// `host:port`, and how it was reached when not directly.
fn shown(target: &SshTarget) -> String {
    match &target.via {
        Via::Direct => format!("{}:{}", target.host_name, target.port),
        Via::Jump(j) => format!(
            "{}:{} (through the jump host {})",
            target.host_name, target.port, j.alias
        ),
        Via::Command(c) => format!(
            "{}:{} (through ProxyCommand {c:?})",
            target.host_name, target.port
        ),
    }
}

impl From<Error> for SshError {
    fn from(e: Error) -> SshError {
        SshError::Connect(e.to_string())
    }
}

fn explain(target: &SshTarget, e: SshError) -> Error {
    match e {
        SshError::Protocol(russh::Error::IO(e)) => {
            SshError::Connect(format!("cannot connect to {}: {e}", shown(target))).into()
        }
        SshError::Protocol(russh::Error::Disconnect) if matches!(target.via, Via::Command(_)) => {
            SshError::Connect(format!(
                "the ProxyCommand for {} ended before the SSH connection was made \
                 (its messages, if any, are above)",
                target.alias
            ))
            .into()
        }
        e => e.into(),
    }
}

/// Starts a ProxyCommand as OpenSSH does (`sh -c 'exec CMD'`), its
/// stderr shown on ours, escaped.
fn spawn_proxy(
    cmd: &str,
) -> Result<
    (
        tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>,
        tokio::process::Child,
    ),
    Error,
> {
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {cmd}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SshError::Connect(format!("cannot run the ProxyCommand {cmd:?}: {e}")))?;
    if let Some(err) = child.stderr.take() {
        let fd = err
            .into_owned_fd()
            .map_err(|e| Error::Transport(format!("the ProxyCommand's stderr: {e}")))?;
        // Ends with the command; nothing waits for it.
        drop(crate::stderr_relay::Relay::start(std::fs::File::from(fd)));
    }
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(Error::Transport(
            "the ProxyCommand's pipes are missing".into(),
        ));
    };
    Ok((tokio::io::join(stdout, stdin), child))
}
