//! Deleting a directory tree of any depth or width, with a bounded stack,
//! a bounded number of open files and memory that grows with neither.
//!
//! A client can leave a tree thousands of levels deep, or a directory of
//! millions of names (in a run it never commits, or in a snapshot).
//! Deleting it by recursion would take one stack frame and one open
//! directory per level, and listing a directory before emptying it takes
//! memory for all its names: a deep or wide enough tree overflows the
//! stack, the open-file limit or the memory, and then sits in the trash
//! failing every later run of its set.
//!
//! Here the walk keeps its levels in a vector, each with its directory
//! handle and its listing open (two handles) for at most [`OPEN_LEVELS`]
//! of them. Names are dealt with as the listing returns them: what is not
//! a directory is unlinked at once, a subdirectory is entered at once, and
//! the parent's listing goes on where it stopped when the walk climbs back
//! (entries removed meanwhile are never returned again). A level whose
//! handles were closed is reopened through `..` of its child, checked to
//! be the same directory (device and inode) it left, and listed again from
//! its start: what was deleted is gone, so only what is left is read.
//! Nothing is followed: a symlink is unlinked, never entered.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode};

use crate::fsx;

/// At most this many levels have their handles open at once.
pub const OPEN_LEVELS: usize = 32;

/// How many times a directory found not empty after its listing ended (a
/// name added meanwhile) is listed again before that is an error.
const RETRIES: u8 = 3;

/// One directory on the way down.
struct Level {
    name: Vec<u8>,
    /// Closed for levels far above the current one.
    fd: Option<OwnedFd>,
    /// Its listing, where the walk left it; `None` before it starts again.
    list: Option<Dir>,
    dev: u64,
    ino: u64,
    /// Times it was found not empty after its listing ended.
    tries: u8,
}

fn lost() -> io::Error {
    io::Error::other("a directory being deleted lost its handle")
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
    let mut stack = vec![enter(dir, name, 0)?];
    while let Some(top) = stack.last_mut() {
        if let Some(next) = next_subdir(top)? {
            let fd = top.fd.as_ref().ok_or_else(lost)?;
            match enter(fd.as_fd(), &next, 0) {
                Ok(level) => stack.push(level),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            let n = stack.len();
            if n > OPEN_LEVELS {
                let far = &mut stack[n - 1 - OPEN_LEVELS];
                far.list = None;
                far.fd = None;
            }
            continue;
        }
        // Its listing ended, everything in it deleted: remove it.
        let n = stack.len();
        if n >= 2 && stack[n - 2].fd.is_none() {
            let child = stack[n - 1].fd.as_ref().ok_or_else(lost)?;
            let up = reopen_parent(child.as_fd(), &stack[n - 2])?;
            stack[n - 2].fd = Some(up);
        }
        let Some(done) = stack.pop() else { break };
        let Level { name, tries, .. } = done;
        let parent = match stack.last() {
            Some(p) => p.fd.as_ref().ok_or_else(lost)?.as_fd(),
            None => dir,
        };
        match rmdir(parent, &name) {
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty && tries < RETRIES => {
                let again = enter(parent, &name, tries + 1)?;
                stack.push(again);
            }
            other => other?,
        }
    }
    Ok(())
}

/// Removes everything inside `dir` (not `dir` itself), each name as its
/// listing returns it: [`remove_tree`] for each.
pub fn empty_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    for _ in 0..=RETRIES {
        let mut any = false;
        for ent in Dir::read_from(dir)? {
            let ent = ent?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                any = true;
                remove_tree(dir, name)?;
            }
        }
        if !any {
            return Ok(());
        }
    }
    Err(io::Error::other(
        "a directory being emptied keeps getting new names",
    ))
}

/// Opens the directory `name` and makes it writable; its listing starts
/// when it is first read.
fn enter(dir: BorrowedFd<'_>, name: &[u8], tries: u8) -> io::Result<Level> {
    let fd = fsx::open_dir(dir, name)?;
    // Owner's write and search bits are needed to empty it.
    rfs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
    let st = rfs::fstat(&fd)?;
    Ok(Level {
        name: name.to_vec(),
        fd: Some(fd),
        list: None,
        dev: st.st_dev,
        ino: st.st_ino,
        tries,
    })
}

/// Reads on in `level`'s listing, unlinking what is not a directory;
/// returns the next subdirectory, or `None` when the listing has ended.
fn next_subdir(level: &mut Level) -> io::Result<Option<Vec<u8>>> {
    let fd = level.fd.as_ref().ok_or_else(lost)?;
    let list = match &mut level.list {
        Some(list) => list,
        None => level.list.insert(Dir::read_from(fd)?),
    };
    for ent in list.by_ref() {
        let ent = ent?;
        let child = ent.file_name().to_bytes();
        if child == b"." || child == b".." {
            continue;
        }
        let kind = match ent.file_type() {
            FileType::Unknown => match fsx::lstat(fd.as_fd(), child)? {
                Some(st) => fsx::file_type(&st),
                None => continue,
            },
            k => k,
        };
        if kind == FileType::Directory {
            return Ok(Some(child.to_vec()));
        }
        match fsx::unlink(fd.as_fd(), child) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    level.list = None;
    Ok(None)
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

    #[test]
    fn a_wide_directory_of_files_and_subdirectories_is_deleted() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = fsx::open_root(tmp.path())?;
        let wide = fsx::create_dir(root.as_fd(), b"wide")?;
        for i in 0..3000 {
            drop(fsx::create_file(wide.as_fd(), format!("f{i}").as_bytes())?);
            if i % 3 == 0 {
                chain(wide.as_fd(), format!("d{i}").as_bytes(), 3)?;
            }
            if i % 7 == 0 {
                fsx::symlink(wide.as_fd(), format!("l{i}").as_bytes(), b"/")?;
            }
        }
        rfs::fchmod(&wide, Mode::from_raw_mode(0o500))?;
        drop(wide);
        fsx::symlink(root.as_fd(), b"link", b"wide")?;
        drop(fsx::create_file(root.as_fd(), b"kept")?);
        // A symlink is removed, never followed.
        remove_tree(root.as_fd(), b"link")?;
        assert!(fsx::lstat(root.as_fd(), b"wide")?.is_some());
        let top = fsx::open_dir(root.as_fd(), b"wide")?;
        empty_dir(top.as_fd())?;
        assert_eq!(fsx::read_dir(top.as_fd())?.len(), 0);
        drop(top);
        remove_tree(root.as_fd(), b"wide")?;
        let left: Vec<_> = fsx::read_dir(root.as_fd())?
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(left, [b"kept".to_vec()]);
        Ok(())
    }
}
