//! The manifest a run writes: entries in walk order (an entry out of
//! order is the client's error), each counted in the run's statistics.

use std::cmp::Ordering;
use std::fs::File;
use std::io::BufWriter;
use std::os::fd::{AsFd, OwnedFd};

use offsnap_fs::fsx;
use offsnap_protocol::manifest::ManifestWriter;
use offsnap_protocol::{CommitStats, Entry, Hash, RelPath};

use crate::error::{Context, Error, protocol};

/// The manifest being written, the last path placed and the run's counts.
pub(super) struct Record {
    manifest: ManifestWriter<BufWriter<File>>,
    pub(super) stats: CommitStats,
    last: Option<RelPath>,
}

impl Record {
    /// Creates `manifest` in the run's directory `work`.
    pub(super) fn create(work: &OwnedFd, ctx: &str) -> Result<Record, Error> {
        let file = fsx::create_file(work.as_fd(), b"manifest").ctx(ctx)?;
        let manifest =
            ManifestWriter::new(BufWriter::with_capacity(256 * 1024, file)).map_err(|e| {
                Error::Manifest {
                    context: ctx.to_string(),
                    source: e,
                }
            })?;
        Ok(Record {
            manifest,
            stats: CommitStats::default(),
            last: None,
        })
    }

    /// Checks that `path` comes after the last path placed, and makes it
    /// the last.
    pub(super) fn check_order(&mut self, path: &RelPath) -> Result<(), Error> {
        if let Some(last) = &self.last
            && last.walk_cmp(path) != Ordering::Less
        {
            return Err(protocol(format!(
                "entries out of order: {path} after {last}"
            )));
        }
        self.last = Some(path.clone());
        Ok(())
    }

    /// The last path placed.
    pub(super) fn last(&self) -> Option<RelPath> {
        self.last.clone()
    }

    /// Makes `last` the last path placed again (a file cancelled: the
    /// client may send it again).
    pub(super) fn rewind(&mut self, last: Option<RelPath>) {
        self.last = last;
    }

    /// Writes `entry` to the manifest and counts it.
    pub(super) fn push(&mut self, entry: &Entry) -> Result<(), Error> {
        self.manifest
            .push(entry)
            .map_err(|e| crate::error::manifest("writing the manifest", e))?;
        self.stats.entries += 1;
        if entry.is_file() {
            self.stats.files += 1;
        }
        Ok(())
    }

    /// Finishes the manifest and makes it durable: its hash, and the
    /// run's counts.
    pub(super) fn finish(self, ctx: &str) -> Result<(Hash, CommitStats), Error> {
        let (out, hash, _len) = self
            .manifest
            .finish()
            .map_err(|e| crate::error::manifest(ctx, e))?;
        let file = out
            .into_inner()
            .map_err(|e| crate::error::io(ctx, e.into_error()))?;
        file.sync_all().ctx(ctx)?;
        Ok((hash, self.stats))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use offsnap_protocol::{EntryKind, Meta};

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: RelPath::new(path.as_bytes().to_vec()).unwrap(),
            kind,
            meta: Meta {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime_sec: 1,
                mtime_nsec: 0,
            },
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn entries_are_written_in_walk_order_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let work = fsx::open_root(dir.path()).unwrap();
        let mut r = Record::create(&work, "test").unwrap();
        let file = EntryKind::File {
            size: 3,
            hash: Hash::of(b"abc"),
        };
        let entries = [entry("a", EntryKind::Dir), entry("a/f", file)];
        for e in &entries {
            r.check_order(&e.path).unwrap();
            r.push(e).unwrap();
        }
        let late = RelPath::new(b"a".to_vec()).unwrap();
        let refused = r.check_order(&late).unwrap_err();
        assert!(matches!(refused, Error::Protocol(_)), "{refused}");
        // A cancelled file gives its place back.
        let before = r.last();
        r.check_order(&RelPath::new(b"b".to_vec()).unwrap())
            .unwrap();
        r.rewind(before);
        r.check_order(&RelPath::new(b"b".to_vec()).unwrap())
            .unwrap();
        let (hash, stats) = r.finish("test").unwrap();
        assert_eq!((stats.entries, stats.files), (2, 1));
        let written = std::fs::read(dir.path().join("manifest")).unwrap();
        assert_eq!(&written[written.len() - 32..], &hash.0);
        let back: Vec<Entry> = offsnap_protocol::manifest::ManifestReader::new(&written[..])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, entries);
    }
}
