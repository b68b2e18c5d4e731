//! Where each content is stored, by hash, without holding paths in memory:
//! what a run links by content (`LinkFrom`) is found here.
//!
//! - [`BaseIndex`]: the base snapshot's files, in `.offsnap/index/byhash`,
//!   built from its manifest the first time a run needs it (so snapshots
//!   made before it existed work too) and rebuilt when the base changes.
//!   It is an open-addressing hash table on disk, read with positioned
//!   reads: its memory does not grow with the number of files or the
//!   length of their paths.
//! - [`RunIndex`]: files written by this run: a growing table of hash
//!   prefix to where the path is, and the paths, both in unlinked files of
//!   the run's work directory.
//!
//! Paths are kept in a [`PathStore`]: records `hash, length, path` packed
//! into blocks of about 64 KiB, each zstd-compressed (long paths compress
//! as well as in the manifest). A record is located by its block's offset
//! and its index in the block.
//!
//! Layout of `byhash`: a 64-byte header (`offsnap-byhash\0\0`, format
//! `u32`, 4 zero bytes, the manifest's hash, the table's slot count as
//! `u64`), the table ([`offsnap_fs::table`]: 24-byte slots of the hash's
//! first 16 bytes, then the record's location; a power of two of at least
//! twice as many slots as files), then the path blocks. All integers little-endian.
//! Nothing found here is trusted: the content is hashed before it is
//! linked (see [`crate::stored`]).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use offsnap_protocol::{EntryKind, Hash, RelPath};

use offsnap_fs::fsx;
use offsnap_fs::table::{GrowingTable, SLOT, Table};

const MAGIC: &[u8; 16] = b"offsnap-byhash\0\0";
const FORMAT: u32 = 2;
const HEADER: u64 = 64;
/// A block is compressed once it holds this much.
const BLOCK: usize = 64 * 1024;
/// The largest block accepted back: a full block plus one record.
const BLOCK_MAX: usize = BLOCK + 32 + 4 + (1 << 20);

/// Paths by location, compressed in blocks (see the module documentation).
pub struct PathStore {
    file: File,
    /// Where the block being filled will be written.
    end: u64,
    block: Vec<u8>,
    count: u64,
    /// The last block read back, by offset.
    cached: Option<(u64, Vec<u8>)>,
}

impl PathStore {
    /// A store appending to `file` from offset `start`.
    pub fn new(file: File, start: u64) -> PathStore {
        PathStore {
            file,
            end: start,
            block: Vec::new(),
            count: 0,
            cached: None,
        }
    }

    /// Appends a record; returns its location.
    pub fn push(&mut self, hash: &Hash, path: &RelPath) -> io::Result<u64> {
        if self.block.len() >= BLOCK {
            self.flush()?;
        }
        let loc = (self.end << 16) | self.count;
        self.block.extend_from_slice(&hash.0);
        self.block
            .extend_from_slice(&(path.as_bytes().len() as u32).to_le_bytes());
        self.block.extend_from_slice(path.as_bytes());
        self.count += 1;
        Ok(loc)
    }

    /// Writes the block being filled.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let z = zstd::bulk::compress(&self.block, 1)?;
        self.file
            .write_all_at(&(z.len() as u32).to_le_bytes(), self.end)?;
        self.file.write_all_at(&z, self.end + 4)?;
        self.end += 4 + z.len() as u64;
        self.block.clear();
        self.count = 0;
        Ok(())
    }

    /// The record at `loc`, or `None` when there is none.
    pub fn get(&mut self, loc: u64) -> io::Result<Option<(Hash, RelPath)>> {
        let (off, idx) = (loc >> 16, loc & 0xffff);
        let block = if off == self.end {
            &self.block
        } else {
            if self.cached.as_ref().is_none_or(|(o, _)| *o != off) {
                let mut len = [0u8; 4];
                self.file.read_exact_at(&mut len, off)?;
                let len = u32::from_le_bytes(len) as usize;
                if len > BLOCK_MAX {
                    return Ok(None);
                }
                let mut z = vec![0u8; len];
                self.file.read_exact_at(&mut z, off + 4)?;
                let data = zstd::bulk::decompress(&z, BLOCK_MAX)?;
                self.cached = Some((off, data));
            }
            match &self.cached {
                Some((_, data)) => data,
                None => return Ok(None),
            }
        };
        Ok(record(block, idx))
    }
}

/// Record `idx` of a block.
fn record(mut block: &[u8], idx: u64) -> Option<(Hash, RelPath)> {
    for i in 0.. {
        let hash: [u8; 32] = block.get(..32)?.try_into().ok()?;
        let len = u32::from_le_bytes(block.get(32..36)?.try_into().ok()?) as usize;
        let path = block.get(36..36 + len)?;
        if i == idx {
            return Some((Hash(hash), RelPath::new(path.to_vec()).ok()?));
        }
        block = &block[36 + len..];
    }
    None
}

