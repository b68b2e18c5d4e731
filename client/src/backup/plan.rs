//! The plan stage: the one place a run decides what becomes of each
//! scanned entry, against the base snapshot's manifest walked in the same
//! order (a cursor, so memory does not grow with the number of entries).
//! An entry is unchanged (linked to its old self), recorded without
//! content (directories, symlinks, special files, further names of a
//! file), read (a new or changed file), or skipped as a cache; base
//! entries the walk passes by are gone from the sources. What a read file
//! turns out to be (new, content changed, metadata only, linked by
//! content) follows from its hash, decided here too, so that a dry run
//! and a real run itemize alike.

use std::io::Read;

use offsnap_protocol::manifest::ManifestReader;
use offsnap_protocol::{Entry, EntryKind, Hash, RelPath};

use crate::error::{Error, Result};
use crate::scan::{ScanItem, ScanKind};

/// Files at least this large (new and old) travel as deltas.
pub const DELTA_MIN: u64 = 128 * 1024;

/// What becomes of one scanned entry.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// As the base recorded it: linked to the base entry.
    Unchanged(Entry),
    /// Recorded without content; `old` is the base entry it replaces.
    Record {
        /// What is recorded.
        entry: Entry,
        /// The base entry at its path, if any.
        old: Option<Entry>,
    },
    /// A regular file whose content is read: new, or changed since `old`.
    Read {
        /// The base entry at its path, if any.
        old: Option<Entry>,
    },
    /// A cache directory, left out.
    SkippedCache,
}

/// Decides what becomes of `item`, given the base entry at its path and,
/// for a file with several names, the first name this run stored it under.
pub fn decide(item: &ScanItem, old: Option<Entry>, first_name: Option<&RelPath>) -> Plan {
    let now = match &item.kind {
        ScanKind::File(_) => first_name.map(|target| EntryKind::HardLink {
            target: target.clone(),
        }),
        ScanKind::Dir => Some(EntryKind::Dir),
        ScanKind::Symlink(target) => Some(EntryKind::Symlink {
            target: target.clone(),
        }),
        ScanKind::Special(kind) => Some(kind.clone()),
        ScanKind::SkippedCache => return Plan::SkippedCache,
    };
    let same = old.as_ref().is_some_and(|o| match &now {
        Some(kind) => o.kind == *kind && o.meta == item.meta && o.xattrs == item.xattrs,
        None => unchanged(o, item),
    });
    match (now, old) {
        (_, Some(o)) if same => Plan::Unchanged(o),
        (Some(kind), old) => Plan::Record {
            entry: Entry {
                path: item.path.clone(),
                kind,
                meta: item.meta,
                xattrs: item.xattrs.clone(),
            },
            old,
        },
        (None, old) => Plan::Read { old },
    }
}

/// Whether a scanned file can be linked to the base entry.
pub fn unchanged(old: &Entry, item: &ScanItem) -> bool {
    same_stat(old, item) && item.xattrs_read && old.xattrs == item.xattrs
}

/// Whether a scanned file looks unchanged from what a survey reads: its
/// extended attributes are compared when they were read.
pub fn looks_unchanged(old: &Entry, item: &ScanItem) -> bool {
    same_stat(old, item) && (!item.xattrs_read || old.xattrs == item.xattrs)
}

/// Whether a scanned file has the base entry's size and metadata.
fn same_stat(old: &Entry, item: &ScanItem) -> bool {
    let ScanKind::File(size) = item.kind else {
        return false;
    };
    matches!(old.kind, EntryKind::File { size: s, .. } if s == size) && old.meta == item.meta
}

/// The length of what a new or changed file of `size` bytes travels as a
/// delta against: the part of it an interrupted run received (the helper
/// prefers that too), else its old version when that is large enough;
/// `None` when it travels whole.
pub fn delta_base(old: Option<&Entry>, partial: Option<u64>, size: u64) -> Option<u64> {
    if size < DELTA_MIN {
        return None;
    }
    match (partial, old.map(|o| &o.kind)) {
        (Some(len), _) => Some(len),
        (None, Some(EntryKind::File { size: s, .. })) if *s >= DELTA_MIN => Some(*s),
        _ => None,
    }
}

/// What a run does to an entry, as itemized (`-i`) and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Change {
    /// Not in the base snapshot.
    New,
    /// Its content (or its kind, or a link's target) changed.
    Content,
    /// Only its metadata changed (mode, owner, times, attributes).
    Metadata,
    /// In the base snapshot, gone from the sources.
    Deleted,
    /// New or changed, and its content was already on the host.
    Linked,
    /// A cache directory, left out.
    Cache,
}

impl Change {
    /// Every change, in the order summaries list them.
    pub const ALL: [Change; 6] = [
        Change::New,
        Change::Content,
        Change::Metadata,
        Change::Deleted,
        Change::Linked,
        Change::Cache,
    ];

