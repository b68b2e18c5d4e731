//! Entries placed without data: directories, symlinks, hard links and
//! special files (recorded only: see [`EntryKind::is_special`]); base
//! entries kept unchanged (files hard-linked to the base); files linked by
//! content to a stored copy with the same hash. A stored copy found gone
//! or altered is not carried forward: the file is asked for again.

use offsnap_fs::tree::Linked;
use offsnap_protocol::{Entry, EntryKind, Hash, RelPath};

use super::BackupRun;
use super::index::Stored;
use crate::error::{Context, Error, protocol};

impl BackupRun {
    /// Records a directory, symlink, hard link or special file, making it
    /// in the tree.
    pub(super) fn place(&mut self, entry: Entry) -> Result<(), Error> {
        self.record.check_order(&entry.path)?;
        let ctx = self.snapshot_ctx();
        match &entry.kind {
            EntryKind::Dir => self.tree.dir(&entry.path, &entry.meta, &[]).ctx(&ctx)?,
            EntryKind::Symlink { target } => self
                .tree
                .symlink(&entry.path, target, &entry.meta)
                .ctx(&ctx)?,
            EntryKind::HardLink { target } => {
                if !self.hard_link(&entry, target)? {
                    return Ok(());
                }
            }
            EntryKind::Fifo | EntryKind::Socket | EntryKind::Device { .. } => {}
            EntryKind::File { .. } => {
                return Err(protocol(format!(
                    "{}: a file entry needs its content or a link",
                    entry.path
                )));
            }
        }
        self.record.push(&entry)
    }

    /// Makes `entry`, another name of `target`; whether it is to be
    /// recorded (a link that breaks the rules of [`crate::links`], or
    /// whose file is not in the snapshot, is left out with a warning).
    fn hard_link(&mut self, entry: &Entry, target: &RelPath) -> Result<bool, Error> {
        let ctx = self.snapshot_ctx();
        let awaited = self.repair.awaited_meta(target);
        let refused = self
            .links
            .refusal(&mut self.this_run, entry, target, awaited)
            .ctx(&ctx)?;
        if let Some(why) = refused {
            self.warnings.push(why);
            return Ok(false);
        }
        self.links.recorded(&entry.path);
        // A name of a file asked for again: linked once it comes.
        if awaited.is_some() {
            self.repair.defer(entry.path.clone(), target.clone());
            return Ok(true);
        }
        let source = self.links.source(target).clone();
        match self
            .tree
            .hard_link(&mut self.this_run, &source, &entry.path)
        {
            Ok(Linked::HardLink) => self.record.stats.linked += 1,
            Ok(Linked::Copied | Linked::CopiedOtherMeta) => {
                self.record.stats.link_limit_copies += 1;
                self.links.copied(target, &entry.path);
                self.charge_copy(&entry.path)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.warnings.push(format!(
                    "{}: a hard link to {target}, which is not in this snapshot; left out",
                    entry.path
                ));
                return Ok(false);
            }
            Err(e) => return Err(e).ctx(&ctx),
        }
        Ok(true)
    }

    /// Keeps a base entry as it is: directories and symlinks made again,
    /// files hard-linked.
    pub(super) fn keep(&mut self, entry: Entry) -> Result<(), Error> {
        let EntryKind::File { size, hash } = entry.kind else {
            return self.place(entry);
        };
        let ctx = self.snapshot_ctx();
        self.record.check_order(&entry.path)?;
        let Some(base) = &mut self.base else {
            return Err(protocol("no base snapshot"));
        };
        let linked = self.tree.link_from(
            &mut base.tree,
            &entry.path,
            &entry.path,
            (size, &hash),
            &entry.meta,
        );
        let how = match linked {
            // Altered or gone on the host: asked for again.
            Err(e) if stored_file_problem(&e) => {
                eprintln!(
                    "{}",
                    crate::stored::altered_note(&entry.path, &entry.path, &e.to_string())
                );
                return self.await_whole(entry, size, hash);
            }
            other => other.ctx(&ctx)?,
        };
        if how == Linked::HardLink
            && size >= crate::kept_signatures::KEEP_FROM
            && let Some(sigs) = &mut self.sigs
        {
            sigs.keep(&entry.path);
        }
        let stats = &mut self.record.stats;
        match how {
            Linked::HardLink => stats.linked += 1,
            Linked::Copied => stats.link_limit_copies += 1,
            Linked::CopiedOtherMeta => stats.linked += 1,
        }
        if how != Linked::HardLink {
            stats.bytes_written += size;
            self.meter.charge(&entry.path, size)?;
        }
        self.record.push(&entry)
    }

