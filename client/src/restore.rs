//! Restoring: copy a snapshot (or some paths of it) out of the backup into
//! a local directory, with content, mode, mtime and symlinks as they were.
//!
//! The manifest is fetched once and read once: a single pass checks that
//! every requested path is in the snapshot and that nothing in the target
//! would be overwritten, notes the hard links, and keeps the entries to
//! write ([`plan`]). Then a second thread requests the files' contents
//! from the helper and hands each entry on, and this one writes them as
//! the contents arrive. Two cases read the manifest again rather than
//! hold more: a restore of more entries than [`KEEP_BYTES`] holds streams
//! them from the manifest a second time, and a restored hard link whose
//! first name is not restored needs a pass for that name's size and hash.
//!
//! Every path comes from a validated manifest and is written through
//! directory handles that never follow symlinks, so nothing the helper
//! says can make the restore write outside the target.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver as Queue, SyncSender, TrySendError, sync_channel};

use offsnap_fs::cursor::DirCursor;
use offsnap_fs::fsx;
use offsnap_fs::tree::{Existing, TreeWriter};
use offsnap_protocol::manifest::ManifestReader;
use offsnap_protocol::{
    Entry, EntryKind, Hash, RelPath, Request, Response, SetName, SnapshotInfo, SnapshotName,
};

use crate::error::{Error, Result};
use crate::manifests::{self, PosReader, entries};
use crate::progress::Progress;
use crate::session::{Receiver, Sender, Session};

pub use crate::select::Which;

/// What to restore, where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The set.
    pub set: SetName,
    /// The snapshot.
    pub snapshot: Which,
    /// The directory to write into (created when missing).
    pub to: PathBuf,
    /// Paths inside the snapshot; empty for all of it.
    pub paths: Vec<RelPath>,
    /// Replace existing files instead of refusing.
    pub overwrite: bool,
    /// Draw a progress bar on stderr while writing.
    pub progress: bool,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The snapshot restored from.
    pub snapshot: SnapshotName,
    /// Entries written: those at or below the requested paths (the
    /// folders above them, made on the way, are not counted).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Files that could not be restored, one line each.
    pub problems: Vec<String>,
}

/// Finds a snapshot of the set.
pub fn find_snapshot(session: &mut Session, set: &SetName, which: &Which) -> Result<SnapshotInfo> {
    let snaps = crate::requests::snapshots(session, set)?;
    which.pick(set, &snaps).cloned()
}

/// Whether `path` is written: at or below a requested path, or a folder
/// above one.
fn wanted(path: &RelPath, paths: &[RelPath]) -> bool {
    paths.is_empty()
        || paths
            .iter()
            .any(|p| path.starts_with(p) || p.starts_with(path))
}

/// Whether `path` is at or below a requested path: what the report counts.
fn requested(path: &RelPath, paths: &[RelPath]) -> bool {
    paths.is_empty() || paths.iter().any(|p| path.starts_with(p))
}

/// Whether `e` is a hard link whose first name is not restored.
fn link_outside(e: &Entry, paths: &[RelPath]) -> bool {
    matches!(&e.kind, EntryKind::HardLink { target } if wanted(&e.path, paths) && !wanted(target, paths))
}

/// The size and hash of the content requested from the helper for `e`: a
/// wanted file's, or that of the first name of a wanted hard link whose
/// first name is not restored. The request side and the writing side
/// both decide with this, so they agree on which answers come.
fn content_of(
    e: &Entry,
    paths: &[RelPath],
    outside: &HashMap<RelPath, (u64, Hash)>,
) -> Option<(u64, Hash)> {
    if !wanted(&e.path, paths) {
        return None;
    }
    match &e.kind {
        EntryKind::File { size, hash } => Some((*size, *hash)),
        EntryKind::HardLink { target } if link_outside(e, paths) => outside.get(target).copied(),
        _ => None,
    }
}

/// What a restore needs to know of hard links before it starts.
#[derive(Default)]
struct Links {
    /// First names of the restored hard links, for their other names to
    /// link to.
    targets: HashSet<RelPath>,
    /// Size and hash of the first names not restored whose other names
    /// are: those names are restored as files of their own.
    outside: HashMap<RelPath, (u64, Hash)>,
}

