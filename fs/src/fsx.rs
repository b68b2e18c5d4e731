//! File operations relative to directory handles, never following symlinks.
//!
//! Every path handed to these functions is a single name inside an open
//! directory. Directories are opened with `O_NOFOLLOW | O_DIRECTORY`, files
//! with `O_NOFOLLOW`: a symlink anywhere is an error, never a way out.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use offsnap_protocol::{EntryKind, Meta, Xattr};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps};

/// Open flags for a directory handle.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens a directory by a path the host's owner chose (it may be a symlink).
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the directory `name` inside `dir`, refusing symlinks.
pub fn open_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rfs::openat(dir, name, DIR_FLAGS, Mode::empty())?)
}

/// Opens the regular file `name` inside `dir` for reading, refusing symlinks
/// and anything that is not a regular file.
pub fn open_file(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let st = rfs::fstat(&fd)?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", show(name)),
        ));
    }
    Ok(File::from(fd))
}

/// Creates the directory `name` inside `dir` (mode 0700 until its metadata
/// is applied) and opens it.
pub fn create_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
    open_dir(dir, name)
}

/// Creates a new file `name` inside `dir` for writing; fails if it exists.
pub fn create_file(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    create_with(dir, name, OFlags::WRONLY)
}

fn create_with(dir: BorrowedFd<'_>, name: &[u8], access: OFlags) -> io::Result<File> {
    let fd = rfs::openat(
        dir,
        name,
        access | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(File::from(fd))
}

/// Creates a new file with a fresh temporary name inside `dir`, for
/// reading and writing (a file begun as a clone is compared with what it
/// holds).
pub fn create_temp(dir: BorrowedFd<'_>) -> io::Result<(Vec<u8>, File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(".offsnap-tmp.{}.{n}", std::process::id()).into_bytes();
        match create_with(dir, &name, OFlags::RDWR) {
            Ok(f) => return Ok((name, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Renames `from` to `to` inside `dir`. With `replace` false, fails when
/// `to` exists.
pub fn rename(dir: BorrowedFd<'_>, from: &[u8], to: &[u8], replace: bool) -> io::Result<()> {
    rename_between(dir, from, dir, to, replace)
}

/// Renames across two directories of one filesystem.
pub fn rename_between(
    from_dir: BorrowedFd<'_>,
    from: &[u8],
    to_dir: BorrowedFd<'_>,
    to: &[u8],
    replace: bool,
) -> io::Result<()> {
    if replace {
        rfs::renameat(from_dir, from, to_dir, to)?;
    } else {
        match rfs::renameat_with(from_dir, from, to_dir, to, rfs::RenameFlags::NOREPLACE) {
            Ok(()) => {}
            // Filesystems without RENAME_NOREPLACE: check, then rename.
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                if lstat(to_dir, to)?.is_some() {
                    return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                }
                rfs::renameat(from_dir, from, to_dir, to)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Hard-links `from_dir/from` as `to_dir/to` (the source is not followed if
/// it is a symlink).
pub fn link(
    from_dir: BorrowedFd<'_>,
    from: &[u8],
    to_dir: BorrowedFd<'_>,
    to: &[u8],
) -> io::Result<()> {
    Ok(rfs::linkat(from_dir, from, to_dir, to, AtFlags::empty())?)
}

/// Creates the symlink `name` inside `dir` pointing at `target` (data only).
pub fn symlink(dir: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> io::Result<()> {
    Ok(rfs::symlinkat(target, dir, name)?)
}

/// Reads the target of the symlink `name` inside `dir`.
pub fn read_link(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    Ok(rfs::readlinkat(dir, name, Vec::new())?.into_bytes())
}

/// Removes the file or symlink `name` inside `dir`.
pub fn unlink(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    Ok(rfs::unlinkat(dir, name, AtFlags::empty())?)
}

/// Metadata of `name` inside `dir` without following it; `None` if absent.
pub fn lstat(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<rfs::Stat>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Length and BLAKE3 of everything `reader` holds, read through `buf`.
pub fn hash_all(
    reader: &mut impl io::Read,
    buf: &mut [u8],
) -> io::Result<(u64, offsnap_protocol::Hash)> {
    let mut h = blake3::Hasher::new();
    let mut n = 0u64;
    loop {
        let k = match reader.read(buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, h.finalize().into()))
}

/// Mode, owner and mtime of an inode, as the protocol records them. Both
/// sides compare what they record through this one function (and
/// [`meta_of_metadata`], which feeds it), so a file cannot look changed to
/// one side and unchanged to the other.
pub fn meta_of(st: &rfs::Stat) -> Meta {
    meta(
        st.st_mode,
        st.st_uid,
        st.st_gid,
        st.st_mtime,
        st.st_mtime_nsec.into(),
    )
}

/// [`meta_of`] for what `std` gives (`File::metadata`).
pub fn meta_of_metadata(md: &std::fs::Metadata) -> Meta {
    use std::os::unix::fs::MetadataExt;
    meta(
        md.mode(),
        md.uid(),
        md.gid(),
        md.mtime(),
        md.mtime_nsec().into(),
    )
}

fn meta(mode: u32, uid: u32, gid: u32, sec: i64, nsec: i128) -> Meta {
    Meta {
        mode: mode & 0o7777,
        uid,
        gid,
        mtime_sec: sec,
        mtime_nsec: u32::try_from(nsec.clamp(0, 999_999_999)).unwrap_or(0),
    }
}

/// The kind of an `st_mode`.
pub fn file_type(st: &rfs::Stat) -> rfs::FileType {
    rfs::FileType::from_raw_mode(st.st_mode)
}

fn times(meta: &Meta) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: meta.mtime_sec,
            tv_nsec: meta.mtime_nsec.into(),
        },
    }
}

/// The mode a stored inode gets for a recorded `mode`. A helper that is
/// not root must still be able to read what it stored (to link it into the
/// next snapshot, serve a restore, verify it), so it keeps the owner's read
/// bit on files and read and search bits on directories. Files never keep
/// setuid or setgid on the backup host: a client must not be able to plant
/// a set-id program there (owned by root, when the helper runs as root).
/// The manifest keeps the true mode, which restores apply.
pub fn stored_mode(mode: u32, dir: bool, readable: bool) -> u32 {
    let mode = match dir {
        true => mode & 0o7777,
        false => mode & 0o1777,
    };
    match (readable, dir) {
        (false, _) => mode,
        (true, true) => mode | 0o500,
        (true, false) => mode | 0o400,
    }
}

/// Whether this process is root: it stores modes exactly and applies
/// owners; otherwise it keeps stored inodes readable (see [`stored_mode`]).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Gives an open file or directory its recorded owner (only root can).
/// Call before [`apply_meta`]: a change of owner clears setuid bits.
pub fn apply_owner(fd: impl AsFd, meta: &Meta) -> io::Result<()> {
    Ok(rfs::fchown(
        &fd,
        Some(rfs::Uid::from_raw(meta.uid)),
        Some(rfs::Gid::from_raw(meta.gid)),
    )?)
}

/// Gives the symlink `name` inside `dir` its recorded owner.
pub fn apply_symlink_owner(dir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> io::Result<()> {
    Ok(rfs::chownat(
        dir,
        name,
        Some(rfs::Uid::from_raw(meta.uid)),
        Some(rfs::Gid::from_raw(meta.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Applies mode and mtime to an open file or directory.
pub fn apply_meta(fd: impl AsFd, meta: &Meta) -> io::Result<()> {
    rfs::fchmod(&fd, Mode::from_raw_mode(meta.mode & 0o7777))?;
    rfs::futimens(&fd, &times(meta))?;
    Ok(())
}

/// Applies the mtime to the symlink `name` inside `dir` (its mode means
/// nothing on Linux).
pub fn apply_symlink_meta(dir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> io::Result<()> {
    Ok(rfs::utimensat(
        dir,
        name,
        &times(meta),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Names in a directory, without `.` and `..`, with their types.
pub fn read_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, rfs::FileType)>> {
    let mut out = Vec::new();
    for ent in rfs::Dir::read_from(dir)? {
        let ent = ent?;
        let name: &CStr = ent.file_name();
        let name = name.to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((name.to_vec(), ent.file_type()));
    }
    Ok(out)
}

/// Removes `name` inside `dir` and everything under it, without following
/// symlinks, making read-only directories writable as it goes; any depth
/// (see [`crate::remove`]).
pub fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    crate::remove::remove_tree(dir, name)
}

/// Flushes a file or directory to stable storage.
pub fn fsync(fd: impl AsFd) -> io::Result<()> {
    Ok(rfs::fsync(fd)?)
}

/// Flushes the whole filesystem holding `fd` to stable storage: one call in
/// place of an fsync per file and directory written. Elsewhere than Linux,
/// falls back to `sync(2)`.
pub fn sync_filesystem(fd: impl AsFd) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        Ok(rfs::syncfs(fd)?)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = fd;
        rfs::sync();
        Ok(())
    }
}

/// Sets extended attributes on an open file or directory.
pub fn set_xattrs(fd: impl AsFd, xattrs: &[Xattr]) -> io::Result<()> {
    for x in xattrs {
        rfs::fsetxattr(&fd, x.name.as_slice(), &x.value, rfs::XattrFlags::empty())?;
    }
    Ok(())
}

/// Whether an attribute name from a list is one offsnap records.
fn is_user_xattr(name: &[u8]) -> bool {
    use offsnap_protocol::entry::XATTR_NAMESPACE;
    name.starts_with(XATTR_NAMESPACE) && name.len() > XATTR_NAMESPACE.len()
}

/// The `user.` extended attributes of an open file, sorted by name.
pub fn file_xattrs(fd: impl AsFd) -> io::Result<Vec<Xattr>> {
    let mut names = vec![0u8; 64 * 1024];
    let n = match rfs::flistxattr(&fd, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    names.truncate(n);
    let mut out = Vec::new();
    let mut value = vec![0u8; offsnap_protocol::entry::MAX_XATTR_VALUE];
    for name in names.split(|&b| b == 0) {
        if is_user_xattr(name) {
            let n = rfs::fgetxattr(&fd, name, &mut value[..])?;
            out.push(Xattr {
                name: name.to_vec(),
                value: value[..n].to_vec(),
            });
        }
    }
    out.sort();
    Ok(out)
}

/// The `user.` extended attributes of `path` (not followed if a symlink),
/// sorted by name; none where the filesystem has no extended attributes.
pub fn read_xattrs(path: &Path) -> io::Result<Vec<Xattr>> {
    let unsupported =
        |e: rustix::io::Errno| e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::OPNOTSUPP;
    let mut out = Vec::new();
    // The list or a value may grow between asking its size and reading it.
    for _ in 0..8 {
        let size = match rfs::llistxattr_query(path) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if unsupported(e) => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        let mut names = vec![0u8; size];
        let n = match rfs::llistxattr(path, &mut names[..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        };
        names.truncate(n);
        out.clear();
        let mut raced = false;
        for name in names.split(|&b| b == 0) {
            if !is_user_xattr(name) {
                continue;
            }
            let got = rfs::lgetxattr_query(path, name).and_then(|size| {
                let mut v = vec![0u8; size];
                let n = rfs::lgetxattr(path, name, &mut v[..])?;
                v.truncate(n);
                Ok(v)
            });
            let value = match got {
                Ok(v) => v,
                // Removed meanwhile.
                Err(rustix::io::Errno::NODATA) => continue,
                Err(rustix::io::Errno::RANGE) => {
                    raced = true;
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            out.push(Xattr {
                name: name.to_vec(),
                value,
            });
        }
        if !raced {
            out.sort();
            return Ok(out);
        }
    }
    Err(io::Error::other(
        "extended attributes kept changing while read",
    ))
}

/// Makes the FIFO, socket or device node `name` inside `dir` (mode 0600
/// until [`apply_node_meta`]).
pub fn make_node(dir: BorrowedFd<'_>, name: &[u8], kind: &EntryKind) -> io::Result<()> {
    let (file_type, dev) = match *kind {
        EntryKind::Fifo => (rfs::FileType::Fifo, 0),
        EntryKind::Socket => (rfs::FileType::Socket, 0),
        EntryKind::Device { block: true, rdev } => (rfs::FileType::BlockDevice, rdev),
        EntryKind::Device { block: false, rdev } => (rfs::FileType::CharacterDevice, rdev),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a special file",
            ));
        }
    };
    Ok(rfs::mknodat(
        dir,
        name,
        file_type,
        Mode::from_raw_mode(0o600),
        dev,
    )?)
}

/// Gives the node `name` inside `dir` (just made by [`make_node`]; nodes
/// cannot be opened without side effects) its owner (when `owner`), mode
/// and mtime.
pub fn apply_node_meta(
    dir: BorrowedFd<'_>,
    name: &[u8],
    meta: &Meta,
    owner: bool,
) -> io::Result<()> {
    if owner {
        apply_symlink_owner(dir, name, meta)?;
    }
    // chmod has no way not to follow a symlink: hold the node itself (a
    // path handle never opens it) and change it through that handle.
    let node = rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rfs::fstat(&node)?;
    if matches!(
        file_type(&st),
        rfs::FileType::Symlink | rfs::FileType::Directory | rfs::FileType::RegularFile
    ) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} was replaced meanwhile", show(name)),
        ));
    }
    {
        use std::os::fd::AsRawFd;
        rfs::chmod(
            format!("/proc/self/fd/{}", node.as_raw_fd()).as_str(),
            Mode::from_raw_mode(meta.mode & 0o7777),
        )?;
    }
    apply_symlink_meta(dir, name, meta)
}

/// Lossy text of a name, for messages.
pub fn show(name: &[u8]) -> String {
    OsStr::from_bytes(name).to_string_lossy().into_owned()
}
