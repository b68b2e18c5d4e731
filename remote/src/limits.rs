//! What a session may write, as the host's owner sets it on `serve`, and
//! the bound on what a delta may rebuild.
//!
//! The size a client announces for a file is its own word; a few KiB of
//! zstd can announce and fill gigabytes. `--max-file-size` caps each file
//! a run stores (sent whole, as a delta, or copied), `--max-snapshot-size`
//! the new data one run writes in all (files sent, and copies made where a
//! hard link was not possible; hard links to stored files cost nothing).
//! Neither is set by default, as with `borg serve --storage-quota` and
//! `rest-server --max-size`: a host shared with clients it does not trust
//! sets both. A delta needs no setting: it may rebuild at most its base's
//! length plus the literal bytes it carries (see [`DeltaBudget`]).

use offsnap_protocol::RelPath;

use crate::error::Error;

/// The owner's limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The largest file a run may store.
    pub max_file_size: Option<u64>,
    /// The most new data one run may write.
    pub max_snapshot_size: Option<u64>,
}

impl Limits {
    /// Admits a file of `size` bytes at `path` into a run that has already
    /// written (or been promised) `charged` bytes, and charges it.
    pub fn admit(&self, path: &RelPath, size: u64, charged: &mut u64) -> Result<(), Error> {
        if let Some(max) = self.max_file_size
            && size > max
        {
            return Err(Error::Refused(format!(
                "{path}: {size} bytes, above this host's limit of {max} bytes per file (--max-file-size)"
            )));
        }
        self.charge(path, size, charged)
    }

    /// Charges `size` bytes of new data (a copy already made) to the run.
    pub fn charge(&self, path: &RelPath, size: u64, charged: &mut u64) -> Result<(), Error> {
        *charged = charged.saturating_add(size);
        if let Some(max) = self.max_snapshot_size
            && *charged > max
        {
            return Err(Error::Refused(format!(
                "{path}: this run would write more than this host's limit of {max} bytes of new data per snapshot (--max-snapshot-size)"
            )));
        }
        Ok(())
    }
}

/// A run's limits and the new data charged against them so far.
#[derive(Debug, Default)]
pub struct Meter {
    limits: Limits,
    charged: u64,
}

impl Meter {
    /// A meter with nothing charged yet.
    pub fn new(limits: Limits) -> Meter {
        Meter { limits, charged: 0 }
    }

    /// Admits a file of `size` bytes at `path` (see [`Limits::admit`]).
    pub fn admit(&mut self, path: &RelPath, size: u64) -> Result<(), Error> {
        self.limits.admit(path, size, &mut self.charged)
    }

    /// Charges a copy of `size` bytes at `path` (see [`Limits::charge`]).
    pub fn charge(&mut self, path: &RelPath, size: u64) -> Result<(), Error> {
        self.limits.charge(path, size, &mut self.charged)
    }
}

/// Parses a size: bytes, or with a binary unit (`K`, `M`, `G`, `T`, also
/// written `KiB`, `MiB`, ...).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 500M, 2G)"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("{s:?}: unknown unit (K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// What a delta may still rebuild: at most its base's length plus the
/// literal bytes received, so a few bytes of copy commands cannot fill the
/// disk. A delta that goes past it is not written further; the file is
/// asked for again whole (an honest client's delta goes past it only when
/// the file repeats its base's content, and then costs a whole send).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeltaBudget {
    literal: u64,
    /// The delta went past its bound.
    pub over: bool,
}

impl DeltaBudget {
    /// Whether `len` more bytes (a literal when `literal`) may be written
    /// after `written`, for a base of `base_len` bytes; marks the budget
    /// spent otherwise.
    pub fn allow(&mut self, written: u64, len: u64, literal: bool, base_len: u64) -> bool {
        if literal {
            self.literal = self.literal.saturating_add(len);
        }
        let bound = base_len.saturating_add(self.literal);
        if self.over || written.saturating_add(len) > bound {
            self.over = true;
        }
        !self.over
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert!(parse_size("2X").is_err() && parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn a_meter_refuses_a_file_too_large_and_a_run_too_large() {
        let mut m = Meter::new(Limits {
            max_file_size: Some(100),
            max_snapshot_size: Some(150),
        });
        let p = RelPath::new(b"f".to_vec()).unwrap();
        assert!(matches!(m.admit(&p, 101), Err(Error::Refused(_))));
        m.admit(&p, 100).unwrap();
        m.charge(&p, 50).unwrap();
        assert!(matches!(m.charge(&p, 1), Err(Error::Refused(_))));
    }

    #[test]
    fn a_delta_rebuilds_at_most_its_base_and_its_literals() {
        let mut b = DeltaBudget::default();
        assert!(b.allow(0, 1000, false, 1000));
        assert!(b.allow(1000, 10, true, 1000));
        assert!(!b.allow(1010, 1000, false, 1000));
        // Once over, always over.
        assert!(!b.allow(1010, 1, true, 1000));
    }
}
