//! A retention policy as it travels: which snapshots to keep. The helper
//! applies it with its own clock.

use serde::{Deserialize, Serialize};

/// How long, in seconds (durations are counted in whole seconds).
pub type Seconds = i64;

/// Which snapshots to keep; everything no rule keeps is pruned. The newest
/// snapshot is always kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Keep every snapshot younger than this.
    pub keep_within: Option<Seconds>,
    /// Keep the newest N snapshots.
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    pub keep_hourly: Option<u32>,
    /// … days.
    pub keep_daily: Option<u32>,
    /// … ISO weeks.
    pub keep_weekly: Option<u32>,
    /// … months.
    pub keep_monthly: Option<u32>,
    /// … years.
    pub keep_yearly: Option<u32>,
    /// Keep the newest snapshot of each hour within this duration.
    pub keep_within_hourly: Option<Seconds>,
    /// … of each day within this duration.
    pub keep_within_daily: Option<Seconds>,
    /// … of each week within this duration.
    pub keep_within_weekly: Option<Seconds>,
    /// … of each month within this duration.
    pub keep_within_monthly: Option<Seconds>,
}

impl Policy {
    /// The default: keep 30 days.
    pub fn thirty_days() -> Policy {
        Policy {
            keep_within: Some(30 * 86_400),
            ..Policy::default()
        }
    }

    /// Whether no rule is set (which would keep only the newest snapshot).
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// Why the helper keeps a snapshot, or that it removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneDecision {
    /// The snapshot.
    pub name: crate::SnapshotName,
    /// The rules that keep it; empty when it is removed.
    pub kept_by: Vec<String>,
}
