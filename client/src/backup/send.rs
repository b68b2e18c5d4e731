//! The send stage: what goes on the wire for a run. Base ops merged into
//! runs, entries mirrored into the client's copy of the new manifest,
//! whole files in chunks and windowed deltas, and the compression policy,
//! written once: a chunk or delta piece travels compressed when that saves
//! at least a tenth, and after one chunk of a file that does not, the rest
//! of that file goes raw.

use std::fs::File;
use std::io::{Read, Seek};

use offsnap_protocol::manifest::ManifestWriter;
use offsnap_protocol::{DATA_CHUNK, Entry, Hash, Op, Request};

use crate::error::{Error, Result};
use crate::interrupt;
use crate::progress::Progress;
use crate::session::Sender;

/// The client's copy of the manifest the helper writes.
pub type Mirror = ManifestWriter<std::io::BufWriter<tempfile::NamedTempFile>>;

/// Delta windows: memory stays flat whatever a file's size.
const WINDOW: usize = 2 << 20;

/// What the send stage counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    /// Chunks that travelled compressed.
    pub compressed_chunks: u64,
    /// Bytes of content that travelled as literal data (whole files and
    /// the unmatched parts of deltas), before compression.
    pub literal_bytes: u64,
    /// Bytes of content rebuilt on the host from its stored files.
    pub matched_bytes: u64,
    /// Of the literal bytes, those in deltas.
    pub delta_literal_bytes: u64,
}

/// Does one thing to what was read, as it was read: hashes it, and counts
/// it on the progress display.
struct Reading<'p> {
    hasher: crate::hashing::BackgroundHasher,
    progress: &'p Progress,
}

impl Reading<'_> {
    fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.progress.read(bytes.len() as u64);
    }
}

/// The sending side of a run's stream of ops.
pub struct Wire<'a> {
    tx: &'a mut Sender,
    zstd: zstd::bulk::Compressor<'static>,
    /// Whether compressing the current file still pays off.
    compress: bool,
    /// An `Unchanged` or `Skip` not sent yet (runs are merged).
    base_run: Option<Op>,
    /// The manifest the helper is writing, written here too from the same
    /// entries: when the hashes agree it is cached and the next run need
    /// not download it.
    mirror: Option<Mirror>,
    buf: Vec<u8>,
    /// What was counted.
    pub sent: Sent,
}

impl<'a> Wire<'a> {
    /// A wire over `tx`, mirroring the manifest into `mirror`.
    pub fn new(tx: &'a mut Sender, mirror: Option<Mirror>) -> Result<Wire<'a>> {
        Ok(Wire {
            tx,
            zstd: zstd::bulk::Compressor::new(1)
                .map_err(|e| Error::Unexpected(format!("zstd: {e}")))?,
            compress: true,
            base_run: None,
            mirror,
            buf: vec![0u8; DATA_CHUNK],
            sent: Sent::default(),
        })
    }

    /// Sends a request as it is.
    pub fn send(&mut self, req: &Request) -> Result<()> {
        self.tx.send(req)
    }

    /// Sends an op after the queued base op; a file's first op also starts
    /// its compression afresh.
    pub fn op(&mut self, op: Op) -> Result<()> {
        self.flush_base()?;
        if matches!(op, Op::File { .. } | Op::Delta { .. }) {
            self.compress = true;
        }
        self.tx.send(&Request::Op(op))
    }

    /// Sends what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        self.tx.flush()
    }

    /// Queues an `Unchanged` or `Skip` of base entries, merged with the
    /// previous one of the same kind.
    pub fn base(&mut self, op: Op) -> Result<()> {
        match (&mut self.base_run, op) {
            (_, Op::Skip(0) | Op::Unchanged(0)) => Ok(()),
            (Some(Op::Skip(n)), Op::Skip(m)) | (Some(Op::Unchanged(n)), Op::Unchanged(m)) => {
                *n += m;
                Ok(())
            }
            (_, op) => {
                self.flush_base()?;
                self.base_run = Some(op);
                Ok(())
            }
        }
    }

    /// Sends the queued base op, if any.
    pub fn flush_base(&mut self) -> Result<()> {
        match self.base_run.take() {
            Some(op) => self.tx.send(&Request::Op(op)),
            None => Ok(()),
        }
    }

    /// Notes an entry the helper records, in the mirrored manifest.
    pub fn record(&mut self, e: &Entry) {
        if let Some(m) = &mut self.mirror
            && m.push(e).is_err()
        {
            self.mirror = None;
        }
    }

