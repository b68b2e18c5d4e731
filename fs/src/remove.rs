//! Deleting a directory tree of any depth, with a bounded stack and a
//! bounded number of open files.
//!
//! A client can leave a tree thousands of levels deep (in a run it never
//! commits, or in a snapshot). Deleting it by recursion would take one
//! stack frame and one open directory per level: a deep enough tree
//! overflows the stack or the open-file limit, and then sits in the trash
//! failing every later run of its set. Here the walk keeps its levels in a
//! vector, with handles open on at most [`OPEN_LEVELS`] of them; a level
//! whose handle was closed is reopened through `..` of its child when the
//! walk climbs back, and checked to be the same directory (device and
//! inode) it left.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode};

use crate::fsx;

/// At most this many directory handles are open at once.
pub const OPEN_LEVELS: usize = 32;

/// One directory on the way down.
struct Level {
    name: Vec<u8>,
    /// Closed for levels far above the current one.
    fd: Option<OwnedFd>,
    dev: u64,
    ino: u64,
    /// Subdirectories still to delete.
    subdirs: Vec<Vec<u8>>,
}

/// Removes `name` inside `dir` and everything under it, without following
/// symlinks, making read-only directories writable as it goes.
pub fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let Some(st) = fsx::lstat(dir, name)? else {
        return Ok(());
    };
    if fsx::file_type(&st) != FileType::Directory {
        return fsx::unlink(dir, name);
    }
    let mut stack = vec![enter(dir, name)?];
    loop {
        let Some(top) = stack.last_mut() else {
            return Ok(());
        };
        if let Some(next) = top.subdirs.pop() {
            let Some(fd) = &top.fd else {
                return Err(io::Error::other(
                    "a directory being deleted lost its handle",
                ));
            };
            match enter(fd.as_fd(), &next) {
                Ok(level) => stack.push(level),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            let n = stack.len();
            if n > OPEN_LEVELS {
                stack[n - 1 - OPEN_LEVELS].fd = None;
            }
            continue;
        }
        // Everything under the top level is gone: remove it.
        let Some(done) = stack.pop() else {
            return Ok(());
        };
        let Some(child) = done.fd else {
            return Err(io::Error::other(
                "a directory being deleted lost its handle",
            ));
        };
        match stack.last_mut() {
            None => {
                drop(child);
                return rmdir(dir, &done.name);
            }
            Some(parent) => {
                if parent.fd.is_none() {
                    parent.fd = Some(reopen_parent(child.as_fd(), parent)?);
                }
                drop(child);
                if let Some(fd) = &parent.fd {
                    rmdir(fd.as_fd(), &done.name)?;
                }
            }
        }
    }
}

/// Opens the directory `name`, makes it writable, deletes what is not a
/// directory in it and lists its subdirectories.
fn enter(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Level> {
    let fd = fsx::open_dir(dir, name)?;
    // Owner's write and search bits are needed to empty it.
    rfs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
    let st = rfs::fstat(&fd)?;
    let mut subdirs = Vec::new();
    for (child, kind) in fsx::read_dir(fd.as_fd())? {
        let kind = match kind {
            FileType::Unknown => match fsx::lstat(fd.as_fd(), &child)? {
                Some(st) => fsx::file_type(&st),
                None => continue,
            },
            k => k,
        };
        if kind == FileType::Directory {
            subdirs.push(child);
            continue;
        }
        match fsx::unlink(fd.as_fd(), &child) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(Level {
        name: name.to_vec(),
        fd: Some(fd),
        dev: st.st_dev,
        ino: st.st_ino,
        subdirs,
    })
}

/// Reopens `parent`, whose handle was closed, as `..` of `child`; fails if
/// that is not the directory the walk came down through.
fn reopen_parent(child: BorrowedFd<'_>, parent: &Level) -> io::Result<OwnedFd> {
    let up = fsx::open_dir(child, b"..")?;
    let st = rfs::fstat(&up)?;
    if (st.st_dev, st.st_ino) != (parent.dev, parent.ino) {
        return Err(io::Error::other(
            "a directory being deleted was moved meanwhile",
        ));
    }
    Ok(up)
}

fn rmdir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    Ok(rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `depth` directories under `top`, each holding a file,
    /// made with one handle at a time.
    fn chain(root: BorrowedFd<'_>, top: &[u8], depth: usize) -> io::Result<()> {
        let mut fd = fsx::create_dir(root, top)?;
        for i in 0..depth {
            drop(fsx::create_file(fd.as_fd(), format!("f{i}").as_bytes())?);
            let next = fsx::create_dir(fd.as_fd(), b"d")?;
            if i % 3 == 0 {
                rfs::fchmod(&fd, Mode::from_raw_mode(0o500))?;
            }
            fd = next;
        }
        Ok(())
    }

    #[test]
    fn a_tree_deeper_than_the_stack_and_the_open_files_is_deleted() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = fsx::open_root(tmp.path())?;
        chain(root.as_fd(), b"deep", 20_000)?;
        let wide = fsx::create_dir(root.as_fd(), b"wide")?;
        for i in 0..50 {
            chain(wide.as_fd(), format!("w{i}").as_bytes(), 40)?;
        }
        drop(wide);
        // A small stack is enough, whatever the depth.
        let fd = root.try_clone()?;
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                remove_tree(fd.as_fd(), b"deep")?;
                remove_tree(fd.as_fd(), b"wide")
            })?
            .join()
            .map_err(|_| io::Error::other("panicked"))??;
        assert_eq!(fsx::read_dir(root.as_fd())?.len(), 0);
        Ok(())
    }
}
