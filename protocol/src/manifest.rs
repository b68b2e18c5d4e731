//! The manifest: every entry of a snapshot, in walk order, in one file.
//!
//! Layout: the 16-byte magic `offsnap-manifest`, a little-endian `u32`
//! format version, a zstd stream of records, and a 32-byte BLAKE3 of
//! everything before it. A record is a little-endian `u32` length and a
//! postcard [`Entry`]; a zero length ends the records and is followed by the
//! entry count as a little-endian `u64`. The trailing hash identifies the
//! manifest (clients cache by it) and is checked before a manifest is read.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};

use crate::entry::{Entry, Hash};
use crate::path::RelPath;

/// The first bytes of every manifest.
pub const MANIFEST_MAGIC: [u8; 16] = *b"offsnap-manifest";
/// The manifest format this code writes and reads.
pub const MANIFEST_VERSION: u32 = 2;
/// The first format, still read: entries without extended attributes.
const MANIFEST_VERSION_1: u32 = 1;
/// Largest record accepted.
const MAX_RECORD: usize = 1 << 20;
/// The manifest stream's zstd window: 128 KiB (see [`ManifestWriter::new`]).
const WINDOW_LOG: u32 = 17;
/// The largest window a reader accepts: 2 MiB, what manifests written
/// before [`WINDOW_LOG`] used (zstd's level 3). A manifest comes from the
/// peer: without this cap its frame could ask for a 128 MiB buffer.
const WINDOW_LOG_MAX: u32 = 21;
const HEADER_LEN: usize = MANIFEST_MAGIC.len() + 4;

/// Why a manifest could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file failed to read or write.
    #[error("manifest I/O: {0}")]
    Io(#[from] io::Error),
    /// Not a manifest.
    #[error("not an offsnap manifest")]
    BadMagic,
    /// A format version this code does not know.
    #[error("manifest format {0} is not supported (this offsnap reads format {MANIFEST_VERSION})")]
    Version(u32),
    /// The trailing checksum does not match the content.
    #[error("manifest checksum mismatch: the manifest is damaged")]
    Checksum,
    /// A record is malformed.
    #[error("manifest record {index} is damaged: {why}")]
    Record {
        /// Record number, from 0.
        index: u64,
        /// What is wrong.
        why: String,
    },
    /// Entries are not in strictly increasing walk order.
    #[error("manifest entries out of order at {0}")]
    Order(RelPath),
}

/// An entry as format 1 recorded it (its kinds are the first three of
/// [`crate::EntryKind`], so they decode as such).
#[derive(serde::Deserialize)]
struct EntryV1 {
    path: RelPath,
    kind: crate::entry::EntryKind,
    meta: crate::entry::Meta,
}

impl From<EntryV1> for Entry {
    fn from(e: EntryV1) -> Entry {
        Entry::new(e.path, e.kind, e.meta)
    }
}

/// Writes a manifest, one entry at a time, in walk order.
pub struct ManifestWriter<W: Write> {
    zstd: zstd::stream::write::Encoder<'static, HashingWriter<W>>,
    count: u64,
    last: Option<RelPath>,
    buf: Vec<u8>,
}

impl<W: Write> ManifestWriter<W> {
    /// Starts a manifest on `out`.
    pub fn new(out: W) -> Result<Self, ManifestError> {
        Self::with_window(out, WINDOW_LOG)
    }

    fn with_window(out: W, window_log: u32) -> Result<Self, ManifestError> {
        let mut hw = HashingWriter {
            inner: out,
            hasher: blake3::Hasher::new(),
            len: 0,
        };
        hw.write_all(&MANIFEST_MAGIC)?;
        hw.write_all(&MANIFEST_VERSION.to_le_bytes())?;
        let mut zstd = zstd::stream::write::Encoder::new(hw, 3)?;
        // A 128 KiB window instead of level 3's 2 MiB: the compressor's
        // workspace drops from 3.7 MB to 1.7 MB on both sides (massif)
        // (and a reader's window buffer with it), while records, sorted by
        // path, find their repeats in the last few thousand entries.
        zstd.window_log(window_log)?;
        Ok(ManifestWriter {
            zstd,
            count: 0,
            last: None,
            buf: Vec::new(),
        })
    }

