//! Writes a tree of entries under a directory handle: the snapshot being
//! built on the backup host, or a restore target on the client.
//!
//! Entries must come in walk order (parents first). Files are written to a
//! temporary name in their directory, hashed as they are written, given
//! their mode and mtime, and only then renamed to their real name, so no
//! half-written file ever carries a real name.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;

use offsnap_protocol::{Hash, Meta, RelPath};
use rustix::fs::FileType;

use crate::cursor::DirCursor;
use crate::fsx;

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
    /// As a copy, because the inode reached the hard-link limit or its
    /// metadata differs from what the new snapshot must record.
    Copied,
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
}

/// How much a file grows between hints to start writing it out.
const WRITEBACK_STEP: u64 = 8 << 20;

impl FileSink {
    /// Appends data.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.hasher.update(data);
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

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// BLAKE3 of what was written.
    pub fn hash(&self) -> Hash {
        Hash::from(self.hasher.finalize())
    }

    /// The path it will get.
    pub fn path(&self) -> &RelPath {
        &self.path
    }
}

/// See the module documentation.
pub struct TreeWriter {
    cursor: DirCursor,
    existing: Existing,
    readable: bool,
    owners: bool,
}

impl TreeWriter {
    /// Writes under `root`.
    pub fn new(root: OwnedFd, existing: Existing) -> TreeWriter {
        TreeWriter {
            cursor: DirCursor::new(root),
            existing,
            readable: false,
            owners: false,
        }
    }

    /// Gives what it writes its recorded owners (only root can).
    pub fn apply_owners(mut self, yes: bool) -> Self {
        self.owners = yes;
        self.cursor = self.cursor.apply_owners(yes);
        self
    }

    /// Keeps what it writes readable by its owner (a snapshot built by a
    /// helper that is not root; see [`fsx::stored_mode`]).
    pub fn keep_readable(mut self, yes: bool) -> Self {
        self.readable = yes;
        self.cursor = self.cursor.keep_readable(yes);
        self
    }

    /// Creates (or, when allowed, reuses) the directory `path`; its metadata
    /// is applied once its children are written.
    pub fn dir(&mut self, path: &RelPath, meta: &Meta) -> io::Result<()> {
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
        let (parent, _) = self.cursor.parent_of(path)?;
        let (tmp, file) = fsx::create_temp(parent).map_err(|e| with_path(e, path))?;
        Ok(FileSink {
            path: path.clone(),
            tmp,
            file,
            hasher: blake3::Hasher::new(),
            written: 0,
            flushed: 0,
        })
    }

    /// Gives a written file its metadata and its real name.
    pub fn finish_file(&mut self, sink: FileSink, meta: &Meta) -> io::Result<()> {
        let replace = self.existing == Existing::Replace;
        let FileSink {
            path, tmp, file, ..
        } = sink;
        let (parent, name) = self.cursor.parent_of(&path)?;
        let mut stored = *meta;
        stored.mode = fsx::stored_mode(meta.mode, false, self.readable);
        let owned = if self.owners {
            fsx::apply_owner(&file, meta)
        } else {
            Ok(())
        };
        let res = owned
            .and_then(|()| fsx::apply_meta(&file, &stored))
            .and_then(|()| {
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
    /// exactly `meta`'s mode and mtime, else a copy given `meta`.
    pub fn link_from(
        &mut self,
        base: &mut DirCursor,
        from: &RelPath,
        path: &RelPath,
        size: u64,
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
        let same_meta = (st.st_mode & 0o7777) == fsx::stored_mode(meta.mode, false, self.readable)
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
        let mut src = fsx::open_file(bdir, bname)?;
        let mut sink = self.begin_file(path)?;
        let copied = io::copy(&mut src, &mut sink.file);
        match copied {
            Ok(n) if n == size => {}
            Ok(_) => {
                self.abort_file(sink);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{path} changed size in the base snapshot"),
                ));
            }
            Err(e) => {
                self.abort_file(sink);
                return Err(with_path(e, path));
            }
        }
        self.finish_file(sink, meta)?;
        Ok(Linked::Copied)
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
