//! A file being written into a tree: its data goes to a temporary name,
//! hashed (and, when asked, signed and block-hashed) on the way, copied or
//! cloned from other stored files where it can, with holes kept as holes,
//! until [`crate::tree::TreeWriter::finish_file`] names it.

use std::convert::Infallible;
use std::fs::File;
use std::io::{self, Write};

use offsnap_protocol::signer::{SignatureOptions, Signer};
use offsnap_protocol::{Hash, RelPath};

use crate::blocks::{self, BLOCK, BlockHasher, HASH_LEN};
use crate::clone::{self, Sharing};

/// A file being written: data goes to a temporary name until
/// [`crate::tree::TreeWriter::finish_file`].
pub struct FileSink {
    pub(crate) path: RelPath,
    pub(crate) tmp: Vec<u8>,
    pub(crate) file: File,
    hasher: Hashing,
    written: u64,
    flushed: u64,
    /// Zeros not written yet (a hole), to skip before the next write.
    hole: u64,
    /// Whether ranges of other files can be cloned into this one.
    sharing: Sharing,
    /// Set when the file began as a clone of an older version
    /// ([`FileSink::begin_as_clone`]): data then overwrites only the
    /// blocks that differ.
    over: Option<Overlay>,
    /// The signature being built of what is written, when asked for
    /// ([`FileSink::sign_as_written`]).
    signer: Option<Box<Signer>>,
}

/// How a file's content is hashed as it is written. (Files are written
/// one at a time: the plain hasher stays inline rather than cost an
/// allocation per file.)
#[allow(clippy::large_enum_variant)]
enum Hashing {
    /// Its BLAKE3 only.
    Plain(blake3::Hasher),
    /// Its BLAKE3 and its blocks' hashes, for a file of `end` bytes.
    Blocks(Box<BlockHasher>, u64),
}

/// A file begun as a clone of an older version of itself.
struct Overlay {
    /// The clone's length.
    len: u64,
    /// The filesystem's block size.
    align: u64,
    /// The older version's block hashes, when kept: a block of data whose
    /// hash is the one kept at its offset is already there.
    kept: Option<Vec<u8>>,
    /// The buffer blocks of the clone are read into, to compare.
    old: Vec<u8>,
}

/// How much a file grows between hints to start writing it out.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Blocks of this many zero bytes, at offsets that are multiples of it,
/// are left as holes: sparse files stay sparse.
const HOLE_BLOCK: usize = 4096;
static ZEROS: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];

impl FileSink {
    /// A file to be written to `file`, the temporary `tmp` for `path`, on
    /// a filesystem that shares data as `sharing` says.
    pub(crate) fn new(path: RelPath, tmp: Vec<u8>, file: File, sharing: Sharing) -> FileSink {
        FileSink {
            sharing,
            path,
            tmp,
            file,
            hasher: Hashing::Plain(blake3::Hasher::new()),
            written: 0,
            flushed: 0,
            hole: 0,
            over: None,
            signer: None,
        }
    }

