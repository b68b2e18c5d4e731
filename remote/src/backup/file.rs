//! The file writer: a file begun (sent whole, or as a delta against its
//! base), its data or delta pieces written as they come, and at its end
//! checked against what the client announced: stored and recorded, asked
//! for again whole (a delta that rebuilt other bytes or went past its
//! bound), or refused.

use std::fs::File;

use offsnap_fs::tree::FileSink;
use offsnap_protocol::delta::check_signature;
use offsnap_protocol::diff;
use offsnap_protocol::{Entry, EntryKind, Hash, Meta, RelPath, Xattr};

use super::BackupRun;
use crate::error::{Context, Error, protocol};
use crate::journal;
use crate::kept_signatures::{Identity, KEEP_FROM};
use crate::limits::DeltaBudget;

/// Files sent whole at least this large begin as a clone of their base
/// (smaller ones are cheaper to write than to compare).
const CLONE_BASE_MIN: u64 = 64 * 1024;

/// The file being written.
pub(super) struct OpenFile {
    /// The path before this file's, restored if it is cancelled (so the
    /// client can send the file again).
    prev_last: Option<RelPath>,
    pub(super) sink: FileSink,
    meta: Meta,
    xattrs: Vec<Xattr>,
    size: u64,
    /// For a file rebuilt from a delta: the base file and its length.
    base: Option<(File, u64)>,
    /// The base's kept signature, if it has one.
    base_sig: Option<Vec<u8>>,
    /// The hash a file sent again after a failed delta must have (its
    /// entry is already recorded), and its directory's mode and mtime (the
    /// directory was finished, and gets them back).
    repair: Option<(Hash, Meta)>,
    /// What a delta may still rebuild.
    budget: DeltaBudget,
}

/// What becomes of a file at its end.
enum End {
    /// Stored as it is.
    Store,
    /// Recorded as described, asked for again whole.
    Resend,
    /// The run fails.
    Refuse(Error),
}

impl OpenFile {
    /// What becomes of this file, ended with the client's `hash`.
    fn judge(&self, hash: Hash) -> End {
        let path = self.sink.path();
        let (written, size) = (self.sink.written(), self.size);
        if self.budget.over {
            // The delta went past what it may rebuild: have it sent whole.
            return End::Resend;
        }
        if written != size {
            return End::Refuse(protocol(format!(
                "{path}: {written} bytes received, {size} announced"
            )));
        }
        if self.repair.as_ref().is_some_and(|(want, _)| *want != hash) {
            return End::Refuse(protocol(format!(
                "{path}: sent again with another hash than recorded"
            )));
        }
        match (self.sink.hash() == hash, self.base.is_some()) {
            (true, _) => End::Store,
            // What the delta rebuilt is not what the client read.
            (false, true) => End::Resend,
            (false, false) => End::Refuse(Error::Mismatch(format!(
                "{path}: the data written does not match the client's hash"
            ))),
        }
    }

    /// Writes `data`, refusing more than announced.
    fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.sink.written() + data.len() as u64 > self.size {
            return Err(protocol(format!(
                "{}: more data than the {} bytes announced",
                self.sink.path(),
                self.size
            )));
        }
        let path = self.sink.path().clone();
        self.sink.write(data).ctx(path)
    }
}

impl BackupRun {
    /// Starts a file whose content (or, with `delta`, whose delta against
    /// the base file at the same path) follows.
    pub(super) fn begin(
        &mut self,
        path: RelPath,
        meta: Meta,
        xattrs: Vec<Xattr>,
        size: u64,
        delta: bool,
    ) -> Result<(), Error> {
        offsnap_protocol::entry::check_xattrs(&xattrs)
            .map_err(|e| protocol(format!("{path}: {e}")))?;
        let prev_last = self.record.last();
        // A file asked for again comes after the walk, out of order.
        let repair = match self.repair.expected(&path, delta, size, &meta, &xattrs)? {
            Some(hash) => Some((hash, self.unstamp(&path).ctx(self.snapshot_ctx())?)),
            None => {
                self.record.check_order(&path)?;
                None
            }
        };
        let base = if delta {
            Some(self.delta_base(&path)?)
        } else {
            None
        };
        self.meter.admit(&path, size)?;
        let mut sink = self.tree.begin_file(&path).ctx(self.snapshot_ctx())?;
        // A large file rebuilt from a delta is signed on the way, taking
        // the entries of blocks copied whole from its base from the base's
        // kept signature: its next delta needs no read of it. (Files sent
        // whole are signed when a delta first asks.)
        let mut base_sig = None;
        if let (Some((file, base_len)), Some(sigs)) = (&base, &self.sigs)
            && size >= KEEP_FROM
        {
            base_sig = Identity::of_file(file)
                .ok()
                .and_then(|id| sigs.get(&path, id));
            let opts = match base_sig.as_deref().map(|s| check_signature(s, *base_len)) {
                Some(Ok(shape)) => diff::options_following(shape.block_size, size),
                _ => diff::options_for(size),
            };
            sink.sign_as_written(size, opts);
        }
        // A large file on a filesystem that clones has its blocks hashed,
        // so that its next version sent whole is compared with it without
        // reading it.
        if size >= KEEP_FROM && sink.clones() {
            sink.hash_blocks(size);
        }
        if !delta && size >= CLONE_BASE_MIN && sink.clones() {
            self.begin_as_base(&mut sink)?;
        }
        if size >= journal::BIG {
            self.contents.begun(&path, sink.temp_name())?;
        }
        self.file = Some(OpenFile {
            prev_last,
            sink,
            meta,
            xattrs,
            size,
            base,
            base_sig,
            repair,
            budget: Default::default(),
        });
        Ok(())
    }

