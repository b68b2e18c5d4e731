//! The manifests the page reads, kept while it is served: each fetched
//! manifest file stays open (so a small on-disk cache cannot make a page
//! fetch it again), and the most recently used ones are kept decoded as a
//! [`Index`]: the entries in walk order and where each one's subtree ends,
//! so that a folder lists in the time of its own entries and a path is
//! found by binary search, however large the snapshot.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::{Arc, Mutex};

use offsnap_protocol::compare::{Change, compare};
use offsnap_protocol::manifest::ManifestError;
use offsnap_protocol::{Entry, EntryKind, Hash, RelPath, SetName, SnapshotInfo};

use crate::error::{Error, Result};
use crate::inspect::Version;
use crate::manifests;
use crate::session::Session;

fn corrupt(e: ManifestError) -> Error {
    Error::Corrupt(format!("manifest: {e}"))
}

/// A snapshot's entries, decoded.
pub struct Index {
    entries: Vec<Entry>,
    /// For each entry, the position after the last entry inside it.
    ends: Vec<u32>,
}

impl Index {
    /// Decodes a fetched (checked) manifest.
    pub fn read(file: &File) -> Result<Index> {
        let mut entries = Vec::new();
        for e in manifests::entries(file)? {
            entries.push(e.map_err(corrupt)?);
        }
        if u32::try_from(entries.len()).is_err() {
            return Err(Error::Corrupt(
                "a manifest of over 4 billion entries".into(),
            ));
        }
        // Walk order puts whatever is inside an entry right after it.
        let mut ends = vec![entries.len() as u32; entries.len()];
        let mut open: Vec<usize> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            while let Some(&top) = open.last() {
                if e.path.starts_with(&entries[top].path) {
                    break;
                }
                ends[top] = i as u32;
                open.pop();
            }
            open.push(i);
        }
        Ok(Index { entries, ends })
    }

    /// Every entry, in walk order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn position(&self, path: &RelPath) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.path.walk_cmp(path))
            .ok()
    }

    /// The entry at `path`.
    pub fn find(&self, path: &RelPath) -> Option<&Entry> {
        self.position(path).map(|i| &self.entries[i])
    }

    /// The entries from `start` up to `end` one level below `depth`,
    /// skipping over what is inside each.
    fn level(&self, mut at: usize, end: usize, depth: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        while at < end {
            if self.entries[at].path.depth() == depth {
                out.push(self.entries[at].clone());
            }
            at = self.ends[at] as usize;
        }
        out
    }

    /// As [`crate::inspect::ls`]: the entries directly inside `dir` (the
    /// root for `None`); a path that is not a folder lists just itself.
    pub fn ls(&self, snap: &SnapshotInfo, dir: Option<&RelPath>) -> Result<Vec<Entry>> {
        let Some(d) = dir else {
            return Ok(self.level(0, self.entries.len(), 1));
        };
        let Some(i) = self.position(d) else {
            return Err(Error::Usage(format!(
                "{d} is not in snapshot {}",
                snap.name
            )));
        };
        if self.entries[i].kind != EntryKind::Dir {
            return Ok(vec![self.entries[i].clone()]);
        }
        Ok(self.level(i + 1, self.ends[i] as usize, d.depth() + 1))
    }

    /// The entries inside `dir` (all of them for `None`), `dir` first.
    pub fn subtree(&self, dir: Option<&RelPath>) -> &[Entry] {
        match dir.and_then(|d| self.position(d).map(|i| (i, d))) {
            Some((i, _)) => &self.entries[i..self.ends[i] as usize],
            None if dir.is_none() => &self.entries,
            None => &[],
        }
    }

    /// The entries as a manifest reader gives them.
    fn stream(&self) -> impl Iterator<Item = std::result::Result<Entry, ManifestError>> + '_ {
        self.entries.iter().map(|e| Ok(e.clone()))
    }

    /// About the memory it takes, for the cache's bound.
    fn weight(&self) -> usize {
        self.entries.len()
    }
}

/// Most decoded entries kept, over all kept manifests (some 150 to 200
/// bytes each).
const DECODED_KEEP: usize = 1_000_000;

/// Most manifest files kept open.
const FILES_KEEP: usize = 256;

/// What the server keeps of the manifests it has read.
#[derive(Default)]
pub struct Manifests {
    files: Mutex<VecDeque<(Hash, Arc<File>)>>,
    decoded: Mutex<VecDeque<(Hash, Arc<Index>)>>,
}

/// Moves the entry for `hash` to the front and returns it, if present.
fn hit<T: Clone>(list: &mut VecDeque<(Hash, T)>, hash: &Hash) -> Option<T> {
    let i = list.iter().position(|(h, _)| h == hash)?;
    let item = list.remove(i)?;
    let value = item.1.clone();
    list.push_front(item);
    Some(value)
}

impl Manifests {
    /// The manifest file of `snap`, fetched once.
    pub fn file(&self, s: &mut Session, set: &SetName, snap: &SnapshotInfo) -> Result<Arc<File>> {
        let lock = || {
            self.files
                .lock()
                .map_err(|_| Error::Unexpected("a request failed while reading manifests".into()))
        };
        if let Some(f) = hit(&mut *lock()?, &snap.manifest_hash) {
            return Ok(f);
        }
        let f = Arc::new(manifests::fetch_file(s, set, snap)?);
        let mut files = lock()?;
        files.push_front((snap.manifest_hash, f.clone()));
        files.truncate(FILES_KEEP);
        Ok(f)
    }

    /// The decoded manifest of `snap`, if it is kept.
    fn kept(&self, snap: &SnapshotInfo) -> Option<Arc<Index>> {
        hit(&mut *self.decoded.lock().ok()?, &snap.manifest_hash)
    }

