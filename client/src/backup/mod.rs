//! A backup run on the client, as a pipeline of named stages:
//!
//! - [`plan`]: what becomes of each scanned entry, against the base
//!   snapshot's manifest walked alongside (the one place that decides);
//! - [`signatures`]: a first pass asking for the signatures of the files
//!   that travel as deltas, listing the base's contents in the
//!   [`stored`] content index, and counting what is to be read;
//! - `pipeline`: the second pass, handing each planned entry to its stage;
//! - `files`: storing one new or changed file (link by content, whole,
//!   delta, retried when it changes while read);
//! - [`send`]: what goes on the wire (base ops merged, whole files,
//!   windowed deltas, the compression policy, the manifest mirror);
//! - `repair`: files the helper asks for again, after a sync;
//! - [`report`]: what the run counted;
//! - [`dry`]: the same plan with nothing sent (`backup --dry-run`).
//!
//! Here: the run's frame. The sources are resolved once and the base
//! manifest fetched once; ops stream to the helper without waiting for
//! replies while a second thread reads its answers.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use offsnap_protocol::manifest::ManifestWriter;
use offsnap_protocol::{CommitStats, Request, Response, Resume, SetName, SnapshotName};

use crate::error::{Error, Result};
use crate::manifests;
use crate::progress::Progress;
use crate::scan::{self, Source};
use crate::session::{Receiver, Sender, Session};

pub mod dry;
mod files;
mod pipeline;
pub mod plan;
mod repair;
pub mod report;
pub mod send;
pub mod signatures;
pub mod stored;
#[cfg(test)]
mod testing;

pub use plan::Change;
pub use report::{BackupReport, Count, Tally};

use pipeline::Run;
use signatures::{Answer, Signatures};
use stored::ContentIndex;

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
    /// Whether changed files may travel as deltas. Not to a destination
    /// served in this process: a rolling checksum saves network, and there
    /// is none; such a file is sent whole, and the helper, where the
    /// filesystem clones, writes only the blocks that differ from its base.
    pub deltas: bool,
}

/// What the helper said when the run began.
struct Begun {
    snapshot: SnapshotName,
    base: Option<File>,
    resume: Resume,
    may_prune: bool,
}

/// Asks the helper to begin a run, and fetches the base manifest.
fn begin(session: &mut Session, set: &SetName) -> Result<Begun> {
    let (snapshot, base, resume) = match session.call(&Request::BeginBackup { set: set.clone() })? {
        Response::BackupStarted {
            snapshot,
            base,
            resume,
        } => (snapshot, base, resume),
        other => return Err(Error::Unexpected(format!("{other:?}"))),
    };
    let base = match &base {
        Some(info) => Some(manifests::fetch_file(session, set, info)?),
        None => None,
    };
    let may_prune = !session
        .remote_features
        .iter()
        .any(|f| f == "append-only" || f == "read-only");
    Ok(Begun {
        snapshot,
        base,
        resume,
        may_prune,
    })
}

/// Runs a backup over an open session, then closes it.
pub fn backup(mut session: Session, opts: &BackupOptions) -> Result<BackupReport> {
    let started = Instant::now();
    let sources = scan::resolve_sources(&opts.sources)?;
    let begun = match begin(&mut session, &opts.set) {
        Ok(b) => b,
        Err(e) => return Err(session.fail(e)),
    };
    let offered = (begun.resume.finished.len(), begun.resume.partial.len());
    let (tx, rx, mut transport) = session.split();
    let streamed = match stream(tx, rx, &sources, opts, &begun).map_err(|b| *b) {
        Ok(v) => v,
        Err((e @ Error::Interrupted(_), tx)) => {
            // The helper sees the end of its input, keeps what arrived,
            // and ends by itself.
            drop(tx);
            let _ = transport.finish();
            return Err(e);
        }
        Err((e, tx)) => {
            drop(tx);
            return Err(crate::transport::fail(transport.as_mut(), e));
        }
    };
    let Streamed {
        tally,
        sent,
        mirror,
        committed: (snap, stats),
        wire: (wire_sent, wire_received),
        mut tx,
        rx,
    } = streamed;
    // Cache the new snapshot's manifest if ours came out the same.
    if let (Some(mirror), Some(want)) = (mirror, stats.manifest_hash)
        && let Ok((w, hash, _)) = mirror.finish()
        && hash == want
        && let Ok(tmp) = w.into_inner()
    {
        manifests::keep(tmp, &hash);
    }
    let (pruned, prune_error) = match (&opts.prune, rx, begun.may_prune) {
        (Some(policy), Some(mut rx), true) => prune(&mut tx, &mut rx, &opts.set, policy),
        _ => (Vec::new(), None),
    };
    drop(tx);
    transport.finish()?;
    debug_assert_eq!(snap, begun.snapshot);
    Ok(BackupReport {
        snapshot: Some(snap),
        dry_run: false,
        stats,
        tally,
        sent,
        offered,
        wire_sent,
        wire_received,
        elapsed: started.elapsed().as_secs_f64(),
        pruned,
        prune_error,
    })
}