    /// Begins a file sent whole as a clone of the base snapshot's file at
    /// the same path, if there is one (of at least [`CLONE_BASE_MIN`]
    /// bytes): only the blocks whose content differs are then written. A
    /// base that cannot be opened as a file is no base: the file is written
    /// as usual.
    fn begin_as_base(&mut self, sink: &mut FileSink) -> Result<(), Error> {
        let Some(base) = &mut self.base else {
            return Ok(());
        };
        let path = sink.path().clone();
        let Ok((file, len)) = base.open_file(&path) else {
            return Ok(());
        };
        if len < CLONE_BASE_MIN || !file.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        let kept = match &self.sigs {
            Some(sigs) => Identity::of_file(&file)
                .ok()
                .and_then(|id| sigs.get_blocks(&path, id)),
            None => None,
        };
        sink.begin_as_clone(&file, kept).ctx(&path)?;
        Ok(())
    }

    /// Writes data of the open file (`zstd`: compressed).
    pub(super) fn data(&mut self, data: Vec<u8>, zstd: bool) -> Result<(), Error> {
        let Some(open) = &mut self.file else {
            return Err(protocol("file data outside a file"));
        };
        if !zstd {
            return open.write(&data);
        }
        let data = self
            .zstd
            .decompress(&data, offsnap_protocol::DATA_CHUNK)
            .map_err(|e| protocol(format!("{}: bad compressed data: {e}", open.sink.path())))?;
        open.write(&data)
    }

    /// Applies a delta piece to the open file (`zstd`: compressed).
    pub(super) fn piece(&mut self, bytes: Vec<u8>, zstd: bool) -> Result<(), Error> {
        let Some(open) = &mut self.file else {
            return Err(protocol("file data outside a file"));
        };
        let piece = if zstd {
            self.zstd
                .decompress(&bytes, offsnap_protocol::DELTA_PIECE_MAX)
                .map_err(|e| protocol(format!("{}: bad compressed delta: {e}", open.sink.path())))?
        } else {
            bytes
        };
        apply_piece(open, &piece)
    }

    /// Ends the open file, whose content the client hashed to `hash`.
    pub(super) fn end_file(&mut self, hash: Hash) -> Result<(), Error> {
        let Some(open) = self.file.take() else {
            return Err(protocol("file end outside a file"));
        };
        let verdict = open.judge(hash);
        let OpenFile {
            mut sink,
            meta,
            xattrs,
            size,
            base,
            repair,
            ..
        } = open;
        let path = sink.path().clone();
        let entry = Entry {
            path: path.clone(),
            kind: EntryKind::File { size, hash },
            meta,
            xattrs,
        };
        if !matches!(verdict, End::Store) {
            // Nothing of it is kept: it is asked for again whole, or refused.
            self.tree.abort_file(sink);
            return match verdict {
                End::Refuse(e) => Err(e),
                _ => self.await_whole(entry, size, hash),
            };
        }
        let (sig, blocks) = (sink.take_signature(), sink.take_block_hashes());
        let ino = sink.inode().ok();
        self.tree
            .finish_file(sink, &entry.meta, &[])
            .ctx(self.snapshot_ctx())?;
        if let (Some(ino), Some(sigs)) = (ino, &mut self.sigs) {
            let id = Identity::written(ino, size, &entry.meta);
            if let Some(sig) = sig {
                sigs.put(&path, id, &sig);
            }
            if let Some(hashes) = blocks {
                sigs.put_blocks(&path, id, &hashes);
            }
        }
        self.record.stats.written += 1;
        self.record.stats.bytes_written += size;
        if base.is_some() {
            self.record.stats.delta_files += 1;
        }
        self.contents.stored(&path, size, hash)?;
        match repair {
            Some((_, stamp)) => self.repaired(&path, &stamp),
            None => self.record.push(&entry),
        }
    }

