//! Fetching a snapshot's manifest from the helper into a local temporary
//! file, checked, then read as a stream (memory does not grow with the
//! number of entries).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use offsnap_protocol::manifest::{self, ManifestReader};
use offsnap_protocol::{Request, Response, SetName, SnapshotInfo};

use crate::error::{Error, Result};
use crate::session::Session;

/// Downloads the manifest of `snap` and opens it after checking its hash.
pub fn fetch(
    session: &mut Session,
    set: &SetName,
    snap: &SnapshotInfo,
) -> Result<ManifestReader<File>> {
    let file = fetch_file(session, set, snap)?;
    ManifestReader::new(file)
        .map_err(|e| Error::Corrupt(format!("manifest of snapshot {}: {e}", snap.name)))
}

/// Downloads the manifest of `snap` into a temporary file, checks its hash,
/// and returns the file positioned at its start.
pub fn fetch_file(session: &mut Session, set: &SetName, snap: &SnapshotInfo) -> Result<File> {
    let mut file = tempfile::tempfile().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    session.tx.send(&Request::GetManifest {
        set: set.clone(),
        snapshot: snap.name,
    })?;
    session.tx.flush()?;
    loop {
        match session.rx.recv()? {
            Response::ManifestChunk(data) => file
                .write_all(&data)
                .map_err(|e| Error::io(std::env::temp_dir(), e))?,
            Response::ManifestEnd => break,
            other => return Err(Error::Unexpected(format!("{other:?}"))),
        }
    }
    let (hash, _len) = manifest::verify_file(&mut file)
        .map_err(|e| Error::Corrupt(format!("manifest of snapshot {}: {e}", snap.name)))?;
    if hash != snap.manifest_hash {
        return Err(Error::Corrupt(format!(
            "manifest of snapshot {} does not match its listed hash",
            snap.name
        )));
    }
    Ok(file)
}

/// Reads a file from the start with positioned reads, independent of the
/// file's shared offset: several readers of one file may run at once.
pub struct PosReader {
    file: File,
    pos: u64,
}

impl PosReader {
    /// A reader at the start of (a duplicate handle of) `file`.
    pub fn new(file: &File) -> io::Result<PosReader> {
        Ok(PosReader {
            file: file.try_clone()?,
            pos: 0,
        })
    }
}

impl Read for PosReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A fresh stream of the entries of a fetched manifest file.
pub fn entries(file: &File) -> Result<ManifestReader<PosReader>> {
    let reader = PosReader::new(file).map_err(|e| Error::io("manifest", e))?;
    ManifestReader::new(reader).map_err(|e| Error::Corrupt(format!("manifest: {e}")))
}
