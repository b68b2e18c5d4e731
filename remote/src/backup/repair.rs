//! Repair: files the run could not store as the client described them (a
//! delta that rebuilt other bytes or went past its bound, a stored copy
//! found altered) are recorded as described and asked for again whole,
//! after the walk ([`Response::Resend`]). Their other names (hard links)
//! wait for them, and are made when the file comes; what never comes is
//! taken out of the manifest at commit.
//!
//! [`Response::Resend`]: offsnap_protocol::Response::Resend

use std::collections::{HashMap, HashSet};

use offsnap_fs::fsx;
use offsnap_fs::tree::Linked;
use offsnap_protocol::{Entry, Hash, Meta, RelPath, Xattr};

use super::BackupRun;
use crate::error::{Context, Error, protocol};

/// A file asked for again: recorded, not yet stored.
struct Awaited {
    size: u64,
    hash: Hash,
    meta: Meta,
    xattrs: Vec<Xattr>,
}

/// Files asked for again and the names waiting for them.
#[derive(Default)]
pub(super) struct Repair {
    /// Files to ask the client for again, whole.
    resends: Vec<RelPath>,
    /// Those asked for and not stored yet.
    awaited: HashMap<RelPath, Awaited>,
    /// Hard links (name, first name) to files asked for again, recorded
    /// and made when the file comes.
    deferred: Vec<(RelPath, RelPath)>,
}

impl Repair {
    /// Asks for `entry`, a file of `size` bytes hashing to `hash`, again.
    fn ask(&mut self, entry: &Entry, size: u64, hash: Hash) {
        self.resends.push(entry.path.clone());
        self.awaited.insert(
            entry.path.clone(),
            Awaited {
                size,
                hash,
                meta: entry.meta,
                xattrs: entry.xattrs.clone(),
            },
        );
    }

    /// Files to ask the client for again since the last call.
    pub(super) fn take_resends(&mut self) -> Vec<RelPath> {
        std::mem::take(&mut self.resends)
    }

    /// The metadata of `path` if it is asked for again.
    pub(super) fn awaited_meta(&self, path: &RelPath) -> Option<&Meta> {
        self.awaited.get(path).map(|a| &a.meta)
    }

    /// For a file begun at `path`: the hash it must have if it is one
    /// asked for again (it must come whole, as recorded), `None` if it is
    /// not one.
    pub(super) fn expected(
        &self,
        path: &RelPath,
        delta: bool,
        size: u64,
        meta: &Meta,
        xattrs: &[Xattr],
    ) -> Result<Option<Hash>, Error> {
        match self.awaited.get(path) {
            Some(a) if !delta && a.size == size && a.meta == *meta && a.xattrs == xattrs => {
                Ok(Some(a.hash))
            }
            Some(_) => Err(protocol(format!(
                "{path}: sent again as a delta or with another size or metadata"
            ))),
            None => Ok(None),
        }
    }

    /// Notes that `link`, a name of `target` (asked for again), waits for it.
    pub(super) fn defer(&mut self, link: RelPath, target: RelPath) {
        self.deferred.push((link, target));
    }

    /// Notes that `target` came; returns the names waiting for it.
    fn arrived(&mut self, target: &RelPath) -> Vec<RelPath> {
        self.awaited.remove(target);
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(_, t)| t == target);
        self.deferred = later;
        now.into_iter().map(|(link, _)| link).collect()
    }

    /// The files that never came, and the names waiting for them.
    pub(super) fn never_came(self) -> HashSet<RelPath> {
        let mut gone: HashSet<RelPath> = self.awaited.into_keys().collect();
        if !gone.is_empty() {
            gone.extend(self.deferred.into_iter().map(|(link, _)| link));
        }
        gone
    }
}

impl BackupRun {
    /// Records a file as the client described it and asks for its content
    /// whole, after the walk.
    pub(super) fn await_whole(&mut self, entry: Entry, size: u64, hash: Hash) -> Result<(), Error> {
        self.repair.ask(&entry, size, hash);
        self.record.push(&entry)
    }

    /// A file asked for again has come, as `path`: its directory gets its
    /// mode and mtime back, and the names waiting for it are made.
    pub(super) fn repaired(&mut self, path: &RelPath, stamp: &Meta) -> Result<(), Error> {
        let ctx = self.snapshot_ctx();
        self.restamp(path, stamp).ctx(&ctx)?;
        for link in self.repair.arrived(path) {
            self.link_late(path, &link)?;
        }
        Ok(())
    }

    /// Makes `link`, a name of `target` that came before it.
    fn link_late(&mut self, target: &RelPath, link: &RelPath) -> Result<(), Error> {
        let ctx = self.snapshot_ctx();
        let stamp = self.unstamp(link).ctx(&ctx)?;
        let how = self
            .tree
            .hard_link(&mut self.this_run, target, link)
            .ctx(&ctx)?;
        match how {
            Linked::HardLink => self.record.stats.linked += 1,
            Linked::Copied | Linked::CopiedOtherMeta => {
                self.record.stats.link_limit_copies += 1;
                self.charge_copy(link)
                    .map_err(|e| crate::error::io(&ctx, std::io::Error::other(e.to_string())))?;
            }
        }
        self.restamp(link, &stamp).ctx(&ctx)
    }

