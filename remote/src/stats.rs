//! Per-snapshot summaries for `offsnap snapshots`: counts and sizes from
//! the manifests, changes against the previous snapshot by merging the two
//! manifests, and unique sizes from the link counts of the files' inodes
//! (a file whose inode has one link is held by that snapshot alone) and,
//! on filesystems that clone, from their extent maps (the part of such a
//! file in extents shared with another file is not its own: see
//! [`crate::extents`]; results kept between listings by
//! [`crate::extent_cache`]).

use std::os::fd::{AsFd, BorrowedFd};

use offsnap_protocol::compare::{Change, compare};
use offsnap_protocol::manifest::{self, ManifestReader};
use offsnap_protocol::{EntryKind, SnapshotStats};

use crate::error::{Context, Error};
use crate::extent_cache::{self, ExtentCache};
use crate::extents;
use crate::set::SetDir;
use offsnap_fs::cursor::DirCursor;
use offsnap_fs::fsx;

fn reader(
    set: &SetDir,
    snap: &offsnap_protocol::SnapshotName,
) -> Result<ManifestReader<std::fs::File>, Error> {
    manifest::open_file(set.open_manifest(snap)?)
        .map_err(|e| Error::corrupt(format!("manifest of {snap}"), e))
}

fn damaged(e: manifest::ManifestError) -> Error {
    Error::corrupt("manifest", e)
}

/// The bytes of the file `name` in `dir` (stat `st`, `size` bytes) in
/// extents shared with other files, from the set's cache or its extent
/// map; 0 when it cannot be mapped (the listing then counts it whole, as
/// on filesystems without clones).
fn shared_of(
    cache: &mut ExtentCache,
    (dir, name): (BorrowedFd<'_>, &[u8]),
    st: &rustix::fs::Stat,
    size: u64,
) -> u64 {
    cache.shared(extent_cache::key(st, size), || {
        fsx::open_file(dir, name).and_then(|f| extents::shared_bytes(&f, size))
    })
}

/// Summaries of every snapshot of the set, oldest first.
pub fn stats(set: &SetDir) -> Result<Vec<SnapshotStats>, Error> {
    let snaps = set.snapshots()?;
    let mut out = Vec::with_capacity(snaps.len());
    let mut shared = ExtentCache::load(set, &snaps);
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
        let snapshot = set.open_snapshot(&info.name)?;
        let sharing = extents::may_share(&snapshot);
        let mut cursor = DirCursor::new(snapshot);
        let old = match i {
            0 => None,
            _ => Some(reader(set, &snaps[i - 1].name)?),
        };
        // One read of each manifest: its entries are counted as the
        // comparison with the one before passes them.
        let mut failed = None;
        let (mut added, mut changed, mut removed) = (0, 0, 0);
        let counted = reader(set, &info.name)?.inspect(|entry| {
            if let Ok(entry) = entry
                && failed.is_none()
                && let Err(e) = count(&mut st, &mut cursor, &mut shared, sharing, entry)
            {
                failed = Some(e);
            }
        });
        compare(
            old.into_iter().flatten(),
            counted,
            |c| -> Result<(), manifest::ManifestError> {
                match c {
                    Change::Added(_) => added += 1,
                    Change::Removed(_) => removed += 1,
                    Change::Changed(..) => changed += 1,
                }
                Ok(())
            },
        )
        .map_err(damaged)?;
        if let Some(e) = failed {
            return Err(e);
        }
        (st.added, st.changed, st.removed) = (added, changed, removed);
        out.push(st);
    }
    shared.save(set);
    Ok(out)
}

/// Adds one entry of a snapshot to its summary.
fn count(
    st: &mut SnapshotStats,
    cursor: &mut DirCursor,
    shared: &mut ExtentCache,
    sharing: bool,
    entry: &offsnap_protocol::Entry,
) -> Result<(), crate::error::Error> {
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
                let shared = match sharing {
                    true => shared_of(shared, (dir.as_fd(), name), &s, size),
                    false => 0,
                };
                st.unique_bytes += size - shared;
            }
        }
    }
    Ok(())
}
