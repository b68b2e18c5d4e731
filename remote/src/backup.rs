//! One backup run on the helper: builds a new snapshot in
//! `.offsnap/incomplete/NAME/` from the client's ops, then commits it.
//!
//! A run is a pipeline of stages, each a module with one job:
//!
//! - [`apply`]: the op state machine: which stage an op goes to, and
//!   which ops may come when (file data only inside a file);
//! - [`entries`]: directories, symlinks, hard links and special files, base
//!   entries kept unchanged, files linked by content;
//! - [`file`]: the file writer: a file begun, its data or delta pieces
//!   (rebuilt against its base), checked and finished at its end;
//! - [`index`]: where each content is stored (this run, the base, an
//!   interrupted run) and what was found lost, with the run's journal;
//! - [`base`]: the base snapshot, its manifest read in step with the ops;
//! - [`signatures`]: the rsync signature of the file a delta is made
//!   against;
//! - [`repair`]: files asked for again whole, and the hard links waiting
//!   for them;
//! - [`record`]: the manifest being written, in walk order, with its counts;
//! - [`commit`]: making the snapshot durable and visible.
//!
//! Commit order: apply the last directory metadata, flush the filesystem,
//! write and fsync the manifest, move it into `manifests/`, move the tree
//! to `SET/NAME`, swap `latest`. Until the tree's rename nothing new is
//! visible under a dated name; a run that dies earlier leaves only
//! `incomplete/`, which the next run resumes from or clears (see
//! [`crate::resume`]).

mod apply;
mod base;
mod commit;
mod entries;
mod file;
mod index;
mod record;
mod repair;
mod signatures;
#[cfg(test)]
mod testing;

use std::os::fd::AsFd;

use offsnap_fs::cursor::DirCursor;
use offsnap_fs::fsx;
use offsnap_fs::tree::{Existing, TreeWriter};
use offsnap_protocol::{RelPath, SetName, SnapshotInfo, SnapshotName};

use crate::error::{Context, Error};
use crate::journal::Journal;
use crate::kept_signatures::KeptSignatures;
use crate::limits::{Limits, Meter};
use crate::resume::ResumeSource;
use crate::set::Root;

/// A backup in progress: see the module documentation.
pub struct BackupRun {
    /// Where the snapshot is built and goes.
    target: commit::Target,
    tree: TreeWriter,
    /// A reader over this run's own tree, for links to files it wrote.
    this_run: DirCursor,
    base: Option<base::Base>,
    contents: index::Contents,
    repair: repair::Repair,
    record: record::Record,
    /// Hard links recorded, to refuse links to links.
    links: crate::links::HardLinks,
    /// The host owner's limits, and the new data charged against them.
    meter: Meter,
    zstd: zstd::bulk::Decompressor<'static>,
    /// Files left out, to tell the client.
    warnings: Vec<String>,
    file: Option<file::OpenFile>,
    /// Signatures of large files kept between runs (see
    /// [`crate::kept_signatures`]).
    sigs: Option<KeptSignatures>,
}

impl BackupRun {
    /// Opens (or creates) the set, takes its lock, clears leftovers of
    /// interrupted runs and starts a snapshot named after `now` (or one
    /// second after the newest snapshot, if the clock is behind it, within
    /// the bound of [`crate::naming`]).
    pub fn start(
        root: &Root,
        set_name: &SetName,
        now: jiff::Timestamp,
    ) -> Result<(BackupRun, SnapshotName, Option<SnapshotInfo>), Error> {
        let set = root.create_set(set_name)?;
        let lock = set.lock("backup")?;
        let resume = ResumeSource::prepare(&set)?;
        set.clean_leftovers()?;
        let snapshots = set.snapshots()?;
        let base_info = snapshots.last().cloned();
        let name = crate::naming::name_after(set_name, now, base_info.as_ref().map(|b| b.name))?;
        let ctx = format!("set {set_name:?}: starting snapshot {name}");
        let incomplete = set.meta_dir("incomplete")?;
        let work = fsx::create_dir(incomplete.as_fd(), name.to_string().as_bytes()).ctx(&ctx)?;
        let tree_fd = fsx::create_dir(work.as_fd(), b"tree").ctx(&ctx)?;
        let journal = Journal::create(work.as_fd()).ctx(&ctx)?;
        let record = record::Record::create(&work, &ctx)?;
        let base_index = match &base_info {
            Some(b) => Some(base::index(&set, b)?),
            None => None,
        };
        let contents = index::Contents::new(&work, journal, base_index, resume).ctx(&ctx)?;
        let base = match &base_info {
            Some(b) => Some(base::Base::open(&set, b)?),
            None => None,
        };
        let this_run = DirCursor::new(tree_fd.try_clone().ctx(&ctx)?);
        let sigs = KeptSignatures::open(&set);
        let run = BackupRun {
            target: commit::Target::new(set, lock, name, work),
            tree: TreeWriter::new(tree_fd, Existing::Fail)
                .for_snapshot(!fsx::is_root())
                .apply_owners(fsx::is_root()),
            this_run,
            base,
            contents,
            repair: Default::default(),
            record,
            links: Default::default(),
            meter: Default::default(),
            zstd: zstd::bulk::Decompressor::new().ctx(&ctx)?,
            warnings: Vec::new(),
            file: None,
            sigs,
        };
        Ok((run, name, base_info))
    }

    /// Applies the host owner's limits to what the run writes.
    pub fn limit(&mut self, limits: Limits) {
        self.meter = Meter::new(limits);
    }

    /// The snapshot's name.
    pub fn name(&self) -> SnapshotName {
        self.target.name
    }

    /// What this run can reuse of an interrupted one, for the client.
    pub fn resume_offer(&self) -> offsnap_protocol::Resume {
        self.contents.resume_offer()
    }

    /// Warnings for the client since the last call (files left out).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Files to ask the client for again since the last call.
    pub fn take_resends(&mut self) -> Vec<RelPath> {
        self.repair.take_resends()
    }

    /// Stops the run, keeping what it wrote for the next run to resume
    /// from (the connection was lost: the client may come back).
    pub fn suspend(mut self) {
        let _ = self.contents.flush_journal();
    }

    /// Gives up the run, removing what it wrote.
    pub fn abort(self) {
        let BackupRun { target, tree, .. } = self;
        drop(tree);
        target.remove();
    }

    /// The context of a failure writing the snapshot.
    fn snapshot_ctx(&self) -> String {
        format!("snapshot {}", self.target.name)
    }
}