/// What streaming the run to the helper came to.
struct Streamed {
    tally: Tally,
    sent: send::Sent,
    mirror: Option<send::Mirror>,
    committed: (SnapshotName, CommitStats),
    /// Bytes sent and received.
    wire: (u64, u64),
    tx: Sender,
    rx: Option<Receiver>,
}

/// Streams the run: ops from this thread, answers read on another, until
/// the helper commits. On failure the sender is handed back (dropped by
/// the caller so that the helper sees the end of its input).
fn stream(
    mut tx: Sender,
    mut rx: Receiver,
    sources: &[Source],
    opts: &BackupOptions,
    begun: &Begun,
) -> std::result::Result<Streamed, Box<(Error, Option<Sender>)>> {
    std::thread::scope(|scope| {
        // Unbounded: the receiver must never block on the sender, which may
        // itself be blocked sending to the helper.
        let (sig_tx, sig_rx) = mpsc::channel();
        let receiver = scope.spawn(move || {
            let r = receive(&mut rx, sig_tx);
            (r.map(|r| (r, rx.bytes())), rx)
        });
        let sent = send_all(&mut tx, sources, opts, begun, sig_rx).and_then(|s| {
            tx.send(&Request::Commit)?;
            tx.flush()?;
            Ok(s)
        });
        // Dropped early when sending fails, so the helper sees the end of
        // the stream and reports why it stopped instead of waiting for more.
        let mut tx = Some(tx);
        if sent.is_err() {
            if let Some(t) = tx.as_mut() {
                // What was sent whole before an interruption is kept.
                let _ = t.flush();
            }
            tx = None;
        }
        let (received, rx) = match receiver.join() {
            Ok((r, rx)) => (r, Some(rx)),
            Err(_) => (
                Err(Error::Unexpected("the receiving thread panicked".into())),
                None,
            ),
        };
        match (sent, received, tx) {
            (Ok((tally, sent, mirror)), Ok(((snap, stats, warnings), wire_received)), Some(tx)) => {
                let mut tally = tally;
                tally.problems.extend(warnings);
                Ok(Streamed {
                    wire: (tx.bytes(), wire_received),
                    tally,
                    sent,
                    mirror,
                    committed: (snap, stats),
                    tx,
                    rx,
                })
            }
            // An interruption is told as such, whatever the helper made of
            // the end of its input.
            (Err(e @ Error::Interrupted(_)), _, tx) => Err(Box::new((e, tx))),
            // The helper's own account of a failure beats our broken pipe.
            (_, Err(e @ Error::Remote(_)), tx) => Err(Box::new((e, tx))),
            (Err(e), _, tx) | (_, Err(e), tx) => Err(Box::new((e, tx))),
            (Ok(_), Ok(_), None) => Err(Box::new((Error::Unexpected("no sender".into()), None))),
        }
    })
}