    /// Drops the open file (the client found it changed while reading it);
    /// it may be sent again.
    pub(super) fn cancel(&mut self) -> Result<(), Error> {
        let Some(open) = self.file.take() else {
            return Ok(());
        };
        let path = open.sink.path().clone();
        self.tree.abort_file(open.sink);
        self.record.rewind(open.prev_last);
        if let Some((_, stamp)) = open.repair {
            self.restamp(&path, &stamp).ctx(self.snapshot_ctx())?;
        }
        Ok(())
    }
}

/// Applies one standalone delta piece to the file being rebuilt: copies
/// come from the base (cloned where the filesystem shares blocks, see
/// [`offsnap_fs::clone`]), every length is checked against the base and
/// against the size announced, so a delta can neither read outside its
/// base nor write past the file's end.
fn apply_piece(open: &mut OpenFile, piece: &[u8]) -> Result<(), Error> {
    use offsnap_protocol::delta::{DeltaOp, parse};
    let path = open.sink.path().clone();
    let Some((base, base_len)) = &open.base else {
        return Err(protocol(format!("{path}: a delta piece for a whole file")));
    };
    let ops = parse(piece).map_err(|e| protocol(format!("{path}: {e}")))?;
    for op in ops {
        let (len, literal) = match op {
            DeltaOp::Copy { len, .. } => (len, false),
            DeltaOp::Literal(l) => (l.len() as u64, true),
        };
        if open.sink.written().saturating_add(len) > open.size {
            return Err(protocol(format!(
                "{path}: the delta expands past the {} bytes announced",
                open.size
            )));
        }
        // Past its bound: nothing more is written, the file is asked for
        // again whole at its end.
        if !open
            .budget
            .allow(open.sink.written(), len, literal, *base_len)
        {
            return Ok(());
        }
        match op {
            DeltaOp::Literal(l) => open.sink.write(l).ctx(&path)?,
            DeltaOp::Copy { offset, len } => {
                if offset.checked_add(len).is_none_or(|end| end > *base_len) {
                    return Err(protocol(format!(
                        "{path}: the delta copies from outside its base"
                    )));
                }
                let whole = open
                    .base_sig
                    .as_deref()
                    .and_then(|sig| whole_blocks(&open.sink, (sig, *base_len), offset, len));
                match whole {
                    Some((n, entries)) => {
                        open.sink
                            .append_signed_from(base, (offset, n), entries)
                            .ctx(&path)?;
                        open.sink
                            .append_from(base, offset + n, len - n)
                            .ctx(&path)?;
                    }
                    None => open.sink.append_from(base, offset, len).ctx(&path)?,
                }
            }
        }
    }
    Ok(())
}