    /// Appends data; aligned blocks of zeros become holes.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(over) = &mut self.over {
            match (&mut self.hasher, &over.kept) {
                (Hashing::Blocks(blocks, end), Some(kept)) => {
                    let file = &self.file;
                    blocks.update(data, *end, |at, block, hash| {
                        let i = usize::try_from(at / BLOCK as u64).unwrap_or(usize::MAX);
                        let there = at + block.len() as u64 <= over.len
                            && kept.get(i * HASH_LEN..(i + 1) * HASH_LEN) == Some(&hash[..]);
                        match there {
                            true => Ok(()),
                            false => clone::overlay(
                                file,
                                at,
                                block,
                                (over.len, over.align),
                                &mut over.old,
                            ),
                        }
                    })?;
                    if let Some(s) = &mut self.signer {
                        s.update(data);
                    }
                }
                _ => {
                    let (len, align) = (over.len, over.align);
                    clone::overlay(&self.file, self.written, data, (len, align), &mut over.old)?;
                    self.absorb(data);
                }
            }
            self.written += data.len() as u64;
            return Ok(());
        }
        let mut i = 0;
        let mut run = 0;
        while i < data.len() {
            let at = self.written + i as u64;
            let end = (i + HOLE_BLOCK - (at % HOLE_BLOCK as u64) as usize).min(data.len());
            if end - i == HOLE_BLOCK && data[i..end] == ZEROS {
                self.put(&data[run..i])?;
                self.hole += HOLE_BLOCK as u64;
                run = end;
            }
            i = end;
        }
        self.put(&data[run..])?;
        self.absorb(data);
        self.written += data.len() as u64;
        // Start writing big files out as they come (the kernel begins
        // writeback of what it is told is not needed again), so the flush
        // before the snapshot is committed has little left to do.
        if self.written - self.flushed >= WRITEBACK_STEP {
            let _ = rustix::fs::fadvise(
                &self.file,
                self.flushed,
                std::num::NonZeroU64::new(self.written - self.flushed),
                rustix::fs::Advice::DontNeed,
            );
            self.flushed = self.written;
        }
        Ok(())
    }

    /// Writes `data` after the pending hole.
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.hole > 0 {
            use std::io::Seek;
            let skip = i64::try_from(self.hole).map_err(io::Error::other)?;
            self.file.seek(io::SeekFrom::Current(skip))?;
            self.hole = 0;
        }
        self.file.write_all(data)
    }

    /// Gives the file its full length when it ends in a hole (or, begun
    /// as a clone, when it is shorter or longer than the clone).
    pub(crate) fn close_hole(&mut self) -> io::Result<()> {
        if self.hole > 0
            || self
                .over
                .as_ref()
                .is_some_and(|over| over.len != self.written)
        {
            self.file.set_len(self.written)?;
            self.hole = 0;
        }
        Ok(())
    }

    /// Appends `len` bytes of `src` from `offset`: cloned where the
    /// filesystem shares blocks and the range is block-aligned at both
    /// ends (the base's extents are then shared, not copied), read and
    /// written elsewhere. Everything appended is hashed, cloned or not.
    pub fn append_from(&mut self, src: &File, offset: u64, len: u64) -> io::Result<()> {
        // Copies run forward through their source: have the kernel read
        // ahead of this one, so the next copies do not wait on the disk.
        let _ = rustix::fs::fadvise(
            src,
            offset.saturating_add(len),
            std::num::NonZeroU64::new(READ_AHEAD),
            rustix::fs::Advice::WillNeed,
        );
        let (head, middle, _) = match self.sharing {
            Sharing::Clones { align } => clone::split(offset, self.written, len, align),
            Sharing::No => (len, 0, 0),
        };
        self.copy_from(src, offset, head)?;
        let cloned = match middle {
            0 => 0,
            _ => self.clone_from(src, offset + head, middle)?,
        };
        self.copy_from(src, offset + head + cloned, len - head - cloned)
    }

    /// Clones what it can of `len` aligned bytes of `src` at `offset` to
    /// the end of the file; returns how many it placed (0 when the
    /// filesystem refuses: the caller copies them).
    fn clone_from(&mut self, src: &File, offset: u64, len: u64) -> io::Result<u64> {
        use std::io::Seek;
        if self.hole > 0 {
            self.file.set_len(self.written)?;
            self.hole = 0;
        }
        let n = match clone::clone_range(src, offset, &self.file, self.written, len) {
            Ok(n) => n,
            Err(e) if clone::refused(&e) => {
                self.sharing = Sharing::No;
                0
            }
            Err(e) => return Err(e),
        };
        self.file.seek(io::SeekFrom::Start(self.written + n))?;
        self.hash_from(src, offset, n)?;
        self.written += n;
        self.flushed = self.written;
        Ok(n)
    }

    /// Hashes `len` bytes of `src` at `offset`, just cloned into the file.
    fn hash_from(&mut self, src: &File, offset: u64, len: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len.min(COPY_CHUNK) as usize];
        let mut at = offset;
        while at < offset + len {
            let n = (offset + len - at).min(COPY_CHUNK) as usize;
            src.read_exact_at(&mut buf[..n], at)?;
            self.absorb(&buf[..n]);
            at += n as u64;
        }
        Ok(())
    }

    /// Appends `len` bytes of `src` at `offset` by reading and writing.
    fn copy_from(&mut self, src: &File, offset: u64, len: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len.min(COPY_CHUNK) as usize];
        let mut at = offset;
        while at < offset + len {
            let n = (offset + len - at).min(COPY_CHUNK) as usize;
            src.read_exact_at(&mut buf[..n], at)?;
            self.write(&buf[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    /// Makes the file, still empty, a copy of the whole of `src` (`size`
    /// bytes): a clone where the filesystem shares blocks, else read and
    /// written (holes stay holes). Not hashed: callers check the size.
    pub(crate) fn fill_from(&mut self, src: &File, size: u64) -> io::Result<()> {
        if self.sharing.clones() && self.written == 0 {
            match clone::clone_whole(&self.file, src) {
                Ok(()) => {
                    let len = self.file.metadata()?.len();
                    if len != size {
                        return Err(changed_size());
                    }
                    // What was cloned is hashed too: a stored file altered
                    // in place must not pass for its recorded content.
                    self.hash_from(src, 0, len)?;
                    self.written = len;
                    self.flushed = len;
                    return Ok(());
                }
                Err(e) if clone::refused(&e) => self.sharing = Sharing::No,
                Err(e) => return Err(e),
            }
        }
        match self.copy_from(src, 0, size) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(changed_size()),
            Err(e) => Err(e),
            Ok(()) if src.metadata()?.len() != size => Err(changed_size()),
            Ok(()) => Ok(()),
        }
    }

    /// Whether ranges of other files can be cloned into this one.
    pub fn clones(&self) -> bool {
        self.sharing.clones()
    }

    /// Makes the file, still empty, a clone of `base` (an older version of
    /// what is coming): only the blocks of the data written next that
    /// differ from the clone's are written, the others stay shared (see
    /// [`clone::overlay`]). Where `kept` holds the base's block hashes
    /// ([`crate::blocks`]) and the file's blocks are hashed
    /// ([`FileSink::hash_blocks`]), a block whose hash is the kept one is
    /// taken as there without reading the clone; the clone is read only
    /// where they differ. Returns whether it began as a clone; where the
    /// filesystem refuses, the file is written as usual.
    pub fn begin_as_clone(&mut self, base: &File, kept: Option<Vec<u8>>) -> io::Result<bool> {
        let Sharing::Clones { align } = self.sharing else {
            return Ok(false);
        };
        if self.written != 0 {
            return Ok(false);
        }
        match clone::clone_whole(&self.file, base) {
            Ok(()) => {
                let len = self.file.metadata()?.len();
                // Hashes of another length are of another file.
                let kept = kept.filter(|k| {
                    Some(k.len() as u64) == blocks::count(len).checked_mul(HASH_LEN as u64)
                });
                self.over = Some(Overlay {
                    len,
                    align,
                    kept,
                    old: Vec::new(),
                });
                Ok(true)
            }
            Err(e) if clone::refused(&e) => {
                self.sharing = Sharing::No;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Hashes (and signs, when asked) data as it goes into the file.
    fn absorb(&mut self, data: &[u8]) {
        match &mut self.hasher {
            Hashing::Plain(h) => {
                h.update(data);
            }
            Hashing::Blocks(b, end) => b
                .update(data, *end, |_, _, _| Ok::<(), Infallible>(()))
                .unwrap_or_else(|e| match e {}),
        }
        if let Some(s) = &mut self.signer {
            s.update(data);
        }
    }

    /// Hashes each block of what is written too ([`crate::blocks`]), for
    /// a file that will be `len` bytes long (see
    /// [`FileSink::take_block_hashes`]). Only before anything is written.
    pub fn hash_blocks(&mut self, len: u64) {
        if self.written == 0 {
            self.hasher = Hashing::Blocks(Box::default(), len);
        }
    }

    /// The block hashes of what was written, if they were asked for and
    /// the file has the length announced.
    pub fn take_block_hashes(&mut self) -> Option<Vec<u8>> {
        match &mut self.hasher {
            Hashing::Blocks(b, end) if b.len() == *end => Some(b.take_hashes()),
            _ => None,
        }
    }

    /// Builds the rsync signature of what is written, in `opts`, for a
    /// file that will be `len` bytes long (see
    /// [`FileSink::take_signature`]). Only before anything is written.
    pub fn sign_as_written(&mut self, len: u64, opts: SignatureOptions) {
        if self.written == 0 {
            self.signer = Some(Box::new(Signer::with_options(len, opts)));
        }
    }

    /// The signature of what was written, if one was asked for and the
    /// file has the length announced.
    pub fn take_signature(&mut self) -> Option<Vec<u8>> {
        self.signer.take().and_then(|s| s.finish())
    }

    /// The signer's block size, if a signature is being built and what
    /// was written ends on one of its blocks.
    pub fn signing_at_block(&self) -> Option<(u32, u32)> {
        self.signer
            .as_ref()
            .filter(|s| s.at_block())
            .map(|s| s.options())
    }

    /// [`FileSink::append_from`], for whole blocks whose signature entries
    /// are `entries` (from the signature of `src`): they are taken instead
    /// of signing the bytes again. Where the signer cannot take them, the
    /// file's signature is given up.
    pub fn append_signed_from(
        &mut self,
        src: &File,
        (offset, len): (u64, u64),
        entries: &[u8],
    ) -> io::Result<()> {
        let signer = self.signer.take();
        let res = self.append_from(src, offset, len);
        self.signer = signer;
        res?;
        if let Some(s) = &mut self.signer
            && !s.take_blocks(entries)
        {
            self.signer = None;
        }
        Ok(())
    }

    /// The inode number of the file.
    pub fn inode(&self) -> io::Result<u64> {
        Ok(rustix::fs::fstat(&self.file)?.st_ino)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// BLAKE3 of what was written.
    pub fn hash(&self) -> Hash {
        match &self.hasher {
            Hashing::Plain(h) => Hash::from(h.finalize()),
            Hashing::Blocks(b, _) => b.finalize(),
        }
    }

    /// The temporary name it is written under, in its directory.
    pub fn temp_name(&self) -> &[u8] {
        &self.tmp
    }

    /// The path it will get.
    pub fn path(&self) -> &RelPath {
        &self.path
    }
}

/// How far past a copy its source is read ahead.
const READ_AHEAD: u64 = 32 << 20;

/// Largest read of a copy out of another file.
const COPY_CHUNK: u64 = 1 << 20;

fn changed_size() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the stored file changed size while it was copied",
    )
}
