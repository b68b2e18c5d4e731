//! Length-delimited frames: a little-endian `u32` length, then that many
//! bytes of postcard. Lengths above [`MAX_FRAME`] are refused before any
//! allocation.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::message::{Hello, MAGIC, PROTOCOL_VERSION};

/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// Why reading or writing a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the stream between frames.
    #[error("the connection was closed")]
    Closed,
    /// The peer closed the stream inside a frame.
    #[error("the connection was cut in the middle of a message")]
    Truncated,
    /// A frame announced a length above [`MAX_FRAME`].
    #[error("the peer sent a frame of {len} bytes, above the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A frame's payload is not a valid message.
    #[error("the peer sent a malformed message: {0}")]
    Decode(postcard::Error),
    /// A message could not be encoded (a bug, or a value too large).
    #[error("cannot encode a message: {0}")]
    Encode(postcard::Error),
    /// The peer does not speak offsnap.
    #[error(
        "the peer does not speak the offsnap protocol (is the remote command an offsnap-remote?)"
    )]
    BadMagic,
    /// The peer speaks another version.
    #[error(
        "protocol version mismatch: we speak version {ours} ({our_software}), the peer speaks version {theirs} ({their_software}); install the same offsnap version on both sides (offsnap remote install HOST copies this one to an SSH host)"
    )]
    Version {
        /// Our version.
        ours: u32,
        /// Our software string.
        our_software: String,
        /// Theirs.
        theirs: u32,
        /// Their software string.
        their_software: String,
    },
}

/// Reads frames from a byte stream.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    bytes: u64,
}

impl<R: Read> FrameReader<R> {
    /// Wraps a stream (buffer it first if it is unbuffered and small frames matter).
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: Vec::new(),
            bytes: 0,
        }
    }

    /// Total bytes read so far, frame headers included.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// Reads one frame's payload.
    pub fn read_frame(&mut self) -> Result<&[u8], FrameError> {
        let mut len = [0u8; 4];
        read_full(&mut self.inner, &mut len, true)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge {
                len: len as u64,
                max: MAX_FRAME,
            });
        }
        self.buf.resize(len, 0);
        read_full(&mut self.inner, &mut self.buf, false)?;
        self.bytes += 4 + len as u64;
        Ok(&self.buf)
    }

    /// Reads and decodes one message; bytes left over after it make the
    /// frame malformed.
    pub fn read<T: DeserializeOwned>(&mut self) -> Result<T, FrameError> {
        let payload = self.read_frame()?;
        decode_exact(payload).map_err(FrameError::Decode)
    }

    /// Reads the peer's [`Hello`] and checks magic and version.
    pub fn read_hello(&mut self, our_software: &str) -> Result<Hello, FrameError> {
        let payload = match self.read_frame() {
            Ok(p) => p,
            Err(FrameError::TooLarge { .. }) => return Err(FrameError::BadMagic),
            Err(e) => return Err(e),
        };
        if payload.len() < MAGIC.len() || payload[..MAGIC.len()] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        let hello: Hello = decode_exact(payload).map_err(FrameError::Decode)?;
        check_version(&hello, our_software)?;
        Ok(hello)
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Decodes a whole message: trailing bytes are an error, not ignored.
pub fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    match postcard::take_from_bytes(bytes)? {
        (value, []) => Ok(value),
        _ => Err(postcard::Error::DeserializeBadEncoding),
    }
}

/// Checks a peer's hello against our version.
pub fn check_version(hello: &Hello, our_software: &str) -> Result<(), FrameError> {
    if hello.magic != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if hello.version != PROTOCOL_VERSION {
        return Err(FrameError::Version {
            ours: PROTOCOL_VERSION,
            our_software: our_software.to_string(),
            theirs: hello.version,
            their_software: hello.software.clone(),
        });
    }
    Ok(())
}

fn read_full(r: &mut impl Read, buf: &mut [u8], at_boundary: bool) -> Result<(), FrameError> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) if done == 0 && at_boundary => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

