//! Pruning a set by a retention policy: decide with the helper's clock,
//! then move each removed snapshot into the trash (one rename) and delete
//! it from there. An interrupted prune leaves every dated snapshot whole;
//! the next backup or prune empties the trash.

use offsnap_protocol::{Policy, PruneDecision, SetName};

use crate::error::Error;

use crate::set::Root;
use offsnap_protocol::retention::decide;

/// Applies `policy` to the set at time `now`; with `dry_run`, only decides.
pub fn prune(
    root: &Root,
    set: &SetName,
    policy: &Policy,
    now: jiff::Timestamp,
    dry_run: bool,
) -> Result<Vec<PruneDecision>, Error> {
    let set = root.open_set(set)?;
    let lock = if dry_run {
        None
    } else {
        let lock = set.lock("prune")?;
        set.clean_leftovers()?;
        Some(lock)
    };
    let names: Vec<_> = set.snapshots()?.into_iter().map(|s| s.name).collect();
    let decisions = decide(&names, now, policy);
    if lock.is_some() {
        for d in decisions.iter().filter(|d| d.kept_by.is_empty()) {
            set.remove_snapshot(&d.name)?;
        }
        set.empty_trash()?;
    }
    Ok(decisions)
}
