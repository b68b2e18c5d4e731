//! `verify`: re-reads a set's snapshots and checks them against their
//! manifests. Each inode is hashed once, however many snapshots share it.
//! Reports entries that are missing, different (content, size, kind, mode,
//! mtime, symlink target) or not in the manifest, and damaged manifests.
//!
//! Its memory does not grow with the number of entries or the length of
//! their paths: the manifest is streamed twice, never held.
//!
//! - The first pass checks that every record decodes (a damaged manifest
//!   is one finding and nothing else, as before anything is compared) and
//!   notes the paths hard links name, in a [`DiskMap`].
//! - The second pass compares each entry with what is stored, in walk
//!   order, keeping open only the chain of directories above the entry.
//!   A directory's stored names are counted when the walk leaves it; only
//!   when there are more than the manifest's entries found in it are its
//!   names looked up (in batches, each against a fresh read of that
//!   directory's part of the manifest) to name the unexpected ones. Those
//!   findings come after the directory's other findings.
//! - What was hashed, by inode (for inodes with more than one link), and
//!   what the hard links' targets recorded, are [`DiskMap`]s too.
//!
//! How far it has got is reported as it goes ([`Note::Progress`]): the
//! totals, counted from the manifests first, then the files and bytes
//! checked about every 100 ms, within a large file too. A read limit
//! paces the reading so a check can leave the host's disk to others.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use offsnap_fs::cursor::DirCursor;
use offsnap_fs::fsx;
use offsnap_protocol::manifest::{self, ManifestReader};
use offsnap_protocol::{
    Entry, EntryKind, Finding, FindingKind, Hash, RelPath, SnapshotName, VerifyProgress,
    VerifySummary,
};
use rustix::fs::FileType;

use crate::disk_map::{DiskMap, Value};
use crate::error::{Context, Error};
use crate::set::SetDir;

/// Names of one directory looked up at a time when it holds unexpected ones.
const BATCH_NAMES: usize = 4096;

/// How often progress is reported.
const EVERY: Duration = Duration::from_millis(100);

/// What `verify` tells as it goes.
#[derive(Debug)]
pub enum Note {
    /// Something found wrong.
    Finding(Finding),
    /// How far it has got.
    Progress(VerifyProgress),
}

type Report<'r> = &'r mut dyn FnMut(Note) -> Result<(), Error>;

/// Checks `snapshots` of the set, reading at most `read_limit` bytes per
/// second, calling `report` for each finding and with its progress.
pub fn verify(
    set: &SetDir,
    snapshots: &[SnapshotName],
    read_limit: Option<u64>,
    mut report: impl FnMut(Note) -> Result<(), Error>,
) -> Result<VerifySummary, Error> {
    let (files_total, bytes_total) = totals(set, snapshots);
    let mut v = Verifier {
        sum: VerifySummary::default(),
        hashed: DiskMap::new().ctx("verify: a temporary file")?,
        buf: vec![0u8; 1 << 20],
        readable: !fsx::is_root(),
        meter: Meter::new(files_total, bytes_total, read_limit),
    };
    report(Note::Progress(v.meter.now()))?;
    for snap in snapshots {
        v.sum.snapshots += 1;
        let targets = match first_pass(set, snap)? {
            Ok(t) => t,
            Err(why) => {
                v.sum.findings += 1;
                report(Note::Finding(Finding {
                    snapshot: *snap,
                    path: Vec::new(),
                    kind: FindingKind::Manifest(why),
                }))?;
                continue;
            }
        };
        let root = set.open_snapshot(snap)?;
        let mut walk = Walk {
            v: &mut v,
            set,
            snap: *snap,
            report: &mut report,
            cursor: DirCursor::new(root),
            targets,
            open: Vec::new(),
            current: Vec::new(),
        };
        walk.run()?;
    }
    report(Note::Progress(v.meter.now()))?;
    Ok(v.sum)
}

/// The regular files (hard links included) and their recorded bytes in
/// the manifests of `snapshots`; a damaged manifest counts nothing, as
/// its entries are not checked.
fn totals(set: &SetDir, snapshots: &[SnapshotName]) -> (u64, u64) {
    let mut all = (0u64, 0u64);
    for snap in snapshots {
        let Ok(reader) = open_manifest(set, snap) else {
            continue;
        };
        let mut this = (0u64, 0u64);
        for e in reader {
            match e.map(|e| e.kind) {
                Ok(EntryKind::File { size, .. }) => this = (this.0 + 1, this.1 + size),
                Ok(EntryKind::HardLink { .. }) => this.0 += 1,
                Ok(_) => {}
                Err(_) => {
                    this = (0, 0);
                    break;
                }
            }
        }
        all = (all.0 + this.0, all.1 + this.1);
    }
    all
}

