//! Per-snapshot summaries for `offsnap snapshots`: counts and sizes from
//! the manifests, changes against the previous snapshot by merging the two
//! manifests, and unique sizes from the link counts of the files' inodes
//! (a file whose inode has one link is held by that snapshot alone).

use std::os::fd::AsFd;

use offsnap_protocol::compare::{Change, compare};
use offsnap_protocol::manifest::{self, ManifestReader};
use offsnap_protocol::{EntryKind, ErrorKind, RemoteError, SnapshotStats};

use crate::cursor::DirCursor;
use crate::error::{Context, err};
use crate::fsx;
use crate::set::SetDir;

fn reader(
    set: &SetDir,
    snap: &offsnap_protocol::SnapshotName,
) -> Result<ManifestReader<std::fs::File>, RemoteError> {
    manifest::open_file(set.open_manifest(snap)?)
        .map_err(|e| err(ErrorKind::Corrupt, format!("manifest of {snap}: {e}")))
}

fn damaged(e: manifest::ManifestError) -> RemoteError {
    err(ErrorKind::Corrupt, format!("manifest: {e}"))
}

/// Summaries of every snapshot of the set, oldest first.
pub fn stats(set: &SetDir) -> Result<Vec<SnapshotStats>, RemoteError> {
    let snaps = set.snapshots()?;
    let mut out = Vec::with_capacity(snaps.len());
    for (i, info) in snaps.iter().enumerate() {
        let mut st = SnapshotStats {
            name: info.name,
            files: 0,
            dirs: 0,
            symlinks: 0,
            total_bytes: 0,
            unique_bytes: 0,
            added: 0,
            changed: 0,
            removed: 0,
        };
        let mut cursor = DirCursor::new(set.open_snapshot(&info.name)?);
        for entry in reader(set, &info.name)? {
            let entry = entry.map_err(damaged)?;
            match entry.kind {
                EntryKind::Dir => st.dirs += 1,
                EntryKind::Symlink { .. } => st.symlinks += 1,
                // Another name of a file already counted: no bytes of its own.
                EntryKind::HardLink { .. } => st.files += 1,
                EntryKind::Fifo | EntryKind::Socket | EntryKind::Device { .. } => {}
                EntryKind::File { size, .. } => {
                    st.files += 1;
                    st.total_bytes += size;
                    let (dir, name) = cursor.parent_of(&entry.path).ctx(&entry.path)?;
                    if let Some(s) = fsx::lstat(dir.as_fd(), name).ctx(&entry.path)?
                        && s.st_nlink == 1
                    {
                        st.unique_bytes += size;
                    }
                }
            }
        }
        let old = match i {
            0 => None,
            _ => Some(reader(set, &snaps[i - 1].name)?),
        };
        compare(
            old.into_iter().flatten(),
            reader(set, &info.name)?,
            |c| -> Result<(), manifest::ManifestError> {
                match c {
                    Change::Added(_) => st.added += 1,
                    Change::Removed(_) => st.removed += 1,
                    Change::Changed(..) => st.changed += 1,
                }
                Ok(())
            },
        )
        .map_err(damaged)?;
        out.push(st);
    }
    Ok(out)
}
