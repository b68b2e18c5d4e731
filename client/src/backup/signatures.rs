//! The signature stage. A first pass over a survey of the sources (the
//! `lstat` of every entry, the extended attributes only of the files large
//! enough to travel as deltas: see [`scan::Detail`]) and the base manifest
//! asks the helper for the signatures of the old versions of the files
//! that will travel as deltas, so that they stream back while the second
//! pass sends everything else; the same pass lists the base's contents in
//! the content index and counts what is to be read. The second pass then
//! takes each signature as it reaches its file, and keeps the resend
//! requests that arrive among them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::sync::mpsc;

use offsnap_protocol::{Entry, EntryKind, RelPath, Request};

use super::plan::{self, Base};
use super::stored::ContentIndex;
use crate::error::{Error, Result};
use crate::interrupt;
use crate::manifests;
use crate::progress::Progress;
use crate::scan::{self, ScanKind, Source};
use crate::session::Sender;

/// What the receiving side hands the sending side, in the helper's order.
#[derive(Debug)]
pub enum Answer {
    /// The signature asked for.
    Signature(Option<Vec<u8>>),
    /// A delta rebuilt the wrong content: send the file again, whole.
    Resend(RelPath),
    /// Every op sent before the `Sync` is applied.
    Synced,
}

/// What the first pass found.
#[derive(Debug, Default)]
pub struct FirstPass {
    /// Paths whose signatures were asked for, in walk order.
    pub pending: VecDeque<RelPath>,
    /// Bytes of the files to read.
    pub to_read: u64,
    /// Files to read.
    pub files: u64,
}

/// The first pass: asks for signatures (without `deltas`, only for files
/// begun by an interrupted run) and counts the files to read; lists every
/// file of the base in `index`. A small file whose extended attributes
/// alone changed is not counted (the survey does not read them): the
/// counts are the display's, the second pass decides.
pub fn first_pass(
    tx: &mut Sender,
    sources: &[Source],
    opts: &scan::ScanOptions,
    base: Option<&File>,
    (partials, deltas): (&HashMap<RelPath, u64>, bool),
    (index, progress): (&mut ContentIndex, &Progress),
) -> Result<FirstPass> {
    let mut old = Base::new(base.map(manifests::entries).transpose()?)?;
    let mut found = FirstPass::default();
    let mut inodes = HashSet::new();
    for item in scan::scan_with(sources, opts, scan::Detail::Survey(plan::DELTA_MIN))?.flatten() {
        interrupt::check()?;
        let ScanKind::File(size) = item.kind else {
            if item.kind != ScanKind::SkippedCache {
                progress.scanned();
            }
            continue;
        };
        progress.scanned();
        // A further name of a file travels as a hard link.
        if let Some(id) = item.inode
            && !inodes.insert(id)
        {
            continue;
        }
        let o = old.find(&item.path, &mut |e| list(index, &e))?;
        if let Some(o) = &o {
            list(index, o)?;
        }
        match &o {
            Some(o) if plan::looks_unchanged(o, &item) => continue,
            // A file begun by an interrupted run resumes as a delta even
            // in-process: only the rest of it is written.
            o if (deltas || partials.contains_key(&item.path))
                && plan::delta_base(o.as_ref(), partials.get(&item.path).copied(), size)
                    .is_some() =>
            {
                tx.send(&Request::Signature {
                    path: item.path.clone(),
                })?;
                found.pending.push_back(item.path);
            }
            _ => {}
        }
        found.to_read += size;
        found.files += 1;
    }
    old.rest(&mut |e| list(index, &e))?;
    tx.flush()?;
    Ok(found)
}

/// Lists a base entry's content in the index.
fn list(index: &mut ContentIndex, e: &Entry) -> Result<()> {
    if let EntryKind::File { hash, size } = e.kind {
        index.insert(&hash, size)?;
    }
    Ok(())
}

/// The signatures on their way, in the order they were asked for.
pub struct Signatures {
    pending: VecDeque<RelPath>,
    answers: mpsc::Receiver<Answer>,
    /// Files the helper asked for again, as the requests arrived.
    pub resends: Vec<RelPath>,
}

impl Signatures {
    /// The queue of `pending` signatures arriving on `answers`.
    pub fn new(pending: VecDeque<RelPath>, answers: mpsc::Receiver<Answer>) -> Signatures {
        Signatures {
            pending,
            answers,
            resends: Vec::new(),
        }
    }

    /// The helper's next answer.
    fn answer(&mut self) -> Result<Answer> {
        self.answers
            .recv()
            .map_err(|_| Error::Transport("the helper stopped answering".into()))
    }

    /// The signature asked for `path` in the first pass, if any; skips
    /// (and drops) those of paths the second pass went past.
    pub fn for_path(&mut self, path: &RelPath) -> Result<Option<Vec<u8>>> {
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

    /// Waits for the answer to a `Sync`, keeping the resend requests
    /// before it (and dropping signatures no file took).
    pub fn synced(&mut self) -> Result<()> {
        loop {
            match self.answer()? {
                Answer::Signature(_) => {}
                Answer::Resend(p) => self.resends.push(p),
                Answer::Synced => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> RelPath {
        RelPath::new(p.as_bytes().to_vec()).expect("path")
    }

    #[test]
    fn each_file_takes_its_own_signature_and_skipped_ones_are_dropped() {
        let (tx, rx) = mpsc::channel();
        let pending: VecDeque<RelPath> = ["s/a", "s/b", "s/c"].iter().map(|p| path(p)).collect();
        let mut sigs = Signatures::new(pending, rx);
        tx.send(Answer::Signature(Some(vec![1]))).expect("send");
        tx.send(Answer::Resend(path("s/0"))).expect("send");
        tx.send(Answer::Signature(Some(vec![2]))).expect("send");
        tx.send(Answer::Signature(None)).expect("send");
        tx.send(Answer::Resend(path("s/1"))).expect("send");
        tx.send(Answer::Synced).expect("send");
        assert_eq!(sigs.for_path(&path("s/0")).expect("answer"), None);
        assert_eq!(sigs.for_path(&path("s/a")).expect("answer"), Some(vec![1]));
        // `s/b` was left out of the walk: its signature is dropped.
        assert_eq!(sigs.for_path(&path("s/c")).expect("answer"), None);
        assert_eq!(sigs.for_path(&path("s/d")).expect("answer"), None);
        sigs.synced().expect("sync");
        assert_eq!(sigs.resends, [path("s/0"), path("s/1")]);
    }

    #[test]
    fn a_helper_gone_is_an_error_not_a_hang() {
        let (tx, rx) = mpsc::channel();
        let mut sigs = Signatures::new([path("s/a")].into(), rx);
        drop(tx);
        assert!(sigs.for_path(&path("s/a")).is_err());
    }
}