/// Creates the new file `name` in `dir`, for reading and writing.
fn create_rw(dir: &impl AsFd, name: &[u8]) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(
        dir.as_fd(),
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(File::from(fd))
}

/// The key a content is found by in a table: its hash's first 128 bits.
/// A match is only a candidate: its record's whole hash is compared.
fn key(hash: &Hash) -> u128 {
    let mut k = [0u8; 16];
    k.copy_from_slice(&hash.0[..16]);
    u128::from_le_bytes(k)
}

/// The base snapshot's files by content hash (see the module documentation).
pub struct BaseIndex {
    table: Table,
    paths: PathStore,
}

impl BaseIndex {
    /// The index of the snapshot whose manifest is `manifest` (hash
    /// `manifest_hash`), from `dir` (`.offsnap/index`), built there first
    /// when missing or made for another manifest.
    pub fn open_or_build(
        dir: &impl AsFd,
        manifest: &File,
        manifest_hash: &Hash,
    ) -> io::Result<BaseIndex> {
        if let Some(found) = Self::open(dir, manifest_hash)? {
            return Ok(found);
        }
        Self::build(dir, manifest, manifest_hash)?;
        Self::open(dir, manifest_hash)?
            .ok_or_else(|| io::Error::other("the content index just built is unreadable"))
    }