/// How far the check has got, when to say so, and the read limit's pace.
struct Meter {
    /// Files and bytes checked before the current file.
    at: VerifyProgress,
    /// Bytes of the current file read, counted up to `cap`, its recorded
    /// size (zero for a hard link: its bytes are its target's).
    in_file: u64,
    cap: u64,
    last: Instant,
    limit: Option<u64>,
    started: Instant,
    read: u64,
}

impl Meter {
    fn new(files_total: u64, bytes_total: u64, limit: Option<u64>) -> Meter {
        Meter {
            at: VerifyProgress {
                files_total,
                bytes_total,
                ..VerifyProgress::default()
            },
            in_file: 0,
            cap: 0,
            last: Instant::now(),
            limit: limit.map(|l| l.max(1)),
            started: Instant::now(),
            read: 0,
        }
    }

    /// Where the check is.
    fn now(&self) -> VerifyProgress {
        let mut p = self.at.clone();
        p.bytes += self.in_file.min(self.cap);
        p
    }

    /// Whether it is time to report; if so, the clock restarts.
    fn due(&mut self) -> bool {
        let due = self.last.elapsed() >= EVERY;
        if due {
            self.last = Instant::now();
        }
        due
    }

    /// A file of `size` recorded bytes at `path` is being checked.
    fn begin(&mut self, path: &[u8], size: u64) {
        self.at.path.clear();
        self.at.path.extend_from_slice(path);
        self.in_file = 0;
        self.cap = size;
    }

    /// The current file is checked, whatever was found.
    fn end(&mut self) {
        self.at.files += 1;
        self.at.bytes += self.cap;
        self.in_file = 0;
        self.cap = 0;
    }

    /// Counts `n` bytes read and sleeps until they are due under the limit.
    fn read(&mut self, n: u64) {
        self.in_file += n;
        self.read += n;
        if let Some(rate) = self.limit {
            let due = Duration::from_secs_f64(self.read as f64 / rate as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
    }
}

/// A stored file being hashed, counted (and paced) as it is read; a
/// failure to report stops the read and is kept in `failed`.
struct Metered<'m, 'r> {
    file: File,
    meter: &'m mut Meter,
    report: &'m mut Report<'r>,
    failed: Option<Error>,
}

/// Pieces read at a time under a read limit, so the pace stays smooth.
const PACED_PIECE: usize = 64 * 1024;

impl Read for Metered<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match self.meter.limit {
            Some(_) => buf.len().min(PACED_PIECE),
            None => buf.len(),
        };
        let n = self.file.read(&mut buf[..want])?;
        self.meter.read(n as u64);
        if self.meter.due()
            && let Err(e) = (self.report)(Note::Progress(self.meter.now()))
        {
            self.failed = Some(e);
            return Err(io::Error::other("verify: the report failed"));
        }
        Ok(n)
    }
}

/// Decodes every record; returns the hard links' targets (their recorded
/// content still unknown), or why the manifest is damaged.
fn first_pass(set: &SetDir, snap: &SnapshotName) -> Result<Result<DiskMap, String>, Error> {
    let reader = match open_manifest(set, snap) {
        Ok(r) => r,
        Err(why) => return Ok(Err(why)),
    };
    let mut targets = DiskMap::new().ctx("verify: a temporary file")?;
    for e in reader {
        match e {
            Ok(Entry {
                kind: EntryKind::HardLink { target },
                ..
            }) => targets
                .insert(&DiskMap::key(target.as_bytes()), &[0u8; 40])
                .ctx("verify: a temporary file")?,
            Ok(_) => {}
            Err(e) => return Ok(Err(e.to_string())),
        }
    }
    Ok(Ok(targets))
}

fn open_manifest(set: &SetDir, snap: &SnapshotName) -> Result<ManifestReader<File>, String> {
    let file = set.open_manifest(snap).map_err(|e| e.to_string())?;
    manifest::open_file(file).map_err(|e| e.to_string())
}

