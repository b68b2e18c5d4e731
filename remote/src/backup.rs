//! One backup run on the helper: builds a new snapshot in
//! `.offsnap/incomplete/NAME/` from the client's ops, then commits it.
//!
//! Commit order: apply the last directory metadata, flush the filesystem,
//! write and fsync the manifest, move it into `manifests/`, move the tree
//! to `SET/NAME`, swap `latest`. Until the tree's rename nothing new is
//! visible under a dated name; a run that dies earlier leaves only
//! `incomplete/`, which the next run clears.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::os::fd::{AsFd, OwnedFd};

use offsnap_protocol::manifest::ManifestWriter;
use offsnap_protocol::{
    CommitStats, Entry, EntryKind, ErrorKind, Hash, Meta, Op, RelPath, RemoteError, SetName,
    SnapshotInfo, SnapshotName,
};

use crate::cursor::DirCursor;
use crate::error::{Context, err, protocol};
use crate::fsx;
use crate::set::{Root, SetDir, SetLock};
use crate::tree::{Existing, FileSink, Linked, TreeWriter};

struct OpenFile {
    /// The path before this file's, restored if it is cancelled (so the
    /// client can send the file again).
    prev_last: Option<RelPath>,
    sink: FileSink,
    meta: Meta,
    size: u64,
    /// For a file rebuilt from a delta: the base file and its length.
    base: Option<(File, u64)>,
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
    /// Where each content hash is stored: in the base snapshot, or (when
    /// `true`) already in this run.
    by_hash: HashMap<Hash, (RelPath, bool)>,
    zstd: zstd::bulk::Decompressor<'static>,
    /// Files left out, to tell the client.
    warnings: Vec<String>,
    manifest: ManifestWriter<BufWriter<File>>,
    last: Option<RelPath>,
    file: Option<OpenFile>,
    stats: CommitStats,
}

