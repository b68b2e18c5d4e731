//! Naming a new snapshot from the helper's clock.
//!
//! Names are times, and retention ages snapshots by them, so a name must
//! never run far ahead of the clock. When the clock is not after the
//! newest snapshot (two runs in one second, or a clock set back) the new
//! one is named a second after the newest, but only while that stays
//! within [`MAX_LEAD`] of the clock: a client committing empty snapshots
//! in a loop would otherwise push every name further into the future, and
//! make the owner's `prune --keep-within` take recent snapshots for old
//! ones. Beyond the bound the backup is refused until the clock catches up.

use offsnap_protocol::{SetName, SnapshotName};

use crate::error::Error;

/// How far (seconds) a new snapshot's name may be ahead of the clock.
pub const MAX_LEAD: i64 = 5;

/// The name of a new snapshot of `set` at `now`, after `newest`.
pub fn name_after(
    set: &SetName,
    now: jiff::Timestamp,
    newest: Option<SnapshotName>,
) -> Result<SnapshotName, Error> {
    let name = SnapshotName::from_timestamp(now);
    let Some(newest) = newest.filter(|n| name <= *n) else {
        return Ok(name);
    };
    let bumped = newest.next();
    let lead = bumped.timestamp().as_second() - now.as_second();
    if lead > MAX_LEAD {
        return Err(Error::Refused(format!(
            "set {set}: the newest snapshot, {newest}, is {}s ahead of this host's clock ({name}); a new one would be named after it, further ahead than the {MAX_LEAD}s allowed: try again once the clock has passed {newest} (or check the clock)",
            lead - 1
        )));
    }
    crate::say::note(&format!(
        "note: set {set}: the newest snapshot, {newest}, is not older than the clock ({name}); naming the new one {bumped}"
    ));
    Ok(bumped)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_never_run_more_than_the_bound_ahead_of_the_clock() {
        let set = SetName::new("t").unwrap();
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut newest = None;
        let mut made = 0;
        for _ in 0..100 {
            match name_after(&set, now, newest) {
                Ok(n) => {
                    assert!(n.timestamp().as_second() - now.as_second() <= MAX_LEAD);
                    newest = Some(n);
                    made += 1;
                }
                Err(e) => assert!(e.to_string().contains("ahead of this host's clock"), "{e}"),
            }
        }
        assert_eq!(made, MAX_LEAD + 1);
        // A clock after the newest names by the clock.
        let later = now + jiff::SignedDuration::from_secs(60);
        assert_eq!(
            name_after(&set, later, newest).ok(),
            Some(SnapshotName::from_timestamp(later))
        );
    }
}
