//! Writes a tree of entries under a directory handle: the snapshot being
//! built on the backup host, or a restore target on the client.
//!
//! Entries must come in walk order (parents first). Files are written to a
//! temporary name in their directory, hashed as they are written, given
//! their mode and mtime, and only then renamed to their real name, so no
//! half-written file ever carries a real name.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};

use offsnap_protocol::{EntryKind, Hash, Meta, RelPath, Xattr};
use rustix::fs::FileType;

use crate::clone::{self, Sharing};
use crate::cursor::DirCursor;
use crate::fsx;
use offsnap_protocol::signer::{SignatureOptions, Signer};

/// What to do when a path to be written already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Fail: everything must be new (a snapshot under construction).
    Fail,
    /// Merge into existing directories; fail on any other existing entry.
    KeepDirs,
    /// Merge into existing directories; replace anything else.
    Replace,
}

/// How a file unchanged since the base snapshot was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linked {
    /// As a hard link to the base snapshot's inode.
    HardLink,
    /// As a copy, because the inode reached the hard-link limit.
    Copied,
    /// As a copy, because the stored inode's metadata differs from what
    /// the new snapshot must record (its content checked on the way).
    CopiedOtherMeta,
}

/// A file being written: data goes to a temporary name until
/// [`TreeWriter::finish_file`].
pub struct FileSink {
    path: RelPath,
    tmp: Vec<u8>,
    file: File,
    hasher: blake3::Hasher,
    written: u64,
    flushed: u64,
    /// Zeros not written yet (a hole), to skip before the next write.
    hole: u64,
    /// Whether ranges of other files can be cloned into this one.
    sharing: Sharing,
    /// Set when the file began as a clone of an older version of this
    /// many bytes ([`FileSink::begin_as_clone`]), on a filesystem with
    /// blocks of the second: data then overwrites only the blocks that
    /// differ. With the buffer the clone is read into.
    over: Option<(u64, u64, Vec<u8>)>,
    /// The signature being built of what is written, when asked for
    /// ([`FileSink::sign_as_written`]).
    signer: Option<Box<Signer>>,
}

/// How much a file grows between hints to start writing it out.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Blocks of this many zero bytes, at offsets that are multiples of it,
/// are left as holes: sparse files stay sparse.
const HOLE_BLOCK: usize = 4096;
static ZEROS: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];

