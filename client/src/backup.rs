//! A backup run on the client: scan the sources, merge the scan with the
//! base snapshot's manifest, and stream ops to the helper without waiting
//! for replies; a second thread reads the helper's answers meanwhile.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::mpsc;

use offsnap_fs::fsx;
use offsnap_protocol::manifest::{ManifestReader, ManifestWriter};
use offsnap_protocol::{
    CommitStats, DATA_CHUNK, Entry, EntryKind, Hash, Meta, Op, RelPath, Request, Response, SetName,
    SnapshotName,
};

use crate::error::{Error, Result};
use crate::manifests::{self, PosReader};
use crate::progress::Progress;
use crate::scan::{self, ScanItem, ScanKind, Source};
use crate::session::{Receiver, Sender, Session};

/// How often a file that keeps changing while read is tried.
const READ_ATTEMPTS: usize = 3;

/// What to back up, where.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The set on the destination.
    pub set: SetName,
    /// The sources, each stored under its final name.
    pub sources: Vec<PathBuf>,
    /// What to leave out.
    pub scan: scan::ScanOptions,
    /// What to show while working.
    pub show: crate::progress::Show,
    /// Prune by this policy after a successful run (skipped when the
    /// helper is append-only or read-only).
    pub prune: Option<offsnap_protocol::Policy>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The new snapshot.
    pub snapshot: SnapshotName,
    /// The helper's counters.
    pub stats: CommitStats,
    /// Entries scanned.
    pub scanned: u64,
    /// Regular files among them.
    pub files: u64,
    /// Files unchanged since the base snapshot, hard-linked.
    pub linked: u64,
    /// New or changed files whose content was already on the host.
    pub linked_by_hash: u64,
    /// New names of files stored under another name in the same run (hard
    /// links in the source).
    pub hard_links: u64,
    /// Files sent again whole when the helper asked (a delta that rebuilt
    /// other content, a leftover of an interrupted run found altered).
    pub resent: u64,
    /// Files sent whole.
    pub sent: u64,
    /// Bytes of file content sent (before compression).
    pub content_bytes: u64,
    /// Chunks that travelled compressed.
    pub compressed_chunks: u64,
    /// Files sent as deltas against their old version.
    pub delta_files: u64,
    /// Bytes of content that travelled as literal data (whole files and
    /// the unmatched parts of deltas), before compression.
    pub literal_bytes: u64,
    /// Bytes of content rebuilt on the host from its stored files.
    pub matched_bytes: u64,
    /// Bytes sent to the helper, framing included.
    pub wire_sent: u64,
    /// Bytes received from it.
    pub wire_received: u64,
    /// Seconds the run took.
    pub elapsed: f64,
    /// What could not be backed up, one line each.
    pub problems: Vec<String>,
    /// What the prune after the run decided (empty when it did not run).
    pub pruned: Vec<offsnap_protocol::PruneDecision>,
    /// Why the prune after the run failed, if it did (the snapshot stands).
    pub prune_error: Option<String>,
}

