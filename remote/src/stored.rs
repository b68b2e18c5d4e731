//! Checks a stored file against what its manifest recorded before a new
//! snapshot reuses it, so that damage on the backup host (a stored file
//! altered in place) is never carried forward into new snapshots.
//!
//! What is checked, by how a file is reused:
//! - linked by content (`LinkFrom` from the base snapshot): the stored
//!   file is hashed before it is linked;
//! - copied (the hard-link limit, other metadata): hashed as it is copied
//!   ([`offsnap_fs::tree::TreeWriter::link_from`]);
//! - hard-linked as unchanged: its size, mode and mtime must be the ones
//!   recorded (what a change in place alters), which costs one `fstatat`.

use std::io;

use offsnap_protocol::{Hash, RelPath};

use offsnap_fs::cursor::DirCursor;
use offsnap_fs::fsx;

/// Whether the file `path` under `tree` is a regular file of `size` bytes
/// whose content hashes to `hash`. `Err` only when it cannot be read.
pub fn holds(tree: &mut DirCursor, path: &RelPath, size: u64, hash: &Hash) -> io::Result<bool> {
    let (dir, name) = tree.parent_of(path)?;
    let mut f = fsx::open_file(dir, name)?;
    if f.metadata()?.len() != size {
        return Ok(false);
    }
    let mut buf = vec![0u8; 1 << 20];
    let (n, got) = fsx::hash_all(&mut f, &mut buf)?;
    Ok(n == size && got == *hash)
}

/// The line a helper prints when a stored file no longer matches its
/// manifest and is asked for again.
pub fn altered_note(path: &RelPath, from: &RelPath, why: &str) -> String {
    format!(
        "offsnap-remote: warning: {path}: the stored copy {from} in the previous snapshot does not match its manifest ({why}); it was altered or damaged on the backup host and is sent again (run offsnap verify)"
    )
}