/// The most memory the entries kept between the planning pass and the
/// writing are allowed (by [`weight`]); past it they are read again.
pub const KEEP_BYTES: usize = 64 << 20;

/// About the memory an entry takes when kept.
fn weight(e: &Entry) -> usize {
    let kind = match &e.kind {
        EntryKind::Symlink { target } => target.len(),
        EntryKind::HardLink { target } => target.as_bytes().len(),
        _ => 0,
    };
    let xattrs: usize = e
        .xattrs
        .iter()
        .map(|x| x.name.len() + x.value.len() + 48)
        .sum();
    std::mem::size_of::<Entry>() + e.path.as_bytes().len() + kind + xattrs + 16
}

/// What the planning pass found.
struct Plan {
    /// The entries to write, in walk order; `None` when they were too
    /// many to keep (they are then streamed from the manifest again).
    kept: Option<Vec<Entry>>,
    links: Links,
    /// Files to write (hard links restored as files included).
    files: u64,
    /// Bytes of content to write.
    bytes: u64,
}

fn next(r: &mut ManifestReader<PosReader>) -> Result<Option<Entry>> {
    r.next_entry()
        .map_err(|e| Error::Corrupt(format!("manifest: {e}")))
}

/// The one pass over the manifest before anything is written: every
/// requested path must be in the snapshot, nothing in the target `root`
/// (when it exists and overwriting is not allowed) may be in the way.
fn plan(
    manifest: &File,
    info: &SnapshotInfo,
    opts: &RestoreOptions,
    root: Option<&OwnedFd>,
    keep_bytes: usize,
) -> Result<Plan> {
    let paths = &opts.paths;
    let mut found = vec![false; paths.len()];
    let mut conflicts = match root {
        Some(r) if !opts.overwrite => Some(Conflicts::new(r, opts)?),
        _ => None,
    };
    let mut kept = Some(Vec::new());
    let mut kept_bytes = 0usize;
    let mut links = Links::default();
    // The first names outside, with how many restored names link to each.
    let mut needed: HashMap<RelPath, u64> = HashMap::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut reader = entries(manifest)?;
    while let Some(e) = next(&mut reader)? {
        for (i, p) in paths.iter().enumerate() {
            found[i] |= e.path == *p;
        }
        if !wanted(&e.path, paths) {
            continue;
        }
        if let EntryKind::File { size, .. } = &e.kind {
            files += 1;
            bytes += size;
        }
        if let EntryKind::HardLink { target } = &e.kind {
            if link_outside(&e, paths) {
                *needed.entry(target.clone()).or_default() += 1;
            }
            links.targets.insert(target.clone());
        }
        if let Some(c) = &mut conflicts {
            c.check(&e);
        }
        kept_bytes += weight(&e);
        match &mut kept {
            Some(v) if kept_bytes <= keep_bytes => v.push(e),
            _ => kept = None,
        }
    }
    if let Some(i) = found.iter().position(|f| !f) {
        return Err(Error::Usage(format!(
            "{} is not in snapshot {}",
            paths[i], info.name
        )));
    }
    if let Some(c) = conflicts {
        c.refuse(opts)?;
    }
    if !needed.is_empty() {
        let mut reader = entries(manifest)?;
        while let Some(e) = next(&mut reader)? {
            if let EntryKind::File { size, hash } = e.kind
                && let Some(n) = needed.get(&e.path)
            {
                files += n;
                bytes += n * size;
                links.outside.insert(e.path, (size, hash));
            }
        }
    }
    Ok(Plan {
        kept,
        links,
        files,
        bytes,
    })
}

/// What in the target is in the way of the restore (the first ten).
struct Conflicts {
    cursor: DirCursor,
    found: Vec<String>,
}

/// How many conflicts a refusal names.
const CONFLICTS_SHOWN: usize = 10;

