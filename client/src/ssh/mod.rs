//! The SSH transport: connect with russh, check the host key, log in, and
//! run the helper on the backup host with its stdin/stdout as the two
//! byte streams. The connection goes straight to the host, through jump
//! hosts (each checked and logged in to on its own, the next one reached
//! over a `direct-tcpip` channel of the one before), or over a
//! ProxyCommand's stdin/stdout (see [`route`]).
//!
//! russh is asynchronous; everything above the transport is plain threads.
//! The transport owns a small tokio runtime. One task forwards the helper's
//! stdout into a bounded queue that a blocking `Read` drains, and shows the
//! helper's stderr on ours; another drains a bounded queue filled by a
//! blocking `Write` into the channel. The exit status is kept for
//! [`Transport::finish`]. (russh's `into_stream()` would lose stderr and
//! the exit status.)

pub mod auth;
pub mod config;
pub mod external;
pub mod hostkeys;
pub mod resolve;
pub mod route;

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::{ChannelMsg, Preferred, cipher};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::Error;
use crate::remote_cmd::RemoteCommand;
use crate::transport::{Streams, Transport};
use hostkeys::{HostKeyPolicy, HostKeyVerifier};

/// Why an SSH connection failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The host key is unknown, changed or revoked.
    #[error("{0}")]
    HostKey(String),
    /// No key was accepted.
    #[error("{0}")]
    Auth(String),
    /// `~/.ssh/config` could not be read.
    #[error("ssh config: {0}")]
    Config(String),
    /// The SSH protocol failed.
    #[error("ssh: {0}")]
    Protocol(#[from] russh::Error),
    /// The connection could not be made.
    #[error("{0}")]
    Connect(String),
}

/// Everything needed to reach a host and start the helper there.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// What the user wrote (alias or host), for messages.
    pub alias: String,
    /// The address to connect to.
    pub host_name: String,
    /// The port.
    pub port: u16,
    /// The login.
    pub user: String,
    /// The host-key checker settings.
    pub known_hosts: PathBuf,
    /// The name keys are recorded under.
    pub known_hosts_name: String,
    /// Unknown-host policy.
    pub policy: HostKeyPolicy,
    /// Key files to try after the agent, in order.
    pub identity_files: Vec<PathBuf>,
    /// Keepalive interval.
    pub keepalive: Duration,
    /// How the host is reached.
    pub via: Via,
}

/// How a host is reached.
#[derive(Debug, Clone)]
pub enum Via {
    /// A TCP connection to `host_name:port`.
    Direct,
    /// A `direct-tcpip` channel from this jump host (itself reached as
    /// its own `via` says).
    Jump(Box<SshTarget>),
    /// SSH over the stdin/stdout of this shell command (tokens expanded).
    Command(String),
}

/// AES-GCM first (hardware AES makes it the fastest), then
/// chacha20-poly1305 for peers without AES-GCM, then CTR modes.
const CIPHERS: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
];

fn client_config(target: &SshTarget, verifier: &HostKeyVerifier) -> client::Config {
    let mut preferred = Preferred {
        cipher: Cow::Borrowed(CIPHERS),
        ..Preferred::default()
    };
    // Ask for a host-key type already on record, as OpenSSH does, so a
    // server with several host keys shows the one we can check.
    let known = verifier.known_algorithms();
    if !known.is_empty() {
        let mut keys = known.clone();
        keys.extend(preferred.key.iter().filter(|a| !known.contains(a)).cloned());
        preferred.key = Cow::Owned(keys);
    }
    client::Config {
        preferred,
        keepalive_interval: Some(target.keepalive),
        keepalive_max: 3,
        inactivity_timeout: None,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 32768,
        nodelay: true,
        ..Default::default()
    }
}

struct Handler {
    verifier: HostKeyVerifier,
}

