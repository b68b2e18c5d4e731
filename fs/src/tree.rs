//! Writes a tree of entries under a directory handle: the snapshot being
//! built on the backup host, or a restore target on the client.
//!
//! Entries must come in walk order (parents first). Files are written to a
//! temporary name in their directory, hashed as they are written, given
//! their mode and mtime, and only then renamed to their real name, so no
//! half-written file ever carries a real name.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use offsnap_protocol::{EntryKind, Hash, Meta, RelPath, Xattr};
use rustix::fs::FileType;

use crate::clone::{self, Sharing};
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
    /// As a copy, because the inode reached the hard-link limit.
    Copied,
    /// As a copy, because the stored inode's metadata differs from what
    /// the new snapshot must record (its content checked on the way).
    CopiedOtherMeta,
}

pub use crate::sink::FileSink;

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
        Ok(FileSink::new(path.clone(), tmp, file, sharing))
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
