//! Where each content a run may link to is stored, and what it learnt
//! about stored copies along the way: this run's own files (found first),
//! the base snapshot's (unless found damaged), an interrupted run's
//! (checked at first use). Every file the run stores goes into its index
//! and its journal (which the next run resumes from).

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;

use offsnap_protocol::{Hash, RelPath};

use crate::content_index::{BaseIndex, RunIndex};
use crate::error::{Context, Error};
use crate::journal::Journal;
use crate::resume::ResumeSource;

/// Where a content is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stored {
    /// In the base snapshot.
    Base,
    /// Earlier in this run.
    Here,
    /// In the interrupted run being resumed (checked at first use).
    Resumed,
    /// Nowhere usable: its copy in the interrupted run was found altered
    /// in this run (the client sends such files again when asked).
    LostResumed,
    /// Nowhere usable: its stored copy was found damaged in this run.
    Lost,
}

/// The run's stored contents.
pub(super) struct Contents {
    /// Contents an interrupted run left, and those found damaged or
    /// altered in this run (few: they hold paths).
    by_hash: HashMap<Hash, (RelPath, Stored)>,
    /// The base snapshot's contents, on disk.
    base_index: Option<BaseIndex>,
    /// This run's own files, by content.
    run_index: RunIndex,
    /// What an interrupted run left, if anything.
    pub(super) resume: Option<ResumeSource>,
    journal: Journal,
}

impl Contents {
    /// The contents of a run writing in `work`, building on the base
    /// snapshot whose index is `base_index` and on `resume`.
    pub(super) fn new(
        work: &OwnedFd,
        journal: Journal,
        base_index: Option<BaseIndex>,
        resume: Option<ResumeSource>,
    ) -> io::Result<Contents> {
        let run_index = RunIndex::create(work, b"byhash")?;
        let mut by_hash = HashMap::new();
        if let Some(r) = &resume {
            for (path, _, hash) in r.finished() {
                by_hash
                    .entry(*hash)
                    .or_insert((path.clone(), Stored::Resumed));
            }
        }
        Ok(Contents {
            by_hash,
            base_index,
            run_index,
            resume,
            journal,
        })
    }

    /// Where the content `hash` is stored: in this run, else (unless found
    /// damaged) in the base snapshot, else in what an interrupted run left.
    pub(super) fn find(&mut self, hash: &Hash) -> Result<Option<(RelPath, Stored)>, Error> {
        if let Some(path) = self.run_index.get(hash).ctx("the run's content index")? {
            return Ok(Some((path, Stored::Here)));
        }
        let known = self.by_hash.get(hash).cloned();
        if let Some((_, Stored::Lost | Stored::LostResumed)) = &known {
            return Ok(known);
        }
        if let Some(index) = &mut self.base_index
            && let Some(path) = index.get(hash).ctx("the base snapshot's content index")?
        {
            return Ok(Some((path, Stored::Base)));
        }
        Ok(known)
    }

    /// Notes that the copy of `hash` at `from` is not to be used again
    /// (`how` is [`Stored::Lost`] or [`Stored::LostResumed`]).
    pub(super) fn lost(&mut self, hash: Hash, from: RelPath, how: Stored) {
        self.by_hash.insert(hash, (from, how));
    }

    /// Notes that this run stored `hash` at `path` (`size` bytes).
    pub(super) fn stored(&mut self, path: &RelPath, size: u64, hash: Hash) -> Result<(), Error> {
        self.journal
            .finished(path, size, hash)
            .ctx("the run's journal")?;
        self.by_hash.remove(&hash);
        self.run_index
            .insert(&hash, path)
            .ctx("the run's content index")
    }

    /// Notes in the journal that `path` is being written as `temp`.
    pub(super) fn begun(&mut self, path: &RelPath, temp: &[u8]) -> Result<(), Error> {
        self.journal.begun(path, temp).ctx("the run's journal")
    }

    /// Writes out what the journal holds.
    pub(super) fn flush_journal(&mut self) -> io::Result<()> {
        self.journal.flush()
    }

    /// What this run can reuse of an interrupted one, for the client.
    pub(super) fn resume_offer(&self) -> offsnap_protocol::Resume {
        self.resume
            .as_ref()
            .map(ResumeSource::offer)
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{Fixture, path};
    use super::*;
    use offsnap_fs::fsx;

    fn contents(dir: &std::path::Path, base: Option<BaseIndex>) -> Contents {
        let work = fsx::open_root(dir).unwrap();
        let journal = Journal::create(std::os::fd::AsFd::as_fd(&work)).unwrap();
        Contents::new(&work, journal, base, None).unwrap()
    }

    #[test]
    fn this_runs_files_are_found_first_and_journalled() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = contents(dir.path(), None);
        let (h1, h2) = (Hash::of(b"one"), Hash::of(b"two"));
        assert_eq!(c.find(&h1).unwrap(), None);
        c.stored(&path("a"), 3, h1).unwrap();
        c.stored(&path("b"), 3, h1).unwrap();
        assert_eq!(c.find(&h1).unwrap(), Some((path("a"), Stored::Here)));
        c.lost(h2, path("c"), Stored::Lost);
        assert_eq!(c.find(&h2).unwrap(), Some((path("c"), Stored::Lost)));
        // Stored again in this run: found here, no longer lost.
        c.stored(&path("d"), 3, h2).unwrap();
        assert_eq!(c.find(&h2).unwrap(), Some((path("d"), Stored::Here)));
        c.flush_journal().unwrap();
        let work = fsx::open_root(dir.path()).unwrap();
        let records = crate::journal::read(std::os::fd::AsFd::as_fd(&work)).unwrap();
        assert_eq!(records.len(), 3);
    }

    #[test]
    fn a_base_copy_found_damaged_is_not_offered_again() {
        let fx = Fixture::new();
        fx.commit_files(&[("kept", b"stored content")]);
        let set = fx.root.open_set(&fx.set).unwrap();
        let info = set.snapshots().unwrap().pop().unwrap();
        let base = super::super::base::index(&set, &info).unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut c = contents(work.path(), Some(base));
        let h = Hash::of(b"stored content");
        assert_eq!(c.find(&h).unwrap(), Some((path("kept"), Stored::Base)));
        c.lost(h, path("kept"), Stored::Lost);
        assert_eq!(c.find(&h).unwrap(), Some((path("kept"), Stored::Lost)));
    }
}
