//! How the client reaches the helper: a pair of byte streams and a way to
//! learn how the helper ended. Everything above this trait is the same for
//! a local child process, an in-process thread and (later) SSH.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// The streams to and from a helper.
pub struct Streams {
    /// Bytes from the helper.
    pub from: Box<dyn Read + Send>,
    /// Bytes to the helper; dropping it tells the helper we are done.
    pub to: Box<dyn Write + Send>,
}

/// A running helper.
pub trait Transport: Send {
    /// Takes the streams (once).
    fn streams(&mut self) -> Result<Streams>;
    /// Waits for the helper to end; an error describes how it failed.
    fn finish(&mut self) -> Result<()>;
    /// Stops the helper now (after an error on our side).
    fn kill(&mut self);
}

/// Ends a session that failed with `e`: when the stream from the helper
/// broke, the transport's account (exit status, lost connection) explains
/// more than "connection closed"; otherwise the helper is stopped.
pub fn fail(transport: &mut dyn Transport, e: Error) -> Error {
    use offsnap_protocol::FrameError;
    match e {
        Error::Frame(FrameError::Closed | FrameError::Truncated | FrameError::Io(_)) => {
            match transport.finish() {
                Err(why) => why,
                Ok(()) => e,
            }
        }
        e => {
            transport.kill();
            e
        }
    }
}

/// The helper as a child process of the client, talking over its
/// stdin/stdout; its stderr is shown on the client's, escaped.
pub struct ChildTransport {
    program: String,
    child: Child,
    stderr: crate::stderr_relay::Relay,
}

impl ChildTransport {
    /// Starts `command` (program and leading arguments) with `args` after it.
    pub fn spawn(command: &[String], args: &[&std::ffi::OsStr]) -> Result<ChildTransport> {
        let Some((program, lead)) = command.split_first() else {
            return Err(Error::Usage("the remote command is empty".into()));
        };
        let mut cmd = Command::new(program);
        cmd.args(lead).args(args);
        let (child, stderr) = spawn_piped(cmd, program, ("the helper", "--remote-cmd"))?;
        Ok(ChildTransport {
            program: program.clone(),
            child,
            stderr,
        })
    }
}

/// Starts `cmd` (running `program`) with its three streams piped and its
/// stderr relayed to ours; `what` names it in messages, `option` is the
/// option that chose it.
pub fn spawn_piped(
    mut cmd: Command,
    program: &str,
    (what, option): (&str, &str),
) -> Result<(Child, crate::stderr_relay::Relay)> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::Transport(format!(
                "cannot start {what} {program:?}: {e} (check {option})"
            ))
        })?;
    let Some(err) = child.stderr.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Transport(format!("{what}'s stderr is missing")));
    };
    Ok((child, crate::stderr_relay::Relay::start(err)))
}

impl Transport for ChildTransport {
    fn streams(&mut self) -> Result<Streams> {
        let (Some(to), Some(from)) = (self.child.stdin.take(), self.child.stdout.take()) else {
            return Err(Error::Transport("the helper's streams were taken".into()));
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
            .map_err(|e| Error::Transport(format!("waiting for the helper: {e}")))?;
        self.stderr.finish();
        if status.success() {
            Ok(())
        } else {
            Err(Error::Transport(format!(
                "the helper {:?} failed ({status})",
                self.program
            )))
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.finish();
    }
}

/// A session dropped after an error (its streams already closed) still
/// shows what the helper wrote last, such as why it refused: the relay is
/// given its bounded wait before the client goes on to exit.
impl Drop for ChildTransport {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        self.stderr.finish();
    }
}

/// The helper as a thread of this process, over a socket pair: fast tests
/// and the embedded local destination without a second binary.
pub struct InProcess {
    streams: Option<Streams>,
    /// Our end of the socket, to cut the session in [`Transport::kill`].
    cutter: Option<UnixStream>,
    thread: Option<JoinHandle<std::result::Result<(), String>>>,
}

impl InProcess {
    /// Starts a helper serving `cfg`.
    pub fn start(cfg: offsnap_remote::Config) -> Result<InProcess> {
        let (ours, theirs) = UnixStream::pair()
            .map_err(|e| Error::Local(format!("cannot make a socket pair: {e}")))?;
        let theirs_w = theirs
            .try_clone()
            .map_err(|e| Error::Local(format!("the in-process helper's socket: {e}")))?;
        let ours_w = ours
            .try_clone()
            .map_err(|e| Error::Local(format!("the in-process helper's socket: {e}")))?;
        let cutter = ours
            .try_clone()
            .map_err(|e| Error::Local(format!("the in-process helper's socket: {e}")))?;
        let thread = std::thread::spawn(move || {
            let res = offsnap_remote::serve(&theirs, &theirs_w, &cfg).map_err(|e| e.to_string());
            let _ = theirs.shutdown(std::net::Shutdown::Both);
            res
        });
        Ok(InProcess {
            streams: Some(Streams {
                from: Box::new(ours),
                to: Box::new(HalfCloser(ours_w)),
            }),
            cutter: Some(cutter),
            thread: Some(thread),
        })
    }
}

/// The writing half of a socket that shuts the socket's write side down
/// when dropped, so the peer reads end-of-stream.
struct HalfCloser(UnixStream);

impl Write for HalfCloser {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Drop for HalfCloser {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Write);
    }
}