    /// The decoded manifest of `snap`, decoded once while it stays among
    /// the recently used.
    pub fn index(&self, s: &mut Session, set: &SetName, snap: &SnapshotInfo) -> Result<Arc<Index>> {
        if let Some(ix) = self.kept(snap) {
            return Ok(ix);
        }
        let ix = Arc::new(Index::read(&*self.file(s, set, snap)?)?);
        if let Ok(mut decoded) = self.decoded.lock() {
            decoded.push_front((snap.manifest_hash, ix.clone()));
            let mut total = 0;
            let keep = decoded
                .iter()
                .take_while(|(_, ix)| {
                    total += ix.weight();
                    total <= DECODED_KEEP
                })
                .count();
            decoded.truncate(keep.max(1));
        }
        Ok(ix)
    }

    /// The entry at `path` in `snap`: from its decoded manifest when that
    /// is kept, else read from the manifest up to where it would be (not
    /// keeping it decoded: a file's versions touch every snapshot once).
    fn entry_at(
        &self,
        s: &mut Session,
        set: &SetName,
        snap: &SnapshotInfo,
        path: &RelPath,
    ) -> Result<Option<Entry>> {
        if let Some(ix) = self.kept(snap) {
            return Ok(ix.find(path).cloned());
        }
        let file = self.file(s, set, snap)?;
        for e in manifests::entries(&file)? {
            let e = e.map_err(corrupt)?;
            match e.path.walk_cmp(path) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Ok(Some(e)),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }

    /// As [`crate::inspect::versions`]: each distinct version of `path`
    /// across `snaps` (oldest first).
    pub fn versions(
        &self,
        s: &mut Session,
        set: &SetName,
        snaps: &[SnapshotInfo],
        path: &RelPath,
    ) -> Result<Vec<Version>> {
        let mut out: Vec<Version> = Vec::new();
        let mut prev_present = false;
        for snap in snaps {
            let Some(e) = self.entry_at(s, set, snap, path)? else {
                prev_present = false;
                continue;
            };
            crate::inspect::push_version(&mut out, prev_present, snap, e);
            prev_present = true;
        }
        Ok(out)
    }

    /// As [`crate::inspect::diff`]: the changes from `a` to `b`.
    pub fn diff(
        &self,
        s: &mut Session,
        set: &SetName,
        a: &SnapshotInfo,
        b: &SnapshotInfo,
    ) -> Result<Vec<Change>> {
        let (ia, ib) = (self.index(s, set, a)?, self.index(s, set, b)?);
        let mut out = Vec::new();
        compare(ia.stream(), ib.stream(), |c| -> Result<(), ManifestError> {
            out.push(c);
            Ok(())
        })
        .map_err(corrupt)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use offsnap_protocol::Meta;
    use offsnap_protocol::manifest::ManifestWriter;

    fn entry(path: &str, dir: bool) -> Entry {
        let meta = Meta::with_mode(0o644);
        let kind = match dir {
            true => EntryKind::Dir,
            false => EntryKind::File {
                size: path.len() as u64,
                hash: Hash([1; 32]),
            },
        };
        Entry::new(RelPath::new(path).unwrap(), kind, meta)
    }

    /// Every folder's listing and subtree from the index equal those a
    /// scan of all entries gives (names chosen so that walk order and
    /// byte order differ: `a/b` before `a.txt`).
    #[test]
    fn listings_from_the_index_equal_a_full_scan() {
        let mut all: Vec<Entry> = [
            ("a", true),
            ("a/b", true),
            ("a/b/c", false),
            ("a/b/d", true),
            ("a/b/d/e", false),
            ("a/b.txt", false),
            ("a/z", false),
            ("a.txt", false),
            ("b", true),
            ("b/x", false),
            ("c", false),
        ]
        .iter()
        .map(|(p, d)| entry(p, *d))
        .collect();
        all.sort_by(|x, y| x.path.walk_cmp(&y.path));
        let mut w = ManifestWriter::new(tempfile::tempfile().unwrap()).unwrap();
        for e in &all {
            w.push(e).unwrap();
        }
        let (file, _, _) = w.finish().unwrap();
        let ix = Index::read(&file).unwrap();
        assert_eq!(ix.entries(), all.as_slice());
        let snap = SnapshotInfo {
            name: "2026-01-01T000000Z".parse().unwrap(),
            manifest_hash: Hash([0; 32]),
            manifest_len: 0,
        };
        let names = |v: &[Entry]| v.iter().map(|e| e.path.to_string()).collect::<Vec<_>>();
        let top: Vec<Entry> = all
            .iter()
            .filter(|e| e.path.depth() == 1)
            .cloned()
            .collect();
        assert_eq!(names(&ix.ls(&snap, None).unwrap()), names(&top));
        for d in all.iter().filter(|e| e.kind == EntryKind::Dir) {
            let inside: Vec<Entry> = all
                .iter()
                .filter(|e| e.path.parent().as_ref() == Some(&d.path))
                .cloned()
                .collect();
            assert_eq!(names(&ix.ls(&snap, Some(&d.path)).unwrap()), names(&inside));
            let below: Vec<Entry> = all
                .iter()
                .filter(|e| e.path.starts_with(&d.path))
                .cloned()
                .collect();
            assert_eq!(names(ix.subtree(Some(&d.path))), names(&below));
        }
        let c = RelPath::new("a/b/c").unwrap();
        assert_eq!(names(&ix.ls(&snap, Some(&c)).unwrap()), ["a/b/c"]);
        assert_eq!(ix.find(&c).map(|e| e.size()), Some(5));
        assert!(ix.ls(&snap, Some(&RelPath::new("a/q").unwrap())).is_err());
        assert!(ix.subtree(Some(&RelPath::new("a/q").unwrap())).is_empty());
    }
}
