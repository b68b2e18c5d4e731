//! What the stages' tests share: a backup root in a temporary directory,
//! runs started on it one day apart, and committed snapshots read back.

#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::path::PathBuf;

use offsnap_protocol::{Entry, Hash, Meta, Op, RelPath, SetName};

use super::BackupRun;
use crate::set::Root;

/// A root with one set.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) root: Root,
    pub(crate) set: SetName,
    day: Cell<i64>,
}

/// A valid path.
pub(crate) fn path(p: &str) -> RelPath {
    RelPath::new(p.as_bytes().to_vec()).unwrap()
}

/// The metadata the tests' files have.
pub(crate) fn meta() -> Meta {
    Meta {
        mode: 0o644,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        mtime_sec: 1_700_000_000,
        mtime_nsec: 0,
    }
}

/// The ops that send `data` whole as the file `p`.
pub(crate) fn file_ops(p: &str, data: &[u8]) -> Vec<Op> {
    vec![
        Op::File {
            path: path(p),
            meta: meta(),
            size: data.len() as u64,
            xattrs: Vec::new(),
        },
        Op::Data(data.to_vec()),
        Op::End {
            hash: Hash::of(data),
        },
    ]
}

impl Fixture {
    /// An empty root.
    pub(crate) fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path(), false).unwrap();
        Fixture {
            dir,
            root,
            set: SetName::new("test").unwrap(),
            day: Cell::new(0),
        }
    }

    /// Starts a run, a day after the last one.
    pub(crate) fn start(&self) -> BackupRun {
        let day = self.day.get() + 1;
        self.day.set(day);
        let now = jiff::Timestamp::from_second(1_767_225_600 + day * 86_400).unwrap();
        BackupRun::start(&self.root, &self.set, now).unwrap().0
    }

    /// Commits a snapshot of files sent whole, in the order given.
    pub(crate) fn commit_files(&self, files: &[(&str, &[u8])]) -> PathBuf {
        let ops = files.iter().flat_map(|(p, data)| file_ops(p, data));
        self.commit_ops(ops.collect())
    }

    /// Commits a snapshot made of `ops`.
    pub(crate) fn commit_ops(&self, ops: Vec<Op>) -> PathBuf {
        let mut run = self.start();
        for op in ops {
            run.apply(op).unwrap();
        }
        self.commit(run)
    }

    /// Commits `run`; returns the snapshot's directory.
    pub(crate) fn commit(&self, run: BackupRun) -> PathBuf {
        let (name, _) = run.commit().unwrap();
        self.dir.path().join("test").join(name.to_string())
    }

    /// The newest snapshot's name.
    pub(crate) fn manifest_name(&self) -> String {
        let set = self.root.open_set(&self.set).unwrap();
        set.snapshots().unwrap().pop().unwrap().name.to_string()
    }

    /// The newest snapshot's manifest.
    pub(crate) fn manifest(&self) -> Vec<Entry> {
        let set = self.root.open_set(&self.set).unwrap();
        let newest = set.snapshots().unwrap().pop().unwrap();
        let file = set.open_manifest(&newest.name).unwrap();
        offsnap_protocol::manifest::open_file(file)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}