impl Transport for InProcess {
    fn streams(&mut self) -> Result<Streams> {
        self.streams
            .take()
            .ok_or_else(|| Error::Transport("the helper's streams were taken".into()))
    }

    fn finish(&mut self) -> Result<()> {
        drop(self.streams.take());
        match self.thread.take().map(|t| t.join()) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(Error::Transport(format!("the helper failed: {e}"))),
            Some(Err(_)) => Err(Error::Transport("the helper thread panicked".into())),
        }
    }

    fn kill(&mut self) {
        drop(self.streams.take());
        if let Some(c) = self.cutter.take() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Any transport, each way limited to `rate` bytes per second (as rsync's
/// `--bwlimit` limits a transfer whichever way it goes).
pub struct Limited {
    /// The transport.
    pub inner: Box<dyn Transport>,
    /// Bytes per second.
    pub rate: u64,
}

impl Transport for Limited {
    fn streams(&mut self) -> Result<Streams> {
        let s = self.inner.streams()?;
        Ok(Streams {
            from: Box::new(Throttled::new(s.from, self.rate)),
            to: Box::new(Throttled::new(s.to, self.rate)),
        })
    }

    fn finish(&mut self) -> Result<()> {
        self.inner.finish()
    }

    fn kill(&mut self) {
        self.inner.kill()
    }
}

/// A writer or reader that keeps its average rate at or below `rate`
/// bytes per second (`--bwlimit`), sleeping as needed.
pub struct Throttled<W> {
    inner: W,
    rate: u64,
    start: std::time::Instant,
    sent: u64,
}

impl<W> Throttled<W> {
    /// Wraps `inner` at `rate` bytes per second (at least 1).
    pub fn new(inner: W, rate: u64) -> Throttled<W> {
        Throttled {
            inner,
            rate: rate.max(1),
            start: std::time::Instant::now(),
            sent: 0,
        }
    }
}

impl<W> Throttled<W> {
    /// Counts `n` bytes moved and sleeps until they are due.
    fn moved(&mut self, n: usize) {
        self.sent += n as u64;
        let due = std::time::Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

/// Small pieces keep the rate smooth.
const THROTTLE_PIECE: usize = 16 * 1024;

impl<R: Read> Read for Throttled<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(THROTTLE_PIECE);
        let n = self.inner.read(&mut buf[..n])?;
        self.moved(n);
        Ok(n)
    }
}

impl<W: Write> Write for Throttled<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(&buf[..buf.len().min(THROTTLE_PIECE)])?;
        self.moved(n);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Parses a rate as rsync does: a number of KiB per second, or with a
/// suffix `K`, `M`, `G` (powers of 1024); returns bytes per second.
pub fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (
            &t[..i],
            match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => {
                    return Err(format!(
                        "{s:?}: use a number of KiB/s, or a K, M or G suffix"
                    ));
                }
            },
        ),
        _ => (t, 1 << 10),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: use a number of KiB/s, or a K, M or G suffix"))?;
    if v.is_nan() || v <= 0.0 || !v.is_finite() {
        return Err(format!("{s:?}: the rate must be above zero"));
    }
    Ok(((v * mult as f64) as u64).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_like_rsync() {
        assert_eq!(parse_rate("100"), Ok(100 * 1024));
        assert_eq!(parse_rate("2M"), Ok(2 << 20));
        assert_eq!(parse_rate("1.5k"), Ok(1536));
        assert!(
            parse_rate("0").is_err() && parse_rate("fast").is_err() && parse_rate("2X").is_err()
        );
    }

    #[test]
    fn throttled_writes_keep_to_the_rate() -> std::io::Result<()> {
        let mut w = Throttled::new(Vec::new(), 400 * 1024);
        let t = std::time::Instant::now();
        w.write_all(&vec![0u8; 200 * 1024])?;
        let took = t.elapsed().as_secs_f64();
        assert!(took >= 0.45, "{took}");
        Ok(())
    }

    #[test]
    fn throttled_reads_keep_to_the_rate() -> std::io::Result<()> {
        let data = vec![7u8; 200 * 1024];
        let mut r = Throttled::new(&data[..], 400 * 1024);
        let t = std::time::Instant::now();
        let mut got = Vec::new();
        r.read_to_end(&mut got)?;
        let took = t.elapsed().as_secs_f64();
        assert_eq!(got, data);
        assert!(took >= 0.45, "{took}");
        Ok(())
    }
}
