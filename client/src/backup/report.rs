//! The report stage: what a run counted, by category (entries new,
//! changed, metadata only, deleted, linked by content, skipped as cache;
//! files unchanged, sent whole, as deltas, reused from an interrupted run)
//! with their bytes, and the report a run ends with.

use std::collections::BTreeMap;

use offsnap_protocol::{CommitStats, PruneDecision, SnapshotName};

use super::plan::Change;
use super::send::Sent;

/// Entries of one category and the bytes of the files among them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Entries.
    pub entries: u64,
    /// Bytes of the regular files among them.
    pub bytes: u64,
}

/// What a run counted as it went.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Entries scanned.
    pub scanned: u64,
    /// Regular files among them.
    pub files: u64,
    /// Files unchanged since the base snapshot, hard-linked.
    pub linked: u64,
    /// New or changed files whose content was already on the host.
    pub linked_by_hash: u64,
    /// Further names of files stored under another name in the same run.
    pub hard_links: u64,
    /// Files sent again whole when the helper asked.
    pub resent: u64,
    /// Files sent whole.
    pub files_sent: u64,
    /// Bytes of the files sent whole.
    pub whole_bytes: u64,
    /// Files sent as deltas.
    pub delta_files: u64,
    /// Bytes of the files sent as deltas (their new sizes).
    pub delta_bytes: u64,
    /// Bytes of file content sent, whole or as deltas (before compression).
    pub content_bytes: u64,
    /// Files reused from what an interrupted run left.
    pub resumed_files: u64,
    /// Bytes reused from it.
    pub resumed_bytes: u64,
    /// Entries by change.
    pub changes: BTreeMap<Change, Count>,
    /// What could not be backed up, one line each.
    pub problems: Vec<String>,
}

impl Tally {
    /// Counts an entry's change; `bytes` is a file's size, else 0.
    pub fn change(&mut self, change: Change, bytes: u64) {
        let c = self.changes.entry(change).or_default();
        c.entries += 1;
        c.bytes += bytes;
    }

    /// The count of one change.
    pub fn of(&self, change: Change) -> Count {
        self.changes.get(&change).copied().unwrap_or_default()
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The new snapshot (a dry run: the one it would be based on, if any).
    pub snapshot: Option<SnapshotName>,
    /// Whether this was a dry run (nothing sent, nothing made).
    pub dry_run: bool,
    /// The helper's counters.
    pub stats: CommitStats,
    /// What the run counted.
    pub tally: Tally,
    /// What travelled.
    pub sent: Sent,
    /// What an interrupted run left that this run was offered: finished
    /// files and files begun.
    pub offered: (usize, usize),
    /// Bytes sent to the helper, framing included.
    pub wire_sent: u64,
    /// Bytes received from it.
    pub wire_received: u64,
    /// Seconds the run took.
    pub elapsed: f64,
    /// What the prune after the run decided (empty when it did not run).
    pub pruned: Vec<PruneDecision>,
    /// Why the prune after the run failed, if it did (the snapshot stands).
    pub prune_error: Option<String>,
}

impl BackupReport {
    /// Whether something was left out (the run is partial).
    pub fn is_partial(&self) -> bool {
        !self.tally.problems.is_empty()
    }

    /// What could not be backed up.
    pub fn problems(&self) -> &[String] {
        &self.tally.problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_counted_with_their_bytes() {
        let mut t = Tally::default();
        t.change(Change::New, 10);
        t.change(Change::New, 5);
        t.change(Change::Deleted, 0);
        assert_eq!(
            t.of(Change::New),
            Count {
                entries: 2,
                bytes: 15
            }
        );
        assert_eq!(t.of(Change::Deleted).entries, 1);
        assert_eq!(t.of(Change::Cache), Count::default());
    }
}