    fn open(dir: &impl AsFd, manifest_hash: &Hash) -> io::Result<Option<BaseIndex>> {
        let file = match fsx::open_file(dir.as_fd(), b"byhash") {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut h = [0u8; HEADER as usize];
        if file.read_exact_at(&mut h, 0).is_err()
            || h[..16] != MAGIC[..]
            || h[16..20] != FORMAT.to_le_bytes()
            || h[24..56] != manifest_hash.0
        {
            return Ok(None);
        }
        let slots = u64::from_le_bytes(h[56..64].try_into().map_err(io::Error::other)?);
        // A table longer than the file (damaged, cut short) is rebuilt.
        let Some(start) = slots
            .checked_mul(SLOT)
            .and_then(|t| t.checked_add(HEADER))
            .filter(|&end| file.metadata().is_ok_and(|m| m.len() >= end))
        else {
            return Ok(None);
        };
        let mut paths = PathStore::new(file.try_clone()?, start);
        // Read only: no block is the one being filled.
        paths.end = u64::MAX >> 16;
        Ok(Table::open(file, HEADER, slots).map(|table| BaseIndex { table, paths }))
    }

    /// Builds `byhash` under a temporary name, then renames it into place.
    fn build(dir: &impl AsFd, manifest: &File, manifest_hash: &Hash) -> io::Result<()> {
        let files = each_file(manifest, |_, _| Ok(()))?;
        let slots = (files.saturating_mul(2)).max(16).next_power_of_two();
        let _ = fsx::unlink(dir.as_fd(), b"byhash.new");
        let file = create_rw(dir, b"byhash.new")?;
        let table = Table::create(file.try_clone()?, HEADER, slots)?;
        let mut paths = PathStore::new(file.try_clone()?, HEADER + slots * SLOT);
        let mut batch = Vec::with_capacity(BATCH.min(files as usize));
        each_file(manifest, |hash, path| {
            let loc = paths.push(hash, path)?;
            batch.push((key(hash), loc));
            if batch.len() == BATCH {
                table.place(&mut batch)?;
            }
            Ok(())
        })?;
        table.place(&mut batch)?;
        paths.flush()?;
        let mut h = [0u8; HEADER as usize];
        h[..16].copy_from_slice(MAGIC);
        h[16..20].copy_from_slice(&FORMAT.to_le_bytes());
        h[24..56].copy_from_slice(&manifest_hash.0);
        h[56..64].copy_from_slice(&slots.to_le_bytes());
        file.write_all_at(&h, 0)?;
        file.sync_all()?;
        fsx::rename(dir.as_fd(), b"byhash.new", b"byhash", true)
    }

    /// The path of the first file (in walk order) with content `hash`.
    pub fn get(&mut self, hash: &Hash) -> io::Result<Option<RelPath>> {
        let mut found = None;
        let paths = &mut self.paths;
        self.table.find(key(hash), |loc| {
            found = paths.get(loc)?.filter(|(h, _)| h == hash).map(|(_, p)| p);
            Ok(found.is_some())
        })?;
        Ok(found)
    }
}

/// Slots placed in one batch while building (56 bytes each in memory
/// while placed): each batch reads and writes the table once, in windows.
/// Reached already at 32,768 files, so memory is flat beyond.
const BATCH: usize = 1 << 15;

/// Calls `f` with the hash and path of each file of a manifest; returns
/// how many there were.
fn each_file(
    manifest: &File,
    mut f: impl FnMut(&Hash, &RelPath) -> io::Result<()>,
) -> io::Result<u64> {
    let reader = offsnap_protocol::manifest::ManifestReader::new(PosRead {
        file: manifest,
        pos: 0,
    })
    .map_err(io::Error::other)?;
    let mut n = 0;
    for e in reader {
        let e = e.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if let EntryKind::File { hash, .. } = &e.kind {
            f(hash, &e.path)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Reads a file from its start with positioned reads.
struct PosRead<'a> {
    file: &'a File,
    pos: u64,
}

impl io::Read for PosRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Files written by this run, by content (see the module documentation).
pub struct RunIndex {
    /// Content key to the location of its record in `paths`.
    table: GrowingTable,
    paths: PathStore,
}

impl RunIndex {
    /// An empty index keeping its table and paths in new files named
    /// `name` and `name.table` in `dir`, unlinked once open.
    pub fn create(dir: &impl AsFd, name: &[u8]) -> io::Result<RunIndex> {
        let file = temp_in(dir, name)?;
        let table_dir = dir.as_fd().try_clone_to_owned()?;
        let table_name = [name, b".table"].concat();
        let table = GrowingTable::new(move || temp_in(&table_dir, &table_name))?;
        Ok(RunIndex {
            table,
            paths: PathStore::new(file, 0),
        })
    }

    /// Notes that `path`, written in this run, holds `hash` (the first
    /// such file is kept).
    pub fn insert(&mut self, hash: &Hash, path: &RelPath) -> io::Result<()> {
        // One lookup of the table, not of the path record: a prefix of
        // 128 bits held by another content is as likely as a forgery.
        if self.table.get(key(hash))?.is_some() {
            return Ok(());
        }
        let loc = self.paths.push(hash, path)?;
        self.table.add(key(hash), loc)
    }

    /// The file of this run holding `hash`, if any.
    pub fn get(&mut self, hash: &Hash) -> io::Result<Option<RelPath>> {
        let Some(loc) = self.table.get(key(hash))? else {
            return Ok(None);
        };
        Ok(self
            .paths
            .get(loc)?
            .and_then(|(h, p)| (h == *hash).then_some(p)))
    }
}

/// A new file `name` in `dir`, for reading and writing, already unlinked:
/// nothing to clear up after the run.
fn temp_in(dir: &impl AsFd, name: &[u8]) -> io::Result<File> {
    let _ = fsx::unlink(dir.as_fd(), name);
    let file = create_rw(dir, name)?;
    fsx::unlink(dir.as_fd(), name)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(i: usize) -> RelPath {
        RelPath::new(format!("d/{}/f{i:06}", "x".repeat(200)).into_bytes()).expect("path")
    }

    #[test]
    fn a_built_index_finds_every_content_and_nothing_else() -> Result<(), Box<dyn std::error::Error>>
    {
        use offsnap_protocol::{Entry, Meta, manifest::ManifestWriter};
        let dir = tempfile::tempdir()?;
        let fd = fsx::open_root(dir.path())?;
        let meta = Meta::with_mode(0o644);
        let mut w = ManifestWriter::new(Vec::new())?;
        w.push(&Entry::new(
            RelPath::new(b"d".to_vec())?,
            EntryKind::Dir,
            meta,
        ))?;
        let mut paths: Vec<RelPath> = (0..5000).map(path).collect();
        paths.sort_by(|a, b| a.walk_cmp(b));
        for (i, p) in paths.iter().enumerate() {
            // Every content twice: the first in walk order is found.
            let hash = Hash::of(&(i / 2).to_le_bytes());
            w.push(&Entry::new(
                p.clone(),
                EntryKind::File { size: 8, hash },
                meta,
            ))?;
        }
        let (bytes, mhash, _) = w.finish()?;
        let mut mf = tempfile::tempfile()?;
        std::io::Write::write_all(&mut mf, &bytes)?;
        let mut idx = BaseIndex::open_or_build(&fd, &mf, &mhash)?;
        for (i, p) in paths.iter().enumerate().step_by(2) {
            assert_eq!(
                idx.get(&Hash::of(&(i / 2).to_le_bytes()))?.as_ref(),
                Some(p)
            );
        }
        assert_eq!(idx.get(&Hash::of(b"absent"))?, None);
        // Opened again, not rebuilt; another manifest's hash rebuilds it.
        assert!(BaseIndex::open(&fd, &mhash)?.is_some());
        assert!(BaseIndex::open(&fd, &Hash::of(b"other"))?.is_none());
        // Cut short, it is rebuilt, not read past its end.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("byhash"))?;
        f.set_len(HEADER + 100)?;
        assert!(BaseIndex::open(&fd, &mhash)?.is_none());
        let mut idx = BaseIndex::open_or_build(&fd, &mf, &mhash)?;
        assert_eq!(
            idx.get(&Hash::of(&0usize.to_le_bytes()))?.as_ref(),
            Some(&paths[0])
        );

        let mut run = RunIndex::create(&fd, b"run")?;
        for (i, p) in paths.iter().enumerate() {
            run.insert(&Hash::of(&i.to_le_bytes()), p)?;
        }
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(run.get(&Hash::of(&i.to_le_bytes()))?.as_ref(), Some(p));
        }
        assert_eq!(run.get(&Hash::of(b"absent"))?, None);
        Ok(())
    }
}
