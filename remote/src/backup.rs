//! One backup run on the helper: builds a new snapshot in
//! `.offsnap/incomplete/NAME/` from the client's ops, then commits it.
//!
//! Commit order: apply the last directory metadata, flush the filesystem,
//! write and fsync the manifest, move it into `manifests/`, move the tree
//! to `SET/NAME`, swap `latest`. Until the tree's rename nothing new is
//! visible under a dated name; a run that dies earlier leaves only
//! `incomplete/`, which the next run resumes from or clears (see
//! [`crate::resume`]).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::os::fd::{AsFd, OwnedFd};

use offsnap_protocol::manifest::ManifestWriter;
use offsnap_protocol::{
    CommitStats, Entry, EntryKind, ErrorKind, Hash, Meta, Op, RelPath, RemoteError, SetName,
    SnapshotInfo, SnapshotName, Xattr,
};

use crate::content_index::{BaseIndex, RunIndex};
use crate::cursor::DirCursor;
use crate::error::{Context, err, protocol};
use crate::fsx;
use crate::journal::{self, Journal};
use crate::resume::{self, ResumeSource};
use crate::set::{Root, SetDir, SetLock};
use crate::tree::{Existing, FileSink, Linked, TreeWriter};

/// Where a content is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
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

struct OpenFile {
    /// The path before this file's, restored if it is cancelled (so the
    /// client can send the file again).
    prev_last: Option<RelPath>,
    sink: FileSink,
    meta: Meta,
    xattrs: Vec<Xattr>,
    size: u64,
    /// For a file rebuilt from a delta: the base file and its length.
    base: Option<(File, u64)>,
    /// The hash a file sent again after a failed delta must have (its
    /// entry is already recorded), and its directory's mode and mtime (the
    /// directory was finished, and gets them back).
    repair: Option<(Hash, Meta)>,
    /// What a delta may still rebuild.
    budget: crate::limits::DeltaBudget,
}

/// A file whose delta rebuilt the wrong content: recorded, not yet stored.
struct Awaited {
    size: u64,
    hash: Hash,
    meta: Meta,
    xattrs: Vec<Xattr>,
}