/// A recorded content as a [`DiskMap`] value (never all zero: that is a
/// target not recorded as a file).
fn content_value(size: u64, hash: &Hash) -> Value {
    let mut v = [0u8; 40];
    v[..8].copy_from_slice(&size.to_le_bytes());
    v[8..].copy_from_slice(&hash.0);
    v
}

fn content_of(v: &Value) -> Option<(u64, Hash)> {
    if v.iter().all(|b| *b == 0) {
        return None;
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&v[..8]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&v[8..]);
    Some((u64::from_le_bytes(size), Hash(hash)))
}

/// What lasts across the snapshots of one call.
struct Verifier {
    sum: VerifySummary,
    /// (device, inode) -> (size, hash) of what was read.
    hashed: DiskMap,
    buf: Vec<u8>,
    readable: bool,
    meter: Meter,
}

/// A directory the walk is in.
struct Open {
    /// Bytes of [`Walk::current`] that name it (0: the snapshot's root).
    len: usize,
    /// The record its children start at.
    first: u64,
    /// Manifest entries directly in it that are stored.
    present: u64,
}

/// The second pass over one snapshot.
struct Walk<'a, 'r> {
    v: &'a mut Verifier,
    set: &'a SetDir,
    snap: SnapshotName,
    report: Report<'r>,
    cursor: DirCursor,
    /// Hard links' targets -> their recorded content.
    targets: DiskMap,
    /// The directories above the entry, outermost first.
    open: Vec<Open>,
    /// The path of the innermost of them.
    current: Vec<u8>,
}

impl Walk<'_, '_> {
    fn found(&mut self, path: &[u8], kind: FindingKind) -> Result<(), Error> {
        self.v.sum.findings += 1;
        (self.report)(Note::Finding(Finding {
            snapshot: self.snap,
            path: path.to_vec(),
            kind,
        }))
    }

    fn run(&mut self) -> Result<(), Error> {
        let reader = match open_manifest(self.set, &self.snap) {
            Ok(r) => r,
            Err(why) => return self.found(b"", FindingKind::Manifest(why)),
        };
        self.open.push(Open {
            len: 0,
            first: 0,
            present: 0,
        });
        for (i, e) in (0u64..).zip(reader) {
            let e = match e {
                Ok(e) => e,
                Err(why) => return self.found(b"", FindingKind::Manifest(why.to_string())),
            };
            self.leave_until(e.path.as_bytes())?;
            self.entry(&e, i)?;
        }
        while let Some(level) = self.open.pop() {
            self.leave(level)?;
        }
        Ok(())
    }

    /// Leaves the directories that do not hold `path`.
    fn leave_until(&mut self, path: &[u8]) -> Result<(), Error> {
        while let Some(top) = self.open.last() {
            let len = top.len;
            if len == 0 || (path.starts_with(&self.current[..len]) && path.get(len) == Some(&b'/'))
            {
                return Ok(());
            }
            if let Some(level) = self.open.pop() {
                self.leave(level)?;
            }
        }
        Ok(())
    }

    /// Counts what is stored in the directory being left; names what is
    /// there unrecorded.
    fn leave(&mut self, level: Open) -> Result<(), Error> {
        let path = self.current_path(level.len)?;
        let shown = path.as_ref().map(|p| p.to_string()).unwrap_or_default();
        let dir = self.cursor.dir(path.as_ref()).ctx(&shown)?;
        let mut stored = 0u64;
        for ent in rustix::fs::Dir::read_from(dir)
            .map_err(io_err)
            .ctx(&shown)?
        {
            if !is_dot(ent.map_err(io_err).ctx(&shown)?.file_name().to_bytes()) {
                stored += 1;
            }
        }
        if stored > level.present {
            self.unexpected_in(path.as_ref(), level.first)?;
        }
        let outer = self.open.last().map_or(0, |o| o.len);
        self.current.truncate(outer);
        Ok(())
    }

    fn current_path(&self, len: usize) -> Result<Option<RelPath>, Error> {
        if len == 0 {
            return Ok(None);
        }
        RelPath::new(self.current[..len].to_vec())
            .map(Some)
            .map_err(|e| crate::error::io("verify", std::io::Error::other(e.to_string())))
    }