impl Conflicts {
    fn new(root: &OwnedFd, opts: &RestoreOptions) -> Result<Conflicts> {
        let root = root.try_clone().map_err(|e| Error::io(&opts.to, e))?;
        Ok(Conflicts {
            cursor: DirCursor::new(root),
            found: Vec::new(),
        })
    }

    /// Notes `e` when something is at its path in the target (a folder
    /// where a folder goes is not in the way).
    fn check(&mut self, e: &Entry) {
        if self.found.len() >= CONFLICTS_SHOWN {
            return;
        }
        let Ok((dir, name)) = self.cursor.parent_of(&e.path) else {
            return;
        };
        let Ok(Some(st)) = fsx::lstat(dir, name) else {
            return;
        };
        let is_dir = fsx::file_type(&st) == rustix::fs::FileType::Directory;
        if !(is_dir && e.kind == EntryKind::Dir) {
            self.found.push(e.path.to_string());
        }
    }

    /// The refusal, when anything was in the way.
    fn refuse(self, opts: &RestoreOptions) -> Result<()> {
        if self.found.is_empty() {
            return Ok(());
        }
        Err(Error::Refused(format!(
            "refusing to overwrite what already exists in {}: {}{} (restore elsewhere, or pass --overwrite)",
            opts.to.display(),
            self.found.join(", "),
            if self.found.len() >= CONFLICTS_SHOWN {
                ", …"
            } else {
                ""
            }
        )))
    }
}

/// Restores over an open session, then closes it.
pub fn restore(mut session: Session, opts: &RestoreOptions) -> Result<RestoreReport> {
    let info = find_snapshot(&mut session, &opts.set, &opts.snapshot)?;
    let manifest = manifests::fetch_file(&mut session, &opts.set, &info)?;
    // Nothing is made before the plan is checked: a missing target
    // directory has nothing in the way.
    let existing = match fsx::open_root(&opts.to) {
        Ok(fd) => Some(fd),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&opts.to, e)),
    };
    let mut plan = plan(&manifest, &info, opts, existing.as_ref(), KEEP_BYTES)?;
    std::fs::create_dir_all(&opts.to).map_err(|e| Error::io(&opts.to, e))?;
    let root = fsx::open_root(&opts.to).map_err(|e| Error::io(&opts.to, e))?;
    let source = match plan.kept.take() {
        Some(kept) => Source::Kept(kept.into_iter()),
        None => Source::Again(entries(&manifest)?, &opts.paths),
    };

    let (mut tx, mut rx, mut transport) = session.split();
    let snap = info.name;
    let links = &plan.links;
    let progress = Progress::writing(opts.progress, plan.files, plan.bytes);
    let progress = &progress;
    let result = std::thread::scope(|scope| -> Result<RestoreReport> {
        let (hand, queue) = sync_channel(QUEUE);
        let requester = scope.spawn(move || {
            let job = Job {
                opts,
                snapshot: snap,
                outside: &links.outside,
            };
            request_all(source, &job, &mut tx, hand)
        });
        let existing = if opts.overwrite {
            Existing::Replace
        } else {
            Existing::KeepDirs
        };
        let written = write_tree(
            snap,
            queue,
            opts,
            links,
            TreeWriter::new(root, existing)
                .apply_owners(fsx::is_root())
                .apply_xattrs(true),
            (&mut rx, progress),
        );
        progress.finish();
        if written.is_err() {
            // The request thread may be blocked sending to a helper that is
            // blocked sending to us: cut the session so both give up.
            transport.kill();
        }
        let requested = requester
            .join()
            .unwrap_or_else(|_| Err(Error::Unexpected("the request thread panicked".into())));
        let report = written?;
        requested?;
        Ok(report)
    });
    match result {
        Ok(report) => {
            transport.finish()?;
            Ok(report)
        }
        Err(e) => Err(crate::transport::fail(transport.as_mut(), e)),
    }
}

/// The entries to write, in walk order: those the plan kept, or the
/// manifest's wanted ones read again.
enum Source<'a> {
    Kept(std::vec::IntoIter<Entry>),
    Again(ManifestReader<PosReader>, &'a [RelPath]),
}