    /// Its one-character code, first in an itemized line.
    pub fn code(self) -> char {
        match self {
            Change::New => '+',
            Change::Content => '>',
            Change::Metadata => '.',
            Change::Deleted => '-',
            Change::Linked => '=',
            Change::Cache => 'x',
        }
    }

    /// Its name, in JSON and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Content => "changed",
            Change::Metadata => "metadata",
            Change::Deleted => "deleted",
            Change::Linked => "linked",
            Change::Cache => "cache",
        }
    }
}

/// The change of an entry recorded without content over `old`.
pub fn recorded_change(entry: &Entry, old: Option<&Entry>) -> Change {
    match old {
        None => Change::New,
        Some(o) if o.kind == entry.kind => Change::Metadata,
        Some(_) => Change::Content,
    }
}

/// The change of a read file with content `hash` over `old`;
/// `by_content` when it was stored by linking to content on the host.
pub fn file_change(old: Option<&Entry>, hash: &Hash, by_content: bool) -> Change {
    match old.map(|o| &o.kind) {
        Some(EntryKind::File { hash: h, .. }) if h == hash => Change::Metadata,
        _ if by_content => Change::Linked,
        Some(_) => Change::Content,
        None => Change::New,
    }
}

/// The type character of an itemized line, as `rsync -i` writes it.
pub fn kind_char(kind: &EntryKind) -> char {
    match kind {
        EntryKind::File { .. } => 'f',
        EntryKind::Dir => 'd',
        EntryKind::Symlink { .. } => 'L',
        EntryKind::HardLink { .. } => 'h',
        EntryKind::Device { .. } => 'D',
        EntryKind::Fifo | EntryKind::Socket => 'S',
    }
}

/// The base snapshot's manifest, walked alongside the scan.
pub struct Base<R: Read> {
    reader: Option<ManifestReader<R>>,
    next: Option<Entry>,
}

impl<R: Read> Base<R> {
    /// A cursor at the start of `reader` (none: an empty base).
    pub fn new(reader: Option<ManifestReader<R>>) -> Result<Base<R>> {
        let mut b = Base { reader, next: None };
        b.advance()?;
        Ok(b)
    }

    fn advance(&mut self) -> Result<()> {
        self.next = match &mut self.reader {
            Some(r) => r
                .next_entry()
                .map_err(|e| Error::Corrupt(format!("base manifest: {e}")))?,
            None => None,
        };
        Ok(())
    }

