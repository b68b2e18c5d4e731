//! Listing what a destination holds, and pruning it.

use offsnap_protocol::{Policy, PruneDecision, Request, Response, SetName, SnapshotInfo};

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