impl Iterator for Source<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        match self {
            Source::Kept(kept) => kept.next().map(Ok),
            Source::Again(reader, paths) => loop {
                match next(reader) {
                    Ok(Some(e)) if !wanted(&e.path, paths) => continue,
                    Ok(Some(e)) => return Some(Ok(e)),
                    Ok(None) => return None,
                    Err(e) => return Some(Err(e)),
                }
            },
        }
    }
}

/// Entries the request thread may hand on ahead of the writer.
const QUEUE: usize = 1024;

/// Requests sent at most before they are flushed to the helper.
const FLUSH_EVERY: u32 = 64;

/// What the request thread needs to know.
struct Job<'a> {
    opts: &'a RestoreOptions,
    snapshot: SnapshotName,
    outside: &'a HashMap<RelPath, (u64, Hash)>,
}

/// The request side: asks the helper for the content of each entry that
/// has one and hands every entry on to the writer, in the same order. It
/// stops when the writer has stopped.
fn request_all(
    source: Source<'_>,
    job: &Job<'_>,
    tx: &mut Sender,
    hand: SyncSender<Result<Entry>>,
) -> Result<()> {
    let mut unflushed = 0u32;
    for item in source {
        if let Ok(e) = &item
            && content_of(e, &job.opts.paths, job.outside).is_some()
        {
            tx.send(&Request::GetFile {
                set: job.opts.set.clone(),
                snapshot: job.snapshot,
                path: e.path.clone(),
            })?;
            unflushed += 1;
            if unflushed >= FLUSH_EVERY {
                tx.flush()?;
                unflushed = 0;
            }
        }
        let failed = item.is_err();
        match hand.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(item)) => {
                // The writer may be waiting for an answer to a request
                // still queued here: send them before waiting for room.
                tx.flush()?;
                unflushed = 0;
                if hand.send(item).is_err() {
                    return Ok(());
                }
            }
            Err(TrySendError::Disconnected(_)) => return Ok(()),
        }
        if failed {
            break;
        }
    }
    tx.flush()
}

/// The writing side: entries from the request thread in walk order, the
/// contents from the helper in the same order.
struct Writer<'a> {
    opts: &'a RestoreOptions,
    links: &'a Links,
    tree: TreeWriter,
    rx: &'a mut Receiver,
    progress: &'a Progress,
    /// The target, for the hard links made in it.
    written: DirCursor,
    /// First names of hard links restored by this run.
    restored: HashSet<RelPath>,
}

fn write_tree(
    snapshot: SnapshotName,
    queue: Queue<Result<Entry>>,
    opts: &RestoreOptions,
    links: &Links,
    tree: TreeWriter,
    (rx, progress): (&mut Receiver, &Progress),
) -> Result<RestoreReport> {
    let mut report = RestoreReport {
        snapshot,
        entries: 0,
        bytes: 0,
        problems: Vec::new(),
    };
    let root = fsx::open_root(&opts.to).map_err(|e| Error::io(&opts.to, e))?;
    let mut w = Writer {
        opts,
        links,
        tree,
        rx,
        progress,
        written: DirCursor::new(root),
        restored: HashSet::new(),
    };
    for item in queue {
        let e = item?;
        match w.entry(&e)? {
            Ok(bytes) => {
                report.bytes += bytes;
                if requested(&e.path, &opts.paths) {
                    report.entries += 1;
                }
                if e.is_file() && links.targets.contains(&e.path) {
                    w.restored.insert(e.path.clone());
                }
            }
            Err(problem) => report.problems.push(format!(
                "{}: {problem}",
                offsnap_protocol::text::shown(w.local(&e.path).as_os_str().as_encoded_bytes())
            )),
        }
        report.problems.extend(w.tree.take_notes());
    }
    w.tree.finish().map_err(|e| Error::io(&opts.to, e))?;
    Ok(report)
}

