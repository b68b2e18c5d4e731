//! A cursor over a directory tree: the chain of open directory handles from
//! a root down to the directory last used.
//!
//! Entries arrive in walk order, so consecutive paths share most of their
//! parents: the cursor keeps those parents open and only opens or closes
//! the components that differ. Each component is opened with
//! `O_NOFOLLOW | O_DIRECTORY`, so no path can pass through a symlink.
//! A directory's own metadata can be left pending on it and is applied
//! when the cursor leaves the directory (after its children were written,
//! which would otherwise change its mtime).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use offsnap_protocol::{Meta, RelPath};

use crate::fsx;

struct Level {
    name: Vec<u8>,
    fd: OwnedFd,
    pending: Option<Meta>,
}

/// See the module documentation.
pub struct DirCursor {
    root: OwnedFd,
    stack: Vec<Level>,
    readable: bool,
    owners: bool,
}

impl DirCursor {
    /// A cursor at `root`.
    pub fn new(root: OwnedFd) -> DirCursor {
        DirCursor {
            root,
            stack: Vec::new(),
            readable: false,
            owners: false,
        }
    }

    /// Makes the directories it leaves get their recorded owners (root).
    pub fn apply_owners(mut self, yes: bool) -> Self {
        self.owners = yes;
        self
    }

    /// Makes the directories it leaves keep the owner's read and search
    /// bits (see [`fsx::stored_mode`]).
    pub fn keep_readable(mut self, yes: bool) -> Self {
        self.readable = yes;
        self
    }

    /// The root's handle.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Moves to the directory `path` (the root for `None`), opening what is
    /// missing, and returns its handle.
    pub fn dir(&mut self, path: Option<&RelPath>) -> io::Result<BorrowedFd<'_>> {
        let comps: Vec<&[u8]> = match path {
            Some(p) => p.components().collect(),
            None => Vec::new(),
        };
        let common = self
            .stack
            .iter()
            .zip(&comps)
            .take_while(|(level, comp)| level.name == **comp)
            .count();
        self.pop_to(common)?;
        for comp in &comps[common..] {
            let fd = fsx::open_dir(self.top(), comp).map_err(|e| not_a_dir(e, path))?;
            self.stack.push(Level {
                name: comp.to_vec(),
                fd,
                pending: None,
            });
        }
        Ok(self.top())
    }

    /// Moves to the parent of `path` and returns its handle and `path`'s name.
    pub fn parent_of<'p>(&mut self, path: &'p RelPath) -> io::Result<(BorrowedFd<'_>, &'p [u8])> {
        let parent = path.parent();
        let fd = self.dir(parent.as_ref())?;
        Ok((fd, path.file_name()))
    }

    /// Records that the cursor now stands in the directory `path`, just
    /// opened as `fd`, whose metadata is applied when the cursor leaves it.
    /// The cursor must stand in `path`'s parent.
    pub fn enter(&mut self, path: &RelPath, fd: OwnedFd, meta: Option<Meta>) {
        self.stack.push(Level {
            name: path.file_name().to_vec(),
            fd,
            pending: meta,
        });
    }

    /// Leaves every open directory, applying pending metadata.
    pub fn finish(&mut self) -> io::Result<()> {
        self.pop_to(0)
    }

    fn top(&self) -> BorrowedFd<'_> {
        self.stack
            .last()
            .map(|l| l.fd.as_fd())
            .unwrap_or(self.root.as_fd())
    }

    fn pop_to(&mut self, depth: usize) -> io::Result<()> {
        while self.stack.len() > depth {
            let Some(level) = self.stack.pop() else { break };
            if let Some(mut meta) = level.pending {
                if self.owners {
                    fsx::apply_owner(&level.fd, &meta)?;
                }
                meta.mode = fsx::stored_mode(meta.mode, true, self.readable);
                fsx::apply_meta(&level.fd, &meta)?;
            }
        }
        Ok(())
    }
}

fn not_a_dir(e: io::Error, path: Option<&RelPath>) -> io::Error {
    let shown = path.map(|p| p.to_string()).unwrap_or_default();
    let code = e.raw_os_error();
    if code == Some(rustix::io::Errno::LOOP.raw_os_error())
        || code == Some(rustix::io::Errno::NOTDIR.raw_os_error())
    {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{shown:?} is not a directory (symlinks are never followed)"),
        )
    } else if e.kind() == io::ErrorKind::NotFound {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("directory {shown:?} does not exist"),
        )
    } else {
        io::Error::new(e.kind(), format!("cannot open directory {shown:?}: {e}"))
    }
}
