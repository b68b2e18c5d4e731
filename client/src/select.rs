//! Choosing a snapshot as people name one: `latest`, `latest~N`, a full
//! name, a unique prefix of one (`2026-11-28`), or a point in time
//! (`--as-of 2026-11-28`, `--as-of "2026-11-28 14:00"`, `--as-of 3d`: the
//! newest snapshot at or before it).

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use offsnap_protocol::{SetName, SnapshotInfo, SnapshotName};

use crate::error::{Error, Result};

/// Which snapshot a command means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// The newest, or the N-th before it (`latest~N`).
    Latest(usize),
    /// One named in full.
    Named(SnapshotName),
    /// The one snapshot whose name starts with this.
    Prefix(String),
    /// The newest snapshot at or before this time.
    AsOf(Timestamp),
}

impl Which {
    /// The newest snapshot.
    pub const LATEST: Which = Which::Latest(0);

    /// Reads a snapshot as written after `--snapshot` (or as `diff`'s
    /// arguments): `latest`, `latest~N`, a name, or a prefix of one.
    pub fn parse(text: &str) -> Result<Which> {
        let text = text.trim();
        if text == "latest" {
            return Ok(Which::LATEST);
        }
        if let Some(n) = text.strip_prefix("latest~") {
            return n.parse().map(Which::Latest).map_err(|_| {
                Error::Usage(format!("{text:?}: write latest~N with N a number (latest~1 is the one before the newest)"))
            });
        }
        if let Ok(name) = text.parse::<SnapshotName>() {
            return Ok(Which::Named(name));
        }
        let looks_like_a_name = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'T' | b':' | b'Z'));
        if looks_like_a_name {
            Ok(Which::Prefix(text.replace(':', "")))
        } else {
            Err(Error::Usage(format!(
                "{text:?} is not a snapshot: give latest, latest~N, a snapshot's name or the start of one (2026-11-28), or --as-of TIME"
            )))
        }
    }

    /// Reads `--as-of`: a date (the end of that day), a date and time
    /// (`2026-11-28 14:00`, `2026-11-28T14:00:05`), in this machine's time
    /// zone unless it ends in `Z` or an offset, or a duration ago (`3d`,
    /// `2w`, `12h`).
    pub fn as_of(text: &str, now: Timestamp) -> Result<Which> {
        as_of_time(text.trim(), now, &TimeZone::system()).map(Which::AsOf)
    }

    /// The snapshot this means among `snaps` (oldest first).
    pub fn pick<'a>(&self, set: &SetName, snaps: &'a [SnapshotInfo]) -> Result<&'a SnapshotInfo> {
        let none = |why: String| Error::Usage(why);
        match self {
            Which::Latest(back) => snaps
                .len()
                .checked_sub(1 + back)
                .map(|i| &snaps[i])
                .ok_or_else(|| match snaps.len() {
                    0 => none(format!("set {set} has no snapshots yet")),
                    n => none(format!("set {set} has {n} snapshot(s): there is no {self}")),
                }),
            Which::Named(n) => snaps.iter().find(|s| s.name == *n).ok_or_else(|| {
                none(format!(
                    "set {set} has no snapshot {n} (see `offsnap snapshots`)"
                ))
            }),
            Which::Prefix(p) => {
                let found: Vec<&SnapshotInfo> = snaps
                    .iter()
                    .filter(|s| s.name.to_string().starts_with(p.as_str()))
                    .collect();
                match found.as_slice() {
                    [one] => Ok(one),
                    [] => Err(none(format!(
                        "no snapshot of set {set} starts with {p:?} (see `offsnap snapshots`)"
                    ))),
                    many => Err(none(format!(
                        "{p:?} matches {} snapshots of set {set} ({} … {}): give more of the name, or --as-of",
                        many.len(),
                        many[0].name,
                        many[many.len() - 1].name
                    ))),
                }
            }
            Which::AsOf(t) => snaps
                .iter()
                .rev()
                .find(|s| s.name.timestamp() <= *t)
                .ok_or_else(|| match snaps.first() {
                    None => none(format!("set {set} has no snapshots yet")),
                    Some(first) => none(format!(
                        "set {set} has no snapshot at or before {t} (the first is {})",
                        first.name
                    )),
                }),
        }
    }
}

impl fmt::Display for Which {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Which::Latest(0) => write!(f, "latest"),
            Which::Latest(n) => write!(f, "latest~{n}"),
            Which::Named(n) => write!(f, "{n}"),
            Which::Prefix(p) => write!(f, "{p}"),
            Which::AsOf(t) => write!(f, "the snapshot as of {t}"),
        }
    }
}