    /// Reports the names stored in `dir` that its part of the manifest
    /// (from record `first`) does not hold, in the order they are listed.
    fn unexpected_in(&mut self, dir: Option<&RelPath>, first: u64) -> Result<(), Error> {
        let shown = dir.map(|p| p.to_string()).unwrap_or_default();
        let fd = self
            .cursor
            .dir(dir)
            .and_then(|d| d.try_clone_to_owned())
            .ctx(&shown)?;
        let mut names = rustix::fs::Dir::read_from(&fd)
            .map_err(io_err)
            .ctx(&shown)?;
        loop {
            let mut batch = Vec::new();
            for ent in names.by_ref() {
                let name = ent
                    .map_err(io_err)
                    .ctx(&shown)?
                    .file_name()
                    .to_bytes()
                    .to_vec();
                if !is_dot(&name) {
                    batch.push(name);
                }
                if batch.len() == BATCH_NAMES {
                    break;
                }
            }
            if batch.is_empty() {
                return Ok(());
            }
            let mut unseen: HashSet<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            self.recorded_in(dir, first, &mut unseen)?;
            for name in &batch {
                if unseen.contains(name.as_slice()) {
                    let mut p = dir.map(|d| d.as_bytes().to_vec()).unwrap_or_default();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(name);
                    self.found(&p, FindingKind::Unexpected)?;
                }
            }
        }
    }

    /// Removes from `unseen` the names the manifest records directly in
    /// `dir`, whose entries start at record `first`.
    fn recorded_in(
        &self,
        dir: Option<&RelPath>,
        first: u64,
        unseen: &mut HashSet<&[u8]>,
    ) -> Result<(), Error> {
        let prefix = dir.map_or(0, |d| d.as_bytes().len() + 1);
        let reader = open_manifest(self.set, &self.snap)
            .map_err(|why| crate::error::io("verify", std::io::Error::other(why)))?;
        for e in reader.skip(first as usize) {
            let e = e.map_err(|e| crate::error::io("verify", std::io::Error::other(e)))?;
            let p = e.path.as_bytes();
            if let Some(d) = dir
                && !(p.starts_with(d.as_bytes()) && p.get(prefix - 1) == Some(&b'/'))
            {
                return Ok(());
            }
            if !p[prefix..].contains(&b'/') {
                unseen.remove(&p[prefix..]);
            }
        }
        Ok(())
    }

    /// Checks one entry, record `index` of the manifest, and counts it
    /// when it is a file; reports progress when due.
    fn entry(&mut self, e: &Entry, index: u64) -> Result<(), Error> {
        let size = match &e.kind {
            EntryKind::File { size, .. } => Some(*size),
            EntryKind::HardLink { .. } => Some(0),
            _ => None,
        };
        if let Some(size) = size {
            self.v.meter.begin(e.path.as_bytes(), size);
        }
        self.check(e, index)?;
        if size.is_some() {
            self.v.meter.end();
        }
        if self.v.meter.due() {
            (self.report)(Note::Progress(self.v.meter.now()))?;
        }
        Ok(())
    }

    /// Checks one entry, record `index` of the manifest.
    fn check(&mut self, e: &Entry, index: u64) -> Result<(), Error> {
        self.v.sum.entries += 1;
        let path = e.path.as_bytes();
        if let EntryKind::File { size, hash } = &e.kind
            && !self.targets.is_empty()
        {
            let key = DiskMap::key(path);
            if self.targets.get(&key).ctx("verify")?.is_some() {
                self.targets
                    .insert(&key, &content_value(*size, hash))
                    .ctx("verify")?;
            }
        }
        let Ok((dir, name)) = self.cursor.parent_of(&e.path) else {
            return self.found(path, FindingKind::Missing);
        };
        let Some(st) = fsx::lstat(dir, name).ctx(&e.path)? else {
            if !e.kind.is_special() {
                self.found(path, FindingKind::Missing)?;
            }
            return Ok(());
        };
        let parent_len = path.iter().rposition(|b| *b == b'/').unwrap_or(0);
        if let Some(top) = self.open.last_mut()
            && top.len == parent_len
        {
            top.present += 1;
        }
        self.compare(e, &st, index)
    }

