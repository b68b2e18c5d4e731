//! The journal of a backup run in progress, `incomplete/NAME/journal`:
//! the files it finished and the large file it began, so that a later run
//! can reuse them if this one is cut short (see [`crate::resume`]).
//!
//! Records are appended as a little-endian `u32` length and a postcard
//! [`Record`]. A run killed mid-write leaves a torn last record; readers
//! stop at the first record that does not decode, and lose only that one.
//! What a record names is never trusted blindly: finished files are
//! re-hashed before reuse, and a begun file only serves as a delta base.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::BorrowedFd;

use offsnap_protocol::{Hash, RelPath};
use serde::{Deserialize, Serialize};

use offsnap_fs::fsx;

/// The journal's file name inside a run's directory.
pub const JOURNAL: &[u8] = b"journal";

/// Largest record read back (a path of at most 64 KiB and a little more).
const MAX_RECORD: usize = 2 * offsnap_protocol::path::MAX_PATH_LEN;

/// Files of at least this size are journaled when they begin, and make the
/// journal flush when they end.
pub const BIG: u64 = 1 << 20;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The file at `path` of the run's tree is complete.
    Finished {
        /// Where it is in the tree.
        path: RelPath,
        /// Its length.
        size: u64,
        /// Its BLAKE3.
        hash: Hash,
    },
    /// The file for `path` is being written under the temporary name `tmp`
    /// in the same directory.
    Begun {
        /// The path it will have.
        path: RelPath,
        /// Its temporary name.
        #[serde(with = "serde_bytes")]
        tmp: Vec<u8>,
    },
}

/// Appends records to a run's journal.
pub struct Journal {
    out: BufWriter<File>,
    unflushed: u32,
}

impl Journal {
    /// Creates the journal in a run's directory.
    pub fn create(dir: BorrowedFd<'_>) -> io::Result<Journal> {
        Ok(Journal {
            out: BufWriter::with_capacity(64 * 1024, fsx::create_file(dir, JOURNAL)?),
            unflushed: 0,
        })
    }

    /// Records a finished file. Small ones are written in batches (losing
    /// a few to a kill costs little), large ones at once.
    pub fn finished(&mut self, path: &RelPath, size: u64, hash: Hash) -> io::Result<()> {
        let rec = Record::Finished {
            path: path.clone(),
            size,
            hash,
        };
        self.append(&rec, size >= BIG)
    }

    /// Records a large file's temporary name as it begins.
    pub fn begun(&mut self, path: &RelPath, tmp: &[u8]) -> io::Result<()> {
        let rec = Record::Begun {
            path: path.clone(),
            tmp: tmp.to_vec(),
        };
        self.append(&rec, true)
    }

    fn append(&mut self, rec: &Record, now: bool) -> io::Result<()> {
        let bytes = postcard::to_stdvec(rec).map_err(io::Error::other)?;
        let len = u32::try_from(bytes.len()).map_err(io::Error::other)?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&bytes)?;
        self.unflushed += 1;
        if now || self.unflushed >= 64 {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.unflushed = 0;
        self.out.flush()
    }
}

/// Reads the journal in a run's directory: every whole record, in order,
/// up to the first torn or damaged one. A missing journal reads as empty.
pub fn read(dir: BorrowedFd<'_>) -> io::Result<Vec<Record>> {
    let mut file = match fsx::open_file(dir, JOURNAL) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(decode(&bytes))
}

/// The whole records at the start of `bytes`.
pub fn decode(mut bytes: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len == 0 || len > MAX_RECORD || bytes.len() - 4 < len {
            break;
        }
        match postcard::from_bytes::<Record>(&bytes[4..4 + len]) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
        bytes = &bytes[4 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> RelPath {
        RelPath::new(p.as_bytes().to_vec()).expect("valid")
    }

    #[test]
    fn records_read_back_and_a_torn_tail_is_dropped() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let fd = fsx::open_root(dir.path())?;
        let mut j = Journal::create(std::os::fd::AsFd::as_fd(&fd))?;
        j.begun(&path("a/big"), b".offsnap-tmp.1.0")?;
        j.finished(&path("a/big"), 5 << 20, Hash([1; 32]))?;
        j.finished(&path("a/small"), 10, Hash([2; 32]))?;
        j.flush()?;
        drop(j);
        let recs = read(std::os::fd::AsFd::as_fd(&fd))?;
        assert_eq!(recs.len(), 3);
        assert!(matches!(&recs[2], Record::Finished { size: 10, .. }));
        // A torn last record, garbage, or a lying length: the whole
        // records before it survive.
        let bytes = std::fs::read(dir.path().join("journal"))?;
        for cut in 1..bytes.len() {
            assert!(decode(&bytes[..cut]).len() <= 3);
        }
        let mut bad = bytes.clone();
        bad.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&bad).len(), 3);
        let mut bad = bytes;
        bad.extend_from_slice(&[3, 0, 0, 0, 0xff, 0xff, 0xff]);
        assert_eq!(decode(&bad).len(), 3);
        Ok(())
    }
}