impl client::Handler for Handler {
    type Error = SshError;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, SshError> {
        match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.verifier.verify(key)?;
                Ok(true)
            }
            PublicKeyOrCertificate::Certificate(_) => Ok(false),
        }
    }

    async fn auth_banner(
        &mut self,
        banner: &str,
        _session: &mut client::Session,
    ) -> Result<(), SshError> {
        eprint!("{banner}");
        Ok(())
    }
}

/// How the remote command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Exit {
    Code(u32),
    Signal(String),
    /// The channel closed without a status: the connection was lost.
    Lost,
}

/// The helper running on an SSH host.
pub struct SshTransport {
    streams: Option<Streams>,
    exit: Option<oneshot::Receiver<Exit>>,
    alias: String,
    command: RemoteCommand,
    // Dropped before the runtime (field order); the jump hosts' sessions
    // and a ProxyCommand after the target's.
    handle: Option<Handle<Handler>>,
    route: route::Route,
    rt: tokio::runtime::Runtime,
}

impl SshTransport {
    /// Connects (through the target's jump hosts or ProxyCommand), checks
    /// the host key, logs in and starts `command`.
    pub fn start(target: &SshTarget, command: &RemoteCommand) -> Result<SshTransport, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("offsnap-ssh")
            .enable_all()
            .build()
            .map_err(|e| Error::Local(format!("cannot start the SSH runtime: {e}")))?;
        let (handle, route) = rt.block_on(route::connect(target))?;
        let (streams, exit) = rt.block_on(exec(&handle, &command.line))?;
        Ok(SshTransport {
            streams: Some(streams),
            exit: Some(exit),
            alias: target.alias.clone(),
            command: command.clone(),
            handle: Some(handle),
            route,
            rt,
        })
    }

    fn exit_status(&mut self) -> Exit {
        match self.exit.take() {
            Some(rx) => rx.blocking_recv().unwrap_or(Exit::Lost),
            None => Exit::Lost,
        }
    }
}

const STDOUT_QUEUE: usize = 64;
const STDIN_QUEUE: usize = 16;
const STDIN_CHUNK: usize = 64 * 1024;

async fn exec(
    handle: &Handle<Handler>,
    command: &str,
) -> Result<(Streams, oneshot::Receiver<Exit>), Error> {
    let (channel, early) = start(handle, command).await?;
    let (read_half, write_half) = channel.split();
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(STDOUT_QUEUE);
    let (in_tx, in_rx) = mpsc::channel::<Bytes>(STDIN_QUEUE);
    let (exit_tx, exit_rx) = oneshot::channel();
    let (closed_tx, closed_rx) = watch::channel(false);
    tokio::spawn(forward_stdin(write_half, in_rx, closed_rx));
    tokio::spawn(async move {
        let status = forward_output(read_half, early, out_tx).await;
        let _ = closed_tx.send(true);
        let _ = exit_tx.send(status);
    });
    Ok((
        Streams {
            from: Box::new(ChannelReader {
                rx: out_rx,
                cur: Bytes::new(),
            }),
            to: Box::new(ChannelWriter {
                tx: Some(in_tx),
                buf: BytesMut::with_capacity(STDIN_CHUNK),
            }),
        },
        exit_rx,
    ))
}

/// Opens a session channel and runs `command` in it; returns the channel
/// and what arrived before the server said it runs it.
async fn start(
    handle: &Handle<Handler>,
    command: &str,
) -> Result<(russh::Channel<client::Msg>, Vec<ChannelMsg>), Error> {
    let mut channel = handle
        .channel_open_session()
        .await
        .map_err(|e| Error::Transport(format!("opening an SSH session: {e}")))?;
    channel
        .exec(true, command)
        .await
        .map_err(|e| Error::Transport(format!("starting the helper: {e}")))?;
    let mut early = Vec::new();
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) => return Ok((channel, early)),
            Some(ChannelMsg::Failure) => {
                return Err(Error::Transport(format!(
                    "the server refused to run {command:?}"
                )));
            }
            Some(ChannelMsg::WindowAdjusted { .. }) => {}
            Some(other) => early.push(other),
            None => return Err(SshError::Connect("the SSH session closed".into()).into()),
        }
    }
}

