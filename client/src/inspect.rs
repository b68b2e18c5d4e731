//! Answers read from manifests alone: a directory listing of a snapshot,
//! the versions of a file across snapshots, the differences between two
//! snapshots. Nothing walks the snapshot trees.

use offsnap_protocol::compare::{Change, compare};
use offsnap_protocol::manifest::ManifestError;
use offsnap_protocol::{Entry, RelPath, SetName, SnapshotInfo};

use crate::error::{Error, Result};
use crate::manifests::{self, entries};
use crate::session::Session;

fn corrupt(e: ManifestError) -> Error {
    Error::Corrupt(format!("manifest: {e}"))
}

/// The entries directly inside `dir` (the snapshot's root for `None`), and
/// whether `dir` exists; a file path lists just that file.
pub fn ls(
    session: &mut Session,
    set: &SetName,
    snap: &SnapshotInfo,
    dir: Option<&RelPath>,
) -> Result<Vec<Entry>> {
    let file = manifests::fetch_file(session, set, snap)?;
    let mut out = Vec::new();
    let mut found = dir.is_none();
    for e in entries(&file)? {
        let e = e.map_err(corrupt)?;
        match dir {
            None if e.path.depth() == 1 => out.push(e),
            Some(d) if e.path == *d => {
                found = true;
                if e.is_file() || !matches!(e.kind, offsnap_protocol::EntryKind::Dir) {
                    out.push(e);
                }
            }
            Some(d) if e.path.parent().as_ref() == Some(d) => out.push(e),
            _ => {}
        }
    }
    if !found {
        return Err(Error::Usage(format!(
            "{} is not in snapshot {}",
            dir.map(|d| d.to_string()).unwrap_or_default(),
            snap.name
        )));
    }
    Ok(out)
}

/// One version of a path: the snapshot it first appears in, and its entry.
#[derive(Debug, Clone)]
pub struct Version {
    /// The first snapshot holding this version.
    pub first: SnapshotInfo,
    /// The last consecutive snapshot holding it.
    pub last: SnapshotInfo,
    /// The entry.
    pub entry: Entry,
}

/// Adds `entry`, found in `snap`, to the versions so far: the last
/// version goes on to `snap` when the entry is the same and was present in
/// the snapshot before (`prev_present`); otherwise a new version begins.
pub fn push_version(out: &mut Vec<Version>, prev_present: bool, snap: &SnapshotInfo, entry: Entry) {
    let same = prev_present
        && out
            .last()
            .is_some_and(|v| !offsnap_protocol::compare::differs(&v.entry, &entry));
    match out.last_mut() {
        Some(v) if same => v.last = snap.clone(),
        _ => out.push(Version {
            first: snap.clone(),
            last: snap.clone(),
            entry,
        }),
    }
}

/// Each distinct version of `path` across `snaps` (oldest first).
pub fn versions(
    session: &mut Session,
    set: &SetName,
    snaps: &[SnapshotInfo],
    path: &RelPath,
) -> Result<Vec<Version>> {
    let mut out: Vec<Version> = Vec::new();
    let mut prev_present = false;
    for snap in snaps {
        let file = manifests::fetch_file(session, set, snap)?;
        let mut here = None;
        for e in entries(&file)? {
            let e = e.map_err(corrupt)?;
            match e.path.walk_cmp(path) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => here = Some(e),
                std::cmp::Ordering::Greater => {}
            }
            break;
        }
        prev_present = match here {
            Some(e) => {
                push_version(&mut out, prev_present, snap, e);
                true
            }
            None => false,
        }
    }
    Ok(out)
}

/// The differences from snapshot `a` to snapshot `b`, in walk order.
pub fn diff(
    session: &mut Session,
    set: &SetName,
    a: &SnapshotInfo,
    b: &SnapshotInfo,
) -> Result<Vec<Change>> {
    let fa = manifests::fetch_file(session, set, a)?;
    let fb = manifests::fetch_file(session, set, b)?;
    let mut out = Vec::new();
    compare(
        entries(&fa)?,
        entries(&fb)?,
        |c| -> Result<(), ManifestError> {
            out.push(c);
            Ok(())
        },
    )
    .map_err(corrupt)?;
    Ok(out)
}
