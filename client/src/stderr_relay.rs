//! A child's stderr copied to ours, escaped: the helper started by
//! `--remote-cmd`, the system SSH client of `--ssh` (which carries the
//! remote helper's stderr) and a ProxyCommand all write through here, so a
//! hostile or broken peer cannot drive the user's terminal with escape
//! sequences (see [`offsnap_protocol::text::shown_lines`]).
//!
//! A thread reads the pipe and writes whole lines (or [`LINE_MAX`] bytes of
//! a longer one) escaped; the child's transport waits for it when the
//! child is done, for at most [`DRAIN_WAIT`] (a process the child left
//! behind, such as an SSH control master, may hold the pipe open).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

/// The longest piece written at once without a line end.
pub const LINE_MAX: usize = 4096;
/// How long [`Relay::finish`] waits for the pipe's last lines.
pub const DRAIN_WAIT: Duration = Duration::from_millis(500);

/// The thread copying one child's stderr (see the module documentation).
pub struct Relay {
    done: Option<mpsc::Receiver<()>>,
}

impl Relay {
    /// Starts copying `from` to our stderr.
    pub fn start(from: impl Read + Send + 'static) -> Relay {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("stderr-relay".into())
            .spawn(move || {
                let _ = copy(from, &mut io::stderr());
                let _ = tx.send(());
            });
        Relay {
            done: spawned.ok().map(|_| rx),
        }
    }

    /// Waits (a little) until everything the child wrote is shown.
    pub fn finish(&mut self) {
        if let Some(rx) = self.done.take() {
            let _ = rx.recv_timeout(DRAIN_WAIT);
        }
    }
}

/// Copies `from` to `to` a line at a time, escaped, until end of file.
pub fn copy(from: impl Read, to: &mut impl Write) -> io::Result<()> {
    let mut from = BufReader::with_capacity(LINE_MAX, from);
    let mut line = Vec::with_capacity(LINE_MAX);
    loop {
        line.clear();
        let n = (&mut from)
            .take(LINE_MAX as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(offsnap_protocol::text::shown_lines(&line).as_bytes())?;
        to.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_and_long_lines_cut() -> io::Result<()> {
        let mut out = Vec::new();
        copy(&b"a\x1b]0;owned\x07\nplain\n"[..], &mut out)?;
        assert_eq!(out, b"a\\x1b]0;owned\\x07\nplain\n");
        let long = vec![b'x'; LINE_MAX * 2 + 5];
        let mut out = Vec::new();
        copy(&long[..], &mut out)?;
        assert_eq!(out, long);
        Ok(())
    }
}