    /// Records a file whose content is stored already, linking it to (or
    /// copying) that copy.
    pub(super) fn link_by_content(&mut self, entry: Entry) -> Result<(), Error> {
        self.record.check_order(&entry.path)?;
        let EntryKind::File { size, hash } = entry.kind else {
            return Err(protocol(format!(
                "{}: only files can be linked",
                entry.path
            )));
        };
        let Some((from, stored)) = self.contents.find(&hash)? else {
            return Err(protocol(format!(
                "{}: no stored file has its content",
                entry.path
            )));
        };
        match stored {
            Stored::Lost | Stored::LostResumed => return self.await_whole(entry, size, hash),
            // Not what the interrupted run's journal says: recorded as
            // described, asked for whole.
            Stored::Resumed if !self.resumed_holds(&from, size, hash) => {
                self.contents.lost(hash, from, Stored::LostResumed);
                return self.await_whole(entry, size, hash);
            }
            _ => {}
        }
        let how = match self.link_stored(&entry, &from, stored)? {
            Ok(how) => how,
            Err(e) => {
                eprintln!(
                    "{}",
                    crate::stored::altered_note(&entry.path, &from, &e.to_string())
                );
                self.contents.lost(hash, from, Stored::Lost);
                return self.await_whole(entry, size, hash);
            }
        };
        self.record.stats.linked_by_hash += 1;
        let copied = matches!(how, Linked::Copied | Linked::CopiedOtherMeta);
        if copied {
            self.meter.charge(&entry.path, size)?;
        }
        // A copy (its source at the link limit, or of other metadata) is
        // what later links of this content use.
        if stored == Stored::Resumed || copied {
            self.contents.stored(&entry.path, size, hash)?;
        }
        self.record.push(&entry)
    }

    /// Whether the interrupted run's file `from` holds what its journal
    /// says (with no interrupted run, the link fails later).
    fn resumed_holds(&mut self, from: &RelPath, size: u64, hash: Hash) -> bool {
        match &mut self.contents.resume {
            Some(r) => r.check(from, size, hash).unwrap_or(false),
            None => true,
        }
    }

    /// Links `entry` to the stored copy `from`; the inner `Err` is a
    /// stored copy found gone, altered or unreadable. A base file is
    /// hashed before it is reused (see [`crate::stored`]); this run's own
    /// files were as written, an interrupted run's were just checked.
    fn link_stored(
        &mut self,
        entry: &Entry,
        from: &RelPath,
        stored: Stored,
    ) -> Result<std::io::Result<Linked>, Error> {
        let ctx = self.snapshot_ctx();
        let EntryKind::File { size, hash } = entry.kind else {
            return Err(protocol(format!(
                "{}: only files can be linked",
                entry.path
            )));
        };
        let source = match (stored, &mut self.base, &mut self.contents.resume) {
            (Stored::Here, _, _) => &mut self.this_run,
            (Stored::Base, Some(base), _) => &mut base.tree,
            (Stored::Resumed, _, Some(r)) => r.tree(),
            _ => return Err(protocol("no base snapshot")),
        };
        if stored == Stored::Base {
            let holds = crate::stored::holds(source, from, size, &hash)
                .or_else(|e| match stored_file_problem(&e) {
                    true => Ok(false),
                    false => Err(e),
                })
                .ctx(&ctx)?;
            if !holds {
                let differs = std::io::ErrorKind::InvalidData;
                return Ok(Err(std::io::Error::new(differs, "its content differs")));
            }
        }
        let linked = self
            .tree
            .link_from(source, from, &entry.path, (size, &hash), &entry.meta);
        match linked {
            Err(e) if stored_file_problem(&e) => Ok(Err(e)),
            other => other.map(Ok).ctx(&ctx),
        }
    }

    /// Charges the copy just made at `path` to the owner's limits.
    pub(super) fn charge_copy(&mut self, path: &RelPath) -> Result<(), Error> {
        let (dir, name) = self.this_run.parent_of(path).ctx(path)?;
        let size = offsnap_fs::fsx::lstat(dir, name)
            .ctx(path)?
            .map_or(0, |st| st.st_size as u64);
        self.meter.charge(path, size)
    }
}

