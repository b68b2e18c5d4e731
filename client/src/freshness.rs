//! `backup --if-older AGE`: skip the run when the set's newest snapshot is
//! younger than AGE. The answer comes from the set itself (its listed
//! snapshots, each one a committed manifest), not from a file on this
//! machine, so it is right whichever client made the last snapshot. A
//! frequent timer or cron line with it catches up after a laptop slept
//! or was off, without backing up more often than wanted.

use offsnap_protocol::{SetName, SnapshotName};

use crate::error::Result;
use crate::requests;
use crate::session::Session;

/// The newest snapshot of `set` and its age in seconds at `now`, if it is
/// younger than `max_age` seconds (then the run is not due).
pub fn recent(
    session: &mut Session,
    set: &SetName,
    max_age: i64,
    now: jiff::Timestamp,
) -> Result<Option<(SnapshotName, i64)>> {
    let snaps = requests::snapshots(session, set)?;
    Ok(snaps
        .iter()
        .map(|s| s.name)
        .max()
        .map(|n| (n, now.as_second() - n.timestamp().as_second()))
        .filter(|&(_, age)| age < max_age))
}

/// The session back when a backup is due, or `None` (the session closed,
/// and a note printed when `tell`) when the newest snapshot is recent.
pub fn due(
    mut session: Session,
    set: &SetName,
    max_age: i64,
    tell: bool,
) -> Result<Option<Session>> {
    match recent(&mut session, set, max_age, jiff::Timestamp::now()) {
        Ok(None) => Ok(Some(session)),
        Ok(Some((name, age))) => {
            session.close()?;
            if tell {
                eprintln!(
                    "offsnap: nothing to do: the newest snapshot of set {set}, {name}, is {} old (--if-older {})",
                    crate::output::ago(age),
                    crate::output::ago(max_age)
                );
            }
            Ok(None)
        }
        Err(e) => Err(session.fail(e)),
    }
}