impl BackupRun {
    /// Opens (or creates) the set, takes its lock, clears leftovers of
    /// interrupted runs and starts a snapshot named after `now` (or one
    /// second after the newest snapshot, if the clock is behind it).
    pub fn start(
        root: &Root,
        set_name: &SetName,
        now: jiff::Timestamp,
    ) -> Result<(BackupRun, SnapshotName, Option<SnapshotInfo>), RemoteError> {
        let set = root.create_set(set_name)?;
        let lock = set.lock("backup")?;
        set.clean_leftovers()?;
        let snapshots = set.snapshots()?;
        let base = snapshots.last().cloned();
        let mut name = SnapshotName::from_timestamp(now);
        if let Some(b) = &base
            && name <= b.name
        {
            let bumped = b.name.next();
            eprintln!(
                "offsnap-remote: the clock ({name}) is not after the newest snapshot ({}); naming this one {bumped}",
                b.name
            );
            name = bumped;
        }
        let ctx = format!("set {set_name:?}: starting snapshot {name}");
        let incomplete = set.meta_dir("incomplete")?;
        let work = fsx::create_dir(incomplete.as_fd(), name.to_string().as_bytes()).ctx(&ctx)?;
        let tree_fd = fsx::create_dir(work.as_fd(), b"tree").ctx(&ctx)?;
        let manifest_file = fsx::create_file(work.as_fd(), b"manifest").ctx(&ctx)?;
        let manifest = ManifestWriter::new(BufWriter::with_capacity(256 * 1024, manifest_file))
            .map_err(|e| err(ErrorKind::Io, format!("{ctx}: {e}")))?;
        let base_cursor = match &base {
            Some(b) => Some(DirCursor::new(set.open_snapshot(&b.name)?)),
            None => None,
        };
        let mut by_hash = HashMap::new();
        if let Some(b) = &base {
            let manifest = offsnap_protocol::manifest::open_file(set.open_manifest(&b.name)?)
                .map_err(|e| err(ErrorKind::Corrupt, format!("manifest of {}: {e}", b.name)))?;
            for e in manifest {
                let e =
                    e.map_err(|e| err(ErrorKind::Corrupt, format!("manifest of {}: {e}", b.name)))?;
                if let EntryKind::File { hash, .. } = e.kind {
                    by_hash.entry(hash).or_insert((e.path, false));
                }
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
                .keep_readable(!fsx::is_root())
                .apply_owners(fsx::is_root()),
            base: base_cursor,
            base_entries,
            this_run,
            by_hash,
            zstd,
            warnings: Vec::new(),
            manifest,
            last: None,
            file: None,
            stats: CommitStats::default(),
        };
        Ok((run, name, base))
    }

    /// The snapshot's name.
    pub fn name(&self) -> SnapshotName {
        self.name
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
                        self.tree.abort_file(open.sink);
                        self.last = open.prev_last;
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
                self.check_order(&entry.path)?;
                match &entry.kind {
                    EntryKind::Dir => self.tree.dir(&entry.path, &entry.meta),
                    EntryKind::Symlink { target } => {
                        self.tree.symlink(&entry.path, target, &entry.meta)
                    }
                    EntryKind::File { .. } => {
                        return Err(protocol(format!(
                            "{}: a file entry needs its content or a link",
                            entry.path
                        )));
                    }
                }
                .ctx(format!("snapshot {}", self.name))?;
                self.record(&entry)
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
                self.check_order(&entry.path)?;
                let EntryKind::File { size, hash } = entry.kind else {
                    return Err(protocol(format!(
                        "{}: only files can be linked",
                        entry.path
                    )));
                };
                let Some((from, here)) = self.by_hash.get(&hash).cloned() else {
                    return Err(protocol(format!(
                        "{}: no stored file has its content",
                        entry.path
                    )));
                };
                let source = match (here, &mut self.base) {
                    (true, _) => &mut self.this_run,
                    (false, Some(base)) => base,
                    (false, None) => return Err(protocol("no base snapshot")),
                };
                match self
                    .tree
                    .link_from(source, &from, &entry.path, size, &entry.meta)
                {
                    Err(e) if stored_file_problem(&e) => {
                        self.by_hash.remove(&hash);
                        self.warnings.push(format!(
                            "{}: its content's stored copy {from} is damaged or unreadable ({e}); left out of this snapshot, the next run sends it again (run offsnap verify)",
                            entry.path
                        ));
                        return Ok(());
                    }
                    other => other.ctx(format!("snapshot {}", self.name))?,
                };
                self.stats.linked_by_hash += 1;
                self.record(&entry)
            }
            Op::File { path, meta, size } => self.begin(path, meta, size, false),
            Op::Delta { path, meta, size } => self.begin(path, meta, size, true),
            Op::Data(_) | Op::DataZstd(_) | Op::DeltaPiece { .. } | Op::End { .. } | Op::Cancel => {
                Err(protocol("file data outside a file"))
            }
        }
    }

    fn end_file(&mut self, hash: offsnap_protocol::Hash) -> Result<(), RemoteError> {
        let Some(OpenFile {
            sink,
            meta,
            size,
            base,
            ..
        }) = self.file.take()
        else {
            return Err(protocol("file end outside a file"));
        };
        let path = sink.path().clone();
        if sink.written() != size {
            let written = sink.written();
            self.tree.abort_file(sink);
            return Err(protocol(format!(
                "{path}: {written} bytes received, {size} announced"
            )));
        }
        let got = sink.hash();
        if got != hash {
            self.tree.abort_file(sink);
            return Err(err(
                ErrorKind::Corrupt,
                format!("{path}: the data written does not match the client's hash"),
            ));
        }
        self.tree
            .finish_file(sink, &meta)
            .ctx(format!("snapshot {}", self.name))?;
        self.stats.written += 1;
        self.stats.bytes_written += size;
        if base.is_some() {
            self.stats.delta_files += 1;
        }
        self.by_hash.entry(hash).or_insert((path.clone(), true));
        self.record(&Entry {
            path,
            kind: EntryKind::File { size, hash },
            meta,
        })
    }

    /// The next entry of the base manifest.
    /// Starts a file whose content (or, with `delta`, whose delta against
    /// the base file at the same path) follows.
    fn begin(
        &mut self,
        path: RelPath,
        meta: Meta,
        size: u64,
        delta: bool,
    ) -> Result<(), RemoteError> {
        let prev_last = self.last.clone();
        self.check_order(&path)?;
        let base = if delta {
            Some(self.open_base(&path)?)
        } else {
            None
        };
        let sink = self
            .tree
            .begin_file(&path)
            .ctx(format!("snapshot {}", self.name))?;
        self.file = Some(OpenFile {
            prev_last,
            sink,
            meta,
            size,
            base,
        });
        Ok(())
    }

    /// Warnings for the client since the last call (files left out).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
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
        self.check_order(&entry.path)?;
        let ctx = format!("snapshot {}", self.name);
        match &entry.kind {
            EntryKind::Dir => self.tree.dir(&entry.path, &entry.meta).ctx(&ctx)?,
            EntryKind::Symlink { target } => self
                .tree
                .symlink(&entry.path, target, &entry.meta)
                .ctx(&ctx)?,
            EntryKind::File { size, .. } => {
                let Some(base) = &mut self.base else {
                    return Err(protocol("no base snapshot"));
                };
                let linked =
                    self.tree
                        .link_from(base, &entry.path, &entry.path, *size, &entry.meta);
                let how = match linked {
                    Err(e) if stored_file_problem(&e) => {
                        self.warnings.push(format!(
                            "{}: the stored copy in the previous snapshot is damaged or unreadable ({e}); left out of this snapshot, the next run sends it again (run offsnap verify)",
                            entry.path
                        ));
                        return Ok(());
                    }
                    other => other.ctx(&ctx)?,
                };
                match how {
                    Linked::HardLink => self.stats.linked += 1,
                    Linked::Copied => {
                        self.stats.link_limit_copies += 1;
                        self.stats.bytes_written += size;
                    }
                }
            }
        }
        self.record(&entry)
    }

    /// Opens the base snapshot's regular file at `path`.
    fn open_base(&mut self, path: &RelPath) -> Result<(File, u64), RemoteError> {
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

    /// The rsync signature of the base snapshot's file at `path`, computed
    /// window by window (memory stays bounded), or `None` if there is none.
    pub fn signature(&mut self, path: &RelPath) -> Result<Option<Vec<u8>>, RemoteError> {
        let (mut file, len) = match self.open_base(path) {
            Ok(b) => b,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let block = offsnap_protocol::delta::block_size_for(len);
        let opts = fast_rsync::SignatureOptions {
            block_size: block,
            crypto_hash_size: 16,
        };
        let window = (block as usize) * (8 * 1024 * 1024 / block as usize).max(1);
        let mut buf = vec![0u8; window];
        let mut out: Option<Vec<u8>> = None;
        let mut done = 0u64;
        while done < len || out.is_none() {
            let want = window.min((len - done) as usize);
            std::io::Read::read_exact(&mut file, &mut buf[..want])
                .ctx(format!("base of {path}"))?;
            let sig = fast_rsync::Signature::calculate(&buf[..want], opts);
            match &mut out {
                None => out = Some(sig.into_serialized()),
                Some(o) => o.extend_from_slice(&sig.serialized()[12..]),
            }
            done += want as u64;
        }
        Ok(out)
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
        let (out, hash, _len) = self
            .manifest
            .finish()
            .map_err(|e| crate::error::manifest(&ctx, e))?;
        self.stats.manifest_hash = Some(hash);
        let file = out
            .into_inner()
            .map_err(|e| crate::error::io(&ctx, e.into_error()))?;
        file.sync_all().ctx(&ctx)?;
        drop(file);
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
        Ok((self.name, self.stats))
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
/// come from the base with positioned reads, every length is checked
/// against the base and against the size announced, so a delta can neither
/// read outside its base nor write past the file's end.
fn apply_piece(open: &mut OpenFile, piece: &[u8]) -> Result<(), RemoteError> {
    use offsnap_protocol::delta::{DeltaOp, parse};
    use std::os::unix::fs::FileExt;
    let path = open.sink.path().clone();
    let Some((base, base_len)) = &open.base else {
        return Err(protocol(format!("{path}: a delta piece for a whole file")));
    };
    let ops = parse(piece).map_err(|e| protocol(format!("{path}: {e}")))?;
    let mut buf = Vec::new();
    for op in ops {
        let len = match op {
            DeltaOp::Copy { len, .. } => len,
            DeltaOp::Literal(l) => l.len() as u64,
        };
        if open.sink.written().saturating_add(len) > open.size {
            return Err(protocol(format!(
                "{path}: the delta expands past the {} bytes announced",
                open.size
            )));
        }
        match op {
            DeltaOp::Literal(l) => open.sink.write(l).ctx(&path)?,
            DeltaOp::Copy { offset, len } => {
                if offset.checked_add(len).is_none_or(|end| end > *base_len) {
                    return Err(protocol(format!(
                        "{path}: the delta copies from outside its base"
                    )));
                }
                let mut at = offset;
                let end = offset + len;
                while at < end {
                    let n = (end - at).min(1 << 20) as usize;
                    buf.resize(n, 0);
                    base.read_exact_at(&mut buf, at)
                        .ctx(format!("base of {path}"))?;
                    open.sink.write(&buf).ctx(&path)?;
                    at += n as u64;
                }
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
