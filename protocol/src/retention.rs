//! A retention policy: which snapshots to keep, as it travels and as the
//! helper decides it with its own clock. Pure: no I/O, no clock of its own.
//!
//! Rules, each naming why it keeps a snapshot:
//! - the newest snapshot is always kept;
//! - `keep_within D`: every snapshot younger than D;
//! - `keep_last N`: the newest N;
//! - `keep_hourly/daily/weekly/monthly/yearly N`: as borg does, walking
//!   from newest to oldest, the newest snapshot of each period, until N
//!   periods were kept by the rule (periods whose newest snapshot an
//!   earlier rule keeps do not count); if fewer periods exist, the oldest
//!   snapshot is kept too;
//! - `keep_within_hourly/daily/weekly/monthly D`: as restic does, the
//!   newest snapshot of each period among the snapshots younger than D.
//!
//! Periods are UTC calendar periods (weeks are ISO weeks), like the names.
//! Ages do not count stretches without any snapshot that are longer than
//! the longest age rule (and than four times the usual interval): a laptop
//! away for weeks (newest snapshot older than the window, or just one new
//! snapshot after a long gap) comes back to its history, which then ages
//! only while backups run again.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::SnapshotName;

#[cfg(feature = "cli")]
mod args;
#[cfg(feature = "cli")]
pub use args::PolicyArgs;

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

/// Parses a duration such as `30d`, `12h`, `2w`, `6m` (months of 30 days),
/// `1y` (365 days), or combinations like `1y6m`.
pub fn parse_duration(s: &str) -> Result<Seconds, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 30d, 12h, 2w, 6m, 1y)");
    let mut total: Seconds = 0;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: Seconds = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            'm' => 30 * 86_400,
            'y' => 365 * 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !num.is_empty() || total <= 0 {
        return Err(bad());
    }
    Ok(total)
}

#[derive(Clone, Copy)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    fn word(self) -> &'static str {
        match self {
            Period::Hour => "hourly",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
            Period::Year => "yearly",
        }
    }

    fn key(self, t: Timestamp) -> String {
        let f = match self {
            Period::Hour => "%Y-%m-%dT%H",
            Period::Day => "%Y-%m-%d",
            Period::Week => "%G-W%V",
            Period::Month => "%Y-%m",
            Period::Year => "%Y",
        };
        t.strftime(f).to_string()
    }
}

fn show_duration(s: Seconds) -> String {
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s => format!("{s}s"),
    }
}

/// Decides, for `snapshots` (any order), which to keep under `policy` at
/// time `now`. Returns decisions oldest first.
pub fn decide(snapshots: &[SnapshotName], now: Timestamp, policy: &Policy) -> Vec<PruneDecision> {
    let mut snaps: Vec<SnapshotName> = snapshots.to_vec();
    snaps.sort();
    snaps.dedup();
    // Newest first while deciding.
    snaps.reverse();
    let mut kept: Vec<Vec<String>> = vec![Vec::new(); snaps.len()];
    let windows = [
        policy.keep_within,
        policy.keep_within_hourly,
        policy.keep_within_daily,
        policy.keep_within_weekly,
        policy.keep_within_monthly,
    ];
    let longest = windows.iter().flatten().max().copied();
    let ages = ages(&snaps, now, longest.map(|w| w.max(4 * median_gap(&snaps))));
    if let Some(d) = policy.keep_within {
        for (k, a) in kept.iter_mut().zip(&ages) {
            if *a < d {
                k.push(format!("within {}", show_duration(d)));
            }
        }
    }
    if let Some(n) = policy.keep_last {
        keep_last(&mut kept, n);
    }
    for (n, period) in [
        (policy.keep_hourly, Period::Hour),
        (policy.keep_daily, Period::Day),
        (policy.keep_weekly, Period::Week),
        (policy.keep_monthly, Period::Month),
        (policy.keep_yearly, Period::Year),
    ] {
        if let Some(n) = n.filter(|n| *n > 0) {
            keep_per_period(&snaps, &mut kept, n, period);
        }
    }
    for (d, period) in [
        (policy.keep_within_hourly, Period::Hour),
        (policy.keep_within_daily, Period::Day),
        (policy.keep_within_weekly, Period::Week),
        (policy.keep_within_monthly, Period::Month),
    ] {
        if let Some(d) = d {
            keep_per_period_within(&snaps, &ages, &mut kept, d, period);
        }
    }
    finish(snaps, kept)
}

/// `keep_last`: the newest `n` snapshots that no earlier rule keeps (as
/// borg counts them).
fn keep_last(kept: &mut [Vec<String>], n: u32) {
    let mut count = 0;
    for k in kept.iter_mut() {
        if count == n {
            break;
        }
        if k.is_empty() {
            count += 1;
            k.push(format!("last #{count}"));
        }
    }
}

