//! Names of backup sets and snapshots.
//!
//! A snapshot is named by the helper's UTC clock as `YYYY-MM-DDTHHMMSSZ`:
//! sortable as text, no colons, and never chosen by the client.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid set or snapshot name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not of the form `YYYY-MM-DDTHHMMSSZ`, or not a real time.
    #[error("{0:?} is not a snapshot name (expected YYYY-MM-DDTHHMMSSZ, e.g. 2026-11-26T014929Z)")]
    Snapshot(String),
    /// A set name must be 1-128 characters of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
    #[error("{0:?} is not a valid set name (1-128 of A-Z a-z 0-9 . _ -, not starting with . or -)")]
    Set(String),
}

/// A snapshot's name: a UTC time to the second.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotName(Timestamp);

impl SnapshotName {
    /// The name for `time`, truncated to the second.
    pub fn from_timestamp(time: Timestamp) -> SnapshotName {
        // Seconds since the epoch always fit back into a Timestamp.
        SnapshotName(Timestamp::from_second(time.as_second()).unwrap_or(time))
    }

    /// The time it names.
    pub fn timestamp(&self) -> Timestamp {
        self.0
    }

    /// The name one second later.
    pub fn next(&self) -> SnapshotName {
        SnapshotName(
            self.0
                .checked_add(jiff::SignedDuration::from_secs(1))
                .unwrap_or(self.0),
        )
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.strftime("%Y-%m-%dT%H%M%SZ"))
    }
}

impl fmt::Debug for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for SnapshotName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let bad = || NameError::Snapshot(s.to_string());
        let ok_shape = s.len() == 18
            && s.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                10 => b == b'T',
                17 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        if !ok_shape {
            return Err(bad());
        }
        let t = Timestamp::strptime("%Y-%m-%dT%H%M%S%z", format!("{}+0000", &s[..17]))
            .map_err(|_| bad())?;
        let name = SnapshotName(t);
        // Reject times that parse but do not print back the same (e.g. leap seconds).
        if name.to_string() != s {
            return Err(bad());
        }
        Ok(name)
    }
}

impl Serialize for SnapshotName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0.as_second())
    }
}

impl<'de> Deserialize<'de> for SnapshotName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secs = i64::deserialize(d)?;
        Timestamp::from_second(secs)
            .map(SnapshotName)
            .map_err(serde::de::Error::custom)
    }
}

/// The name of a backup set: one directory under the root.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetName(String);

impl SetName {
    /// Validates `s` as a set name.
    pub fn new(s: &str) -> Result<SetName, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('.')
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(SetName(s.to_string()))
        } else {
            Err(NameError::Set(s.to_string()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl FromStr for SetName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        SetName::new(s)
    }
}

impl Serialize for SetName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SetName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SetName::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_round_trip() -> Result<(), NameError> {
        let n: SnapshotName = "2026-11-26T014929Z".parse()?;
        assert_eq!(n.to_string(), "2026-11-26T014929Z");
        assert_eq!(n.next().to_string(), "2026-11-26T014930Z");
        for bad in [
            "2026-11-26T01:49:29Z",
            "2026-11-26T014929",
            "2026-13-26T014929Z",
            "2026-02-30T014929Z",
            "latest",
            "../2026-11-26T01492",
        ] {
            assert!(bad.parse::<SnapshotName>().is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn set_names() {
        assert!(SetName::new("laptop-1.home_x").is_ok());
        for bad in ["", ".offsnap", "..", "a/b", "-x", "a b", "é"] {
            assert!(SetName::new(bad).is_err(), "{bad}");
        }
    }
}