    /// Compares an entry with what is stored at its path (`st`).
    fn compare(&mut self, e: &Entry, st: &rustix::fs::Stat, index: u64) -> Result<(), Error> {
        let path = e.path.as_bytes();
        let kind = fsx::file_type(st);
        let want = match e.kind {
            EntryKind::Dir => FileType::Directory,
            EntryKind::File { .. } | EntryKind::HardLink { .. } => FileType::RegularFile,
            EntryKind::Symlink { .. } => FileType::Symlink,
            EntryKind::Fifo | EntryKind::Socket | EntryKind::Device { .. } => {
                // Recorded only: nothing of the kind is made on the host.
                return self.found(path, FindingKind::Unexpected);
            }
        };
        if kind != want {
            return self.found(
                path,
                FindingKind::Changed(format!("is not a {}", e.kind.word())),
            );
        }
        if want != FileType::Symlink
            && (st.st_mode & 0o7777
                != fsx::stored_mode(e.meta.mode, want == FileType::Directory, self.v.readable)
                || (want == FileType::RegularFile
                    && (st.st_mtime, st.st_mtime_nsec as i64)
                        != (e.meta.mtime_sec, i64::from(e.meta.mtime_nsec))))
        {
            self.found(path, FindingKind::Changed("mode or mtime differ".into()))?;
        }
        match &e.kind {
            EntryKind::Dir => {
                self.current.clear();
                self.current.extend_from_slice(path);
                self.open.push(Open {
                    len: path.len(),
                    first: index + 1,
                    present: 0,
                });
                Ok(())
            }
            EntryKind::Symlink { target } => {
                let (dir, name) = self.cursor.parent_of(&e.path).ctx(&e.path)?;
                if fsx::read_link(dir, name).ctx(&e.path)? != *target {
                    self.found(path, FindingKind::Changed("points elsewhere".into()))?;
                }
                Ok(())
            }
            EntryKind::Fifo | EntryKind::Socket | EntryKind::Device { .. } => Ok(()),
            EntryKind::File { .. } | EntryKind::HardLink { .. } => self.content(e, st),
        }
    }

    /// Checks a regular file's content against what its entry (or, for a
    /// hard link, its target's) recorded.
    fn content(&mut self, e: &Entry, st: &rustix::fs::Stat) -> Result<(), Error> {
        let path = e.path.as_bytes();
        // A hard link holds its target's content (a copy when the inode
        // was at its link limit).
        let recorded = match &e.kind {
            EntryKind::HardLink { target } => self
                .targets
                .get(&DiskMap::key(target.as_bytes()))
                .ctx("verify")?
                .as_ref()
                .and_then(content_of),
            EntryKind::File { size, hash } => Some((*size, *hash)),
            _ => None,
        };
        let Some((size, hash)) = recorded else {
            return self.found(
                path,
                FindingKind::Manifest("a hard link to no recorded file".into()),
            );
        };
        let (n, got) = self.hash_inode(e, st)?;
        if n != size {
            self.found(
                path,
                FindingKind::Changed(format!("{n} bytes, {size} recorded")),
            )
        } else if got != hash {
            self.found(path, FindingKind::Changed("content differs".into()))
        } else {
            Ok(())
        }
    }

    /// The size and hash of the stored file, read once per inode.
    fn hash_inode(&mut self, e: &Entry, st: &rustix::fs::Stat) -> Result<(u64, Hash), Error> {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&st.st_dev.to_le_bytes());
        id[8..].copy_from_slice(&st.st_ino.to_le_bytes());
        let key = DiskMap::key(&id);
        // An inode with one link is met once.
        let shared = st.st_nlink > 1;
        if shared
            && let Some(v) = self.v.hashed.get(&key).ctx("verify")?
            && let Some(known) = content_of(&v)
        {
            return Ok(known);
        }
        let (dir, name) = self.cursor.parent_of(&e.path).ctx(&e.path)?;
        let file = fsx::open_file(dir, name).ctx(&e.path)?;
        let v = &mut *self.v;
        let mut metered = Metered {
            file,
            meter: &mut v.meter,
            report: &mut self.report,
            failed: None,
        };
        let hashed = fsx::hash_all(&mut metered, &mut v.buf);
        if let Some(failed) = metered.failed.take() {
            return Err(failed);
        }
        let (n, got) = hashed.ctx(&e.path)?;
        self.v.sum.inodes_hashed += 1;
        self.v.sum.bytes_hashed += n;
        if shared {
            self.v
                .hashed
                .insert(&key, &content_value(n, &got))
                .ctx("verify")?;
        }
        Ok((n, got))
    }
}

fn io_err(e: rustix::io::Errno) -> std::io::Error {
    e.into()
}

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}