/// `keep_hourly` and the like: the newest snapshot of each of the newest
/// `n` periods that hold one no earlier rule keeps (`snaps` newest first).
fn keep_per_period(snaps: &[SnapshotName], kept: &mut [Vec<String>], n: u32, period: Period) {
    let mut last: Option<String> = None;
    let mut count = 0u32;
    for (i, s) in snaps.iter().enumerate() {
        let key = period.key(s.timestamp());
        if last.as_ref() == Some(&key) {
            continue;
        }
        last = Some(key);
        if kept[i].is_empty() {
            count += 1;
            kept[i].push(format!("{} #{count}", period.word()));
            if count == n {
                break;
            }
        }
    }
    // As borg: too few periods, so the oldest snapshot stays too.
    if count < n
        && let Some(k) = kept.last_mut()
        && k.is_empty()
    {
        k.push(format!("{} (oldest)", period.word()));
    }
}

/// `keep_within_hourly` and the like: the newest snapshot of each period
/// among those younger than `d` (`snaps` and `ages` newest first).
fn keep_per_period_within(
    snaps: &[SnapshotName],
    ages: &[Seconds],
    kept: &mut [Vec<String>],
    d: Seconds,
    period: Period,
) {
    let mut last: Option<String> = None;
    for (i, s) in snaps.iter().enumerate() {
        if ages[i] >= d {
            break;
        }
        let key = period.key(s.timestamp());
        if last.as_ref() != Some(&key) {
            kept[i].push(format!("{} within {}", period.word(), show_duration(d)));
            last = Some(key);
        }
    }
}

/// The median time between consecutive snapshots (newest first), 0 if
/// there are fewer than two.
fn median_gap(snaps: &[SnapshotName]) -> Seconds {
    let mut gaps: Vec<Seconds> = snaps
        .windows(2)
        .map(|w| w[0].timestamp().as_second() - w[1].timestamp().as_second())
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or(0)
}

/// Each snapshot's age (newest first), not counting stretches without any
/// snapshot longer than `gap` (the longest age window, and at least four
/// times the usual interval): time a laptop spent away does not age its
/// history, so the first backup after six weeks away prunes nothing the
/// last backup before it kept. Names later than `now` count as `now`.
fn ages(snaps: &[SnapshotName], now: Timestamp, gap: Option<Seconds>) -> Vec<Seconds> {
    let mut out = Vec::with_capacity(snaps.len());
    let mut newer = now.as_second();
    let mut age: Seconds = 0;
    for s in snaps {
        // A name ahead of the clock is no younger than now: names pushed
        // into the future must not age what comes before them.
        let t = s.timestamp().as_second().min(now.as_second());
        let step = (newer - t).max(0);
        if gap.is_none_or(|g| step <= g) {
            age += step;
        }
        out.push(age);
        newer = t;
    }
    out
}