    /// Appends an entry; it must sort after the previous one.
    pub fn push(&mut self, entry: &Entry) -> Result<(), ManifestError> {
        if let Some(last) = &self.last
            && last.walk_cmp(&entry.path) != std::cmp::Ordering::Less
        {
            return Err(ManifestError::Order(entry.path.clone()));
        }
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 4]);
        let buf = std::mem::take(&mut self.buf);
        let mut buf = postcard::to_extend(entry, buf).map_err(|e| ManifestError::Record {
            index: self.count,
            why: e.to_string(),
        })?;
        if buf.len() - 4 > MAX_RECORD {
            let why = format!("an entry of {} bytes does not fit a record", buf.len() - 4);
            self.buf = buf;
            return Err(ManifestError::Record {
                index: self.count,
                why,
            });
        }
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_le_bytes());
        self.zstd.write_all(&buf)?;
        self.buf = buf;
        self.count += 1;
        self.last = Some(entry.path.clone());
        Ok(())
    }

    /// Entries written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Ends the manifest; returns the stream, the manifest's hash and length.
    pub fn finish(mut self) -> Result<(W, Hash, u64), ManifestError> {
        self.zstd.write_all(&0u32.to_le_bytes())?;
        self.zstd.write_all(&self.count.to_le_bytes())?;
        let mut hw = self.zstd.finish()?;
        let hash = Hash::from(hw.hasher.finalize());
        hw.inner.write_all(&hash.0)?;
        hw.inner.flush()?;
        Ok((hw.inner, hash, hw.len + 32))
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Checks a manifest file's trailing checksum; returns its hash and length.
/// Leaves the file positioned at its start.
pub fn verify_file(file: &mut File) -> Result<(Hash, u64), ManifestError> {
    let len = file.seek(SeekFrom::End(0))?;
    if len < (HEADER_LEN + 32) as u64 {
        return Err(ManifestError::BadMagic);
    }
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = blake3::Hasher::new();
    let copied = io::copy(&mut (&mut *file).take(len - 32), &mut hasher)?;
    if copied != len - 32 {
        return Err(ManifestError::Checksum);
    }
    let mut stored = [0u8; 32];
    file.read_exact(&mut stored)?;
    file.seek(SeekFrom::Start(0))?;
    let hash = Hash::from(hasher.finalize());
    if hash.0 != stored {
        return Err(ManifestError::Checksum);
    }
    Ok((hash, len))
}

/// Reads a manifest's entries as a stream, checking order and count. Check
/// the checksum first with [`verify_file`]: this reader does not.
pub struct ManifestReader<R: Read> {
    zstd: zstd::stream::read::Decoder<'static, BufReader<R>>,
    version: u32,
    index: u64,
    last: Option<RelPath>,
    done: bool,
    buf: Vec<u8>,
}

impl<R: Read> ManifestReader<R> {
    /// Reads the header and prepares to stream entries.
    pub fn new(input: R) -> Result<Self, ManifestError> {
        let mut input = BufReader::new(input);
        let mut header = [0u8; HEADER_LEN];
        input.read_exact(&mut header).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ManifestError::BadMagic,
            _ => ManifestError::Io(e),
        })?;
        if header[..16] != MANIFEST_MAGIC {
            return Err(ManifestError::BadMagic);
        }
        let version = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        if version != MANIFEST_VERSION && version != MANIFEST_VERSION_1 {
            return Err(ManifestError::Version(version));
        }
        let mut zstd = zstd::stream::read::Decoder::with_buffer(input)?;
        zstd.window_log_max(WINDOW_LOG_MAX)?;
        zstd = zstd.single_frame();
        Ok(ManifestReader {
            zstd,
            version,
            index: 0,
            last: None,
            done: false,
            buf: Vec::new(),
        })
    }

    fn damaged(&self, why: impl Into<String>) -> ManifestError {
        ManifestError::Record {
            index: self.index,
            why: why.into(),
        }
    }

    /// The next entry, or `None` after the last.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, ManifestError> {
        if self.done {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 {
            let mut count = [0u8; 8];
            self.read_exact(&mut count)?;
            if u64::from_le_bytes(count) != self.index {
                return Err(self.damaged("entry count does not match"));
            }
            self.done = true;
            return Ok(None);
        }
        if len > MAX_RECORD {
            return Err(self.damaged(format!("record of {len} bytes")));
        }
        self.buf.resize(len, 0);
        let mut buf = std::mem::take(&mut self.buf);
        let res = self.read_exact(&mut buf);
        self.buf = buf;
        res?;
        let entry: Entry = match self.version {
            MANIFEST_VERSION_1 => crate::frame::decode_exact::<EntryV1>(&self.buf).map(Entry::from),
            _ => crate::frame::decode_exact(&self.buf),
        }
        .map_err(|e| self.damaged(e.to_string()))?;
        entry.check().map_err(|why| self.damaged(why))?;
        if let Some(last) = &self.last
            && last.walk_cmp(&entry.path) != std::cmp::Ordering::Less
        {
            return Err(ManifestError::Order(entry.path));
        }
        self.last = Some(entry.path.clone());
        self.index += 1;
        Ok(Some(entry))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ManifestError> {
        match self.zstd.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(self.damaged("unexpected end of manifest"))
            }
            Err(e) => Err(self.damaged(e.to_string())),
        }
    }
}