    /// Records and sends an entry without content.
    pub fn entry(&mut self, e: Entry) -> Result<()> {
        self.record(&e);
        self.op(Op::Entry(e))
    }

    /// The mirrored manifest, once the run is over.
    pub fn into_mirror(self) -> Option<Mirror> {
        self.mirror
    }

    /// `bytes` compressed, when that saves at least a tenth.
    fn squeeze(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        match self.zstd.compress(bytes) {
            Ok(z) if z.len() < bytes.len() - bytes.len() / 10 => Some(z),
            _ => None,
        }
    }

    /// Sends one chunk of a file, compressed while that pays off.
    pub fn data(&mut self, chunk: &[u8]) -> Result<()> {
        if self.compress && chunk.len() >= 64 {
            match self.squeeze(chunk) {
                Some(z) => {
                    self.sent.compressed_chunks += 1;
                    return self.tx.send(&Request::Op(Op::DataZstd(z)));
                }
                None => self.compress = false,
            }
        }
        self.tx.send(&Request::Op(Op::Data(chunk.to_vec())))
    }

    /// Sends `size` bytes of `file` from its start; returns their hash, or
    /// why reading failed.
    pub fn stream(
        &mut self,
        file: &mut File,
        size: u64,
        progress: &Progress,
    ) -> Result<std::result::Result<Hash, String>> {
        if let Err(e) = file.seek(std::io::SeekFrom::Start(0)) {
            return Ok(Err(e.to_string()));
        }
        let mut buf = std::mem::take(&mut self.buf);
        let mut reading = Reading {
            hasher: crate::hashing::BackgroundHasher::new(),
            progress,
        };
        let outcome = self.stream_into(file, size, &mut buf, &mut reading);
        self.buf = buf;
        Ok(outcome?.and_then(|()| reading.hasher.finish()))
    }