/// Prunes after a run, over the same session; a failure is reported, not
/// returned: the snapshot stands.
fn prune(
    tx: &mut Sender,
    rx: &mut Receiver,
    set: &SetName,
    policy: &offsnap_protocol::Policy,
) -> (Vec<offsnap_protocol::PruneDecision>, Option<String>) {
    let req = Request::Prune {
        set: set.clone(),
        policy: policy.clone(),
        dry_run: false,
    };
    let answer = tx
        .send(&req)
        .and_then(|()| tx.flush())
        .and_then(|()| rx.recv());
    match answer {
        Ok(Response::Pruned(d)) => (d, None),
        Ok(other) => (Vec::new(), Some(format!("unexpected answer {other:?}"))),
        Err(e) => (Vec::new(), Some(e.to_string())),
    }
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

/// Both passes over the sources.
fn send_all(
    tx: &mut Sender,
    sources: &[Source],
    opts: &BackupOptions,
    begun: &Begun,
    answers: mpsc::Receiver<Answer>,
) -> Result<(Tally, send::Sent, Option<send::Mirror>)> {
    let base = begun.base.as_ref();
    let mut index = ContentIndex::default();
    // What an interrupted run finished counts as stored; what it began
    // is a delta base.
    for (hash, size) in &begun.resume.finished {
        index.insert(hash, *size)?;
    }
    let resumed: HashSet<_> = begun.resume.finished.iter().map(|(h, _)| *h).collect();
    let partials = begun.resume.partial.iter().cloned().collect();
    let progress = Progress::new(opts.show);
    // The first pass asks for signatures, lists the base's contents, and
    // counts what is to be read for the progress bar; without any of
    // these purposes it is skipped.
    let pending = if base.is_some() || !begun.resume.partial.is_empty() || opts.show.progress {
        let found = signatures::first_pass(
            tx,
            sources,
            &opts.scan,
            base,
            (&partials, opts.deltas),
            (&mut index, &progress),
        )?;
        progress.start_sending(found.files, found.to_read);
        found.pending
    } else {
        Default::default()
    };
    let mirror = manifests::cache_dir()
        .and_then(|_| manifests::cache_temp().ok())
        .and_then(|t| ManifestWriter::new(std::io::BufWriter::new(t)).ok());
    let mut run = Run {
        wire: send::Wire::new(tx, mirror)?,
        index,
        resumed,
        partials,
        sigs: Signatures::new(pending, answers),
        resend: Default::default(),
        links: Default::default(),
        progress: &progress,
        tally: Tally::default(),
        current: None,
    };
    let walked = run.walk(sources, &opts.scan, base);
    progress.finish();
    if let Err(Error::Interrupted(_)) = walked {
        return Err(Error::Interrupted(run.kept()));
    }
    walked?;
    let sent = run.wire.sent;
    Ok((run.tally, sent, run.wire.into_mirror()))
}

#[cfg(test)]
mod tests {
    use super::testing::{Shared, path};
    use super::*;
    use offsnap_protocol::{ErrorKind, FrameWriter, PruneDecision, RemoteError};

    /// A receiver of `responses`, as the helper would frame them.
    fn answering(responses: &[Response]) -> Receiver {
        let mut w = FrameWriter::new(Vec::new());
        for r in responses {
            w.write(r).expect("frame");
        }
        let bytes = w.into_inner().expect("frames");
        Receiver::over(Box::new(std::io::Cursor::new(bytes)))
    }

    fn snapshot() -> SnapshotName {
        "2026-11-26T014929Z".parse().expect("name")
    }

    #[test]
    fn answers_reach_the_sending_side_in_order_until_the_commit() {
        let mut rx = answering(&[
            Response::Signature(Some(vec![1])),
            Response::Warning("s/x: left out".into()),
            Response::Resend { path: path("s/a") },
            Response::Synced,
            Response::Committed {
                snapshot: snapshot(),
                stats: CommitStats::default(),
            },
        ]);
        let (tx, answers) = mpsc::channel();
        let (snap, _, warnings) = receive(&mut rx, tx).expect("committed");
        assert_eq!(snap, snapshot());
        assert_eq!(warnings, ["s/x: left out"]);
        let got: Vec<String> = answers.try_iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(
            got,
            [
                "Signature(Some([1]))".to_string(),
                format!("Resend({:?})", path("s/a")),
                "Synced".to_string()
            ]
        );
    }

    #[test]
    fn an_answer_out_of_place_or_an_error_ends_the_run() {
        let mut rx = answering(&[Response::Pruned(Vec::new())]);
        let (tx, _answers) = mpsc::channel();
        assert!(matches!(receive(&mut rx, tx), Err(Error::Unexpected(_))));
        let mut rx = answering(&[Response::Error(RemoteError {
            kind: ErrorKind::Io,
            message: "no space".into(),
        })]);
        let (tx, _answers) = mpsc::channel();
        assert!(matches!(receive(&mut rx, tx), Err(Error::Remote(e)) if e.message == "no space"));
    }

    #[test]
    fn a_prune_after_the_run_reports_its_failure_instead_of_failing() {
        let set = SetName::new("t").expect("set");
        let policy = offsnap_protocol::Policy::default();
        let kept = PruneDecision {
            name: snapshot(),
            kept_by: vec!["last #1".into()],
        };
        let out = Shared::default();
        let mut tx = Sender::over(Box::new(out.clone()));
        let mut rx = answering(&[Response::Pruned(vec![kept.clone()])]);
        assert_eq!(prune(&mut tx, &mut rx, &set, &policy), (vec![kept], None));
        assert!(matches!(
            out.requests()[..],
            [Request::Prune { dry_run: false, .. }]
        ));
        let mut rx = answering(&[Response::Error(RemoteError {
            kind: ErrorKind::Locked,
            message: "the set is locked".into(),
        })]);
        let (pruned, error) = prune(&mut tx, &mut rx, &set, &policy);
        assert!(pruned.is_empty());
        assert!(error.is_some_and(|e| e.contains("the set is locked")));
        let mut rx = answering(&[Response::Synced]);
        let (_, error) = prune(&mut tx, &mut rx, &set, &policy);
        assert!(error.is_some_and(|e| e.starts_with("unexpected answer")));
    }
}