/// A backup in progress: see the module documentation.
pub struct BackupRun {
    set: SetDir,
    _lock: SetLock,
    name: SnapshotName,
    work: OwnedFd,
    tree: TreeWriter,
    base: Option<DirCursor>,
    /// The base manifest, read along with the client's ops.
    base_entries: Option<offsnap_protocol::manifest::ManifestReader<File>>,
    /// A reader over this run's own tree, for links to files it wrote.
    this_run: DirCursor,
    /// Contents an interrupted run left, and those found damaged or
    /// altered in this run (few: they hold paths).
    by_hash: HashMap<Hash, (RelPath, Stored)>,
    /// The base snapshot's contents, on disk.
    base_index: Option<BaseIndex>,
    /// This run's own files, by content.
    run_index: RunIndex,
    /// What an interrupted run left, if anything.
    resume: Option<ResumeSource>,
    journal: Journal,
    zstd: zstd::bulk::Decompressor<'static>,
    /// Files left out, to tell the client.
    warnings: Vec<String>,
    /// Files to ask the client for again, whole.
    resends: Vec<RelPath>,
    /// Those asked for and not stored yet.
    awaited: HashMap<RelPath, Awaited>,
    /// Hard links (name, first name) to files asked for again, recorded
    /// and made when the file comes.
    deferred: Vec<(RelPath, RelPath)>,
    manifest: ManifestWriter<BufWriter<File>>,
    /// Hard links recorded, to refuse links to links.
    links: crate::links::HardLinks,
    /// The host owner's limits, and the new data charged against them.
    limits: crate::limits::Limits,
    charged: u64,
    last: Option<RelPath>,
    file: Option<OpenFile>,
    stats: CommitStats,
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
    ) -> Result<(BackupRun, SnapshotName, Option<SnapshotInfo>), RemoteError> {
        let set = root.create_set(set_name)?;
        let lock = set.lock("backup")?;
        let resume = ResumeSource::prepare(&set)?;
        set.clean_leftovers()?;
        let snapshots = set.snapshots()?;
        let base = snapshots.last().cloned();
        let name = crate::naming::name_after(set_name, now, base.as_ref().map(|b| b.name))?;
        let ctx = format!("set {set_name:?}: starting snapshot {name}");
        let incomplete = set.meta_dir("incomplete")?;
        let work = fsx::create_dir(incomplete.as_fd(), name.to_string().as_bytes()).ctx(&ctx)?;
        let tree_fd = fsx::create_dir(work.as_fd(), b"tree").ctx(&ctx)?;
        let journal = Journal::create(work.as_fd()).ctx(&ctx)?;
        let manifest_file = fsx::create_file(work.as_fd(), b"manifest").ctx(&ctx)?;
        let manifest = ManifestWriter::new(BufWriter::with_capacity(256 * 1024, manifest_file))
            .map_err(|e| err(ErrorKind::Io, format!("{ctx}: {e}")))?;
        let base_cursor = match &base {
            Some(b) => Some(DirCursor::new(set.open_snapshot(&b.name)?)),
            None => None,
        };
        let base_index = match &base {
            Some(b) => Some(
                BaseIndex::open_or_build(
                    &set.meta_dir_or_new("index")?,
                    &set.open_manifest(&b.name)?,
                    &b.manifest_hash,
                )
                .map_err(|e| err(ErrorKind::Corrupt, format!("manifest of {}: {e}", b.name)))?,
            ),
            None => None,
        };
        let run_index = RunIndex::create(&work, b"byhash").ctx(&ctx)?;
        let mut by_hash = HashMap::new();
        if let Some(r) = &resume {
            for (path, _, hash) in r.finished() {
                by_hash
                    .entry(*hash)
                    .or_insert((path.clone(), Stored::Resumed));
            }
        }
        let base_entries = match &base {
            Some(b) => Some(
                offsnap_protocol::manifest::open_file(set.open_manifest(&b.name)?)
                    .map_err(|e| err(ErrorKind::Corrupt, format!("manifest of {}: {e}", b.name)))?,
            ),
            None => None,
        };
        let this_run = DirCursor::new(tree_fd.try_clone().ctx(&ctx)?);
        let zstd = zstd::bulk::Decompressor::new().ctx(&ctx)?;
        let run = BackupRun {
            set,
            _lock: lock,
            name,
            work,
            tree: TreeWriter::new(tree_fd, Existing::Fail)
                .for_snapshot(!fsx::is_root())
                .apply_owners(fsx::is_root()),
            base: base_cursor,
            base_entries,
            this_run,
            by_hash,
            base_index,
            run_index,
            resume,
            journal,
            zstd,
            warnings: Vec::new(),
            resends: Vec::new(),
            awaited: HashMap::new(),
            deferred: Vec::new(),
            manifest,
            links: Default::default(),
            limits: Default::default(),
            charged: 0,
            last: None,
            file: None,
            stats: CommitStats::default(),
        };
        Ok((run, name, base))
    }

    /// Applies the host owner's limits to what the run writes.
    pub fn limit(&mut self, limits: crate::limits::Limits) {
        self.limits = limits;
    }

    /// The snapshot's name.
    pub fn name(&self) -> SnapshotName {
        self.name
    }

    /// What this run can reuse of an interrupted one, for the client.
    pub fn resume_offer(&self) -> offsnap_protocol::Resume {
        self.resume
            .as_ref()
            .map(ResumeSource::offer)
            .unwrap_or_default()
    }

    fn check_order(&mut self, path: &RelPath) -> Result<(), RemoteError> {
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

    fn record(&mut self, entry: &Entry) -> Result<(), RemoteError> {
        self.manifest
            .push(entry)
            .map_err(|e| crate::error::manifest("writing the manifest", e))?;
        self.stats.entries += 1;
        if entry.is_file() {
            self.stats.files += 1;
        }
        Ok(())
    }

    /// Applies one op.
    pub fn apply(&mut self, op: Op) -> Result<(), RemoteError> {
        if let Some(open) = &mut self.file {
            return match op {
                Op::Data(_) | Op::DataZstd(_) => {
                    let data = match op {
                        Op::DataZstd(z) => self
                            .zstd
                            .decompress(&z, offsnap_protocol::DATA_CHUNK)
                            .map_err(|e| {
                            protocol(format!("{}: bad compressed data: {e}", open.sink.path()))
                        })?,
                        Op::Data(d) => d,
                        _ => Vec::new(),
                    };
                    if open.sink.written() + data.len() as u64 > open.size {
                        return Err(protocol(format!(
                            "{}: more data than the {} bytes announced",
                            open.sink.path(),
                            open.size
                        )));
                    }
                    let path = open.sink.path().clone();
                    open.sink.write(&data).ctx(path)
                }
                Op::DeltaPiece { zstd, bytes } => {
                    let piece = if zstd {
                        self.zstd
                            .decompress(&bytes, offsnap_protocol::DELTA_PIECE_MAX)
                            .map_err(|e| {
                                protocol(format!("{}: bad compressed delta: {e}", open.sink.path()))
                            })?
                    } else {
                        bytes
                    };
                    apply_piece(open, &piece)
                }
                Op::End { hash } => self.end_file(hash),
                Op::Cancel => {
                    if let Some(open) = self.file.take() {
                        let path = open.sink.path().clone();
                        self.tree.abort_file(open.sink);
                        self.last = open.prev_last;
                        if let Some((_, stamp)) = open.repair {
                            self.restamp(&path, &stamp)
                                .ctx(format!("snapshot {}", self.name))?;
                        }
                    }
                    Ok(())
                }
                other => Err(protocol(format!(
                    "{}: expected file data, got {}",
                    open.sink.path(),
                    op_word(&other)
                ))),
            };
        }
        match op {
            Op::Entry(entry) => {
                entry.check().map_err(protocol)?;
                self.place(entry)
            }
            Op::Unchanged(n) => {
                for _ in 0..n {
                    let entry = self.next_base()?;
                    self.keep(entry)?;
                }
                Ok(())
            }
            Op::Skip(n) => {
                for _ in 0..n {
                    self.next_base()?;
                }
                Ok(())
            }
            Op::LinkFrom(entry) => {
                entry.check().map_err(protocol)?;
                self.check_order(&entry.path)?;
                let EntryKind::File { size, hash } = entry.kind else {
                    return Err(protocol(format!(
                        "{}: only files can be linked",
                        entry.path
                    )));
                };
                let Some((from, stored)) = self.find_stored(&hash)? else {
                    return Err(protocol(format!(
                        "{}: no stored file has its content",
                        entry.path
                    )));
                };
                let source = match (stored, &mut self.base, &mut self.resume) {
                    (Stored::Here, _, _) => &mut self.this_run,
                    (Stored::Base, Some(base), _) => base,
                    (Stored::Resumed, _, Some(r)) => {
                        if r.check(&from, size, hash).unwrap_or(false) {
                            r.tree()
                        } else {
                            // Not what the interrupted run's journal says:
                            // recorded as described, asked for whole.
                            self.by_hash.insert(hash, (from, Stored::LostResumed));
                            return self.await_whole(entry, size, hash);
                        }
                    }
                    (Stored::LostResumed | Stored::Lost, _, _) => {
                        return self.await_whole(entry, size, hash);
                    }
                    _ => return Err(protocol("no base snapshot")),
                };
                // A base file is hashed before it is reused (see
                // `crate::stored`); this run's own files were as written.
                let checked = match stored {
                    Stored::Base => crate::stored::holds(source, &from, size, &hash)
                        .or_else(|e| match stored_file_problem(&e) {
                            true => Ok(false),
                            false => Err(e),
                        })
                        .ctx(format!("snapshot {}", self.name))?,
                    _ => true,
                };
                let linked = match checked {
                    true => {
                        self.tree
                            .link_from(source, &from, &entry.path, (size, &hash), &entry.meta)
                    }
                    false => Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "its content differs",
                    )),
                };
                let how = match linked {
                    Err(e) if stored_file_problem(&e) => {
                        eprintln!(
                            "{}",
                            crate::stored::altered_note(&entry.path, &from, &e.to_string())
                        );
                        self.by_hash.insert(hash, (from.clone(), Stored::Lost));
                        return self.await_whole(entry, size, hash);
                    }
                    other => other.ctx(format!("snapshot {}", self.name))?,
                };
                self.stats.linked_by_hash += 1;
                let copied = matches!(how, Linked::Copied | Linked::CopiedOtherMeta);
                if copied {
                    self.limits.charge(&entry.path, size, &mut self.charged)?;
                }
                // A copy (its source at the link limit, or of other
                // metadata) is what later links of this content use.
                if stored == Stored::Resumed || copied {
                    self.by_hash.remove(&hash);
                    self.run_index
                        .insert(&hash, &entry.path)
                        .ctx("the run's content index")?;
                    self.journal
                        .finished(&entry.path, size, hash)
                        .ctx("the run's journal")?;
                }
                self.record(&entry)
            }
            Op::File {
                path,
                meta,
                size,
                xattrs,
            } => self.begin(path, meta, xattrs, size, false),
            Op::Delta {
                path,
                meta,
                size,
                xattrs,
            } => self.begin(path, meta, xattrs, size, true),
            Op::Data(_) | Op::DataZstd(_) | Op::DeltaPiece { .. } | Op::End { .. } | Op::Cancel => {
                Err(protocol("file data outside a file"))
            }
        }
    }

    fn end_file(&mut self, hash: offsnap_protocol::Hash) -> Result<(), RemoteError> {
        let Some(OpenFile {
            sink,
            meta,
            xattrs,
            size,
            base,
            repair,
            budget,
            ..
        }) = self.file.take()
        else {
            return Err(protocol("file end outside a file"));
        };
        let path = sink.path().clone();
        if budget.over {
            // The delta went past what it may rebuild: have it sent whole.
            self.tree.abort_file(sink);
            let entry = Entry {
                path,
                kind: EntryKind::File { size, hash },
                meta,
                xattrs,
            };
            return self.await_whole(entry, size, hash);
        }
        if sink.written() != size {
            let written = sink.written();
            self.tree.abort_file(sink);
            return Err(protocol(format!(
                "{path}: {written} bytes received, {size} announced"
            )));
        }
        if repair.as_ref().is_some_and(|(want, _)| *want != hash) {
            self.tree.abort_file(sink);
            return Err(protocol(format!(
                "{path}: sent again with another hash than recorded"
            )));
        }
        let got = sink.hash();
        if got != hash && base.is_some() {
            // What the delta rebuilt is not what the client read: record
            // the file as described and have it sent whole.
            self.tree.abort_file(sink);
            let entry = Entry {
                path,
                kind: EntryKind::File { size, hash },
                meta,
                xattrs,
            };
            return self.await_whole(entry, size, hash);
        }
        if got != hash {
            self.tree.abort_file(sink);
            return Err(err(
                ErrorKind::Corrupt,
                format!("{path}: the data written does not match the client's hash"),
            ));
        }
        self.tree
            .finish_file(sink, &meta, &[])
            .ctx(format!("snapshot {}", self.name))?;
        self.stats.written += 1;
        self.stats.bytes_written += size;
        if base.is_some() {
            self.stats.delta_files += 1;
        }
        self.journal
            .finished(&path, size, hash)
            .ctx("the run's journal")?;
        self.by_hash.remove(&hash);
        self.run_index
            .insert(&hash, &path)
            .ctx("the run's content index")?;
        if let Some((_, stamp)) = repair {
            self.awaited.remove(&path);
            let ctx = format!("snapshot {}", self.name);
            self.restamp(&path, &stamp).ctx(&ctx)?;
            return self.link_deferred(&path).ctx(&ctx);
        }
        self.record(&Entry {
            path,
            kind: EntryKind::File { size, hash },
            meta,
            xattrs,
        })
    }

    /// The next entry of the base manifest.
    /// Starts a file whose content (or, with `delta`, whose delta against
    /// the base file at the same path) follows.
    fn begin(
        &mut self,
        path: RelPath,
        meta: Meta,
        xattrs: Vec<Xattr>,
        size: u64,
        delta: bool,
    ) -> Result<(), RemoteError> {
        offsnap_protocol::entry::check_xattrs(&xattrs)
            .map_err(|e| protocol(format!("{path}: {e}")))?;
        let prev_last = self.last.clone();
        // A file asked for again comes after the walk, out of order.
        let repair = match self.awaited.get(&path) {
            Some(a) if !delta && a.size == size && a.meta == meta && a.xattrs == xattrs => {
                let hash = a.hash;
                let stamp = self.unstamp(&path).ctx(format!("snapshot {}", self.name))?;
                Some((hash, stamp))
            }
            Some(_) => {
                return Err(protocol(format!(
                    "{path}: sent again as a delta or with another size or metadata"
                )));
            }
            None => {
                self.check_order(&path)?;
                None
            }
        };
        let base = if delta {
            Some(self.open_base(&path)?)
        } else {
            None
        };
        self.limits.admit(&path, size, &mut self.charged)?;
        let sink = self
            .tree
            .begin_file(&path)
            .ctx(format!("snapshot {}", self.name))?;
        if size >= journal::BIG {
            self.journal
                .begun(&path, sink.temp_name())
                .ctx("the run's journal")?;
        }
        self.file = Some(OpenFile {
            prev_last,
            sink,
            meta,
            xattrs,
            size,
            base,
            repair,
            budget: Default::default(),
        });
        Ok(())
    }

    /// Makes the other names of `target`, a file just sent again, that
    /// came before it (see [`Self::place`]).
    fn link_deferred(&mut self, target: &RelPath) -> std::io::Result<()> {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(_, t)| t == target);
        self.deferred = later;
        for (link, _) in now {
            let stamp = self.unstamp(&link)?;
            match self.tree.hard_link(&mut self.this_run, target, &link)? {
                Linked::HardLink => self.stats.linked += 1,
                Linked::Copied | Linked::CopiedOtherMeta => {
                    self.stats.link_limit_copies += 1;
                    self.charge_copy(&link).map_err(std::io::Error::other)?;
                }
            }
            self.restamp(&link, &stamp)?;
        }
        Ok(())
    }

    /// Records a file as the client described it and asks for its content
    /// whole, after the walk (see [`Response::Resend`]).
    ///
    /// [`Response::Resend`]: offsnap_protocol::Response::Resend
    fn await_whole(&mut self, entry: Entry, size: u64, hash: Hash) -> Result<(), RemoteError> {
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
        self.record(&entry)
    }

    /// Makes the finished directory holding `path` writable for a file sent
    /// again; returns its mode and mtime, to give back with
    /// [`Self::restamp`].
    fn unstamp(&mut self, path: &RelPath) -> std::io::Result<Meta> {
        let (dir, _) = self.tree.cursor().parent_of(path)?;
        let stamp = fsx::meta_of(&rustix::fs::fstat(dir)?);
        if stamp.mode & 0o300 != 0o300 {
            rustix::fs::fchmod(dir, rustix::fs::Mode::from_raw_mode(stamp.mode | 0o700))?;
        }
        Ok(stamp)
    }

    /// Gives the directory holding `path` back its mode and mtime.
    fn restamp(&mut self, path: &RelPath, stamp: &Meta) -> std::io::Result<()> {
        let (dir, _) = self.tree.cursor().parent_of(path)?;
        fsx::apply_meta(dir, stamp)
    }

    /// Charges the copy just made at `path` to the owner's limits.
    fn charge_copy(&mut self, path: &RelPath) -> Result<(), RemoteError> {
        let (dir, name) = self.this_run.parent_of(path).ctx(path)?;
        let size = fsx::lstat(dir, name)
            .ctx(path)?
            .map_or(0, |st| st.st_size as u64);
        self.limits.charge(path, size, &mut self.charged)
    }

    /// Where the content `hash` is stored: in this run, else (unless found
    /// damaged) in the base snapshot, else in what an interrupted run left.
    fn find_stored(&mut self, hash: &Hash) -> Result<Option<(RelPath, Stored)>, RemoteError> {
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

    /// Warnings for the client since the last call (files left out).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Files to ask the client for again since the last call.
    pub fn take_resends(&mut self) -> Vec<RelPath> {
        std::mem::take(&mut self.resends)
    }

    /// The next entry of the base manifest.
    fn next_base(&mut self) -> Result<Entry, RemoteError> {
        let Some(reader) = &mut self.base_entries else {
            return Err(protocol("no base snapshot"));
        };
        reader
            .next_entry()
            .map_err(|e| err(ErrorKind::Corrupt, format!("base manifest: {e}")))?
            .ok_or_else(|| protocol("more unchanged entries than the base snapshot holds"))
    }

    /// Keeps a base entry as it is: directories and symlinks made again,
    /// files hard-linked.
    fn keep(&mut self, entry: Entry) -> Result<(), RemoteError> {
        let ctx = format!("snapshot {}", self.name);
        match &entry.kind {
            EntryKind::File { size, hash } => {
                let (size, hash) = (*size, *hash);
                self.check_order(&entry.path)?;
                let Some(base) = &mut self.base else {
                    return Err(protocol("no base snapshot"));
                };
                let linked =
                    self.tree
                        .link_from(base, &entry.path, &entry.path, (size, &hash), &entry.meta);
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
                match how {
                    Linked::HardLink => self.stats.linked += 1,
                    Linked::Copied => {
                        self.stats.link_limit_copies += 1;
                        self.stats.bytes_written += size;
                        self.limits.charge(&entry.path, size, &mut self.charged)?;
                    }
                    Linked::CopiedOtherMeta => {
                        self.stats.linked += 1;
                        self.stats.bytes_written += size;
                        self.limits.charge(&entry.path, size, &mut self.charged)?;
                    }
                }
                self.record(&entry)
            }
            _ => self.place(entry),
        }
    }

    /// Records a directory, symlink, hard link or special file, making it
    /// in the tree (specials are recorded only: see
    /// [`EntryKind::is_special`]).
    fn place(&mut self, entry: Entry) -> Result<(), RemoteError> {
        self.check_order(&entry.path)?;
        let ctx = format!("snapshot {}", self.name);
        if let EntryKind::HardLink { target } = &entry.kind {
            let awaited = self.awaited.get(target).map(|a| &a.meta);
            let refused = self
                .links
                .refusal(&mut self.this_run, &entry, target, awaited)
                .ctx(&ctx)?;
            if let Some(why) = refused {
                self.warnings.push(why);
                return Ok(());
            }
            self.links.recorded(&entry.path);
        }
        match &entry.kind {
            EntryKind::Dir => self.tree.dir(&entry.path, &entry.meta, &[]).ctx(&ctx)?,
            EntryKind::Symlink { target } => self
                .tree
                .symlink(&entry.path, target, &entry.meta)
                .ctx(&ctx)?,
            // A name of a file asked for again: linked once it comes.
            EntryKind::HardLink { target } if self.awaited.contains_key(target) => {
                self.deferred.push((entry.path.clone(), target.clone()));
            }
            EntryKind::HardLink { target } => {
                let source = self.links.source(target).clone();
                match self
                    .tree
                    .hard_link(&mut self.this_run, &source, &entry.path)
                {
                    Ok(Linked::HardLink) => self.stats.linked += 1,
                    Ok(Linked::Copied | Linked::CopiedOtherMeta) => {
                        self.stats.link_limit_copies += 1;
                        self.links.copied(target, &entry.path);
                        self.charge_copy(&entry.path)?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        self.warnings.push(format!(
                            "{}: a hard link to {target}, which is not in this snapshot; left out",
                            entry.path
                        ));
                        return Ok(());
                    }
                    Err(e) => return Err(e).ctx(&ctx),
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
        self.record(&entry)
    }

    /// Opens the file a delta for `path` is made against: the part of it
    /// an interrupted run received, else the base snapshot's file.
    fn open_base(&mut self, path: &RelPath) -> Result<(File, u64), RemoteError> {
        if let Some(r) = &mut self.resume
            && let Some(found) = r
                .open_partial(path)
                .ctx(format!("what an interrupted run received of {path}"))?
        {
            return Ok(found);
        }
        let Some(base) = &mut self.base else {
            return Err(protocol(format!(
                "{path}: no base snapshot to diff against"
            )));
        };
        let (dir, name) = base.parent_of(path).ctx(format!("base of {path}"))?;
        let f = fsx::open_file(dir, name).ctx(format!("base of {path}"))?;
        let len = f.metadata().ctx(format!("base of {path}"))?.len();
        Ok((f, len))
    }

    /// The rsync signature of the file a delta for `path` would be made
    /// against (see [`Self::open_base`]), or `None` if there is none.
    pub fn signature(&mut self, path: &RelPath) -> Result<Option<Vec<u8>>, RemoteError> {
        let (file, len) = match self.open_base(path) {
            Ok(b) => b,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        offsnap_protocol::diff::sign(&file, len)
            .map(Some)
            .ctx(format!("base of {path}"))
    }

    /// Makes the snapshot durable and visible; see the module documentation.
    pub fn commit(mut self) -> Result<(SnapshotName, CommitStats), RemoteError> {
        if let Some(open) = &self.file {
            return Err(protocol(format!(
                "commit while {} is incomplete",
                open.sink.path()
            )));
        }
        let name = self.name.to_string();
        let ctx = format!("set {:?}: committing snapshot {name}", self.set.name());
        let _unfinished = self.set.unfinished(&self.name)?;
        self.tree.finish().ctx(&ctx)?;
        fsx::sync_filesystem(&self.work).ctx(&ctx)?;
        let (out, mut hash, _len) = self
            .manifest
            .finish()
            .map_err(|e| crate::error::manifest(&ctx, e))?;
        let file = out
            .into_inner()
            .map_err(|e| crate::error::io(&ctx, e.into_error()))?;
        file.sync_all().ctx(&ctx)?;
        drop(file);
        if !self.awaited.is_empty() {
            // Files that never came, and the names waiting for them.
            let mut gone: std::collections::HashSet<RelPath> =
                self.awaited.keys().cloned().collect();
            gone.extend(self.deferred.iter().map(|(link, _)| link.clone()));
            hash = drop_awaited(&self.work, &gone, &mut self.stats).ctx(&ctx)?;
        }
        self.stats.manifest_hash = Some(hash);
        let manifests = self.set.meta_dir("manifests")?;
        fsx::rename_between(
            self.work.as_fd(),
            b"manifest",
            manifests.as_fd(),
            name.as_bytes(),
            false,
        )
        .ctx(&ctx)?;
        fsx::fsync(&manifests).ctx(&ctx)?;
        fsx::rename_between(
            self.work.as_fd(),
            b"tree",
            self.set.fd(),
            name.as_bytes(),
            false,
        )
        .ctx(&ctx)?;
        fsx::fsync(self.set.fd()).ctx(&ctx)?;
        // The snapshot is complete and visible from here on: what follows
        // is tidying, whose failure must not report the run as failed.
        if let Err(e) = self.set.set_latest(&self.name) {
            eprintln!("offsnap-remote: warning: {}", e.message);
        }
        drop(self.resume);
        if let Err(e) = resume::clear(&self.set) {
            eprintln!(
                "offsnap-remote: warning: {} (the next run clears it)",
                e.message
            );
        }
        drop(self.work);
        let tidy = self
            .set
            .meta_dir("incomplete")
            .and_then(|dir| fsx::remove_tree(dir.as_fd(), name.as_bytes()).ctx(&ctx));
        if let Err(e) = tidy {
            eprintln!(
                "offsnap-remote: warning: {} (the next run clears it)",
                e.message
            );
        }
        // The next run's index of stored contents by hash, built now from
        // the manifest just written, so that the next run starts at once
        // and needs no new space before it writes; should this fail, the
        // next run builds it.
        let index = self.set.meta_dir_or_new("index").and_then(|dir| {
            let manifest = self.set.open_manifest(&self.name)?;
            BaseIndex::open_or_build(&dir, &manifest, &hash)
                .map(drop)
                .ctx("the content index")
        });
        if let Err(e) = index {
            eprintln!(
                "offsnap-remote: warning: {} (the next run builds it)",
                e.message
            );
        }
        Ok((self.name, self.stats))
    }

    /// Stops the run, keeping what it wrote for the next run to resume
    /// from (the connection was lost: the client may come back).
    pub fn suspend(mut self) {
        let _ = self.journal.flush();
    }

    /// Gives up the run, removing what it wrote.
    pub fn abort(self) {
        let name = self.name.to_string();
        if let Ok(incomplete) = self.set.meta_dir("incomplete") {
            drop(self.tree);
            drop(self.work);
            let _ = fsx::remove_tree(incomplete.as_fd(), name.as_bytes());
        }
    }
}

/// Rewrites a run's manifest without the files asked for again that never
/// came (the client found them changed) and the names waiting for them;
/// returns its hash.
fn drop_awaited(
    work: &OwnedFd,
    gone: &std::collections::HashSet<RelPath>,
    stats: &mut CommitStats,
) -> std::io::Result<Hash> {
    let input = fsx::open_file(work.as_fd(), b"manifest")?;
    let reader =
        offsnap_protocol::manifest::ManifestReader::new(input).map_err(std::io::Error::other)?;
    let _ = fsx::unlink(work.as_fd(), b"manifest.new");
    let out = fsx::create_file(work.as_fd(), b"manifest.new")?;
    let mut w = ManifestWriter::new(BufWriter::new(out)).map_err(std::io::Error::other)?;
    for e in reader {
        let e = e.map_err(std::io::Error::other)?;
        if gone.contains(&e.path) {
            stats.entries -= 1;
            if e.is_file() {
                stats.files -= 1;
            }
            continue;
        }
        w.push(&e).map_err(std::io::Error::other)?;
    }
    let (out, hash, _) = w.finish().map_err(std::io::Error::other)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    fsx::rename(work.as_fd(), b"manifest.new", b"manifest", true)?;
    Ok(hash)
}

fn op_word(op: &Op) -> &'static str {
    match op {
        Op::Entry(_) => "an entry",
        Op::Unchanged(_) => "unchanged entries",
        Op::Skip(_) => "skipped entries",
        Op::File { .. } => "a new file",
        Op::LinkFrom(_) => "a link by content",
        Op::Data(_) | Op::DataZstd(_) => "data",
        Op::Delta { .. } => "a delta",
        Op::DeltaPiece { .. } => "a delta piece",
        Op::End { .. } => "a file end",
        Op::Cancel => "a cancel",
    }
}

/// Applies one standalone delta piece to the file being rebuilt: copies
/// come from the base (cloned where the filesystem shares blocks, see
/// [`crate::clone`]), every length is checked
/// against the base and against the size announced, so a delta can neither
/// read outside its base nor write past the file's end.
fn apply_piece(open: &mut OpenFile, piece: &[u8]) -> Result<(), RemoteError> {
    use offsnap_protocol::delta::{DeltaOp, parse};
    let path = open.sink.path().clone();
    let Some((base, base_len)) = &open.base else {
        return Err(protocol(format!("{path}: a delta piece for a whole file")));
    };
    let ops = parse(piece).map_err(|e| protocol(format!("{path}: {e}")))?;
    for op in ops {
        let (len, literal) = match op {
            DeltaOp::Copy { len, .. } => (len, false),
            DeltaOp::Literal(l) => (l.len() as u64, true),
        };
        if open.sink.written().saturating_add(len) > open.size {
            return Err(protocol(format!(
                "{path}: the delta expands past the {} bytes announced",
                open.size
            )));
        }
        // Past its bound: nothing more is written, the file is asked for
        // again whole at its end.
        if !open
            .budget
            .allow(open.sink.written(), len, literal, *base_len)
        {
            return Ok(());
        }
        match op {
            DeltaOp::Literal(l) => open.sink.write(l).ctx(&path)?,
            DeltaOp::Copy { offset, len } => {
                if offset.checked_add(len).is_none_or(|end| end > *base_len) {
                    return Err(protocol(format!(
                        "{path}: the delta copies from outside its base"
                    )));
                }
                open.sink.append_from(base, offset, len).ctx(&path)?;
            }
        }
    }
    Ok(())
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