    fn stream_into(
        &mut self,
        file: &mut File,
        size: u64,
        buf: &mut [u8],
        reading: &mut Reading<'_>,
    ) -> Result<std::result::Result<(), String>> {
        let mut done = 0u64;
        while done < size {
            interrupt::check()?;
            let want = buf.len().min((size - done) as usize);
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Ok(Err(e.to_string())),
            };
            reading.update(&buf[..n]);
            self.data(&buf[..n])?;
            done += n as u64;
        }
        Ok(Ok(()))
    }

    /// Sends `file` as deltas against the signature of its old version
    /// (`base_size` bytes), diffing windows of a few MiB. Each window
    /// carries its untested tail (less than a block) into the next, so no
    /// match is lost at a window's edge. Returns the hash of what was read.
    pub fn delta(
        &mut self,
        file: &mut File,
        size: u64,
        sig: &[u8],
        base_size: u64,
        progress: &Progress,
    ) -> Result<std::result::Result<Hash, String>> {
        let base = offsnap_protocol::diff::BaseSignature::parse(sig, base_size)
            .map_err(|e| Error::Corrupt(format!("the helper sent a {e}")))?;
        let mut differ = base.differ();
        if let Err(e) = file.seek(std::io::SeekFrom::Start(0)) {
            return Ok(Err(e.to_string()));
        }
        let keep = base.shape().block_size as usize - 1;
        let mut reading = Reading {
            hasher: crate::hashing::BackgroundHasher::new(),
            progress,
        };
        // One buffer, filled once: the unused tail moves to its front.
        let mut buf = vec![0u8; WINDOW + keep];
        let (mut done, mut held) = (0u64, 0usize);
        loop {
            interrupt::check()?;
            let want = (WINDOW as u64).min(size - done) as usize;
            if let Err(e) = file.read_exact(&mut buf[held..held + want]) {
                return Ok(Err(e.to_string()));
            }
            done += want as u64;
            held += want;
            let eof = done == size;
            let cut = self.delta_window(&mut differ, &buf[..held], eof)?;
            reading.update(&buf[..cut]);
            buf.copy_within(cut..held, 0);
            held -= cut;
            if eof {
                break;
            }
        }
        Ok(reading.hasher.finish())
    }

    /// Diffs one window and sends the piece up to where the next window
    /// takes over (all of it at the end of the file); returns that length.
    fn delta_window(
        &mut self,
        differ: &mut offsnap_protocol::diff::Differ<'_>,
        buf: &[u8],
        eof: bool,
    ) -> Result<usize> {
        let piece = differ
            .window(buf, eof)
            .map_err(|e| Error::Corrupt(format!("diffing against the helper's signature: {e}")))?;
        self.sent.literal_bytes += piece.literal;
        self.sent.delta_literal_bytes += piece.literal;
        self.sent.matched_bytes += piece.matched;
        let bytes = piece.bytes;
        let op = match self.squeeze(&bytes) {
            Some(z) => Op::DeltaPiece {
                zstd: true,
                bytes: z,
            },
            None => Op::DeltaPiece { zstd: false, bytes },
        };
        self.tx.send(&Request::Op(op))?;
        // A window that matched is a piece of a few bytes: without a
        // flush, a long run of them would wait in the buffer while the
        // helper, which rebuilds from them, sits idle.
        self.tx.flush()?;
        Ok(piece.used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offsnap_protocol::FrameReader;
    use std::sync::{Arc, Mutex};

    /// A stream kept in memory, readable after the sender is gone.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `f` on a wire and returns the ops it sent.
    fn ops(f: impl FnOnce(&mut Wire<'_>) -> Result<()>) -> (Vec<Op>, Sent) {
        let out = Shared::default();
        let mut tx = Sender::over(Box::new(out.clone()));
        let sent = {
            let mut wire = Wire::new(&mut tx, None).expect("wire");
            f(&mut wire).expect("sent");
            wire.flush_base().expect("flush");
            wire.sent
        };
        tx.flush().expect("flush");
        drop(tx);
        let bytes = out.0.lock().expect("bytes").clone();
        let mut r = FrameReader::new(&bytes[..]);
        let mut ops = Vec::new();
        while let Ok(req) = r.read::<Request>() {
            match req {
                Request::Op(op) => ops.push(op),
                other => panic!("not an op: {other:?}"),
            }
        }
        (ops, sent)
    }

    #[test]
    fn each_delta_piece_leaves_as_it_is_made() {
        // A file that matches its base throughout: every piece is a few
        // bytes, which a buffer would hold until the end of the file while
        // the helper waited for them.
        let mut data = vec![0u8; 5 << 20];
        blake3::Hasher::new()
            .update(b"base")
            .finalize_xof()
            .fill(&mut data);
        let sig = offsnap_protocol::diff::sign_bytes(&data);
        let mut file = tempfile::tempfile().expect("file");
        std::io::Write::write_all(&mut file, &data).expect("write");
        let out = Shared::default();
        let mut tx = Sender::over(Box::new(out.clone()));
        let progress = Progress::new(crate::progress::Show::default());
        let mut wire = Wire::new(&mut tx, None).expect("wire");
        let hash = wire
            .delta(
                &mut file,
                data.len() as u64,
                &sig,
                data.len() as u64,
                &progress,
            )
            .expect("sent")
            .expect("read");
        assert_eq!(hash, Hash::from(blake3::hash(&data)));
        // Nothing flushed the sender: what arrived was sent piece by piece.
        let bytes = out.0.lock().expect("bytes").clone();
        let mut r = FrameReader::new(&bytes[..]);
        let mut pieces = 0;
        while let Ok(req) = r.read::<Request>() {
            assert!(matches!(req, Request::Op(Op::DeltaPiece { .. })), "{req:?}");
            pieces += 1;
        }
        assert_eq!(pieces, (5 << 20) / WINDOW + 1);
        assert_eq!(wire.sent.matched_bytes, data.len() as u64);
    }

    #[test]
    fn base_ops_of_one_kind_merge_into_one() {
        let (ops, _) = ops(|w| {
            w.base(Op::Skip(2))?;
            w.base(Op::Skip(0))?;
            w.base(Op::Skip(3))?;
            w.base(Op::Unchanged(1))?;
            w.base(Op::Unchanged(4))?;
            w.op(Op::Cancel)?;
            w.base(Op::Unchanged(1))
        });
        assert_eq!(
            ops,
            [Op::Skip(5), Op::Unchanged(5), Op::Cancel, Op::Unchanged(1)]
        );
    }

    #[test]
    fn chunks_travel_compressed_until_one_does_not_pay() {
        let text = b"the same line again and again\n".repeat(100);
        let mut noise = vec![0u8; 3000];
        blake3::Hasher::new()
            .update(b"noise")
            .finalize_xof()
            .fill(&mut noise);
        let (ops, sent) = ops(|w| {
            w.data(&text)?;
            w.data(&noise)?;
            // The rest of the file goes raw, even what would compress.
            w.data(&text)?;
            // Until the next file begins.
            w.op(Op::Cancel)?;
            w.data(&text)
        });
        let kinds: Vec<&str> = ops
            .iter()
            .map(|op| match op {
                Op::DataZstd(_) => "zstd",
                Op::Data(_) => "raw",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["zstd", "raw", "raw", "other", "raw"]);
        assert_eq!(sent.compressed_chunks, 1);
    }
}
