//! A backup run on the client: scan the sources, merge the scan with the
//! base snapshot's manifest, and stream ops to the helper without waiting
//! for replies; a second thread reads the helper's answers meanwhile.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Instant;

use offsnap_protocol::manifest::ManifestReader;
use offsnap_protocol::{
    CommitStats, DATA_CHUNK, Entry, EntryKind, Hash, Meta, Op, Request, Response, SetName,
    SnapshotName,
};

use crate::error::{Error, Result};
use crate::manifests;
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
    /// Files sent whole.
    pub sent: u64,
    /// Bytes of file content sent.
    pub content_bytes: u64,
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
    let (snapshot, base) = match session.call(&Request::BeginBackup {
        set: opts.set.clone(),
    })? {
        Response::BackupStarted { snapshot, base } => (snapshot, base),
        other => return Err(Error::Unexpected(format!("{other:?}"))),
    };
    let base_manifest = match &base {
        Some(info) => Some(manifests::fetch(&mut session, &opts.set, info)?),
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
        let receiver = scope.spawn(move || {
            let r = receive(&mut rx);
            (r.map(|r| (r, rx.bytes())), rx)
        });
        let sent = match tx.as_mut() {
            Some(t) => send_all(t, &sources, base_manifest).and_then(|s| {
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
            (Ok((s, wire_sent)), Ok(((snap, stats), wire_received))) => {
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
        sent: sent.files_sent,
        content_bytes: sent.content_bytes,
        wire_sent,
        wire_received,
        elapsed: started.elapsed().as_secs_f64(),
        problems: sent.problems,
        pruned,
        prune_error,
    })
}

fn receive(rx: &mut Receiver) -> Result<(SnapshotName, CommitStats)> {
    match rx.recv()? {
        Response::Committed { snapshot, stats } => Ok((snapshot, stats)),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

#[derive(Default)]
struct SendTally {
    scanned: u64,
    files_sent: u64,
    content_bytes: u64,
    problems: Vec<String>,
}

/// Walks the base manifest alongside the scan.
struct Base {
    reader: Option<ManifestReader<File>>,
    next: Option<Entry>,
}

impl Base {
    fn new(reader: Option<ManifestReader<File>>) -> Result<Base> {
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
        while let Some(e) = &self.next {
            match e.path.walk_cmp(path) {
                std::cmp::Ordering::Less => self.advance()?,
                std::cmp::Ordering::Equal => {
                    let found = self.next.take();
                    self.advance()?;
                    return Ok(found);
                }
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }
}

fn send_all(
    tx: &mut Sender,
    sources: &[Source],
    base: Option<ManifestReader<File>>,
) -> Result<SendTally> {
    let mut base = Base::new(base)?;
    let mut tally = SendTally::default();
    let mut buf = vec![0u8; DATA_CHUNK];
    for res in scan::scan(sources) {
        let item = match res {
            Ok(item) => item,
            Err(p) => {
                tally
                    .problems
                    .push(format!("{}: {}", p.local.display(), p.message));
                continue;
            }
        };
        tally.scanned += 1;
        let old = base.find(&item.path)?;
        match &item.kind {
            ScanKind::Dir => tx.send(&Request::Op(Op::Entry(Entry {
                path: item.path.clone(),
                kind: EntryKind::Dir,
                meta: item.meta,
            })))?,
            ScanKind::Symlink(target) => tx.send(&Request::Op(Op::Entry(Entry {
                path: item.path.clone(),
                kind: EntryKind::Symlink {
                    target: target.clone(),
                },
                meta: item.meta,
            })))?,
            ScanKind::File(size) => match old {
                Some(old) if unchanged(&old, *size, &item.meta) => {
                    tx.send(&Request::Op(Op::Link(old)))?
                }
                _ => send_file(tx, &item, &mut buf, &mut tally)?,
            },
            ScanKind::Other(what) => tally.problems.push(format!(
                "{}: skipped, a {what} (not supported yet)",
                item.local.display()
            )),
        }
    }
    Ok(tally)
}

/// Whether a scanned file can be linked to the base entry.
fn unchanged(old: &Entry, size: u64, meta: &Meta) -> bool {
    matches!(old.kind, EntryKind::File { size: s, .. } if s == size) && old.meta == *meta
}

/// Sends a file's content, retrying when it changes while being read.
fn send_file(
    tx: &mut Sender,
    item: &ScanItem,
    buf: &mut [u8],
    tally: &mut SendTally,
) -> Result<()> {
    for _ in 0..READ_ATTEMPTS {
        match send_once(tx, item, buf)? {
            Read1::Sent(n) => {
                tally.files_sent += 1;
                tally.content_bytes += n;
                return Ok(());
            }
            Read1::Changed => continue,
            Read1::Failed(why) => {
                tally
                    .problems
                    .push(format!("{}: {why}", item.local.display()));
                return Ok(());
            }
        }
    }
    tally.problems.push(format!(
        "{}: kept changing while being read; not backed up",
        item.local.display()
    ));
    Ok(())
}

enum Read1 {
    Sent(u64),
    Changed,
    Failed(String),
}

fn send_once(tx: &mut Sender, item: &ScanItem, buf: &mut [u8]) -> Result<Read1> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&item.local);
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
    let meta = scan::meta_of(&before);
    tx.send(&Request::Op(Op::File {
        path: item.path.clone(),
        meta,
        size,
    }))?;
    let mut hasher = blake3::Hasher::new();
    let mut done = 0u64;
    while done < size {
        let want = buf.len().min((size - done) as usize);
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tx.send(&Request::Op(Op::Cancel))?;
                return Ok(Read1::Failed(e.to_string()));
            }
        };
        hasher.update(&buf[..n]);
        tx.send(&Request::Op(Op::Data(buf[..n].to_vec())))?;
        done += n as u64;
    }
    let after = file.metadata();
    let same = matches!(&after, Ok(md) if md.len() == size && scan::meta_of(md) == meta);
    if done != size || !same {
        tx.send(&Request::Op(Op::Cancel))?;
        return Ok(Read1::Changed);
    }
    tx.send(&Request::Op(Op::End {
        hash: Hash::from(hasher.finalize()),
    }))?;
    Ok(Read1::Sent(size))
}
