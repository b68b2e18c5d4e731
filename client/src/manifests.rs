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

/// Downloads the manifest of `snap` into a temporary file, checks its hash,
/// and returns the file positioned at its start.
pub fn fetch_file(session: &mut Session, set: &SetName, snap: &SnapshotInfo) -> Result<File> {
    if let Some(f) = cached(&snap.manifest_hash) {
        return Ok(f);
    }
    let tmp = cache_temp()?;
    let mut file = tmp
        .as_file()
        .try_clone()
        .map_err(|e| Error::io(tmp.path(), e))?;
    session.tx.send(&Request::GetManifest {
        set: set.clone(),
        snapshot: snap.name,
    })?;
    session.tx.flush()?;
    // Never more than the length announced is written: a helper that
    // keeps sending cannot fill the disk.
    let mut written = 0u64;
    loop {
        match session.rx.recv()? {
            Response::ManifestChunk(data) => {
                written = written.saturating_add(data.len() as u64);
                if written > snap.manifest_len {
                    return Err(Error::Corrupt(format!(
                        "manifest of snapshot {}: the helper sent more than the {} bytes it announced",
                        snap.name, snap.manifest_len
                    )));
                }
                file.write_all(&data)
                    .map_err(|e| Error::io(std::env::temp_dir(), e))?
            }
            Response::ManifestEnd => break,
            other => return Err(Error::Unexpected(format!("{other:?}"))),
        }
    }
    if written != snap.manifest_len {
        return Err(Error::Corrupt(format!(
            "manifest of snapshot {}: {written} bytes received, {} announced",
            snap.name, snap.manifest_len
        )));
    }
    let (hash, _len) = manifest::verify_file(&mut file)
        .map_err(|e| Error::Corrupt(format!("manifest of snapshot {}: {e}", snap.name)))?;
    if hash != snap.manifest_hash {
        return Err(Error::Corrupt(format!(
            "manifest of snapshot {} does not match its listed hash",
            snap.name
        )));
    }
    keep(tmp, &hash);
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

/// Where fetched manifests are kept, by hash: `$XDG_CACHE_HOME/offsnap/manifests`
/// (or `~/.cache/offsnap/manifests`); `None` when neither is set or usable.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    let dir = base.join("offsnap").join("manifests");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// How many manifests the cache keeps (the most recently used).
const CACHE_KEEP: usize = 8;

/// A cached manifest with this hash, checked, if there is one.
fn cached(hash: &offsnap_protocol::Hash) -> Option<File> {
    let path = cache_dir()?.join(hash.to_hex());
    let mut f = File::open(&path).ok()?;
    match manifest::verify_file(&mut f) {
        Ok((h, _)) if h == *hash => {
            // Mark it used, for the cache's trimming.
            let _ = f.set_modified(std::time::SystemTime::now());
            Some(f)
        }
        _ => {
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

/// Moves a verified manifest file into the cache under its hash, and
/// trims the cache to its most recently used entries.
pub fn keep(tmp: tempfile::NamedTempFile, hash: &offsnap_protocol::Hash) {
    let Some(dir) = cache_dir() else { return };
    if tmp.persist(dir.join(hash.to_hex())).is_err() {
        return;
    }
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = rd
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort();
    let excess = files.len().saturating_sub(CACHE_KEEP);
    for (_, p) in files.into_iter().take(excess) {
        let _ = std::fs::remove_file(p);
    }
}

/// Where the client's scratch files go: the cache directory's parent
/// (`~/.cache/offsnap`, on a disk), else the system's temporary directory.
pub fn scratch_dir() -> std::path::PathBuf {
    cache_dir()
        .and_then(|d| d.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
}

/// An anonymous scratch file (gone when closed) in [`scratch_dir`]: where
/// per-file state too large for memory at a million files is kept.
pub fn scratch_file() -> io::Result<File> {
    tempfile::tempfile_in(scratch_dir())
}

/// The error of a failed scratch-file operation: it names [`scratch_dir`],
/// so a full or unwritable cache directory is recognised as such.
pub fn scratch_error(e: io::Error) -> Error {
    Error::io(scratch_dir(), e)
}

/// A temporary file in the cache directory (so it can be kept by a
/// rename), else in the system's temporary directory.
pub fn cache_temp() -> Result<tempfile::NamedTempFile> {
    match cache_dir() {
        Some(dir) => tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::io(dir, e)),
        None => tempfile::NamedTempFile::new().map_err(|e| Error::io(std::env::temp_dir(), e)),
    }
}