impl BackupReport {
    /// Whether something was left out (the run is partial).
    pub fn is_partial(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// Runs a backup over an open session, then closes it.
pub fn backup(mut session: Session, opts: &BackupOptions) -> Result<BackupReport> {
    let started = Instant::now();
    let sources = scan::resolve_sources(&opts.sources)?;
    let (snapshot, base, resume) = match session.call(&Request::BeginBackup {
        set: opts.set.clone(),
    }) {
        Ok(Response::BackupStarted {
            snapshot,
            base,
            resume,
        }) => (snapshot, base, resume),
        Ok(other) => return Err(session.fail(Error::Unexpected(format!("{other:?}")))),
        Err(e) => return Err(session.fail(e)),
    };
    let base_manifest = match &base {
        Some(info) => match manifests::fetch_file(&mut session, &opts.set, info) {
            Ok(f) => Some(f),
            Err(e) => return Err(session.fail(e)),
        },
        None => None,
    };
    let may_prune = !session
        .remote_features
        .iter()
        .any(|f| f == "append-only" || f == "read-only");
    let (tx, mut rx, mut transport) = session.split();
    // Dropped early when sending fails, so the helper sees the end of the
    // stream and reports why it stopped instead of waiting for more.
    let mut tx = Some(tx);
    let outcome = std::thread::scope(|scope| {
        // Unbounded: the receiver must never block on the sender, which may
        // itself be blocked sending to the helper.
        let (sig_tx, sig_rx) = mpsc::channel();
        let receiver = scope.spawn(move || {
            let r = receive(&mut rx, sig_tx);
            (r.map(|r| (r, rx.bytes())), rx)
        });
        let sent = match tx.as_mut() {
            Some(t) => send_all(t, &sources, opts, base_manifest, sig_rx, &resume).and_then(|s| {
                t.send(&Request::Commit)?;
                t.flush()?;
                Ok((s, t.bytes()))
            }),
            None => Err(Error::Unexpected("no sender".into())),
        };
        if sent.is_err() {
            tx = None;
        }
        let (received, rx) = match receiver.join() {
            Ok((r, rx)) => (r, Some(rx)),
            Err(_) => (
                Err(Error::Unexpected("the receiving thread panicked".into())),
                None,
            ),
        };
        match (sent, received) {
            (Ok((mut s, wire_sent)), Ok(((snap, stats, warnings), wire_received))) => {
                s.problems.extend(warnings);
                Ok((s, snap, stats, wire_sent, wire_received, rx))
            }
            // The helper's own account of a failure beats our broken pipe.
            (_, Err(e @ Error::Remote(_))) => Err(e),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    });
    let (sent, snap, stats, wire_sent, wire_received, rx) = match outcome {
        Ok(v) => v,
        Err(e) => {
            drop(tx);
            return Err(crate::transport::fail(transport.as_mut(), e));
        }
    };
    // Cache the new snapshot's manifest if ours came out the same.
    if let (Some(mirror), Some(want)) = (sent.mirror, stats.manifest_hash)
        && let Ok((w, hash, _)) = mirror.finish()
        && hash == want
        && let Ok(tmp) = w.into_inner()
    {
        manifests::keep(tmp, &hash);
    }
    let mut pruned = Vec::new();
    let mut prune_error = None;
    if let (Some(policy), Some(mut rx), Some(tx), true) = (&opts.prune, rx, tx.as_mut(), may_prune)
    {
        let req = Request::Prune {
            set: opts.set.clone(),
            policy: policy.clone(),
            dry_run: false,
        };
        let answer = tx
            .send(&req)
            .and_then(|()| tx.flush())
            .and_then(|()| rx.recv());
        match answer {
            Ok(Response::Pruned(d)) => pruned = d,
            Ok(other) => prune_error = Some(format!("unexpected answer {other:?}")),
            Err(e) => prune_error = Some(e.to_string()),
        }
    }
    drop(tx);
    transport.finish()?;
    debug_assert_eq!(snap, snapshot);
    Ok(BackupReport {
        snapshot: snap,
        stats,
        scanned: sent.scanned,
        files: sent.files,
        linked: sent.linked,
        linked_by_hash: sent.linked_by_hash,
        hard_links: sent.hard_links,
        resent: sent.resent,
        sent: sent.files_sent,
        content_bytes: sent.content_bytes,
        compressed_chunks: sent.compressed_chunks,
        delta_files: sent.delta_files,
        literal_bytes: sent.literal_bytes,
        matched_bytes: sent.matched_bytes,
        wire_sent,
        wire_received,
        elapsed: started.elapsed().as_secs_f64(),
        problems: sent.problems,
        pruned,
        prune_error,
    })
}

/// What the receiving side hands the sending side, in the helper's order.
enum Answer {
    /// The signature asked for.
    Signature(Option<Vec<u8>>),
    /// A delta rebuilt the wrong content: send the file again, whole.
    Resend(RelPath),
    /// Every op sent before the `Sync` is applied.
    Synced,
}

/// Reads the helper's answers during a run: signatures, resend requests
/// and the sync (handed to the sending side, in order) until the commit's
/// answer.
fn receive(
    rx: &mut Receiver,
    sigs: mpsc::Sender<Answer>,
) -> Result<(SnapshotName, CommitStats, Vec<String>)> {
    let mut warnings = Vec::new();
    loop {
        match rx.recv()? {
            // The sending side gone means the run is failing anyway.
            Response::Signature(s) => {
                let _ = sigs.send(Answer::Signature(s));
            }
            Response::Resend { path } => {
                let _ = sigs.send(Answer::Resend(path));
            }
            Response::Synced => {
                let _ = sigs.send(Answer::Synced);
            }
            Response::Warning(w) => warnings.push(w),
            Response::Committed { snapshot, stats } => return Ok((snapshot, stats, warnings)),
            other => return Err(Error::Unexpected(format!("{other:?}"))),
        }
    }
}

#[derive(Default)]
struct SendTally {
    scanned: u64,
    files: u64,
    linked: u64,
    linked_by_hash: u64,
    hard_links: u64,
    resent: u64,
    files_sent: u64,
    content_bytes: u64,
    compressed_chunks: u64,
    delta_files: u64,
    literal_bytes: u64,
    matched_bytes: u64,
    problems: Vec<String>,
    mirror: Option<ManifestWriter<std::io::BufWriter<tempfile::NamedTempFile>>>,
}

/// Walks the base manifest alongside the scan.
struct Base {
    reader: Option<ManifestReader<PosReader>>,
    next: Option<Entry>,
}

impl Base {
    fn new(reader: Option<ManifestReader<PosReader>>) -> Result<Base> {
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

    /// The base entry at `path`, if any, skipping entries before it.
    fn find(&mut self, path: &offsnap_protocol::RelPath) -> Result<Option<Entry>> {
        Ok(self.find_counting(path)?.1)
    }

    /// Like [`Base::find`], also counting the entries skipped before it.
    fn find_counting(&mut self, path: &RelPath) -> Result<(u64, Option<Entry>)> {
        let mut skipped = 0;
        while let Some(e) = &self.next {
            match e.path.walk_cmp(path) {
                std::cmp::Ordering::Less => {
                    skipped += 1;
                    self.advance()?
                }
                std::cmp::Ordering::Equal => {
                    let found = self.next.take();
                    self.advance()?;
                    return Ok((skipped, found));
                }
                std::cmp::Ordering::Greater => return Ok((skipped, None)),
            }
        }
        Ok((skipped, None))
    }
}

/// The contents already on the host (those of the base snapshot's files),
/// and the sizes of large ones.
/// The key a content is known by in the client's set of stored contents:
/// the first 128 bits of its BLAKE3, half the memory of the whole hash per
/// file (the set holds one per file of the base snapshot), with collisions
/// no likelier than forgery.
fn content_key(hash: &Hash) -> u128 {
    let mut k = [0u8; 16];
    k.copy_from_slice(&hash.0[..16]);
    u128::from_le_bytes(k)
}

fn stored_hashes(base: Option<&File>) -> Result<(HashSet<u128>, HashSet<u64>)> {
    let mut hashes = HashSet::new();
    let mut sizes = HashSet::new();
    if let Some(file) = base {
        for e in manifests::entries(file)? {
            let e = e.map_err(|e| Error::Corrupt(format!("base manifest: {e}")))?;
            if let EntryKind::File { hash, size } = e.kind {
                hashes.insert(content_key(&hash));
                if size > IN_MEMORY {
                    sizes.insert(size);
                }
            }
        }
    }
    Ok((hashes, sizes))
}

/// State of the sending side of a run.
struct Outbox<'a> {
    tx: &'a mut Sender,
    stored: HashSet<u128>,
    /// Sizes of the large stored files: a large file can only match
    /// stored content of its own size, so others skip the hashing pass.
    stored_sizes: HashSet<u64>,
    /// Files an interrupted run had begun, with the length that arrived.
    partials: HashMap<RelPath, u64>,
    zstd: zstd::bulk::Compressor<'static>,
    /// Whether compressing the current file still pays off.
    compress: bool,
    /// An `Unchanged` or `Skip` not sent yet (runs are merged).
    base_run: Option<Op>,
    /// The manifest the helper is writing, written here too from the same
    /// entries: when the hashes agree it is cached and the next run need
    /// not download it.
    mirror: Option<ManifestWriter<std::io::BufWriter<tempfile::NamedTempFile>>>,
    /// Paths whose signatures were asked for, in order, not yet used.
    pending: VecDeque<RelPath>,
    /// The signatures, in the same order.
    sigs: mpsc::Receiver<Answer>,
    progress: &'a Progress,
    buf: Vec<u8>,
    /// The first name stored in this run of each file with several names.
    links: HashMap<(u64, u64), RelPath>,
    /// Files sent as deltas or linked from what an interrupted run left,
    /// as they were read, in case the helper asks for one again.
    resendable: HashMap<RelPath, Resendable>,
    /// Files the helper asked for again.
    resends: Vec<RelPath>,
    tally: SendTally,
}

/// Files at least this large (new and old) travel as deltas.
const DELTA_MIN: u64 = 128 * 1024;

/// The length of what a new or changed file of `size` bytes travels as a
/// delta against: the part of it an interrupted run received (the helper
/// prefers that too), else its old version when that is large enough;
/// `None` when it travels whole.
fn delta_base(old: Option<&Entry>, partial: Option<u64>, size: u64) -> Option<u64> {
    if size < DELTA_MIN {
        return None;
    }
    match (partial, old.map(|o| &o.kind)) {
        (Some(len), _) => Some(len),
        (None, Some(EntryKind::File { size: s, .. })) if *s >= DELTA_MIN => Some(*s),
        _ => None,
    }
}

/// First pass: asks the helper for the signatures of the old versions of
/// the files that will travel as deltas, so they stream back while the
/// second pass sends everything else.
fn request_signatures(
    tx: &mut Sender,
    sources: &[Source],
    opts: &scan::ScanOptions,
    base: Option<&File>,
    partials: &HashMap<RelPath, u64>,
    progress: &Progress,
) -> Result<(VecDeque<RelPath>, u64)> {
    let mut old = Base::new(base.map(manifests::entries).transpose()?)?;
    let mut pending = VecDeque::new();
    let mut to_read = 0;
    let mut inodes = HashSet::new();
    for item in scan::scan(sources, opts)?.flatten() {
        progress.scanned();
        let ScanKind::File(size) = item.kind else {
            continue;
        };
        // A further name of a file travels as a hard link.
        if let Some(id) = item.inode
            && !inodes.insert(id)
        {
            continue;
        }
        let o = old.find(&item.path)?;
        match &o {
            Some(o) if unchanged(o, &item) => {}
            o if delta_base(o.as_ref(), partials.get(&item.path).copied(), size).is_some() => {
                to_read += size;
                tx.send(&Request::Signature {
                    path: item.path.clone(),
                })?;
                pending.push_back(item.path);
            }
            _ => to_read += size,
        }
    }
    tx.flush()?;
    Ok((pending, to_read))
}

fn send_all(
    tx: &mut Sender,
    sources: &[Source],
    opts: &BackupOptions,
    base: Option<File>,
    sigs: mpsc::Receiver<Answer>,
    resume: &offsnap_protocol::Resume,
) -> Result<SendTally> {
    let (mut stored, mut stored_sizes) = stored_hashes(base.as_ref())?;
    // What an interrupted run finished counts as stored; what it began
    // is a delta base.
    for (hash, size) in &resume.finished {
        stored.insert(content_key(hash));
        if *size > IN_MEMORY {
            stored_sizes.insert(*size);
        }
    }
    let partials: HashMap<RelPath, u64> = resume.partial.iter().cloned().collect();
    let progress = Progress::new(opts.show);
    // The first pass asks for signatures, and counts what is to be read
    // for the progress bar; without either purpose it is skipped.
    let pending = if base.is_some() || !partials.is_empty() || opts.show.progress {
        let (pending, to_read) =
            request_signatures(tx, sources, &opts.scan, base.as_ref(), &partials, &progress)?;
        progress.start_sending(to_read);
        pending
    } else {
        VecDeque::new()
    };
    let result = send_all_with(
        tx,
        sources,
        &opts.scan,
        base,
        sigs,
        stored,
        stored_sizes,
        partials,
        pending,
        &progress,
    );
    progress.finish();
    result
}

#[allow(clippy::too_many_arguments)]
fn send_all_with(
    tx: &mut Sender,
    sources: &[Source],
    opts: &scan::ScanOptions,
    base: Option<File>,
    sigs: mpsc::Receiver<Answer>,
    stored: HashSet<u128>,
    stored_sizes: HashSet<u64>,
    partials: HashMap<RelPath, u64>,
    pending: VecDeque<RelPath>,
    progress: &Progress,
) -> Result<SendTally> {
    let base_file = base;
    let reader = match &base_file {
        Some(f) => Some(manifests::entries(f)?),
        None => None,
    };
    let mut base = Base::new(reader)?;
    let mut out = Outbox {
        tx,
        stored,
        stored_sizes,
        partials,
        zstd: zstd::bulk::Compressor::new(1)
            .map_err(|e| Error::Unexpected(format!("zstd: {e}")))?,
        compress: true,
        base_run: None,
        mirror: manifests::cache_dir()
            .and_then(|_| manifests::cache_temp().ok())
            .and_then(|t| ManifestWriter::new(std::io::BufWriter::new(t)).ok()),
        pending,
        sigs,
        progress,
        buf: vec![0u8; DATA_CHUNK],
        links: HashMap::new(),
        resendable: HashMap::new(),
        resends: Vec::new(),
        tally: SendTally::default(),
    };
    for res in scan::scan(sources, opts)? {
        let item = match res {
            Ok(item) => item,
            Err(p) => {
                out.tally
                    .problems
                    .push(format!("{}: {}", p.local.display(), p.message));
                continue;
            }
        };
        out.tally.scanned += 1;
        let (skipped, old) = base.find_counting(&item.path)?;
        out.base(Op::Skip(skipped))?;
        // What is recorded without content: everything but a file's first
        // name (further names of a file become hard links to the first).
        let now = match &item.kind {
            ScanKind::File(_) => {
                item.inode
                    .and_then(|id| out.links.get(&id))
                    .map(|target| EntryKind::HardLink {
                        target: target.clone(),
                    })
            }
            ScanKind::Dir => Some(EntryKind::Dir),
            ScanKind::Symlink(target) => Some(EntryKind::Symlink {
                target: target.clone(),
            }),
            ScanKind::Special(kind) => Some(kind.clone()),
        };
        let same = old.as_ref().is_some_and(|o| match &now {
            Some(kind) => o.kind == *kind && o.meta == item.meta && o.xattrs == item.xattrs,
            None => unchanged(o, &item),
        });
        let is_file = matches!(item.kind, ScanKind::File(_));
        if same && let Some(o) = &old {
            if is_file {
                out.tally.files += 1;
                out.tally.linked += 1;
            }
            if now.is_none() {
                out.note_inode(&item);
            }
            out.record(o);
            out.base(Op::Unchanged(1))?;
            continue;
        }
        if old.is_some() {
            out.base(Op::Skip(1))?;
        }
        match now {
            Some(kind) => {
                if is_file {
                    out.tally.files += 1;
                    out.tally.hard_links += 1;
                }
                out.entry(Entry {
                    path: item.path.clone(),
                    kind,
                    meta: item.meta,
                    xattrs: item.xattrs.clone(),
                })?
            }
            None => {
                out.tally.files += 1;
                out.flush_base()?;
                if out.file(&item, old.as_ref())? {
                    out.note_inode(&item);
                }
            }
        }
    }
    out.flush_base()?;
    out.repair(base_file.as_ref(), sources)?;
    out.tally.mirror = out.mirror.take();
    Ok(out.tally)
}

/// Whether a scanned file can be linked to the base entry.
fn unchanged(old: &Entry, item: &ScanItem) -> bool {
    let ScanKind::File(size) = item.kind else {
        return false;
    };
    matches!(old.kind, EntryKind::File { size: s, .. } if s == size)
        && old.meta == item.meta
        && old.xattrs == item.xattrs
}

/// A file the helper may ask for again (sent as a delta, or linked from
/// what an interrupted run left), as it was read.
struct Resendable {
    local: PathBuf,
    meta: Meta,
    xattrs: Vec<offsnap_protocol::Xattr>,
    size: u64,
    hash: Hash,
}

/// Files up to this size are read once into memory, hashed, then sent from
/// there; larger ones are hashed in one pass and sent in a second.
const IN_MEMORY: u64 = 4 << 20;

enum Read1 {
    Done,
    Changed,
    Failed(String),
}

impl Outbox<'_> {
    /// Queues an `Unchanged` or `Skip` of base entries, merged with the
    /// previous one of the same kind.
    fn base(&mut self, op: Op) -> Result<()> {
        match (&mut self.base_run, op) {
            (_, Op::Skip(0) | Op::Unchanged(0)) => Ok(()),
            (Some(Op::Skip(n)), Op::Skip(m)) | (Some(Op::Unchanged(n)), Op::Unchanged(m)) => {
                *n += m;
                Ok(())
            }
            (_, op) => {
                self.flush_base()?;
                self.base_run = Some(op);
                Ok(())
            }
        }
    }

    /// Notes an entry the helper records, in the mirrored manifest.
    fn record(&mut self, e: &Entry) {
        if let Some(m) = &mut self.mirror
            && m.push(e).is_err()
        {
            self.mirror = None;
        }
    }

    /// Sends the queued base op, if any.
    fn flush_base(&mut self) -> Result<()> {
        match self.base_run.take() {
            Some(op) => self.tx.send(&Request::Op(op)),
            None => Ok(()),
        }
    }

    /// Sends a directory or symlink entry after the queued base op.
    fn entry(&mut self, e: Entry) -> Result<()> {
        self.flush_base()?;
        self.record(&e);
        self.tx.send(&Request::Op(Op::Entry(e)))
    }

    /// Remembers a file's first name, for its other names.
    fn note_inode(&mut self, item: &ScanItem) {
        if let Some(id) = item.inode {
            self.links.entry(id).or_insert_with(|| item.path.clone());
        }
    }

    /// Stores a new or changed file: by hash when its content is already
    /// on the host, else by sending it; retried when it changes meanwhile.
    /// Returns whether it was stored.
    fn file(&mut self, item: &ScanItem, old: Option<&Entry>) -> Result<bool> {
        let sig = self.signature_for(&item.path)?;
        for _ in 0..READ_ATTEMPTS {
            match self.file_once(item, old, sig.as_deref())? {
                Read1::Done => {
                    if let ScanKind::File(size) = item.kind {
                        self.progress.read(size);
                    }
                    self.progress
                        .stored(if old.is_some() { "changed" } else { "new" }, &item.local);
                    return Ok(true);
                }
                Read1::Changed => continue,
                Read1::Failed(why) => {
                    self.tally
                        .problems
                        .push(format!("{}: {why}", item.local.display()));
                    return Ok(false);
                }
            }
        }
        self.tally.problems.push(format!(
            "{}: kept changing while being read; not backed up",
            item.local.display()
        ));
        Ok(false)
    }

    /// Remembers a file as it was read, in case the helper asks for it
    /// again (see [`Self::repair`]).
    fn keep_for_resend(&mut self, item: &ScanItem, meta: Meta, size: u64, hash: Hash) {
        let sent = Resendable {
            local: item.local.clone(),
            meta,
            xattrs: item.xattrs.clone(),
            size,
            hash,
        };
        self.resendable.insert(item.path.clone(), sent);
    }

    /// The helper's next answer.
    fn answer(&mut self) -> Result<Answer> {
        self.sigs
            .recv()
            .map_err(|_| Error::Transport("the helper stopped answering".into()))
    }

    /// After the walk, when deltas were sent (or contents linked from what
    /// an interrupted run left): waits until the helper has applied every
    /// op, then sends whole the files it asks for again (a delta that
    /// rebuilt other content than was read, a leftover found altered, a
    /// stored copy found altered on the host). With a base snapshot this
    /// costs a round trip even when nothing is asked for.
    fn repair(&mut self, base: Option<&File>, sources: &[Source]) -> Result<()> {
        if self.resendable.is_empty() && base.is_none() {
            return Ok(());
        }
        self.tx.send(&Request::Sync)?;
        self.tx.flush()?;
        loop {
            match self.answer()? {
                Answer::Signature(_) => {}
                Answer::Resend(p) => self.resends.push(p),
                Answer::Synced => break,
            }
        }
        // Files reported unchanged: as the base manifest recorded them.
        let unkept: HashSet<RelPath> = self
            .resends
            .iter()
            .filter(|p| !self.resendable.contains_key(*p))
            .cloned()
            .collect();
        if let Some(base) = base {
            for (path, r) in crate::unchanged::find(base, sources, &unkept)? {
                let sent = Resendable {
                    local: r.local,
                    meta: r.meta,
                    xattrs: r.xattrs,
                    size: r.size,
                    hash: r.hash,
                };
                self.resendable.insert(path, sent);
            }
        }
        for path in std::mem::take(&mut self.resends) {
            let Some(sent) = self.resendable.remove(&path) else {
                return Err(Error::Corrupt(format!(
                    "the helper asked to resend {path}, which this run did not send or keep"
                )));
            };
            self.resend(&path, &sent)?;
        }
        Ok(())
    }

    /// Sends again, whole, a file whose delta rebuilt the wrong content; it
    /// must still read as it did (the helper recorded it so), else it is
    /// cancelled and left out.
    fn resend(&mut self, path: &RelPath, sent: &Resendable) -> Result<()> {
        let (size, hash) = (sent.size, sent.hash);
        let problem = |why: &str| format!("{}: {why}; not backed up", sent.local.display());
        // By its path: the scan's directory handles are long closed.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&sent.local);
        let mut file = match file {
            Ok(f)
                if f.metadata()
                    .is_ok_and(|m| m.len() == size && fsx::meta_of_metadata(&m) == sent.meta) =>
            {
                f
            }
            _ => {
                self.tally
                    .problems
                    .push(problem("changed before it could be sent again"));
                return Ok(());
            }
        };
        self.compress = true;
        self.tx.send(&Request::Op(Op::File {
            path: path.clone(),
            meta: sent.meta,
            size,
            xattrs: sent.xattrs.clone(),
        }))?;
        let same = match self.stream(&mut file, size)? {
            Ok(h) => {
                h == hash
                    && file
                        .metadata()
                        .is_ok_and(|m| m.len() == size && fsx::meta_of_metadata(&m) == sent.meta)
            }
            Err(_) => false,
        };
        if same {
            self.tx.send(&Request::Op(Op::End { hash }))?;
            self.tally.resent += 1;
            self.tally.literal_bytes += size;
        } else {
            self.tx.send(&Request::Op(Op::Cancel))?;
            self.tally
                .problems
                .push(problem("changed while being sent again"));
        }
        Ok(())
    }

    /// The signature asked for `path` in the first pass, if any; skips
    /// (and drops) those of paths the second pass went past.
    fn signature_for(&mut self, path: &RelPath) -> Result<Option<Vec<u8>>> {
        while let Some(front) = self.pending.front() {
            match front.walk_cmp(path) {
                std::cmp::Ordering::Greater => return Ok(None),
                ord => {
                    self.pending.pop_front();
                    let sig = loop {
                        match self.answer()? {
                            Answer::Signature(sig) => break sig,
                            Answer::Resend(p) => self.resends.push(p),
                            Answer::Synced => return Err(Error::Unexpected("sync".into())),
                        }
                    };
                    if ord == std::cmp::Ordering::Equal {
                        return Ok(sig);
                    }
                }
            }
        }
        Ok(None)
    }

    fn file_once(
        &mut self,
        item: &ScanItem,
        old: Option<&Entry>,
        sig: Option<&[u8]>,
    ) -> Result<Read1> {
        let file = scan::open_item(item);
        let mut file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Read1::Failed("vanished before it could be read".into()));
            }
            Err(e) => return Ok(Read1::Failed(e.to_string())),
        };
        let before = match file.metadata() {
            Ok(md) if md.is_file() => md,
            Ok(_) => return Ok(Read1::Failed("is no longer a regular file".into())),
            Err(e) => return Ok(Read1::Failed(e.to_string())),
        };
        let size = before.len();
        let meta = fsx::meta_of_metadata(&before);
        let still = |f: &File| matches!(f.metadata(), Ok(md) if md.len() == size && fsx::meta_of_metadata(&md) == meta);
        // A big changed file with a signature waiting travels as a delta;
        // a large file no stored file matches in size is sent right away.
        // Both are hashed as they are read: one pass instead of two (a
        // large file matching stored content elsewhere is rare enough not
        // to pay a second read for it).
        if let Some(sig) = sig
            && let Some(base) = delta_base(old, self.partials.get(&item.path).copied(), size)
        {
            return self.one_pass(item, &mut file, size, meta, &still, Some((sig, base)));
        }
        if size > IN_MEMORY && !self.stored_sizes.contains(&size) {
            return self.one_pass(item, &mut file, size, meta, &still, None);
        }
        // First: the content's hash (and, for small files, the content).
        let mut hasher = blake3::Hasher::new();
        let mut whole = Vec::new();
        let res = if size <= IN_MEMORY {
            whole.reserve(size as usize);
            (&mut file).take(size).read_to_end(&mut whole).map(|n| {
                hasher.update(&whole);
                n as u64
            })
        } else {
            std::io::copy(&mut (&mut file).take(size), &mut hasher)
        };
        match res {
            Ok(n) if n == size && still(&file) => {}
            Ok(_) => return Ok(Read1::Changed),
            Err(e) => return Ok(Read1::Failed(e.to_string())),
        }
        let hash = Hash::from(hasher.finalize());
        let entry = Entry {
            path: item.path.clone(),
            kind: EntryKind::File { size, hash },
            meta,
            xattrs: item.xattrs.clone(),
        };
        let key = content_key(&hash);
        if self.stored.contains(&key) {
            self.tally.linked_by_hash += 1;
            self.record(&entry);
            self.tx.send(&Request::Op(Op::LinkFrom(entry)))?;
            // Its stored copy may be found altered on the host.
            self.keep_for_resend(item, meta, size, hash);
            return Ok(Read1::Done);
        }
        // Then the content itself.
        self.compress = true;
        self.tx.send(&Request::Op(Op::File {
            path: item.path.clone(),
            meta,
            size,
            xattrs: item.xattrs.clone(),
        }))?;
        let sent = if size <= IN_MEMORY {
            let whole = std::mem::take(&mut whole);
            for chunk in whole.chunks(DATA_CHUNK) {
                self.data(chunk)?;
            }
            Ok(hash)
        } else {
            self.stream(&mut file, size)?
        };
        self.finish(&entry, &file, sent, hash, size, &still, false)
    }

    /// Announces a file (as a delta against `delta`'s signature and base
    /// size, or whole), sends it while hashing it, and ends it.
    fn one_pass(
        &mut self,
        item: &ScanItem,
        file: &mut File,
        size: u64,
        meta: Meta,
        still: &dyn Fn(&File) -> bool,
        delta: Option<(&[u8], u64)>,
    ) -> Result<Read1> {
        self.compress = true;
        let path = item.path.clone();
        let xattrs = item.xattrs.clone();
        let sent = match delta {
            Some((sig, base_size)) => {
                self.tx.send(&Request::Op(Op::Delta {
                    path,
                    meta,
                    size,
                    xattrs,
                }))?;
                self.delta(file, size, sig, base_size)?
            }
            None => {
                self.tx.send(&Request::Op(Op::File {
                    path,
                    meta,
                    size,
                    xattrs,
                }))?;
                self.stream(file, size)?
            }
        };
        let hash = *sent.as_ref().unwrap_or(&Hash([0; 32]));
        let entry = Entry {
            path: item.path.clone(),
            kind: EntryKind::File { size, hash },
            meta,
            xattrs: item.xattrs.clone(),
        };
        let done = self.finish(&entry, file, sent, hash, size, still, delta.is_some())?;
        if delta.is_some() && matches!(done, Read1::Done) {
            self.keep_for_resend(item, meta, size, hash);
        }
        Ok(done)
    }

    /// Ends a file whose content was sent: `End` when what was sent is what
    /// was hashed first and the file did not change meanwhile, else `Cancel`.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        entry: &Entry,
        file: &File,
        sent: std::result::Result<Hash, String>,
        hash: Hash,
        size: u64,
        still: &dyn Fn(&File) -> bool,
        delta: bool,
    ) -> Result<Read1> {
        match sent {
            Ok(h) if h == hash && still(file) => {}
            Ok(_) => {
                self.tx.send(&Request::Op(Op::Cancel))?;
                return Ok(Read1::Changed);
            }
            Err(why) => {
                self.tx.send(&Request::Op(Op::Cancel))?;
                return Ok(Read1::Failed(why));
            }
        }
        self.tx.send(&Request::Op(Op::End { hash }))?;
        self.record(entry);
        // A delta's content is on the host only once the helper found it
        // rebuilt right, which it says at the end (see `repair`): until
        // then nothing links to it.
        if !delta {
            self.stored.insert(content_key(&hash));
            if size > IN_MEMORY {
                self.stored_sizes.insert(size);
            }
        }
        if delta {
            self.tally.delta_files += 1;
        } else {
            self.tally.files_sent += 1;
            self.tally.literal_bytes += size;
        }
        self.tally.content_bytes += size;
        Ok(Read1::Done)
    }

    /// Sends `file` as deltas against the signature of its old version,
    /// diffing windows of a few MiB (memory stays flat whatever the size).
    /// Each window carries its untested tail (less than a block) into the
    /// next, so no match is lost at a window's edge. Returns the hash of
    /// what was read.
    fn delta(
        &mut self,
        file: &mut File,
        size: u64,
        sig: &[u8],
        base_size: u64,
    ) -> Result<std::result::Result<Hash, String>> {
        use std::io::Seek;
        let base = offsnap_protocol::diff::BaseSignature::parse(sig, base_size)
            .map_err(|e| Error::Corrupt(format!("the helper sent a {e}")))?;
        let mut differ = base.differ();
        if let Err(e) = file.seek(std::io::SeekFrom::Start(0)) {
            return Ok(Err(e.to_string()));
        }
        const WINDOW: usize = 2 << 20;
        let keep = base.shape().block_size as usize - 1;
        let mut hasher = crate::hashing::BackgroundHasher::new();
        // One buffer, filled once: the unused tail moves to its front.
        let mut buf = vec![0u8; WINDOW + keep];
        let (mut done, mut held) = (0u64, 0usize);
        loop {
            let want = (WINDOW as u64).min(size - done) as usize;
            if let Err(e) = file.read_exact(&mut buf[held..held + want]) {
                return Ok(Err(e.to_string()));
            }
            done += want as u64;
            held += want;
            let eof = done == size;
            let piece = differ.window(&buf[..held], eof).map_err(|e| {
                Error::Corrupt(format!("diffing against the helper's signature: {e}"))
            })?;
            let cut = piece.used;
            self.tally.literal_bytes += piece.literal;
            self.tally.matched_bytes += piece.matched;
            hasher.update(&buf[..cut]);
            let bytes = piece.bytes;
            let compressed = match self.zstd.compress(&bytes) {
                Ok(z) if z.len() < bytes.len() - bytes.len() / 10 => Some(z),
                _ => None,
            };
            self.tx.send(&Request::Op(match compressed {
                Some(z) => Op::DeltaPiece {
                    zstd: true,
                    bytes: z,
                },
                None => Op::DeltaPiece { zstd: false, bytes },
            }))?;
            buf.copy_within(cut..held, 0);
            held -= cut;
            if eof {
                break;
            }
        }
        Ok(hasher.finish())
    }

    /// Sends `size` bytes of `file` from its start; returns their hash, or
    /// why reading failed.
    fn stream(&mut self, file: &mut File, size: u64) -> Result<std::result::Result<Hash, String>> {
        use std::io::Seek;
        if let Err(e) = file.seek(std::io::SeekFrom::Start(0)) {
            return Ok(Err(e.to_string()));
        }
        let mut buf = std::mem::take(&mut self.buf);
        let mut hasher = crate::hashing::BackgroundHasher::new();
        let mut done = 0u64;
        let mut result = Ok(());
        while done < size {
            let want = buf.len().min((size - done) as usize);
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    result = Err(e.to_string());
                    break;
                }
            };
            hasher.update(&buf[..n]);
            if let Err(e) = self.data(&buf[..n]) {
                self.buf = buf;
                return Err(e);
            }
            done += n as u64;
        }
        self.buf = buf;
        Ok(result.and_then(|()| hasher.finish()))
    }

    /// Sends one chunk, compressed when that saves at least a tenth; after
    /// one chunk that does not compress, the rest of the file goes raw.
    fn data(&mut self, chunk: &[u8]) -> Result<()> {
        if self.compress && chunk.len() >= 64 {
            match self.zstd.compress(chunk) {
                Ok(z) if z.len() < chunk.len() - chunk.len() / 10 => {
                    self.tally.compressed_chunks += 1;
                    return self.tx.send(&Request::Op(Op::DataZstd(z)));
                }
                _ => self.compress = false,
            }
        }
        self.tx.send(&Request::Op(Op::Data(chunk.to_vec())))
    }
}
