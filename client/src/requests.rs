//! Typed requests to the helper: listing what a destination holds, pruning, sizes, verifying.

use offsnap_protocol::{
    Finding, Policy, PruneDecision, Request, Response, SetName, SnapshotInfo, SnapshotName,
    SnapshotStats, VerifyProgress, VerifySummary,
};

use crate::error::{Error, Result};
use crate::session::Session;

/// The complete snapshots of a set, oldest first.
pub fn snapshots(session: &mut Session, set: &SetName) -> Result<Vec<SnapshotInfo>> {
    match session.call(&Request::ListSnapshots { set: set.clone() })? {
        Response::Snapshots(s) => Ok(s),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

/// Applies a retention policy (or with `dry_run` only decides); returns
/// each snapshot with the rules that keep it (none: removed).
pub fn prune(
    session: &mut Session,
    set: &SetName,
    policy: &Policy,
    dry_run: bool,
) -> Result<Vec<PruneDecision>> {
    match session.call(&Request::Prune {
        set: set.clone(),
        policy: policy.clone(),
        dry_run,
    })? {
        Response::Pruned(d) => Ok(d),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

/// Per-snapshot sizes and changes, oldest first.
pub fn stats(session: &mut Session, set: &SetName) -> Result<Vec<SnapshotStats>> {
    match session.call(&Request::Stats { set: set.clone() })? {
        Response::Stats(s) => Ok(s),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

/// What `verify` asks of the helper, and what it calls as the answers come.
pub struct Verify<F, P> {
    /// One snapshot, or `None` for all.
    pub snapshot: Option<SnapshotName>,
    /// The helper's read limit, bytes per second.
    pub read_limit: Option<u64>,
    /// Called for each finding.
    pub found: F,
    /// Called with each progress report.
    pub progress: P,
}

/// Verifies one snapshot (or all), calling back as the helper reports.
pub fn verify<F: FnMut(&Finding), P: FnMut(&VerifyProgress)>(
    session: &mut Session,
    set: &SetName,
    mut v: Verify<F, P>,
) -> Result<VerifySummary> {
    session.tx.send(&Request::Verify {
        set: set.clone(),
        snapshot: v.snapshot,
        read_limit: v.read_limit,
    })?;
    session.tx.flush()?;
    loop {
        match session.rx.recv()? {
            Response::Finding(f) => (v.found)(&f),
            Response::VerifyProgress(p) => (v.progress)(&p),
            Response::Verified(s) => return Ok(s),
            other => return Err(Error::Unexpected(format!("{other:?}"))),
        }
    }
}
