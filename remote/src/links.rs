//! Which hard links a run accepts.
//!
//! A `HardLink { target }` entry is another name of a regular file
//! recorded earlier in the same run, and shares its inode, so it must name
//! that file (not another hard link of it) and carry its metadata: `verify`
//! reads a hard link's content through its target's record and compares
//! the link's recorded mode and mtime with the inode's. A link that
//! breaks either rule would make the committed snapshot fail `verify`; it
//! is left out of the snapshot with a warning instead (an honest client
//! meets the second case only when the file changed while it was read).
//! Base entries kept unchanged go through the same check, so a snapshot
//! committed before these rules cannot pass a bad link on.

use std::collections::{HashMap, HashSet};
use std::io;

use offsnap_protocol::{Entry, Meta, RelPath};
use rustix::fs::FileType;

use offsnap_fs::cursor::DirCursor;
use offsnap_fs::fsx;

/// The hard-link names recorded in a run, by a fixed-size key (memory
/// does not grow with path lengths).
#[derive(Default)]
pub struct HardLinks {
    names: HashSet<[u8; 16]>,
    /// For a file whose inode reached the link limit: the copy made in
    /// its place, which its later names link to (one copy per limit's
    /// worth of names, not one per name).
    copies: HashMap<RelPath, RelPath>,
}

fn key(path: &RelPath) -> [u8; 16] {
    let h = blake3::hash(path.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&h.as_bytes()[..16]);
    k
}

impl HardLinks {
    /// Why `entry`, a hard link to `target`, must be left out, if it
    /// must. `within` reads the run's own tree; `awaited` is the metadata
    /// of `target` when that file is still to come (asked for again).
    /// A target that is missing or not a regular file is left to the
    /// caller, which reports it.
    pub fn refusal(
        &self,
        within: &mut DirCursor,
        entry: &Entry,
        target: &RelPath,
        awaited: Option<&Meta>,
    ) -> io::Result<Option<String>> {
        let path = &entry.path;
        if self.names.contains(&key(target)) {
            return Ok(Some(format!(
                "{path}: a hard link to {target}, which is itself a hard link (a hard link names its file); left out"
            )));
        }
        let owners = fsx::is_root();
        let same = match awaited {
            Some(m) => {
                m.mode == entry.meta.mode
                    && (m.mtime_sec, m.mtime_nsec) == (entry.meta.mtime_sec, entry.meta.mtime_nsec)
                    && (!owners || (m.uid, m.gid) == (entry.meta.uid, entry.meta.gid))
            }
            None => {
                let (dir, name) = match within.parent_of(target) {
                    Ok(found) => found,
                    Err(_) => return Ok(None),
                };
                let Some(st) = fsx::lstat(dir, name)? else {
                    return Ok(None);
                };
                if fsx::file_type(&st) != FileType::RegularFile {
                    return Ok(None);
                }
                let m = &entry.meta;
                st.st_mode & 0o7777 == fsx::stored_mode(m.mode, false, !owners)
                    && (st.st_mtime, st.st_mtime_nsec as i64)
                        == (m.mtime_sec, i64::from(m.mtime_nsec))
                    && (!owners || (st.st_uid, st.st_gid) == (m.uid, m.gid))
            }
        };
        if !same {
            return Ok(Some(format!(
                "{path}: a hard link whose mode, owner or mtime differ from those of its file {target} (changed while it was read?); left out"
            )));
        }
        Ok(None)
    }

    /// The file to link a new name of `target` to: `target`, or the copy
    /// made when its inode reached the link limit.
    pub fn source<'a>(&'a self, target: &'a RelPath) -> &'a RelPath {
        self.copies.get(target).unwrap_or(target)
    }

    /// Notes that `path`, a name of `target`, had to be a copy.
    pub fn copied(&mut self, target: &RelPath, path: &RelPath) {
        self.copies.insert(target.clone(), path.clone());
    }

    /// Notes that `path` is recorded as a hard link.
    pub fn recorded(&mut self, path: &RelPath) {
        self.names.insert(key(path));
    }
}