/// Whether a failure to link a stored file means that file is gone,
/// altered or unreadable (the run goes on without it), rather than a
/// failure of the snapshot being written (the run stops).
fn stored_file_problem(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound
            | std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::PermissionDenied
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::super::testing::{Fixture, file_ops, meta, path};
    use super::*;
    use offsnap_protocol::Op;

    fn entry(p: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path(p),
            kind,
            meta: meta(),
            xattrs: Vec::new(),
        }
    }

    fn link(p: &str, target: &str) -> Op {
        Op::Entry(entry(
            p,
            EntryKind::HardLink {
                target: path(target),
            },
        ))
    }

    fn file_entry(p: &str, data: &[u8]) -> Entry {
        let kind = EntryKind::File {
            size: data.len() as u64,
            hash: Hash::of(data),
        };
        entry(p, kind)
    }

    #[test]
    fn entries_are_made_and_bad_hard_links_left_out() {
        let fx = Fixture::new();
        let mut run = fx.start();
        let dir = Entry {
            meta: offsnap_protocol::Meta {
                mode: 0o755,
                ..meta()
            },
            ..entry("d", EntryKind::Dir)
        };
        run.apply(Op::Entry(dir)).unwrap();
        for op in file_ops("d/f", b"content") {
            run.apply(op).unwrap();
        }
        run.apply(link("d/g", "d/f")).unwrap();
        run.apply(link("d/h", "d/g")).unwrap();
        let target = b"f".to_vec();
        run.apply(Op::Entry(entry("d/s", EntryKind::Symlink { target })))
            .unwrap();
        run.apply(Op::Entry(entry("d/t", EntryKind::Fifo))).unwrap();
        let warnings = run.take_warnings();
        assert!(
            warnings.len() == 1 && warnings[0].contains("d/h"),
            "{warnings:?}"
        );
        let e = run.apply(Op::Entry(file_entry("d/u", b"x"))).unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e}");
        let snap = fx.commit(run);
        let (f, g) = (snap.join("d/f"), snap.join("d/g"));
        assert_eq!(f.metadata().unwrap().ino(), g.metadata().unwrap().ino());
        assert_eq!(
            std::fs::read_link(snap.join("d/s")).unwrap().as_os_str(),
            "f"
        );
        assert!(!snap.join("d/h").exists() && !snap.join("d/t").exists());
        let names: Vec<RelPath> = fx.manifest().into_iter().map(|e| e.path).collect();
        assert_eq!(names, ["d", "d/f", "d/g", "d/s", "d/t"].map(path));
    }

    #[test]
    fn unchanged_files_are_linked_to_the_base() {
        let fx = Fixture::new();
        let first = fx.commit_files(&[("a", b"kept")]);
        let mut run = fx.start();
        run.apply(Op::Unchanged(1)).unwrap();
        let (_, stats) = run.commit().unwrap();
        assert_eq!((stats.linked, stats.bytes_written), (1, 0));
        let second = fx.dir.path().join("test").join(fx.manifest_name());
        let ino = |p: &std::path::Path| p.join("a").metadata().unwrap().ino();
        assert_eq!(ino(&first), ino(&second));
    }

    #[test]
    fn files_are_linked_by_content_unless_the_copy_is_altered() {
        let fx = Fixture::new();
        let first = fx.commit_files(&[("a", b"shared"), ("b", b"other")]);
        std::fs::write(first.join("b"), b"OTHER").unwrap();
        let mut run = fx.start();
        run.apply(Op::LinkFrom(file_entry("c", b"shared"))).unwrap();
        run.apply(Op::LinkFrom(file_entry("d", b"other"))).unwrap();
        assert_eq!(run.take_resends(), [path("d")]);
        let e = run
            .apply(Op::LinkFrom(file_entry("e", b"never")))
            .unwrap_err();
        assert!(
            e.to_string().contains("no stored file has its content"),
            "{e}"
        );
        run.abort();
        let mut run = fx.start();
        run.apply(Op::LinkFrom(file_entry("c", b"shared"))).unwrap();
        for op in file_ops("d", b"new") {
            run.apply(op).unwrap();
        }
        run.apply(Op::LinkFrom(file_entry("e", b"new"))).unwrap();
        let (_, stats) = run.commit().unwrap();
        assert_eq!(stats.linked_by_hash, 2);
        let snap = fx.dir.path().join("test").join(fx.manifest_name());
        assert_eq!(std::fs::read(snap.join("c")).unwrap(), b"shared");
        assert_eq!(std::fs::read(snap.join("e")).unwrap(), b"new");
    }
}