impl Writer<'_> {
    fn local(&self, p: &RelPath) -> PathBuf {
        self.opts.to.join(p.as_os_str())
    }

    /// Writes one entry; the bytes of content written, or this entry's
    /// own problem. The outer error (the filesystem, the connection) ends
    /// the restore.
    fn entry(&mut self, e: &Entry) -> Result<std::result::Result<u64, String>> {
        let opts = self.opts;
        let paths = &opts.paths;
        let content = content_of(e, paths, &self.links.outside);
        let fs = |r: std::io::Result<()>| -> Result<std::result::Result<u64, String>> {
            r.map(|()| Ok(0))
                .map_err(|err| Error::io(opts.to.join(e.path.as_os_str()), err))
        };
        let not_linked = |target: &RelPath| {
            Ok(Err(format!(
                "not restored: its other name {target} was not restored"
            )))
        };
        match (&e.kind, content) {
            (_, Some((size, hash))) => {
                self.progress.current(&self.local(&e.path));
                let got = receive_file(&mut self.tree, (self.rx, self.progress), e, size, hash)?;
                self.progress.file_done();
                Ok(got.map(|()| size))
            }
            (EntryKind::Dir, _) => fs(self.tree.dir(&e.path, &e.meta, &e.xattrs)),
            (EntryKind::Symlink { target }, _) => fs(self.tree.symlink(&e.path, target, &e.meta)),
            // Only to a first name restored by this run: never to whatever
            // else is at that path in the target.
            (EntryKind::HardLink { target }, _)
                if !wanted(target, paths) || !self.restored.contains(target) =>
            {
                not_linked(target)
            }
            (EntryKind::HardLink { target }, _) => {
                match self.tree.hard_link(&mut self.written, target, &e.path) {
                    Ok(_) => Ok(Ok(0)),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => not_linked(target),
                    Err(err) => Err(Error::io(self.local(&e.path), err)),
                }
            }
            (EntryKind::Device { .. }, _) if !fsx::is_root() => {
                Ok(Err("not restored: only root can make device nodes".into()))
            }
            (kind, _) if kind.is_special() => match self.tree.node(&e.path, kind, &e.meta) {
                Ok(()) => Ok(Ok(0)),
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                    Ok(Err(format!("not restored: {err}")))
                }
                Err(err) => Err(Error::io(self.local(&e.path), err)),
            },
            (kind, _) => Ok(Err(format!(
                "not restored: a {} without content",
                kind.word()
            ))),
        }
    }
}

