//! What the stages' unit tests share: a source tree in a temporary
//! directory, base manifests made by hand from its entries, a wire kept in
//! memory and the requests read back from it, and a run over them.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use offsnap_fs::fsx;
use offsnap_protocol::manifest::ManifestWriter;
use offsnap_protocol::{Entry, EntryKind, FrameReader, Hash, Op, RelPath, Request};

use super::pipeline::Run;
use super::send::Wire;
use super::signatures::{Answer, Signatures};
use super::stored::ContentIndex;
use crate::progress::{Itemize, Progress, Show};
use crate::scan::{self, ScanItem, Source};
use crate::session::Sender;

/// A path in a snapshot.
pub fn path(p: &str) -> RelPath {
    RelPath::new(p.as_bytes().to_vec()).expect("path")
}

/// A display that shows nothing.
pub fn hidden() -> Progress {
    Progress::new(Show {
        progress: false,
        itemize: Itemize::No,
    })
}

/// A source directory `s` in a temporary directory.
pub struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    /// An empty source.
    pub fn new() -> Tree {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir(dir.path().join("s")).expect("source");
        Tree { dir }
    }

    /// Where `rel` (a path in the snapshot, `s/...`) is on disk.
    pub fn local(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file.
    pub fn write(&self, rel: &str, content: &[u8]) {
        std::fs::write(self.local(rel), content).expect("write");
    }

    /// The source, resolved.
    pub fn sources(&self) -> Vec<Source> {
        scan::resolve_sources(&[self.local("s")]).expect("sources")
    }

    /// What a scan of the source yields, in walk order.
    pub fn scanned(&self) -> Vec<ScanItem> {
        scan::scan(&self.sources(), &Default::default())
            .expect("scan")
            .map(|r| r.expect("scanned"))
            .collect()
    }

    /// The scanned item at `rel`.
    pub fn item(&self, rel: &str) -> ScanItem {
        let want = path(rel);
        self.scanned()
            .into_iter()
            .find(|i| i.path == want)
            .expect("scanned item")
    }

    /// The record of `rel` as it is on disk now (a file's hash is of its
    /// content).
    pub fn entry(&self, rel: &str) -> Entry {
        let local = self.local(rel);
        let md = std::fs::symlink_metadata(&local).expect("metadata");
        let kind = if md.is_dir() {
            EntryKind::Dir
        } else {
            let content = std::fs::read(&local).expect("read");
            EntryKind::File {
                size: content.len() as u64,
                hash: Hash::from(blake3::hash(&content)),
            }
        };
        Entry {
            path: path(rel),
            kind,
            meta: fsx::meta_of_metadata(&md),
            xattrs: Vec::new(),
        }
    }
}

/// A file's record with another content (hash `h` repeated) and size.
pub fn other(mut e: Entry, size: u64, h: u8) -> Entry {
    e.kind = EntryKind::File {
        size,
        hash: Hash([h; 32]),
    };
    e
}

/// A base manifest holding `entries` (in walk order).
pub fn manifest(entries: &[Entry]) -> File {
    let mut w = ManifestWriter::new(Vec::new()).expect("writer");
    for e in entries {
        w.push(e).expect("push");
    }
    let (bytes, _, _) = w.finish().expect("finish");
    let mut f = tempfile::tempfile().expect("temporary file");
    f.write_all(&bytes).expect("write");
    f.rewind().expect("rewind");
    f
}

/// A stream kept in memory, readable after the sender is gone.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::ErrorKind::Other)?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    /// The requests written so far.
    pub fn requests(&self) -> Vec<Request> {
        let bytes = self.0.lock().expect("bytes").clone();
        let mut r = FrameReader::new(&bytes[..]);
        std::iter::from_fn(|| r.read::<Request>().ok()).collect()
    }

    /// The ops written so far, data pieces left out.
    pub fn ops(&self) -> Vec<Op> {
        self.requests()
            .into_iter()
            .filter_map(|r| match r {
                Request::Op(op) => Some(op),
                _ => None,
            })
            .filter(|op| !matches!(op, Op::Data(_) | Op::DataZstd(_) | Op::DeltaPiece { .. }))
            .collect()
    }
}

/// Runs `f` on a run whose wire is kept in memory, the helper's answers
/// (to `pending` signature requests) given in advance; returns what `f`
/// made and the stream.
pub fn with_run<T>(
    pending: &[&str],
    answers: Vec<Answer>,
    f: impl FnOnce(&mut Run<'_>) -> T,
) -> (T, Shared) {
    let out = Shared::default();
    let mut tx = Sender::over(Box::new(out.clone()));
    let progress = hidden();
    let (answer_tx, answer_rx) = mpsc::channel();
    for a in answers {
        answer_tx.send(a).expect("answer");
    }
    let pending: VecDeque<RelPath> = pending.iter().map(|p| path(p)).collect();
    let made = {
        let mut run = Run {
            wire: Wire::new(&mut tx, None).expect("wire"),
            index: ContentIndex::default(),
            resumed: Default::default(),
            partials: Default::default(),
            sigs: Signatures::new(pending, answer_rx),
            resend: Default::default(),
            links: Default::default(),
            progress: &progress,
            tally: Default::default(),
            current: None,
        };
        let made = f(&mut run);
        run.wire.flush_base().expect("flush");
        made
    };
    tx.flush().expect("flush");
    (made, out)
}