fn as_of_time(text: &str, now: Timestamp, tz: &TimeZone) -> Result<Timestamp> {
    let bad = || {
        Error::Usage(format!(
            "--as-of {text:?}: give a date (2026-11-28), a date and time (\"2026-11-28 14:00\"), or a time ago (3d, 12h, 2w)"
        ))
    };
    if text.chars().next().is_some_and(|c| c.is_ascii_digit())
        && text
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphabetic() && c != 'Z')
        && let Ok(ago) = offsnap_protocol::retention::parse_duration(text)
    {
        return now
            .checked_sub(jiff::SignedDuration::from_secs(ago))
            .map_err(|_| bad());
    }
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let local = |dt: DateTime| tz.to_timestamp(dt);
    let spaced = text.replacen(' ', "T", 1);
    if spaced.contains('T') {
        return match spaced.parse::<DateTime>() {
            Ok(dt) => local(dt).map_err(|_| bad()),
            Err(_) => Err(bad()),
        };
    }
    // A day means all of it: the newest snapshot of that day counts.
    let day = text.parse::<Date>().map_err(|_| bad())?;
    local(day.at(23, 59, 59, 999_999_999)).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> SnapshotInfo {
        SnapshotInfo {
            name: name.parse().expect("name"),
            manifest_hash: blake3::hash(name.as_bytes()).into(),
            manifest_len: 0,
        }
    }

    fn snaps() -> Vec<SnapshotInfo> {
        [
            "2026-11-27T100000Z",
            "2026-11-28T090000Z",
            "2026-11-28T210000Z",
            "2026-11-30T080000Z",
        ]
        .into_iter()
        .map(info)
        .collect()
    }

    fn pick(which: &Which) -> Result<String> {
        let set = SetName::new("s").expect("set");
        let all = snaps();
        which.pick(&set, &all).map(|s| s.name.to_string())
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn latest_and_latest_n_count_back_from_the_newest() {
        assert_eq!(
            pick(&Which::parse("latest").expect("ok")).expect("ok"),
            "2026-11-30T080000Z"
        );
        assert_eq!(
            pick(&Which::parse("latest~2").expect("ok")).expect("ok"),
            "2026-11-28T090000Z"
        );
        let err = pick(&Which::parse("latest~4").expect("ok"))
            .expect_err("an error")
            .to_string();
        assert!(
            err.contains("4 snapshot(s)") && err.contains("latest~4"),
            "{err}"
        );
        assert!(matches!(Which::parse("latest~x"), Err(Error::Usage(_))));
    }

    #[test]
    fn a_unique_prefix_names_its_snapshot_and_an_ambiguous_one_says_so() {
        assert_eq!(
            pick(&Which::parse("2026-11-27").expect("ok")).expect("ok"),
            "2026-11-27T100000Z"
        );
        assert_eq!(
            pick(&Which::parse("2026-11-28T21").expect("ok")).expect("ok"),
            "2026-11-28T210000Z"
        );
        assert_eq!(
            pick(&Which::parse("2026-11-28T21:00").expect("ok")).expect("ok"),
            "2026-11-28T210000Z"
        );
        let err = pick(&Which::parse("2026-11-28").expect("ok"))
            .expect_err("an error")
            .to_string();
        assert!(err.contains("matches 2 snapshots"), "{err}");
        let err = pick(&Which::parse("2025").expect("ok"))
            .expect_err("an error")
            .to_string();
        assert!(err.contains("no snapshot of set s starts with"), "{err}");
        assert!(matches!(Which::parse("yesterday"), Err(Error::Usage(_))));
        assert_eq!(
            Which::parse("2026-11-30T080000Z").expect("ok"),
            Which::Named("2026-11-30T080000Z".parse().expect("ok"))
        );
    }

    #[test]
    fn as_of_takes_the_newest_at_or_before_the_time() {
        let now = at("2026-12-01T12:00:00Z");
        let utc = TimeZone::UTC;
        let t = |s: &str| Which::AsOf(as_of_time(s, now, &utc).expect("ok"));
        // A date is the whole day.
        assert_eq!(pick(&t("2026-11-28")).expect("ok"), "2026-11-28T210000Z");
        assert_eq!(
            pick(&t("2026-11-28 12:00")).expect("ok"),
            "2026-11-28T090000Z"
        );
        assert_eq!(
            pick(&t("2026-11-28T09:00:00")).expect("ok"),
            "2026-11-28T090000Z"
        );
        assert_eq!(
            pick(&t("2026-11-29T00:00:00Z")).expect("ok"),
            "2026-11-28T210000Z"
        );
        // 3 days before noon on Dec 1 is noon on Nov 28.
        assert_eq!(pick(&t("3d")).expect("ok"), "2026-11-28T090000Z");
        assert_eq!(pick(&t("12h")).expect("ok"), "2026-11-30T080000Z");
        let err = pick(&t("2026-11-01")).expect_err("an error").to_string();
        assert!(
            err.contains("no snapshot at or before")
                && err.contains("the first is 2026-11-27T100000Z"),
            "{err}"
        );
        assert!(matches!(
            as_of_time("soon", now, &utc),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn as_of_reads_dates_in_the_given_zone() {
        let now = at("2026-12-01T12:00:00Z");
        let tz = TimeZone::fixed(jiff::tz::offset(-5));
        // 2026-11-28 16:30 at UTC-5 is 21:30 UTC: after the evening snapshot.
        let t = Which::AsOf(as_of_time("2026-11-28 16:30", now, &tz).expect("ok"));
        assert_eq!(pick(&t).expect("ok"), "2026-11-28T210000Z");
    }
}