/// Receives one file's content into the tree. The outer error ends the
/// restore (connection trouble); the inner one is this file's problem.
fn receive_file(
    tree: &mut TreeWriter,
    (rx, progress): (&mut Receiver, &Progress),
    e: &Entry,
    size: u64,
    hash: Hash,
) -> Result<std::result::Result<(), String>> {
    let mut sink = Some(
        tree.begin_file(&e.path)
            .map_err(|err| Error::io(e.path.as_os_str(), err))?,
    );
    let mut failure: Option<String> = None;
    loop {
        match rx.recv() {
            Ok(Response::FileData(data)) => {
                if let Some(s) = &mut sink {
                    if s.written() + data.len() as u64 > size {
                        failure = Some("the stored copy is larger than recorded".into());
                    } else if let Err(err) = s.write(&data) {
                        return Err(Error::io(e.path.as_os_str(), err));
                    } else {
                        progress.read(data.len() as u64);
                    }
                }
            }
            Ok(Response::FileEnd) => break,
            Ok(other) => return Err(Error::Unexpected(format!("{other:?}"))),
            Err(Error::Remote(r)) => {
                failure = Some(r.message);
                break;
            }
            Err(other) => return Err(other),
        }
        if failure.is_some() {
            // Keep reading this file's chunks, but stop writing them.
            if let Some(s) = sink.take() {
                tree.abort_file(s);
            }
        }
    }
    let Some(s) = sink else {
        return Ok(Err(failure.unwrap_or_default()));
    };
    if let Some(f) = failure {
        tree.abort_file(s);
        return Ok(Err(f));
    }
    if s.written() != size || s.hash() != hash {
        tree.abort_file(s);
        return Ok(Err(
            "the stored copy does not match its recorded hash (run `offsnap verify`); not restored"
                .into(),
        ));
    }
    tree.finish_file(s, &e.meta, &e.xattrs)
        .map_err(|err| Error::io(e.path.as_os_str(), err))?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use offsnap_protocol::Meta;
    use offsnap_protocol::manifest::ManifestWriter;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        let meta = Meta::with_mode(0o644);
        Entry::new(RelPath::new(path).unwrap(), kind, meta)
    }

    fn file(path: &str, n: u8) -> Entry {
        entry(
            path,
            EntryKind::File {
                size: u64::from(n),
                hash: Hash([n; 32]),
            },
        )
    }

    /// Kept or read again, the entries written are the same: the wanted
    /// ones in walk order, the folder above the requested one included;
    /// a hard link to a first name outside gets that name's content.
    #[test]
    fn entries_kept_or_read_again_are_the_same() {
        let all = vec![
            entry("a", EntryKind::Dir),
            file("a/a.txt", 1),
            entry("a/b", EntryKind::Dir),
            file("a/b/f1", 2),
            file("a/b/f2", 3),
            entry(
                "a/b/link",
                EntryKind::HardLink {
                    target: RelPath::new("a/a.txt").unwrap(),
                },
            ),
            file("a/c.txt", 4),
            file("x", 5),
        ];
        let mut w = ManifestWriter::new(tempfile::tempfile().unwrap()).unwrap();
        for e in &all {
            w.push(e).unwrap();
        }
        let (manifest, _, _) = w.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let opts = RestoreOptions {
            set: SetName::new("t").unwrap(),
            snapshot: Which::parse("latest").unwrap(),
            to: dir.path().join("missing"),
            paths: vec![RelPath::new("a/b").unwrap()],
            overwrite: false,
            progress: false,
        };
        let info = SnapshotInfo {
            name: "2026-01-01T000000Z".parse().unwrap(),
            manifest_hash: Hash([0; 32]),
            manifest_len: 0,
        };
        let kept = plan(&manifest, &info, &opts, None, KEEP_BYTES).unwrap();
        let again = plan(&manifest, &info, &opts, None, 0).unwrap();
        assert!(again.kept.is_none());
        let kept_entries = kept.kept.unwrap();
        let read: Vec<Entry> = Source::Again(entries(&manifest).unwrap(), &opts.paths)
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(kept_entries, read);
        let names: Vec<String> = read.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(names, ["a", "a/b", "a/b/f1", "a/b/f2", "a/b/link"]);
        let counted = read
            .iter()
            .filter(|e| requested(&e.path, &opts.paths))
            .count();
        assert_eq!(counted, 4, "the folder above a/b is not counted");
        let first = RelPath::new("a/a.txt").unwrap();
        assert_eq!(kept.links.outside.get(&first), Some(&(1, Hash([1; 32]))));
        assert_eq!(again.links.outside, kept.links.outside);
        // f1, f2, and the link restored as a file of a.txt's content.
        assert_eq!((kept.files, kept.bytes), (3, 2 + 3 + 1));
        assert_eq!((again.files, again.bytes), (kept.files, kept.bytes));
        assert!(kept.links.targets.contains(&first));
    }

    /// A requested path that is not in the snapshot is refused.
    #[test]
    fn a_missing_path_is_refused() {
        let mut w = ManifestWriter::new(tempfile::tempfile().unwrap()).unwrap();
        w.push(&file("x", 1)).unwrap();
        let (manifest, _, _) = w.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let opts = RestoreOptions {
            set: SetName::new("t").unwrap(),
            snapshot: Which::parse("latest").unwrap(),
            to: dir.path().join("missing"),
            paths: vec![RelPath::new("y").unwrap()],
            overwrite: false,
            progress: false,
        };
        let info = SnapshotInfo {
            name: "2026-01-01T000000Z".parse().unwrap(),
            manifest_hash: Hash([0; 32]),
            manifest_len: 0,
        };
        let refused = plan(&manifest, &info, &opts, None, KEEP_BYTES);
        assert!(matches!(refused, Err(Error::Usage(m)) if m.contains("not in snapshot")));
    }
}
