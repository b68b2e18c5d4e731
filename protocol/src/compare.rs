//! Comparing two manifests as two sorted streams, in constant memory:
//! what was added, removed or changed between two snapshots.

use std::cmp::Ordering;

use crate::entry::{Entry, EntryKind};
use crate::manifest::ManifestError;

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Only in the newer one.
    Added(Entry),
    /// Only in the older one.
    Removed(Entry),
    /// In both, different: old, new.
    Changed(Entry, Entry),
}

impl Change {
    /// The path concerned.
    pub fn path(&self) -> &crate::RelPath {
        match self {
            Change::Added(e) | Change::Removed(e) | Change::Changed(_, e) => &e.path,
        }
    }
}

/// Whether an entry changed: its kind, content, target, mode, owner or
/// extended attributes, or
/// (except for directories, whose mtime follows their content) its mtime.
pub fn differs(old: &Entry, new: &Entry) -> bool {
    let meta = old.meta.mode != new.meta.mode
        || old.meta.uid != new.meta.uid
        || old.meta.gid != new.meta.gid
        || old.xattrs != new.xattrs;
    let mtime =
        (old.meta.mtime_sec, old.meta.mtime_nsec) != (new.meta.mtime_sec, new.meta.mtime_nsec);
    match (&old.kind, &new.kind) {
        (EntryKind::Dir, EntryKind::Dir) => meta,
        (a, b) => a != b || meta || mtime,
    }
}

/// Walks two manifests' entries (each in walk order) and calls `f` for each
/// difference, in walk order.
pub fn compare<A, B, E>(
    mut old: A,
    mut new: B,
    mut f: impl FnMut(Change) -> Result<(), E>,
) -> Result<(), E>
where
    A: Iterator<Item = Result<Entry, ManifestError>>,
    B: Iterator<Item = Result<Entry, ManifestError>>,
    E: From<ManifestError>,
{
    let mut a = old.next().transpose()?;
    let mut b = new.next().transpose()?;
    loop {
        match (a.take(), b.take()) {
            (None, None) => return Ok(()),
            (Some(x), None) => {
                f(Change::Removed(x))?;
                a = old.next().transpose()?;
            }
            (None, Some(y)) => {
                f(Change::Added(y))?;
                b = new.next().transpose()?;
            }
            (Some(x), Some(y)) => match x.path.walk_cmp(&y.path) {
                Ordering::Less => {
                    f(Change::Removed(x))?;
                    a = old.next().transpose()?;
                    b = Some(y);
                }
                Ordering::Greater => {
                    f(Change::Added(y))?;
                    b = new.next().transpose()?;
                    a = Some(x);
                }
                Ordering::Equal => {
                    if differs(&x, &y) {
                        f(Change::Changed(x, y))?;
                    }
                    a = old.next().transpose()?;
                    b = new.next().transpose()?;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hash, Meta, RelPath};

    fn file(p: &str, content: &[u8], mtime: i64) -> Entry {
        Entry {
            path: RelPath::new(p.as_bytes().to_vec()).expect("valid"),
            kind: EntryKind::File {
                size: content.len() as u64,
                hash: Hash::of(content),
            },
            meta: Meta {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime_sec: mtime,
                mtime_nsec: 0,
            },
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn finds_added_removed_changed() -> Result<(), ManifestError> {
        let old = [file("a", b"1", 1), file("b", b"2", 1), file("d", b"4", 1)];
        let new = [file("a", b"1", 1), file("b", b"X", 2), file("c", b"3", 1)];
        let mut got = Vec::new();
        compare(
            old.into_iter().map(Ok),
            new.into_iter().map(Ok),
            |c| -> Result<(), ManifestError> {
                got.push(match c {
                    Change::Added(e) => format!("+{}", e.path),
                    Change::Removed(e) => format!("-{}", e.path),
                    Change::Changed(_, e) => format!("M{}", e.path),
                });
                Ok(())
            },
        )?;
        assert_eq!(got, ["Mb", "+c", "-d"]);
        Ok(())
    }
}