/// Writes frames to a byte stream. Writes are buffered: call
/// [`FrameWriter::flush`] when the peer must see what was sent.
pub struct FrameWriter<W: Write> {
    inner: io::BufWriter<W>,
    buf: Vec<u8>,
    bytes: u64,
}

impl<W: Write> FrameWriter<W> {
    /// Wraps a stream.
    pub fn new(inner: W) -> Self {
        FrameWriter {
            inner: io::BufWriter::with_capacity(128 * 1024, inner),
            buf: Vec::new(),
            bytes: 0,
        }
    }

    /// Total bytes written so far, frame headers included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Encodes and queues one message.
    pub fn write<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), FrameError> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 4]);
        let buf = std::mem::take(&mut self.buf);
        let mut buf = postcard::to_extend(msg, buf).map_err(FrameError::Encode)?;
        let len = buf.len() - 4;
        if len > MAX_FRAME {
            self.buf = buf;
            return Err(FrameError::TooLarge {
                len: len as u64,
                max: MAX_FRAME,
            });
        }
        buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
        let res = self.inner.write_all(&buf);
        self.bytes += buf.len() as u64;
        self.buf = buf;
        res.map_err(FrameError::Io)
    }

    /// Sends everything queued.
    pub fn flush(&mut self) -> Result<(), FrameError> {
        self.inner.flush().map_err(FrameError::Io)
    }

    /// Flushes and returns the wrapped stream.
    pub fn into_inner(self) -> Result<W, FrameError> {
        self.inner
            .into_inner()
            .map_err(|e| FrameError::Io(e.into_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Op, Request};

    #[test]
    fn round_trip_and_limits() -> Result<(), FrameError> {
        let mut w = FrameWriter::new(Vec::new());
        w.write(&Hello::ours("test"))?;
        w.write(&Request::Op(Op::Data(vec![7; 1000])))?;
        let bytes = w.into_inner()?;
        let mut r = FrameReader::new(&bytes[..]);
        r.read_hello("test")?;
        let req: Request = r.read()?;
        assert_eq!(req, Request::Op(Op::Data(vec![7; 1000])));
        assert!(matches!(r.read::<Request>(), Err(FrameError::Closed)));

        let mut r = FrameReader::new(&bytes[..bytes.len() - 3]);
        r.read_hello("test")?;
        assert!(matches!(r.read::<Request>(), Err(FrameError::Truncated)));

        let huge = (u32::MAX).to_le_bytes();
        let mut r = FrameReader::new(&huge[..]);
        assert!(matches!(r.read_frame(), Err(FrameError::TooLarge { .. })));
        Ok(())
    }

    #[test]
    fn version_mismatch_names_both() -> Result<(), FrameError> {
        let mut hello = Hello::ours("offsnap 9.9");
        hello.version = 99;
        let mut w = FrameWriter::new(Vec::new());
        w.write(&hello)?;
        let bytes = w.into_inner()?;
        let err = FrameReader::new(&bytes[..])
            .read_hello("offsnap 0.1")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains(&format!("version {}", crate::message::PROTOCOL_VERSION))
                && err.contains("version 99"),
            "{err}"
        );
        assert!(err.contains("offsnap 9.9"), "{err}");
        Ok(())
    }

    #[test]
    fn trailing_bytes_make_a_frame_malformed() -> Result<(), FrameError> {
        let mut w = FrameWriter::new(Vec::new());
        w.write(&crate::Request::Commit)?;
        let mut bytes = w.into_inner()?;
        // The same message with one byte more, its length raised to match.
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) + 1;
        bytes[..4].copy_from_slice(&len.to_le_bytes());
        bytes.push(0);
        let got = FrameReader::new(&bytes[..]).read::<crate::Request>();
        assert!(matches!(got, Err(FrameError::Decode(_))), "{got:?}");
        Ok(())
    }

    #[test]
    fn garbage_is_not_offsnap() {
        let junk = b"SSH-2.0-OpenSSH_9.2\r\n";
        assert!(matches!(
            FrameReader::new(&junk[..]).read_hello("x"),
            Err(FrameError::BadMagic)
        ));
    }
}
