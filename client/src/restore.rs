//! Restoring: copy a snapshot (or some paths of it) out of the backup into
//! a local directory, with content, mode, mtime and symlinks as they were.
//!
//! The manifest says what to write; file contents are requested all at
//! once (a second thread sends the requests) and written as they arrive.
//! Every path comes from a validated manifest and is written through
//! directory handles that never follow symlinks, so nothing the helper
//! says can make the restore write outside the target.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;

use offsnap_fs::cursor::DirCursor;
use offsnap_fs::fsx;
use offsnap_fs::tree::{Existing, TreeWriter};
use offsnap_protocol::manifest::ManifestReader;
use offsnap_protocol::{
    Entry, EntryKind, Hash, RelPath, Request, Response, SetName, SnapshotInfo, SnapshotName,
};

use crate::error::{Error, Result};
use crate::manifests::{self, PosReader, entries};
use crate::session::{Receiver, Session};

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
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The snapshot restored from.
    pub snapshot: SnapshotName,
    /// Entries written.
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

fn wanted(path: &RelPath, paths: &[RelPath]) -> bool {
    paths.is_empty()
        || paths
            .iter()
            .any(|p| path.starts_with(p) || p.starts_with(path))
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
struct Links {
    /// First names of hard links, for their other names to link to.
    targets: HashSet<RelPath>,
    /// Size and hash of the first names not restored whose other names
    /// are: those names are restored as files of their own.
    outside: HashMap<RelPath, (u64, Hash)>,
}

/// One pass over the manifest for the hard links, and a second, only when
/// some first names are not restored, for their contents.
fn links(manifest: &File, paths: &[RelPath]) -> Result<Links> {
    let mut targets = HashSet::new();
    let mut needed = HashSet::new();
    let mut reader = entries(manifest)?;
    while let Some(e) = next(&mut reader)? {
        if let EntryKind::HardLink { target } = &e.kind {
            if link_outside(&e, paths) {
                needed.insert(target.clone());
            }
            targets.insert(target.clone());
        }
    }
    let mut outside = HashMap::new();
    if !needed.is_empty() {
        let mut reader = entries(manifest)?;
        while let Some(e) = next(&mut reader)? {
            if let EntryKind::File { size, hash } = e.kind
                && needed.contains(&e.path)
            {
                outside.insert(e.path, (size, hash));
            }
        }
    }
    Ok(Links { targets, outside })
}

fn next(r: &mut ManifestReader<PosReader>) -> Result<Option<Entry>> {
    r.next_entry()
        .map_err(|e| Error::Corrupt(format!("manifest: {e}")))
}

/// Restores over an open session, then closes it.
pub fn restore(mut session: Session, opts: &RestoreOptions) -> Result<RestoreReport> {
    let info = find_snapshot(&mut session, &opts.set, &opts.snapshot)?;
    let manifest = manifests::fetch_file(&mut session, &opts.set, &info)?;

    // Every requested path must exist in the snapshot.
    let mut found = vec![false; opts.paths.len()];
    let mut reader = entries(&manifest)?;
    while let Some(e) = next(&mut reader)? {
        for (i, p) in opts.paths.iter().enumerate() {
            found[i] |= e.path == *p;
        }
    }
    if let Some(i) = found.iter().position(|f| !f) {
        return Err(Error::Usage(format!(
            "{} is not in snapshot {}",
            opts.paths[i], info.name
        )));
    }

    std::fs::create_dir_all(&opts.to).map_err(|e| Error::io(&opts.to, e))?;
    let root = fsx::open_root(&opts.to).map_err(|e| Error::io(&opts.to, e))?;
    if !opts.overwrite {
        check_conflicts(&manifest, opts, &root)?;
    }

    let (mut tx, mut rx, mut transport) = session.split();
    let set = opts.set.clone();
    let snap = info.name;
    let links = links(&manifest, &opts.paths)?;
    let result = std::thread::scope(|scope| -> Result<RestoreReport> {
        let requests = entries(&manifest)?;
        let paths = &opts.paths;
        let outside = &links.outside;
        let requester = scope.spawn(move || -> Result<()> {
            let mut requests = requests;
            let mut n = 0u64;
            while let Some(e) = next(&mut requests)? {
                if content_of(&e, paths, outside).is_some() {
                    tx.send(&Request::GetFile {
                        set: set.clone(),
                        snapshot: snap,
                        path: e.path,
                    })?;
                    n += 1;
                    if n.is_multiple_of(64) {
                        tx.flush()?;
                    }
                }
            }
            tx.flush()
        });
        let existing = if opts.overwrite {
            Existing::Replace
        } else {
            Existing::KeepDirs
        };
        let root = root.try_clone().map_err(|e| Error::io(&opts.to, e))?;
        let written = write_tree(
            snap,
            &manifest,
            opts,
            &links,
            TreeWriter::new(root, existing)
                .apply_owners(fsx::is_root())
                .apply_xattrs(true),
            &mut rx,
        );
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

fn check_conflicts(
    manifest: &File,
    opts: &RestoreOptions,
    root: &std::os::fd::OwnedFd,
) -> Result<()> {
    let mut cursor = DirCursor::new(root.try_clone().map_err(|e| Error::io(&opts.to, e))?);
    let mut conflicts = Vec::new();
    let mut reader = entries(manifest)?;
    while let Some(e) = next(&mut reader)? {
        if !wanted(&e.path, &opts.paths) {
            continue;
        }
        let Ok((dir, name)) = cursor.parent_of(&e.path) else {
            continue;
        };
        let Ok(Some(st)) = fsx::lstat(dir, name) else {
            continue;
        };
        let is_dir = fsx::file_type(&st) == rustix::fs::FileType::Directory;
        if !(is_dir && e.kind == EntryKind::Dir) {
            conflicts.push(e.path.to_string());
            if conflicts.len() >= 10 {
                break;
            }
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "refusing to overwrite what already exists in {}: {}{} (restore elsewhere, or pass --overwrite)",
        opts.to.display(),
        conflicts.join(", "),
        if conflicts.len() >= 10 { ", …" } else { "" }
    )))
}

fn write_tree(
    snapshot: SnapshotName,
    manifest: &File,
    opts: &RestoreOptions,
    links: &Links,
    mut tree: TreeWriter,
    rx: &mut Receiver,
) -> Result<RestoreReport> {
    let mut report = RestoreReport {
        snapshot,
        entries: 0,
        bytes: 0,
        problems: Vec::new(),
    };
    let local = |p: &RelPath| opts.to.join(p.as_os_str());
    let root = fsx::open_root(&opts.to).map_err(|e| Error::io(&opts.to, e))?;
    let mut written = DirCursor::new(root);
    // First names of hard links restored by this run.
    let mut restored: HashSet<RelPath> = HashSet::new();
    let mut reader = entries(manifest)?;
    while let Some(e) = next(&mut reader)? {
        if !wanted(&e.path, &opts.paths) {
            continue;
        }
        let content = content_of(&e, &opts.paths, &links.outside);
        // A filesystem error ends the restore; a file's own problem does not.
        let fs = |r: std::io::Result<()>| -> Result<std::result::Result<(), String>> {
            r.map(Ok).map_err(|err| Error::io(local(&e.path), err))
        };
        let done = match (&e.kind, content) {
            (_, Some((size, hash))) => match receive_file(&mut tree, rx, &e, size, hash)? {
                Ok(()) => {
                    report.bytes += size;
                    Ok(())
                }
                Err(problem) => Err(problem),
            },
            (EntryKind::Dir, _) => fs(tree.dir(&e.path, &e.meta, &e.xattrs))?,
            (EntryKind::Symlink { target }, _) => fs(tree.symlink(&e.path, target, &e.meta))?,
            // Only to a first name restored by this run: never to whatever
            // else is at that path in the target.
            (EntryKind::HardLink { target }, _)
                if !wanted(target, &opts.paths) || !restored.contains(target) =>
            {
                Err(format!(
                    "not restored: its other name {target} was not restored"
                ))
            }
            (EntryKind::HardLink { target }, _) => {
                match tree.hard_link(&mut written, target, &e.path) {
                    Ok(_) => Ok(()),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(format!(
                        "not restored: its other name {target} was not restored"
                    )),
                    Err(err) => return Err(Error::io(local(&e.path), err)),
                }
            }
            (EntryKind::Device { .. }, _) if !fsx::is_root() => {
                Err("not restored: only root can make device nodes".into())
            }
            (kind, _) if kind.is_special() => match tree.node(&e.path, kind, &e.meta) {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                    Err(format!("not restored: {err}"))
                }
                Err(err) => return Err(Error::io(local(&e.path), err)),
            },
            (kind, _) => Err(format!("not restored: a {} without content", kind.word())),
        };
        match done {
            Ok(()) => {
                report.entries += 1;
                if e.is_file() && links.targets.contains(&e.path) {
                    restored.insert(e.path.clone());
                }
            }
            Err(problem) => report.problems.push(format!(
                "{}: {problem}",
                offsnap_protocol::text::shown(local(&e.path).as_os_str().as_encoded_bytes())
            )),
        }
        report.problems.extend(tree.take_notes());
    }
    tree.finish().map_err(|e| Error::io(&opts.to, e))?;
    Ok(report)
}

/// Receives one file's content into the tree. The outer error ends the
/// restore (connection trouble); the inner one is this file's problem.
fn receive_file(
    tree: &mut TreeWriter,
    rx: &mut Receiver,
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