/// For a copy of `len` bytes at `offset` of the base: how many bytes of
/// it, from its start, are whole blocks the base's signature `sig` already
/// describes in the options the new file is signed with, and their
/// entries. Only when the copy starts on a block of the base and the file
/// is on a block of its own.
fn whole_blocks<'a>(
    sink: &FileSink,
    (sig, base_len): (&'a [u8], u64),
    offset: u64,
    len: u64,
) -> Option<(u64, &'a [u8])> {
    let (bs, hs) = sink.signing_at_block()?;
    let shape = check_signature(sig, base_len).ok()?;
    if (shape.block_size, shape.hash_size) != (bs, hs) || !offset.is_multiple_of(u64::from(bs)) {
        return None;
    }
    let per = 4 + u64::from(hs);
    let (first, n) = (offset / u64::from(bs), len / u64::from(bs));
    if n == 0 || first.checked_add(n)? > shape.blocks {
        return None;
    }
    // The copy ends inside the base (checked before), so these blocks are
    // whole ones there too.
    let at = usize::try_from(12 + first * per).ok()?;
    let end = usize::try_from(12 + (first + n) * per).ok()?;
    Some((n * u64::from(bs), sig.get(at..end)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{Fixture, file_ops, meta, path};
    use super::*;
    use offsnap_protocol::delta::DeltaWriter;
    use offsnap_protocol::{ErrorKind, Op};

    const BASE: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

    fn delta_op(p: &str, size: usize) -> Op {
        Op::Delta {
            path: path(p),
            meta: meta(),
            size: size as u64,
            xattrs: Vec::new(),
        }
    }

    fn piece(build: impl FnOnce(&mut DeltaWriter)) -> Op {
        let mut w = DeltaWriter::new();
        build(&mut w);
        Op::DeltaPiece {
            zstd: false,
            bytes: w.finish(),
        }
    }

    #[test]
    fn a_whole_file_is_stored_plain_or_compressed() {
        let fx = Fixture::new();
        let mut run = fx.start();
        for op in file_ops("plain", b"hello") {
            run.apply(op).unwrap();
        }
        let data = vec![7u8; 10_000];
        let [begin, _, end] = <[Op; 3]>::try_from(file_ops("zipped", &data)).unwrap();
        run.apply(begin).unwrap();
        run.apply(Op::DataZstd(zstd::bulk::compress(&data, 1).unwrap()))
            .unwrap();
        run.apply(end).unwrap();
        let snap = fx.commit(run);
        assert_eq!(std::fs::read(snap.join("plain")).unwrap(), b"hello");
        assert_eq!(std::fs::read(snap.join("zipped")).unwrap(), data);
    }

    #[test]
    fn a_file_must_be_what_was_announced() {
        let fx = Fixture::new();
        let mut run = fx.start();
        let [begin, _, _] = <[Op; 3]>::try_from(file_ops("f", b"abc")).unwrap();
        run.apply(begin).unwrap();
        let e = run.apply(Op::Data(b"abcd".to_vec())).unwrap_err();
        assert!(e.to_string().contains("more data than the 3 bytes"), "{e}");
        run.abort();

        let mut run = fx.start();
        let [begin, data, _] = <[Op; 3]>::try_from(file_ops("f", b"abc")).unwrap();
        run.apply(begin).unwrap();
        run.apply(data).unwrap();
        let e = run
            .apply(Op::End {
                hash: Hash::of(b"abd"),
            })
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        run.abort();

        let mut run = fx.start();
        let e = run.apply(Op::Data(b"x".to_vec())).unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e}");
        run.abort();
    }

    #[test]
    fn a_delta_rebuilds_the_file_from_its_base() {
        let fx = Fixture::new();
        fx.commit_files(&[("f", BASE)]);
        let want = [&BASE[..10], b"NEW", &BASE[20..]].concat();
        let mut run = fx.start();
        run.apply(delta_op("f", want.len())).unwrap();
        run.apply(piece(|w| {
            w.copy(0, 10);
            w.literal(b"NEW");
        }))
        .unwrap();
        run.apply(piece(|w| w.copy(20, 16))).unwrap();
        run.apply(Op::End {
            hash: Hash::of(&want),
        })
        .unwrap();
        assert!(run.take_resends().is_empty());
        let (name, stats) = run.commit().unwrap();
        assert_eq!(stats.delta_files, 1);
        let snap = fx.dir.path().join("test").join(name.to_string());
        assert_eq!(std::fs::read(snap.join("f")).unwrap(), want);
    }

    #[test]
    fn a_delta_cannot_read_outside_its_base_or_write_past_the_end() {
        let fx = Fixture::new();
        fx.commit_files(&[("f", BASE)]);
        let mut run = fx.start();
        run.apply(delta_op("f", 100)).unwrap();
        let e = run.apply(piece(|w| w.copy(30, 10))).unwrap_err();
        assert!(
            e.to_string().contains("copies from outside its base"),
            "{e}"
        );
        run.abort();

        let mut run = fx.start();
        run.apply(delta_op("f", 5)).unwrap();
        let e = run.apply(piece(|w| w.copy(0, 6))).unwrap_err();
        assert!(e.to_string().contains("expands past the 5 bytes"), "{e}");
        run.abort();
    }

    #[test]
    fn a_delta_that_rebuilds_other_bytes_is_asked_for_whole() {
        let fx = Fixture::new();
        fx.commit_files(&[("f", BASE)]);
        let mut run = fx.start();
        run.apply(delta_op("f", 10)).unwrap();
        run.apply(piece(|w| w.copy(0, 10))).unwrap();
        let want = b"not a copy";
        run.apply(Op::End {
            hash: Hash::of(want),
        })
        .unwrap();
        assert_eq!(run.take_resends(), [path("f")]);
        for op in file_ops("f", want) {
            run.apply(op).unwrap();
        }
        let snap = fx.commit(run);
        assert_eq!(std::fs::read(snap.join("f")).unwrap(), want);
    }

    #[test]
    fn a_cancelled_file_can_be_sent_again() {
        let fx = Fixture::new();
        let mut run = fx.start();
        let [begin, _, _] = <[Op; 3]>::try_from(file_ops("f", b"abc")).unwrap();
        run.apply(begin).unwrap();
        run.apply(Op::Data(b"ab".to_vec())).unwrap();
        run.apply(Op::Cancel).unwrap();
        for op in file_ops("f", b"xyz") {
            run.apply(op).unwrap();
        }
        let snap = fx.commit(run);
        assert_eq!(std::fs::read(snap.join("f")).unwrap(), b"xyz");
    }
}