impl<R: Read> Iterator for ManifestReader<R> {
    type Item = Result<Entry, ManifestError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Opens a manifest file: verifies its checksum, then streams its entries.
pub fn open_file(mut file: File) -> Result<ManifestReader<File>, ManifestError> {
    verify_file(&mut file)?;
    ManifestReader::new(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{EntryKind, Meta};

    /// A manifest of `n` files written with a `window_log` window.
    fn with_window(window_log: u32, n: u32) -> Vec<u8> {
        let mut w = ManifestWriter::with_window(Vec::new(), window_log).expect("writer");
        for i in 0..n {
            let kind = EntryKind::File {
                size: u64::from(i),
                hash: Hash::of(&i.to_le_bytes()),
            };
            w.push(&entry(format!("f{i:08}").as_bytes(), kind))
                .expect("push");
        }
        w.finish().expect("finish").0
    }

    #[test]
    fn a_manifest_asking_for_a_larger_window_than_ever_written_is_refused() {
        // Older manifests (a 2 MiB window) still read.
        let old = with_window(21, 50_000);
        let read = ManifestReader::new(&old[..]).expect("header");
        let entries: Result<Vec<_>, _> = read.collect();
        assert_eq!(entries.expect("entries").len(), 50_000);
        // A peer's manifest asking for 8 MiB is refused, not buffered.
        let big = with_window(23, 50_000);
        let mut read = ManifestReader::new(&big[..]).expect("header");
        assert!(read.next_entry().is_err(), "an 8 MiB window was accepted");
    }

    fn entry(path: &[u8], kind: EntryKind) -> Entry {
        Entry {
            path: RelPath::new(path.to_vec()).expect("valid test path"),
            kind,
            meta: Meta {
                mode: 0o644,
                uid: 1000,
                gid: 1000,
                mtime_sec: 1_700_000_000,
                mtime_nsec: 5,
            },
            xattrs: Vec::new(),
        }
    }

    fn sample() -> Vec<Entry> {
        vec![
            entry(b"a", EntryKind::Dir),
            entry(
                b"a/b",
                EntryKind::Symlink {
                    target: b"../x".to_vec(),
                },
            ),
            entry(
                b"a.txt",
                EntryKind::File {
                    size: 3,
                    hash: Hash::of(b"abc"),
                },
            ),
        ]
    }

    #[test]
    fn round_trip_and_checksum() -> Result<(), ManifestError> {
        let mut w = ManifestWriter::new(Vec::new())?;
        for e in sample() {
            w.push(&e)?;
        }
        let (bytes, _hash, len) = w.finish()?;
        assert_eq!(len, bytes.len() as u64);
        let mut tmp = tempfile::tempfile()?;
        tmp.write_all(&bytes)?;
        let got: Result<Vec<Entry>, _> = open_file(tmp.try_clone()?)?.collect();
        assert_eq!(got?, sample());

        // One flipped byte anywhere is caught by the checksum.
        let mut bad = bytes.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 1;
        let mut tmp = tempfile::tempfile()?;
        tmp.write_all(&bad)?;
        assert!(matches!(open_file(tmp), Err(ManifestError::Checksum)));
        Ok(())
    }

    #[test]
    fn refuses_out_of_order() -> Result<(), ManifestError> {
        let mut w = ManifestWriter::new(Vec::new())?;
        let s = sample();
        w.push(&s[2])?;
        assert!(matches!(w.push(&s[0]), Err(ManifestError::Order(_))));
        Ok(())
    }

    #[test]
    fn format_1_manifests_still_read() -> Result<(), ManifestError> {
        #[derive(serde::Serialize)]
        struct V1<'a> {
            path: &'a RelPath,
            kind: &'a EntryKind,
            meta: &'a Meta,
        }
        let entries = [
            entry(b"a", EntryKind::Dir),
            entry(
                b"a/f",
                EntryKind::File {
                    size: 3,
                    hash: Hash::of(b"abc"),
                },
            ),
        ];
        let mut body = Vec::new();
        for e in &entries {
            let rec = postcard::to_stdvec(&V1 {
                path: &e.path,
                kind: &e.kind,
                meta: &e.meta,
            })
            .map_err(|e| ManifestError::Io(io::Error::other(e)))?;
            body.extend_from_slice(&(rec.len() as u32).to_le_bytes());
            body.extend_from_slice(&rec);
        }
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&2u64.to_le_bytes());
        let mut file = MANIFEST_MAGIC.to_vec();
        file.extend_from_slice(&1u32.to_le_bytes());
        file.extend(zstd::bulk::compress(&body, 3)?);
        let hash = blake3::hash(&file);
        file.extend_from_slice(hash.as_bytes());
        let got: Vec<Entry> = ManifestReader::new(&file[..])?.collect::<Result<_, _>>()?;
        assert_eq!(got, entries);
        Ok(())
    }

    #[test]
    fn an_entry_too_large_for_a_record_is_refused() {
        let mut w = ManifestWriter::new(Vec::new()).expect("writer");
        let mut e = entry(b"big", EntryKind::Dir);
        e.xattrs = (0..20)
            .map(|i| crate::Xattr {
                name: format!("user.{i:02}").into_bytes(),
                value: vec![0; 60_000],
            })
            .collect();
        assert!(matches!(w.push(&e), Err(ManifestError::Record { .. })));
        assert!(e.check().is_err());
    }
}
