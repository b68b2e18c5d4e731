//! The on-disk layout of a backup root and its sets.
//!
//! ```text
//! ROOT/SET/SNAPSHOT/            complete snapshots
//! ROOT/SET/latest -> SNAPSHOT   the newest one
//! ROOT/SET/.offsnap/format      layout version
//! ROOT/SET/.offsnap/lock        flock(2) held by a backup (or a prune)
//! ROOT/SET/.offsnap/manifests/  one manifest per complete snapshot
//! ROOT/SET/.offsnap/incomplete/ runs in progress
//! ROOT/SET/.offsnap/resume/     an interrupted run kept for the next one
//! ROOT/SET/.offsnap/trash/      snapshots and runs being deleted
//! ```
//!
//! A snapshot is complete when both its directory and its manifest exist;
//! the manifest is put in place first, the directory last.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use offsnap_protocol::{Hash, SetName, SnapshotInfo, SnapshotName};
use rustix::fs::{FileType, FlockOperation, Mode, OFlags};

use crate::error::{Context, Error};
use offsnap_fs::fsx;

/// Name of the per-set metadata directory.
pub const META_DIR: &[u8] = b".offsnap";
/// Content of the format file this code writes and accepts.
pub const FORMAT: &str = "offsnap-set 1\n";
/// Name of the symlink to the newest snapshot.
pub const LATEST: &[u8] = b"latest";
const LATEST_NEW: &[u8] = b".latest.new";