    /// The base entry at `path`, if any; the entries before it, which the
    /// walk passed by (gone from the sources), are handed to `gone`.
    pub fn find(
        &mut self,
        path: &RelPath,
        gone: &mut dyn FnMut(Entry) -> Result<()>,
    ) -> Result<Option<Entry>> {
        while let Some(e) = &self.next {
            match e.path.walk_cmp(path) {
                std::cmp::Ordering::Less => {
                    if let Some(e) = self.next.take() {
                        gone(e)?;
                    }
                    self.advance()?
                }
                std::cmp::Ordering::Equal => {
                    let found = self.next.take();
                    self.advance()?;
                    return Ok(found);
                }
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Hands the entries not reached yet to `gone`: after the walk, all of
    /// them are gone from the sources.
    pub fn rest(&mut self, gone: &mut dyn FnMut(Entry) -> Result<()>) -> Result<()> {
        while let Some(e) = self.next.take() {
            gone(e)?;
            self.advance()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offsnap_protocol::Meta;
    use offsnap_protocol::manifest::ManifestWriter;
    use std::sync::Arc;

    fn meta(mtime: i64) -> Meta {
        Meta {
            mode: 0o644,
            uid: 1,
            gid: 1,
            mtime_sec: mtime,
            mtime_nsec: 0,
        }
    }

    fn path(p: &str) -> RelPath {
        RelPath::new(p.as_bytes().to_vec()).expect("path")
    }

    fn file(p: &str, size: u64, hash: u8, mtime: i64) -> Entry {
        Entry {
            path: path(p),
            kind: EntryKind::File {
                size,
                hash: Hash([hash; 32]),
            },
            meta: meta(mtime),
            xattrs: Vec::new(),
        }
    }

    fn scanned(p: &str, kind: ScanKind, mtime: i64) -> ScanItem {
        let dir = std::fs::File::open(".").expect("a directory");
        ScanItem {
            path: path(p),
            local: p.into(),
            kind,
            meta: meta(mtime),
            xattrs: Vec::new(),
            xattrs_read: true,
            inode: None,
            parent: Arc::new(dir.into()),
            name: p.as_bytes().to_vec(),
        }
    }

    fn base(entries: &[Entry]) -> Base<std::io::Cursor<Vec<u8>>> {
        let mut w = ManifestWriter::new(Vec::new()).expect("writer");
        for e in entries {
            w.push(e).expect("push");
        }
        let (bytes, _, _) = w.finish().expect("finish");
        let r = ManifestReader::new(std::io::Cursor::new(bytes)).expect("reader");
        Base::new(Some(r)).expect("base")
    }

    #[test]
    fn a_file_as_recorded_is_unchanged_and_one_touched_is_read() {
        let old = file("s/a", 10, 1, 100);
        let same = scanned("s/a", ScanKind::File(10), 100);
        assert_eq!(
            decide(&same, Some(old.clone()), None),
            Plan::Unchanged(old.clone())
        );
        let touched = scanned("s/a", ScanKind::File(10), 200);
        assert_eq!(
            decide(&touched, Some(old.clone()), None),
            Plan::Read { old: Some(old) }
        );
        assert_eq!(decide(&touched, None, None), Plan::Read { old: None });
    }

    #[test]
    fn a_further_name_is_recorded_as_a_hard_link() {
        let item = scanned("s/b", ScanKind::File(10), 100);
        let Plan::Record { entry, old: None } = decide(&item, None, Some(&path("s/a"))) else {
            panic!("not recorded");
        };
        assert_eq!(
            entry.kind,
            EntryKind::HardLink {
                target: path("s/a")
            }
        );
        assert_eq!(recorded_change(&entry, None), Change::New);
    }

    #[test]
    fn directories_and_links_are_recorded_or_unchanged() {
        let dir = Entry {
            path: path("s"),
            kind: EntryKind::Dir,
            meta: meta(5),
            xattrs: Vec::new(),
        };
        let item = scanned("s", ScanKind::Dir, 5);
        assert_eq!(
            decide(&item, Some(dir.clone()), None),
            Plan::Unchanged(dir.clone())
        );
        let later = scanned("s", ScanKind::Dir, 6);
        let Plan::Record { entry, old } = decide(&later, Some(dir), None) else {
            panic!("not recorded");
        };
        assert_eq!(recorded_change(&entry, old.as_ref()), Change::Metadata);
        let link = scanned("s", ScanKind::Symlink(b"x".to_vec()), 6);
        let Plan::Record { entry, old } = decide(&link, old, None) else {
            panic!("not recorded");
        };
        assert_eq!(recorded_change(&entry, old.as_ref()), Change::Content);
        let cache = scanned("s/c", ScanKind::SkippedCache, 6);
        assert_eq!(decide(&cache, None, None), Plan::SkippedCache);
    }

    #[test]
    fn a_read_file_is_named_by_its_hash() {
        let old = file("s/a", 10, 1, 100);
        assert_eq!(
            file_change(Some(&old), &Hash([1; 32]), true),
            Change::Metadata
        );
        assert_eq!(
            file_change(Some(&old), &Hash([2; 32]), true),
            Change::Linked
        );
        assert_eq!(
            file_change(Some(&old), &Hash([2; 32]), false),
            Change::Content
        );
        assert_eq!(file_change(None, &Hash([2; 32]), false), Change::New);
        assert_eq!(file_change(None, &Hash([2; 32]), true), Change::Linked);
    }

    #[test]
    fn large_files_travel_as_deltas_against_a_large_base_or_a_partial() {
        let small = file("s/a", DELTA_MIN - 1, 1, 1);
        let big = file("s/a", DELTA_MIN, 1, 1);
        assert_eq!(delta_base(Some(&big), None, DELTA_MIN * 2), Some(DELTA_MIN));
        assert_eq!(delta_base(Some(&small), None, DELTA_MIN * 2), None);
        assert_eq!(delta_base(Some(&big), None, DELTA_MIN - 1), None);
        assert_eq!(delta_base(None, Some(5), DELTA_MIN), Some(5));
        assert_eq!(delta_base(None, None, DELTA_MIN), None);
    }

    #[test]
    fn the_cursor_hands_over_what_the_walk_passed_by() {
        let mut b = base(&[
            file("s/a", 1, 1, 1),
            file("s/b", 1, 1, 1),
            file("s/d", 1, 1, 1),
            file("s/e", 1, 1, 1),
        ]);
        let mut gone = Vec::new();
        let found = b.find(&path("s/c"), &mut |e| {
            gone.push(e.path.to_string());
            Ok(())
        });
        assert_eq!(found.expect("read"), None);
        assert_eq!(gone, ["s/a", "s/b"]);
        let found = b.find(&path("s/d"), &mut |e| {
            gone.push(e.path.to_string());
            Ok(())
        });
        assert_eq!(found.expect("read").map(|e| e.path), Some(path("s/d")));
        b.rest(&mut |e| {
            gone.push(e.path.to_string());
            Ok(())
        })
        .expect("read");
        assert_eq!(gone, ["s/a", "s/b", "s/e"]);
    }
}