/// Our stdin queue into the channel; EOF when the blocking side is dropped.
/// A closed channel grants no more window: stop waiting for it then.
async fn forward_stdin(
    write_half: russh::ChannelWriteHalf<client::Msg>,
    mut in_rx: mpsc::Receiver<Bytes>,
    mut closed_rx: watch::Receiver<bool>,
) {
    loop {
        let chunk = tokio::select! {
            c = in_rx.recv() => match c { Some(c) => c, None => break },
            _ = closed_rx.wait_for(|c| *c) => return,
        };
        tokio::select! {
            r = write_half.data_bytes(chunk) => if r.is_err() { return },
            _ = closed_rx.wait_for(|c| *c) => return,
        }
    }
    let _ = write_half.eof().await;
}

/// Everything the helper sends (the messages that came early first):
/// stdout to the queue, stderr to ours; returns its exit status.
async fn forward_output(
    mut read_half: russh::ChannelReadHalf,
    early: Vec<ChannelMsg>,
    out_tx: mpsc::Sender<Bytes>,
) -> Exit {
    let mut out_tx = Some(out_tx);
    let mut status = Exit::Lost;
    let mut early = early.into_iter();
    loop {
        let msg = match early.next() {
            Some(m) => m,
            None => match read_half.wait().await {
                Some(m) => m,
                None => break,
            },
        };
        match msg {
            ChannelMsg::Data { data } => {
                if let Some(tx) = &out_tx
                    && tx.send(data).await.is_err()
                {
                    out_tx = None;
                }
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                let mut err = io::stderr().lock();
                // The helper's messages, escaped for the terminal.
                let shown = offsnap_protocol::text::shown_lines(&data);
                let _ = err.write_all(shown.as_bytes());
                let _ = err.flush();
            }
            ChannelMsg::Eof => out_tx = None,
            ChannelMsg::ExitStatus { exit_status } => status = Exit::Code(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                status = Exit::Signal(format!("{signal_name:?}"))
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    status
}

impl Transport for SshTransport {
    fn streams(&mut self) -> crate::Result<Streams> {
        self.streams
            .take()
            .ok_or_else(|| Error::Transport("the helper's streams were taken".into()))
    }

    fn finish(&mut self) -> crate::Result<()> {
        drop(self.streams.take());
        let status = self.exit_status();
        if let Some(h) = self.handle.take() {
            let _ = self
                .rt
                .block_on(h.disconnect(russh::Disconnect::ByApplication, "", "en"));
        }
        self.rt.block_on(self.route.close());
        match status {
            Exit::Code(0) => Ok(()),
            Exit::Code(127) => Err(Error::Transport(self.command.missing(&self.alias))),
            Exit::Code(n) => Err(Error::Transport(format!(
                "the helper on {} failed (exit status {n})",
                self.alias
            ))),
            Exit::Signal(s) => Err(Error::Transport(format!(
                "the helper on {} was killed by signal {s}",
                self.alias
            ))),
            Exit::Lost => Err(Error::Transport(format!(
                "the connection to {} was lost",
                self.alias
            ))),
        }
    }

    fn kill(&mut self) {
        drop(self.streams.take());
        if let Some(h) = self.handle.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    h.disconnect(russh::Disconnect::ByApplication, "", "en"),
                )
                .await
            });
        }
        self.rt.block_on(self.route.close());
    }
}

/// The helper's stdout, as a blocking reader.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// The helper's stdin, as a blocking writer; dropping it sends EOF.
struct ChannelWriter {
    tx: Option<mpsc::Sender<Bytes>>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        tx.blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the SSH channel is closed"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tx.is_none() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let n = (STDIN_CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= STDIN_CHUNK {
            self.send_buf()?;
            self.buf.reserve(STDIN_CHUNK);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.send_buf();
        self.tx = None;
    }
}