    /// Makes the finished directory holding `path` writable for a file sent
    /// again; returns its mode and mtime, to give back with
    /// [`Self::restamp`].
    pub(super) fn unstamp(&mut self, path: &RelPath) -> std::io::Result<Meta> {
        let (dir, _) = self.tree.cursor().parent_of(path)?;
        let stamp = fsx::meta_of(&rustix::fs::fstat(dir)?);
        if stamp.mode & 0o300 != 0o300 {
            rustix::fs::fchmod(dir, rustix::fs::Mode::from_raw_mode(stamp.mode | 0o700))?;
        }
        Ok(stamp)
    }

    /// Gives the directory holding `path` back its mode and mtime.
    pub(super) fn restamp(&mut self, path: &RelPath, stamp: &Meta) -> std::io::Result<()> {
        let (dir, _) = self.tree.cursor().parent_of(path)?;
        fsx::apply_meta(dir, stamp)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{self, Fixture, file_ops, meta, path};
    use super::*;
    use offsnap_protocol::{EntryKind, Op};

    fn entry(p: &str, data: &[u8]) -> Entry {
        Entry {
            path: path(p),
            kind: EntryKind::File {
                size: data.len() as u64,
                hash: Hash::of(data),
            },
            meta: meta(),
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn a_file_asked_again_must_come_as_recorded_and_frees_its_links() {
        let mut r = Repair::default();
        let e = entry("f", b"content");
        r.ask(&e, 7, Hash::of(b"content"));
        assert_eq!(r.take_resends(), [path("f")]);
        assert!(r.take_resends().is_empty());
        assert_eq!(r.awaited_meta(&path("f")), Some(&meta()));
        let want = r.expected(&path("f"), false, 7, &meta(), &[]).unwrap();
        assert_eq!(want, Some(Hash::of(b"content")));
        assert!(r.expected(&path("f"), true, 7, &meta(), &[]).is_err());
        assert!(r.expected(&path("f"), false, 8, &meta(), &[]).is_err());
        assert_eq!(r.expected(&path("g"), true, 1, &meta(), &[]).unwrap(), None);
        r.defer(path("l1"), path("f"));
        r.defer(path("l2"), path("other"));
        assert_eq!(r.arrived(&path("f")), [path("l1")]);
        // What never came: the other's waiting name only, as nothing else
        // is awaited.
        assert!(r.never_came().is_empty());
    }

    #[test]
    fn what_never_comes_is_named_with_its_waiting_links() {
        let mut r = Repair::default();
        r.ask(&entry("f", b"x"), 1, Hash::of(b"x"));
        r.defer(path("l"), path("f"));
        let gone = r.never_came();
        assert_eq!(gone, HashSet::from([path("f"), path("l")]));
    }

    /// A base file altered on the host is asked for again when kept
    /// unchanged; sent again, it is stored with its hard link, and the
    /// snapshot holds the right bytes.
    #[test]
    fn an_altered_base_file_is_asked_for_and_stored_with_its_link() {
        let fx = Fixture::new();
        let mut ops = vec![Op::Entry(dir_entry("d"))];
        ops.extend(file_ops("d/f", b"the first content"));
        let snap = fx.commit_ops(ops);
        std::fs::write(snap.join("d/f"), b"altered on the host").unwrap();
        let mut run = fx.start();
        run.apply(Op::Unchanged(2)).unwrap();
        let link = Entry {
            path: path("d/g"),
            kind: EntryKind::HardLink {
                target: path("d/f"),
            },
            meta: meta(),
            xattrs: Vec::new(),
        };
        run.apply(Op::Entry(link)).unwrap();
        assert_eq!(run.take_resends(), [path("d/f")]);
        for op in file_ops("d/f", b"the first content") {
            run.apply(op).unwrap();
        }
        let snap = fx.commit(run);
        assert_eq!(
            std::fs::read(snap.join("d/f")).unwrap(),
            b"the first content"
        );
        assert_eq!(
            std::fs::read(snap.join("d/g")).unwrap(),
            b"the first content"
        );
        let names: Vec<RelPath> = fx.manifest().into_iter().map(|e| e.path).collect();
        assert_eq!(names, [path("d"), path("d/f"), path("d/g")]);
    }

    /// A file asked for again that never comes leaves the manifest, with
    /// the name waiting for it.
    #[test]
    fn a_file_that_never_comes_leaves_the_manifest() {
        let fx = Fixture::new();
        let snap = fx.commit_files(&[("f", b"old")]);
        std::fs::write(snap.join("f"), b"bad").unwrap();
        let mut run = fx.start();
        run.apply(Op::Unchanged(1)).unwrap();
        for op in file_ops("h", b"kept") {
            run.apply(op).unwrap();
        }
        assert_eq!(run.take_resends(), [path("f")]);
        let (_, stats) = run.commit().unwrap();
        assert_eq!((stats.entries, stats.files), (1, 1));
        let names: Vec<RelPath> = fx.manifest().into_iter().map(|e| e.path).collect();
        assert_eq!(names, [path("h")]);
    }

    fn dir_entry(p: &str) -> Entry {
        Entry {
            path: path(p),
            kind: EntryKind::Dir,
            meta: Meta {
                mode: 0o755,
                ..testing::meta()
            },
            xattrs: Vec::new(),
        }
    }
}
