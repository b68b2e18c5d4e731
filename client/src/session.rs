//! A session with the helper: the hello exchange, then framed requests and
//! responses over a [`Transport`].

use std::io::{Read, Write};

use offsnap_protocol::{FrameError, FrameReader, FrameWriter, Hello, Request, Response};

use crate::error::{Error, Result};
use crate::transport::Transport;

/// The name this software gives in its hello.
pub fn software() -> String {
    format!("offsnap {}", env!("CARGO_PKG_VERSION"))
}

/// The receiving half of a session.
pub struct Receiver {
    inner: FrameReader<Box<dyn Read + Send>>,
}

impl Receiver {
    /// A receiver of responses from `from` (a session's, or any stream).
    pub fn over(from: Box<dyn Read + Send>) -> Receiver {
        Receiver {
            inner: FrameReader::new(from),
        }
    }

    /// The next response; a helper error becomes [`Error::Remote`]. Text
    /// meant for the user (errors, warnings, findings, prune reasons)
    /// arrives with its control characters escaped (see
    /// [`offsnap_protocol::text`]).
    pub fn recv(&mut self) -> Result<Response> {
        match crate::peer_text::clean(self.inner.read::<Response>()?) {
            Response::Error(e) => Err(Error::Remote(e)),
            r => Ok(r),
        }
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes_read()
    }
}

/// The sending half of a session.
pub struct Sender {
    inner: FrameWriter<Box<dyn Write + Send>>,
}

impl Sender {
    /// A sender of requests into `to` (a session's, or any stream).
    pub fn over(to: Box<dyn Write + Send>) -> Sender {
        Sender {
            inner: FrameWriter::new(to),
        }
    }

    /// Queues a request.
    pub fn send(&mut self, req: &Request) -> Result<()> {
        Ok(self.inner.write(req)?)
    }

    /// Sends what is queued.
    pub fn flush(&mut self) -> Result<()> {
        Ok(self.inner.flush()?)
    }

    /// Bytes sent so far.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes_written()
    }
}

/// A connected session.
pub struct Session {
    /// Requests to the helper.
    pub tx: Sender,
    /// Responses from it.
    pub rx: Receiver,
    transport: Box<dyn Transport>,
    /// The helper's software and version.
    pub remote_software: String,
    /// The helper's features and restrictions (e.g. `append-only`).
    pub remote_features: Vec<String>,
}

impl Session {
    /// Exchanges hellos over `transport`.
    pub fn connect(mut transport: Box<dyn Transport>) -> Result<Session> {
        let streams = transport.streams()?;
        let mut tx = FrameWriter::new(streams.to);
        let mut rx = FrameReader::new(streams.from);
        let ours = software();
        let sent = tx.write(&Hello::ours(&ours)).and_then(|()| tx.flush());
        let hello = match rx.read_hello(&ours) {
            Ok(h) => h,
            Err(FrameError::Closed | FrameError::Truncated) | Err(FrameError::Io(_)) => {
                drop(tx);
                let why = match transport.finish() {
                    Err(e) => e.to_string(),
                    Ok(()) => "it closed the connection".to_string(),
                };
                return Err(Error::Transport(format!(
                    "the helper ended before the session began: {why}"
                )));
            }
            Err(e) => {
                transport.kill();
                return Err(e.into());
            }
        };
        sent?;
        Ok(Session {
            tx: Sender { inner: tx },
            rx: Receiver { inner: rx },
            transport,
            remote_software: hello.software,
            remote_features: hello.features,
        })
    }

    /// Sends one request and reads its single response.
    pub fn call(&mut self, req: &Request) -> Result<Response> {
        self.tx.send(req)?;
        self.tx.flush()?;
        self.rx.recv()
    }

    /// Closes both streams (the helper sees the end of its input) and
    /// returns the transport, to learn how the helper ended.
    fn end(self) -> Box<dyn Transport> {
        self.transport
    }

    /// Ends the session cleanly and waits for the helper.
    pub fn close(self) -> Result<()> {
        self.end().finish()
    }

    /// Ends the session after `e`, explaining a broken stream by how the
    /// helper or the connection ended (see [`crate::transport::fail`]).
    pub fn fail(self, e: Error) -> Error {
        crate::transport::fail(self.end().as_mut(), e)
    }

    /// Splits into halves for concurrent use, plus the transport to finish.
    pub fn split(self) -> (Sender, Receiver, Box<dyn Transport>) {
        (self.tx, self.rx, self.transport)
    }
}