impl FileSink {
    /// Appends data; aligned blocks of zeros become holes.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some((len, align, old)) = &mut self.over {
            clone::overlay(&self.file, self.written, data, (*len, *align), old)?;
            self.absorb(data);
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
    fn close_hole(&mut self) -> io::Result<()> {
        if self.hole > 0
            || self
                .over
                .as_ref()
                .is_some_and(|(len, ..)| *len != self.written)
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
    fn fill_from(&mut self, src: &File, size: u64) -> io::Result<()> {
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
    /// what is coming): the data written next is compared with it block by
    /// block and only the blocks that differ are written, the others stay
    /// shared (see [`clone::overlay`]). Returns whether it did; where the
    /// filesystem refuses, the file is written as usual.
    pub fn begin_as_clone(&mut self, base: &File) -> io::Result<bool> {
        let Sharing::Clones { align } = self.sharing else {
            return Ok(false);
        };
        if self.written != 0 {
            return Ok(false);
        }
        match clone::clone_whole(&self.file, base) {
            Ok(()) => {
                let len = self.file.metadata()?.len();
                self.over = Some((len, align, Vec::new()));
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
        self.hasher.update(data);
        if let Some(s) = &mut self.signer {
            s.update(data);
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
        Hash::from(self.hasher.finalize())
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

/// See the module documentation.
pub struct TreeWriter {
    cursor: DirCursor,
    existing: Existing,
    snapshot: bool,
    readable: bool,
    owners: bool,
    xattrs: bool,
    notes: Vec<String>,
    /// Whether the tree's filesystem clones (probed at its first file).
    sharing: Option<Sharing>,
}

impl TreeWriter {
    /// Writes under `root`.
    pub fn new(root: OwnedFd, existing: Existing) -> TreeWriter {
        TreeWriter {
            cursor: DirCursor::new(root),
            existing,
            snapshot: false,
            readable: false,
            owners: false,
            xattrs: false,
            notes: Vec::new(),
            sharing: None,
        }
    }

    /// Gives what it writes its recorded owners (only root can).
    pub fn apply_owners(mut self, yes: bool) -> Self {
        self.owners = yes;
        self.cursor = self.cursor.apply_owners(yes);
        self
    }

    /// Gives what it writes its recorded extended attributes (a restore;
    /// a snapshot keeps them in its manifest only).
    pub fn apply_xattrs(mut self, yes: bool) -> Self {
        self.xattrs = yes;
        self
    }

    /// What was written without all its metadata since the last call (no
    /// extended attributes where the filesystem has none), one line each.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Sets extended attributes, noting (not failing) a filesystem
    /// without them.
    fn set_xattrs(&mut self, fd: impl AsFd, xattrs: &[Xattr], path: &RelPath) -> io::Result<()> {
        if !self.xattrs || xattrs.is_empty() {
            return Ok(());
        }
        match fsx::set_xattrs(fd, xattrs) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error()) => {
                self.notes.push(format!(
                    "{path}: extended attributes not restored: the filesystem has none"
                ));
                Ok(())
            }
            other => other.map_err(|e| with_path(e, path)),
        }
    }

    /// Writes a snapshot on the backup host: modes as [`fsx::stored_mode`]
    /// gives them (no set-id files; with `readable`, for a helper that is
    /// not root, everything stays readable by its owner).
    pub fn for_snapshot(mut self, readable: bool) -> Self {
        self.snapshot = true;
        self.readable = readable;
        self.cursor = self.cursor.keep_readable(readable);
        self
    }

    /// The mode a file written here gets for its recorded mode.
    fn file_mode(&self, mode: u32) -> u32 {
        match self.snapshot {
            true => fsx::stored_mode(mode, false, self.readable),
            false => mode & 0o7777,
        }
    }

    /// Creates (or, when allowed, reuses) the directory `path`; its metadata
    /// is applied once its children are written.
    pub fn dir(&mut self, path: &RelPath, meta: &Meta, xattrs: &[Xattr]) -> io::Result<()> {
        let existing = self.existing;
        let (parent, name) = self.cursor.parent_of(path)?;
        let fd = match fsx::create_dir(parent, name) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && existing != Existing::Fail => {
                let is_dir = fsx::lstat(parent, name)?
                    .map(|st| fsx::file_type(&st) == FileType::Directory)
                    .unwrap_or(false);
                if is_dir {
                    fsx::open_dir(parent, name)?
                } else if existing == Existing::Replace {
                    fsx::unlink(parent, name)?;
                    fsx::create_dir(parent, name)?
                } else {
                    return Err(exists(path));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists(path)),
            Err(e) => return Err(with_path(e, path)),
        };
        self.set_xattrs(&fd, xattrs, path)?;
        self.cursor.enter(path, fd, Some(*meta));
        Ok(())
    }

    /// Creates the symlink `path` with its target as data.
    pub fn symlink(&mut self, path: &RelPath, target: &[u8], meta: &Meta) -> io::Result<()> {
        let existing = self.existing;
        let (parent, name) = self.cursor.parent_of(path)?;
        match fsx::symlink(parent, name, target) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && existing == Existing::Replace => {
                // Make the link under a temporary name, then swap it in.
                let (tmp, f) = fsx::create_temp(parent)?;
                drop(f);
                fsx::unlink(parent, &tmp)?;
                fsx::symlink(parent, &tmp, target)?;
                if let Err(e) = fsx::rename(parent, &tmp, name, true) {
                    let _ = fsx::unlink(parent, &tmp);
                    return Err(with_path(e, path));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists(path)),
            Err(e) => return Err(with_path(e, path)),
            Ok(()) => {}
        }
        if self.owners {
            fsx::apply_symlink_owner(parent, name, meta).map_err(|e| with_path(e, path))?;
        }
        fsx::apply_symlink_meta(parent, name, meta).map_err(|e| with_path(e, path))
    }

    /// Starts writing the file `path`.
    pub fn begin_file(&mut self, path: &RelPath) -> io::Result<FileSink> {
        let snapshot = self.snapshot;
        let (parent, _) = self.cursor.parent_of(path)?;
        // Only snapshots copy out of other stored files; a restore never
        // probes its target.
        let sharing = match self.sharing {
            Some(s) => s,
            None if snapshot => *self.sharing.insert(clone::probe(parent)),
            None => Sharing::No,
        };
        let (tmp, file) = fsx::create_temp(parent).map_err(|e| with_path(e, path))?;
        Ok(FileSink {
            sharing,
            path: path.clone(),
            tmp,
            file,
            hasher: blake3::Hasher::new(),
            written: 0,
            flushed: 0,
            hole: 0,
            over: None,
            signer: None,
        })
    }

    /// Gives a written file its metadata and its real name.
    pub fn finish_file(
        &mut self,
        mut sink: FileSink,
        meta: &Meta,
        xattrs: &[Xattr],
    ) -> io::Result<()> {
        let replace = self.existing == Existing::Replace;
        let closed = sink.close_hole();
        let FileSink {
            path, tmp, file, ..
        } = sink;
        let mut stored = *meta;
        stored.mode = self.file_mode(meta.mode);
        let prepared = closed
            .and_then(|()| match self.owners {
                true => fsx::apply_owner(&file, meta),
                false => Ok(()),
            })
            .and_then(|()| self.set_xattrs(&file, xattrs, &path))
            .and_then(|()| fsx::apply_meta(&file, &stored));
        let (parent, name) = self.cursor.parent_of(&path)?;
        let res = prepared.and_then(|()| {
            drop(file);
            if replace
                && let Some(st) = fsx::lstat(parent, name)?
                && fsx::file_type(&st) == FileType::Directory
            {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a directory is in the way",
                ));
            }
            fsx::rename(parent, &tmp, name, replace)
        });
        if let Err(e) = res {
            let _ = fsx::unlink(parent, &tmp);
            return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                exists(&path)
            } else {
                with_path(e, &path)
            });
        }
        Ok(())
    }

    /// Drops a file that will not be finished, removing its temporary name.
    pub fn abort_file(&mut self, sink: FileSink) {
        if let Ok((parent, _)) = self.cursor.parent_of(&sink.path) {
            let _ = fsx::unlink(parent, &sink.tmp);
        }
    }

    /// Stores the file `path` as the file `from` of the tree under `base`:
    /// a hard link when that inode is a regular file of `size` bytes with
    /// exactly `meta`'s mode and mtime, else a copy given `meta`, made only
    /// if what it copies hashes to `hash` (a stored file altered in place
    /// is never carried into a new snapshot: `InvalidData`).
    pub fn link_from(
        &mut self,
        base: &mut DirCursor,
        from: &RelPath,
        path: &RelPath,
        (size, hash): (u64, &Hash),
        meta: &Meta,
    ) -> io::Result<Linked> {
        let (bdir, bname) = base.parent_of(from)?;
        let st = fsx::lstat(bdir, bname)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{from} is missing from the stored snapshot"),
            )
        })?;
        if fsx::file_type(&st) != FileType::RegularFile || st.st_size as u64 != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{from} in the stored snapshot is not the recorded file"),
            ));
        }
        let same_meta = (st.st_mode & 0o7777) == self.file_mode(meta.mode)
            && (!self.owners || (st.st_uid == meta.uid && st.st_gid == meta.gid))
            && st.st_mtime == meta.mtime_sec
            && st.st_mtime_nsec as i64 == i64::from(meta.mtime_nsec);
        let name = path.file_name();
        if same_meta {
            let (ndir, _) = self.cursor.parent_of(path)?;
            match fsx::link(bdir, bname, ndir, name) {
                Ok(()) => return Ok(Linked::HardLink),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MLINK.raw_os_error()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists(path)),
                Err(e) => return Err(with_path(e, path)),
            }
        }
        let src = fsx::open_file(bdir, bname)?;
        let mut sink = self.begin_file(path)?;
        if let Err(e) = sink.fill_from(&src, size) {
            self.abort_file(sink);
            return Err(match e.kind() {
                io::ErrorKind::InvalidData => io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{from} in the stored snapshot changed size"),
                ),
                _ => with_path(e, path),
            });
        }
        if sink.hash() != *hash {
            self.abort_file(sink);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{from} in the stored snapshot does not match its recorded content"),
            ));
        }
        self.finish_file(sink, meta, &[])?;
        Ok(match same_meta {
            true => Linked::Copied,
            false => Linked::CopiedOtherMeta,
        })
    }

    /// Makes `path` another name of the regular file `target`, written
    /// earlier under `within` (the same tree, through its own cursor): a
    /// hard link, or a copy when the inode is at its link limit.
    pub fn hard_link(
        &mut self,
        within: &mut DirCursor,
        target: &RelPath,
        path: &RelPath,
    ) -> io::Result<Linked> {
        let (tdir, tname) = within.parent_of(target)?;
        let st = fsx::lstat(tdir, tname)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{target} is not there"))
        })?;
        if fsx::file_type(&st) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path}: a hard link to {target}, which is not a regular file"),
            ));
        }
        let replace = self.existing == Existing::Replace;
        let (ndir, name) = self.cursor.parent_of(path)?;
        match fsx::link(tdir, tname, ndir, name) {
            Ok(()) => return Ok(Linked::HardLink),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MLINK.raw_os_error()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && replace => {
                // Link under a temporary name, then swap it in.
                if fsx::lstat(ndir, name)?
                    .is_some_and(|st| fsx::file_type(&st) == FileType::Directory)
                {
                    return Err(exists(path));
                }
                let (tmp, f) = fsx::create_temp(ndir)?;
                drop(f);
                fsx::unlink(ndir, &tmp)?;
                fsx::link(tdir, tname, ndir, &tmp).map_err(|e| with_path(e, path))?;
                if let Err(e) = fsx::rename(ndir, &tmp, name, true) {
                    let _ = fsx::unlink(ndir, &tmp);
                    return Err(with_path(e, path));
                }
                return Ok(Linked::HardLink);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists(path)),
            Err(e) => return Err(with_path(e, path)),
        }
        let meta = fsx::meta_of(&st);
        let src = fsx::open_file(tdir, tname)?;
        let xattrs = match self.xattrs {
            true => fsx::file_xattrs(&src)?,
            false => Vec::new(),
        };
        let mut sink = self.begin_file(path)?;
        if let Err(e) = sink.fill_from(&src, st.st_size as u64) {
            self.abort_file(sink);
            return Err(with_path(e, path));
        }
        self.finish_file(sink, &meta, &xattrs)?;
        Ok(Linked::Copied)
    }

    /// Makes the FIFO, socket or device node `path` with its metadata.
    pub fn node(&mut self, path: &RelPath, kind: &EntryKind, meta: &Meta) -> io::Result<()> {
        let existing = self.existing;
        let owners = self.owners;
        let (parent, name) = self.cursor.parent_of(path)?;
        match fsx::make_node(parent, name, kind) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && existing == Existing::Replace => {
                if fsx::lstat(parent, name)?
                    .is_some_and(|st| fsx::file_type(&st) == FileType::Directory)
                {
                    return Err(exists(path));
                }
                fsx::unlink(parent, name)?;
                fsx::make_node(parent, name, kind).map_err(|e| with_path(e, path))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists(path)),
            Err(e) => return Err(with_path(e, path)),
            Ok(()) => {}
        }
        fsx::apply_node_meta(parent, name, meta, owners).map_err(|e| with_path(e, path))
    }

    /// The cursor over the tree being written.
    pub fn cursor(&mut self) -> &mut DirCursor {
        &mut self.cursor
    }

    /// Applies the metadata of every directory still open.
    pub fn finish(&mut self) -> io::Result<()> {
        self.cursor.finish()
    }
}

fn exists(path: &RelPath) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{path} already exists"),
    )
}

fn with_path(e: io::Error, path: &RelPath) -> io::Error {
    io::Error::new(e.kind(), format!("{path}: {e}"))
}