fn finish(mut snaps: Vec<SnapshotName>, mut kept: Vec<Vec<String>>) -> Vec<PruneDecision> {
    // The newest is never removed, whatever the rules say.
    if let Some(first) = kept.first_mut()
        && first.is_empty()
    {
        first.push("newest".into());
    }
    snaps.reverse();
    kept.reverse();
    snaps
        .into_iter()
        .zip(kept)
        .map(|(name, kept_by)| PruneDecision { name, kept_by })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn at(secs: i64) -> SnapshotName {
        SnapshotName::from_timestamp(Timestamp::from_second(T0 + secs).expect("valid"))
    }

    fn kept(snaps: &[SnapshotName], now: i64, p: &Policy) -> Vec<SnapshotName> {
        let now = Timestamp::from_second(T0 + now).expect("valid");
        decide(snaps, now, p)
            .into_iter()
            .filter(|d| !d.kept_by.is_empty())
            .map(|d| d.name)
            .collect()
    }

    fn hourly(days: i64) -> Vec<SnapshotName> {
        (0..days * 24).map(|h| at(h * 3600)).collect()
    }

    #[test]
    fn names_ahead_of_the_clock_do_not_age_older_snapshots() {
        let p = Policy {
            keep_within: Some(180),
            ..Policy::default()
        };
        // An honest snapshot 10 s old, then 200 names pushed ahead.
        let mut snaps = vec![at(-10)];
        snaps.extend((0..200).map(at));
        assert!(kept(&snaps, 0, &p).contains(&at(-10)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("1y6m"), Ok(365 * 86_400 + 180 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        for bad in ["", "30", "d", "-1d", "3x", "0d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_policy_keeps_exactly_the_last_30_days() {
        let snaps = hourly(40);
        let now = 40 * 86_400 - 3600; // right at the newest
        let k = kept(&snaps, now, &Policy::thirty_days());
        let expected: Vec<_> = snaps
            .iter()
            .filter(|s| (T0 + now) - s.timestamp().as_second() < 30 * 86_400)
            .copied()
            .collect();
        assert_eq!(k, expected);
        assert_eq!(k.len(), 30 * 24);
    }

    #[test]
    fn away_for_six_weeks_keeps_everything() {
        let snaps = hourly(20);
        let now = 20 * 86_400 + 42 * 86_400;
        assert_eq!(kept(&snaps, now, &Policy::thirty_days()), snaps);
        let with_gfs = Policy {
            keep_within: Some(30 * 86_400),
            keep_daily: Some(3),
            ..Policy::default()
        };
        assert_eq!(kept(&snaps, now, &with_gfs), snaps);
    }

    #[test]
    fn the_first_backup_after_time_away_keeps_the_history() {
        let mut snaps: Vec<_> = (0..5).map(|d| at(d * 86_400)).collect();
        snaps.push(at(50 * 86_400));
        assert_eq!(kept(&snaps, 50 * 86_400, &Policy::thirty_days()), snaps);
        // After 30 more days of daily backups, the old history has aged out.
        let mut later = snaps.clone();
        later.extend((51..=80).map(|d| at(d * 86_400)));
        let k = kept(&later, 80 * 86_400, &Policy::thirty_days());
        assert_eq!(k.first(), Some(&at(51 * 86_400)));
    }

    #[test]
    fn keep_last_counts_only_what_others_leave_as_borg_does() {
        let snaps: Vec<_> = (0..20).map(|h| at(h * 3600)).collect();
        let p = Policy {
            keep_within: Some(5 * 3600 + 1),
            keep_last: Some(3),
            ..Policy::default()
        };
        // 6 within the window (hours 14..=19) + 3 more.
        assert_eq!(kept(&snaps, 19 * 3600, &p).len(), 9);
    }

    #[test]
    fn the_newest_is_always_kept() {
        let snaps = vec![at(0), at(10), at(20)];
        let p = Policy {
            keep_within: Some(1),
            ..Policy::default()
        };
        assert_eq!(kept(&snaps, 20, &p), vec![at(20)]);
        let none = Policy {
            keep_last: Some(0),
            ..Policy::default()
        };
        assert_eq!(kept(&snaps, 20, &none), vec![at(20)]);
    }

    #[test]
    fn gfs_keeps_what_borg_keeps() {
        // One snapshot a day at 12:00 for 400 days.
        let snaps: Vec<_> = (0..400).map(|d| at(d * 86_400 + 43_200)).collect();
        let now = 400 * 86_400;
        let p = Policy {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(6),
            ..Policy::default()
        };
        let k = kept(&snaps, now, &p);
        // 7 dailies (days 393..=399), then 4 weekly (newest of each earlier
        // ISO week), then 6 monthly (newest of each earlier month).
        let names: Vec<String> = k.iter().map(|s| s.to_string()).collect();
        assert_eq!(k.len(), 7 + 4 + 6, "{names:?}");
        for d in 393..400 {
            assert!(k.contains(&at(d * 86_400 + 43_200)));
        }
        // Day 399 is Thursday 2027-02-04. Weeks 2027-W05 and W04 end on
        // days the dailies keep already (they do not count, as in borg), so
        // the weeklies are the Sundays before: days 388, 381, 374, 367.
        for d in [388, 381, 374, 367] {
            assert!(
                k.contains(&at(d * 86_400 + 43_200)),
                "weekly day {d}: {names:?}"
            );
        }
        // Monthlies: February and January 2027 end on kept days; then the
        // last day of each month before: 2026-12-31 (day 364), 11-30 (333), 10-31 (303),
        // 09-30 (272), 08-31 (242), 07-31 (211).
        for d in [364, 333, 303, 272, 242, 211] {
            assert!(
                k.contains(&at(d * 86_400 + 43_200)),
                "monthly day {d}: {names:?}"
            );
        }
    }

    #[test]
    fn too_few_periods_keep_the_oldest_as_borg_does() {
        let snaps = vec![at(0), at(3600), at(86_400)];
        let p = Policy {
            keep_daily: Some(5),
            ..Policy::default()
        };
        assert_eq!(kept(&snaps, 86_400, &p), vec![at(0), at(3600), at(86_400)]);
    }

    #[test]
    fn within_hourly_thins_like_time_machine() {
        // Every 10 minutes for 3 days; keep every snapshot of the last day,
        // and one per hour within 3 days.
        let snaps: Vec<_> = (0..3 * 144).map(|i| at(i * 600)).collect();
        let now = 3 * 86_400 - 600;
        let p = Policy {
            keep_within: Some(86_400),
            keep_within_hourly: Some(3 * 86_400),
            ..Policy::default()
        };
        let k = kept(&snaps, now, &p);
        // 144 of the last day + one per hour for the 48 hours before it.
        assert_eq!(k.len(), 144 + 48);
    }
}