/// The backup root: a directory of sets.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens the root; with `create`, makes its last component if missing.
    pub fn open(path: &Path, create: bool) -> Result<Root, Error> {
        let shown = path.display();
        match fsx::open_root(path) {
            Ok(fd) => Ok(Root {
                fd,
                path: path.to_path_buf(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                std::fs::create_dir(path).ctx(format!("cannot create the backup root {shown}"))?;
                Self::open(path, false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound(format!(
                "no backups at {shown}: the directory does not exist"
            ))),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => Err(
                Error::Layout(format!("the backup root {shown} is not a directory")),
            ),
            Err(e) => Err(crate::error::io(
                format!("cannot open the backup root {shown}"),
                e,
            )),
        }
    }

    /// The root's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens an existing set.
    pub fn open_set(&self, name: &SetName) -> Result<SetDir, Error> {
        let fd = match fsx::open_dir(self.fd.as_fd(), name.as_str().as_bytes()) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let sets = self.sets().unwrap_or_default();
                let known = if sets.is_empty() {
                    "there are no sets there yet".to_string()
                } else {
                    format!(
                        "sets there: {}",
                        sets.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(Error::NotFound(format!(
                    "no backup set {name:?} in {} ({known})",
                    self.path.display()
                )));
            }
            Err(e) => {
                return Err(crate::error::io(
                    format!("cannot open set {name:?} in {}", self.path.display()),
                    e,
                ));
            }
        };
        let meta = fsx::open_dir(fd.as_fd(), META_DIR).map_err(|_| {
            Error::Layout(format!(
                "{}/{name} exists but is not an offsnap backup set",
                self.path.display()
            ))
        })?;
        check_format(meta.as_fd(), name)?;
        Ok(SetDir {
            name: name.clone(),
            fd,
            meta,
        })
    }

    /// Opens a set, creating it when missing.
    pub fn create_set(&self, name: &SetName) -> Result<SetDir, Error> {
        let shown = format!("{}/{name}", self.path.display());
        match fsx::lstat(self.fd.as_fd(), name.as_str().as_bytes()).ctx(&shown)? {
            Some(_) => {}
            None => {
                // Build it under a temporary name, then rename: a set either
                // exists whole or not at all.
                let tmp = format!(".{name}.new.{}", std::process::id());
                let _ = fsx::remove_tree(self.fd.as_fd(), tmp.as_bytes());
                let set = fsx::create_dir(self.fd.as_fd(), tmp.as_bytes())
                    .ctx(format!("cannot create the set {shown}"))?;
                fsx::apply_meta(
                    &set,
                    &offsnap_protocol::Meta {
                        mode: 0o700,
                        uid: 0,
                        gid: 0,
                        mtime_sec: now_secs(),
                        mtime_nsec: 0,
                    },
                )
                .ctx(&shown)?;
                let meta = fsx::create_dir(set.as_fd(), META_DIR).ctx(&shown)?;
                for sub in [&b"manifests"[..], b"incomplete", b"trash"] {
                    fsx::create_dir(meta.as_fd(), sub).ctx(&shown)?;
                }
                let mut f = fsx::create_file(meta.as_fd(), b"format").ctx(&shown)?;
                f.write_all(FORMAT.as_bytes()).ctx(&shown)?;
                f.sync_all().ctx(&shown)?;
                fsx::fsync(&meta).ctx(&shown)?;
                fsx::fsync(&set).ctx(&shown)?;
                match fsx::rename(
                    self.fd.as_fd(),
                    tmp.as_bytes(),
                    name.as_str().as_bytes(),
                    false,
                ) {
                    Ok(()) => fsx::fsync(&self.fd).ctx(&shown)?,
                    // Another run created it meanwhile: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let _ = fsx::remove_tree(self.fd.as_fd(), tmp.as_bytes());
                    }
                    Err(e) => return Err(crate::error::io(&shown, e)),
                }
            }
        }
        self.open_set(name)
    }

    /// Names of the sets under the root.
    pub fn sets(&self) -> Result<Vec<SetName>, Error> {
        let mut out: Vec<SetName> = fsx::read_dir(self.fd.as_fd())
            .ctx(self.path.display())?
            .into_iter()
            .filter(|(_, t)| *t == FileType::Directory)
            .filter_map(|(n, _)| SetName::new(std::str::from_utf8(&n).ok()?).ok())
            .collect();
        out.sort();
        Ok(out)
    }
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn check_format(meta: BorrowedFd<'_>, name: &SetName) -> Result<(), Error> {
    let mut text = String::new();
    fsx::open_file(meta, b"format")
        .and_then(|mut f| f.read_to_string(&mut text))
        .ctx(format!("set {name:?}: cannot read its format file"))?;
    if text != FORMAT {
        return Err(Error::Layout(format!(
            "set {name:?} has layout {:?}, this offsnap-remote knows {:?}: upgrade offsnap-remote",
            text.trim(),
            FORMAT.trim()
        )));
    }
    Ok(())
}

/// An open backup set.
pub struct SetDir {
    name: SetName,
    fd: OwnedFd,
    meta: OwnedFd,
}

/// The set's lock, held until dropped (or until the process dies: flock
/// locks never outlive their holder).
pub struct SetLock {
    _fd: OwnedFd,
}

/// An unfinished run's directory in `incomplete/`, removed when dropped.
/// Held while a run commits (with the lock), so a commit that fails gives
/// back at once the space of what the run wrote; after a commit that
/// succeeds the directory no longer holds the snapshot.
pub struct Unfinished {
    incomplete: OwnedFd,
    name: Vec<u8>,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let _ = fsx::remove_tree(self.incomplete.as_fd(), &self.name);
    }
}

impl SetDir {
    /// See [`Unfinished`].
    pub fn unfinished(&self, snap: &SnapshotName) -> Result<Unfinished, Error> {
        Ok(Unfinished {
            incomplete: self.meta_dir("incomplete")?,
            name: snap.to_string().into_bytes(),
        })
    }

    /// The set's name.
    pub fn name(&self) -> &SetName {
        &self.name
    }

    /// The set directory's handle.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The set's `.offsnap` directory's handle.
    pub fn meta_fd(&self) -> BorrowedFd<'_> {
        self.meta.as_fd()
    }

    /// Opens a subdirectory of `.offsnap` that sets made by older versions
    /// may lack (`resume`), creating it when missing.
    pub fn meta_dir_or_new(&self, which: &str) -> Result<OwnedFd, Error> {
        match fsx::create_dir(self.meta.as_fd(), which.as_bytes()) {
            Ok(fd) => Ok(fd),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.meta_dir(which),
            Err(e) => Err(crate::error::io(
                format!("set {:?}: .offsnap/{which}", self.name),
                e,
            )),
        }
    }

    /// Opens a subdirectory of `.offsnap` (`manifests`, `incomplete`, `trash`).
    pub fn meta_dir(&self, which: &str) -> Result<OwnedFd, Error> {
        fsx::open_dir(self.meta.as_fd(), which.as_bytes())
            .ctx(format!("set {:?}: .offsnap/{which}", self.name))
    }

    /// Takes the set's lock for `what` (e.g. "backup"), failing at once if
    /// another process holds it.
    pub fn lock(&self, what: &str) -> Result<SetLock, Error> {
        let ctx = format!("set {:?}: lock", self.name);
        let fd = rustix::fs::openat(
            self.meta.as_fd(),
            "lock",
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(std::io::Error::from)
        .ctx(&ctx)?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = File::from(fd).read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Locked(format!(
                    "set {:?} is busy: {}",
                    self.name,
                    if holder.is_empty() {
                        "another run holds its lock".to_string()
                    } else {
                        holder.to_string()
                    }
                )));
            }
            Err(e) => return Err(crate::error::io(&ctx, e.into())),
        }
        let mut f = File::from(fd);
        let note = format!(
            "a {what} is already running since {} (pid {})\n",
            jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC"),
            std::process::id()
        );
        f.set_len(0)
            .and_then(|()| f.seek(SeekFrom::Start(0)))
            .and_then(|_| f.write_all(note.as_bytes()))
            .ctx(&ctx)?;
        Ok(SetLock { _fd: f.into() })
    }

    /// The complete snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, Error> {
        let manifests = self.meta_dir("manifests")?;
        let mut out = Vec::new();
        for (name, kind) in fsx::read_dir(self.fd.as_fd()).ctx(format!("set {:?}", self.name))? {
            if kind != FileType::Directory && kind != FileType::Unknown {
                continue;
            }
            let Some(snap) = std::str::from_utf8(&name)
                .ok()
                .and_then(|s| s.parse::<SnapshotName>().ok())
            else {
                continue;
            };
            let Ok(file) = fsx::open_file(manifests.as_fd(), &name) else {
                continue;
            };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let mut hash = [0u8; 32];
            if len < 32 || file.read_exact_at(&mut hash, len - 32).is_err() {
                continue;
            }
            out.push(SnapshotInfo {
                name: snap,
                manifest_hash: Hash(hash),
                manifest_len: len,
            });
        }
        out.sort_by_key(|s| s.name);
        Ok(out)
    }

    /// Opens a complete snapshot's manifest file.
    pub fn open_manifest(&self, snap: &SnapshotName) -> Result<File, Error> {
        let manifests = self.meta_dir("manifests")?;
        fsx::open_file(manifests.as_fd(), snap.to_string().as_bytes()).map_err(|e| {
            crate::error::io(
                format!("set {:?}: no manifest for snapshot {snap}", self.name),
                e,
            )
        })
    }

    /// Opens a complete snapshot's directory.
    pub fn open_snapshot(&self, snap: &SnapshotName) -> Result<OwnedFd, Error> {
        fsx::open_dir(self.fd.as_fd(), snap.to_string().as_bytes())
            .map_err(|e| crate::error::io(format!("set {:?}: snapshot {snap}", self.name), e))
    }

    /// Points `latest` at `snap`, atomically.
    pub fn set_latest(&self, snap: &SnapshotName) -> Result<(), Error> {
        let ctx = format!("set {:?}: updating latest", self.name);
        let _ = fsx::unlink(self.fd.as_fd(), LATEST_NEW);
        fsx::symlink(self.fd.as_fd(), LATEST_NEW, snap.to_string().as_bytes()).ctx(&ctx)?;
        fsx::rename(self.fd.as_fd(), LATEST_NEW, LATEST, true).ctx(&ctx)?;
        fsx::fsync(&self.fd).ctx(&ctx)
    }

    /// Deletes a complete snapshot: one rename moves it into `trash/` (so
    /// it is never seen half-deleted under its dated name), then its
    /// manifest goes. Emptying the trash is [`SetDir::empty_trash`].
    /// Call with the lock held.
    pub fn remove_snapshot(&self, snap: &SnapshotName) -> Result<(), Error> {
        let ctx = format!("set {:?}: removing snapshot {snap}", self.name);
        let name = snap.to_string();
        let trash = self.meta_dir("trash")?;
        let dest = format!("{name}.{}", std::process::id());
        fsx::rename_between(
            self.fd.as_fd(),
            name.as_bytes(),
            trash.as_fd(),
            dest.as_bytes(),
            false,
        )
        .ctx(&ctx)?;
        fsx::fsync(&self.fd).ctx(&ctx)?;
        let manifests = self.meta_dir("manifests")?;
        match fsx::unlink(manifests.as_fd(), name.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(crate::error::io(&ctx, e));
            }
            _ => {}
        }
        fsx::fsync(&manifests).ctx(&ctx)
    }

    /// Deletes everything in `trash/`. Call with the lock held.
    pub fn empty_trash(&self) -> Result<(), Error> {
        let ctx = format!("set {:?}: emptying the trash", self.name);
        let trash = self.meta_dir("trash")?;
        offsnap_fs::remove::empty_dir(trash.as_fd()).ctx(&ctx)
    }

    /// Clears what interrupted runs left: unfinished snapshots (moved to
    /// trash, then deleted), manifests without a snapshot, a half-made
    /// `latest`. Call with the lock held.
    pub fn clean_leftovers(&self) -> Result<(), Error> {
        let ctx = format!("set {:?}: clearing an interrupted run", self.name);
        let incomplete = self.meta_dir("incomplete")?;
        let trash = self.meta_dir("trash")?;
        for (name, _) in fsx::read_dir(incomplete.as_fd()).ctx(&ctx)? {
            let mut dest = name.clone();
            dest.extend_from_slice(format!(".{}", std::process::id()).as_bytes());
            fsx::rename_between(incomplete.as_fd(), &name, trash.as_fd(), &dest, false)
                .ctx(&ctx)?;
        }
        drop(trash);
        self.empty_trash()?;
        let manifests = self.meta_dir("manifests")?;
        for (name, _) in fsx::read_dir(manifests.as_fd()).ctx(&ctx)? {
            if fsx::lstat(self.fd.as_fd(), &name).ctx(&ctx)?.is_none() {
                fsx::unlink(manifests.as_fd(), &name).ctx(&ctx)?;
            }
        }
        let _ = fsx::unlink(self.fd.as_fd(), LATEST_NEW);
        Ok(())
    }
}
