//! The retention rules as command-line flags (`--keep-daily 7`) and as a
//! config file's `retention` table (`keep_within = "30d"`): the adapter
//! both binaries use, built with the `cli` feature.

use super::{Policy, Seconds, parse_duration};

/// A duration as text (`30d`) in a config file.
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Seconds>, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// The policy flags, shared by `offsnap` and `offsnap-remote`, and the
/// `retention` table of a config file (same names, durations as text).
#[derive(Debug, Clone, Default, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyArgs {
    /// Keep every snapshot younger than this (e.g. 30d, 12h, 2w, 6m, 1y)
    /// [default when no other rule is given: 30d]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub keep_within: Option<Seconds>,
    /// Keep the newest N snapshots
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N weeks
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep the newest snapshot of each hour within this duration
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub keep_within_hourly: Option<Seconds>,
    /// Keep the newest snapshot of each day within this duration
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub keep_within_daily: Option<Seconds>,
    /// Keep the newest snapshot of each week within this duration
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub keep_within_weekly: Option<Seconds>,
    /// Keep the newest snapshot of each month within this duration
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub keep_within_monthly: Option<Seconds>,
}

impl PolicyArgs {
    /// Whether any rule was given.
    pub fn given(&self) -> bool {
        self.keep_within.is_some()
            || self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
            || self.keep_within_hourly.is_some()
            || self.keep_within_daily.is_some()
            || self.keep_within_weekly.is_some()
            || self.keep_within_monthly.is_some()
    }

    /// The policy: the given rules, or 30 days when none is given.
    pub fn policy(&self) -> Policy {
        let p = Policy {
            keep_within: self.keep_within,
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within_hourly: self.keep_within_hourly,
            keep_within_daily: self.keep_within_daily,
            keep_within_weekly: self.keep_within_weekly,
            keep_within_monthly: self.keep_within_monthly,
        };
        if p.is_empty() {
            Policy::thirty_days()
        } else {
            p
        }
    }
}
