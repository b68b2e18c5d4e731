//! Where each content is stored, by hash, without holding paths in memory:
//! what a run links by content (`LinkFrom`) is found here.
//!
//! - [`BaseIndex`]: the base snapshot's files, in `.offsnap/index/byhash`,
//!   built from its manifest the first time a run needs it (so snapshots
//!   made before it existed work too) and rebuilt when the base changes.
//!   It is an open-addressing hash table on disk, read with positioned
//!   reads: its memory does not grow with the number of files or the
//!   length of their paths.
//! - [`RunIndex`]: files written by this run, 24 bytes of memory each (a
//!   hash prefix and where its path is), the paths on disk.
//!
//! Paths are kept in a [`PathStore`]: records `hash, length, path` packed
//! into blocks of about 64 KiB, each zstd-compressed (long paths compress
//! as well as in the manifest). A record is located by its block's offset
//! and its index in the block.
//!
//! Layout of `byhash`: a 64-byte header (`offsnap-byhash\0\0`, format
//! `u32`, 4 zero bytes, the manifest's hash, the table's slot count as
//! `u64`), the table (16-byte slots: a nonzero tag from the hash's first 8
//! bytes, then the record's location; a power of two of at least twice as
//! many slots as files), then the path blocks. All integers little-endian.
//! Nothing found here is trusted: the content is hashed before it is
//! linked (see [`crate::stored`]).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use offsnap_protocol::{EntryKind, Hash, RelPath};

use offsnap_fs::fsx;

const MAGIC: &[u8; 16] = b"offsnap-byhash\0\0";
const FORMAT: u32 = 1;
const HEADER: u64 = 64;
const SLOT: u64 = 16;
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

fn tag(hash: &Hash) -> u64 {
    u64::from_le_bytes([
        hash.0[0], hash.0[1], hash.0[2], hash.0[3], hash.0[4], hash.0[5], hash.0[6], hash.0[7],
    ]) | 1
}

fn home(hash: &Hash, slots: u64) -> u64 {
    u64::from_le_bytes([
        hash.0[8], hash.0[9], hash.0[10], hash.0[11], hash.0[12], hash.0[13], hash.0[14],
        hash.0[15],
    ]) & (slots - 1)
}

/// The base snapshot's files by content hash (see the module documentation).
pub struct BaseIndex {
    file: File,
    slots: u64,
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
        if !slots.is_power_of_two() {
            return Ok(None);
        }
        let start = HEADER + slots * SLOT;
        let mut paths = PathStore::new(file.try_clone()?, start);
        // Read only: no block is the one being filled.
        paths.end = u64::MAX >> 16;
        Ok(Some(BaseIndex { file, slots, paths }))
    }

    /// Builds `byhash` under a temporary name, then renames it into place.
    fn build(dir: &impl AsFd, manifest: &File, manifest_hash: &Hash) -> io::Result<()> {
        let files = each_file(manifest, |_, _| Ok(()))?;
        let slots = (files.saturating_mul(2)).max(16).next_power_of_two();
        let _ = fsx::unlink(dir.as_fd(), b"byhash.new");
        let file = create_rw(dir, b"byhash.new")?;
        let table = HEADER + slots * SLOT;
        file.set_len(table)?;
        let mut paths = PathStore::new(file.try_clone()?, table);
        let mut batch = Vec::with_capacity(BATCH.min(files as usize));
        each_file(manifest, |hash, path| {
            let loc = paths.push(hash, path)?;
            batch.push((home(hash, slots), tag(hash), loc));
            if batch.len() == BATCH {
                place(&file, slots, &mut batch)?;
            }
            Ok(())
        })?;
        place(&file, slots, &mut batch)?;
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
        let t = tag(hash);
        let mut i = home(hash, self.slots);
        for _ in 0..self.slots {
            let mut slot = [0u8; SLOT as usize];
            self.file.read_exact_at(&mut slot, HEADER + i * SLOT)?;
            let have = u64::from_le_bytes(slot[..8].try_into().map_err(io::Error::other)?);
            if have == 0 {
                return Ok(None);
            }
            if have == t {
                let loc = u64::from_le_bytes(slot[8..].try_into().map_err(io::Error::other)?);
                if let Some((h, path)) = self.paths.get(loc)?
                    && h == *hash
                {
                    return Ok(Some(path));
                }
            }
            i = (i + 1) & (self.slots - 1);
        }
        Ok(None)
    }
}

/// Slots placed in one batch: 24 bytes each in memory.
const BATCH: usize = 1 << 16;
/// Slots read and written at once while placing a batch (64 KiB).
const WINDOW: u64 = 4096;

/// Places a batch of `(home, tag, location)` in the table of `file`, in
/// the order they came for equal homes (the first file in walk order of a
/// content is found first), and empties it. Sorted by home, the batch goes
/// through the table in windows, each read and written once; a slot whose
/// probe runs past its window's end moves on to the next window, and one
/// past the table's end (wrapping around) is placed on its own.
fn place(file: &File, slots: u64, batch: &mut Vec<(u64, u64, u64)>) -> io::Result<()> {
    batch.sort_by_key(|b| b.0);
    let Some(first) = batch.first() else {
        return Ok(());
    };
    let mut start = first.0 / WINDOW * WINDOW;
    let mut window = vec![0u8; (WINDOW.min(slots) * SLOT) as usize];
    let mut carry: Vec<(u64, u64)> = Vec::new();
    let mut rest = &batch[..];
    loop {
        let len = WINDOW.min(slots - start);
        let buf = &mut window[..(len * SLOT) as usize];
        file.read_exact_at(buf, HEADER + start * SLOT)?;
        let n = rest.iter().take_while(|b| b.0 < start + len).count();
        let mut next = Vec::new();
        let from_carry = carry.drain(..).map(|(t, l)| (start, t, l));
        for (h, t, l) in from_carry.chain(rest[..n].iter().copied()) {
            match (h - start..len).find(|&i| slot_tag(buf, i) == 0) {
                Some(i) => {
                    let at = (i * SLOT) as usize;
                    buf[at..at + 8].copy_from_slice(&t.to_le_bytes());
                    buf[at + 8..at + 16].copy_from_slice(&l.to_le_bytes());
                }
                None => next.push((t, l)),
            }
        }
        file.write_all_at(buf, HEADER + start * SLOT)?;
        rest = &rest[n..];
        carry = next;
        if start + len == slots {
            break;
        }
        start = match (carry.is_empty(), rest.first()) {
            (false, _) => start + len,
            (true, Some(b)) => b.0 / WINDOW * WINDOW,
            (true, None) => break,
        };
    }
    // Probes that ran past the table's end go on from its start.
    for (t, l) in carry {
        place_one(file, slots, 0, t, l)?;
    }
    batch.clear();
    Ok(())
}

/// The tag of slot `i` of a window.
fn slot_tag(buf: &[u8], i: u64) -> u64 {
    let at = (i * SLOT) as usize;
    let mut t = [0u8; 8];
    t.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(t)
}

/// Places one slot by probing from `i`, a slot at a time.
fn place_one(file: &File, slots: u64, mut i: u64, t: u64, loc: u64) -> io::Result<()> {
    for _ in 0..slots {
        let mut slot = [0u8; SLOT as usize];
        file.read_exact_at(&mut slot, HEADER + i * SLOT)?;
        if slot_tag(&slot, 0) == 0 {
            slot[..8].copy_from_slice(&t.to_le_bytes());
            slot[8..].copy_from_slice(&loc.to_le_bytes());
            return file.write_all_at(&slot, HEADER + i * SLOT);
        }
        i = (i + 1) & (slots - 1);
    }
    Err(io::Error::other("the content index's table is full"))
}

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
    by_prefix: HashMap<u128, u64>,
    paths: PathStore,
}

impl RunIndex {
    /// An empty index keeping its paths in a new file `name` of `dir`.
    pub fn create(dir: &impl AsFd, name: &[u8]) -> io::Result<RunIndex> {
        let _ = fsx::unlink(dir.as_fd(), name);
        let file = create_rw(dir, name)?;
        // Kept open, unlinked: nothing to clear up after the run.
        fsx::unlink(dir.as_fd(), name)?;
        Ok(RunIndex {
            by_prefix: HashMap::new(),
            paths: PathStore::new(file, 0),
        })
    }

    /// Notes that `path`, written in this run, holds `hash` (the first
    /// such file is kept).
    pub fn insert(&mut self, hash: &Hash, path: &RelPath) -> io::Result<()> {
        let key = prefix(hash);
        if self.by_prefix.contains_key(&key) {
            return Ok(());
        }
        let loc = self.paths.push(hash, path)?;
        self.by_prefix.insert(key, loc);
        Ok(())
    }

    /// The file of this run holding `hash`, if any.
    pub fn get(&mut self, hash: &Hash) -> io::Result<Option<RelPath>> {
        let Some(&loc) = self.by_prefix.get(&prefix(hash)) else {
            return Ok(None);
        };
        Ok(self
            .paths
            .get(loc)?
            .and_then(|(h, p)| (h == *hash).then_some(p)))
    }
}

fn prefix(hash: &Hash) -> u128 {
    u128::from_le_bytes(hash.0[..16].try_into().unwrap_or([0; 16]))
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

    #[test]
    fn a_batch_placed_by_windows_is_found_as_placed_one_by_one() -> io::Result<()> {
        let file = tempfile::tempfile()?;
        let slots = 4 * WINDOW;
        file.set_len(HEADER + slots * SLOT)?;
        // Runs of one home at a window's end (they spill into the next
        // window) and at the table's end (they wrap around), a tag twice.
        let mut batch = Vec::new();
        for (home, n) in [(WINDOW - 2, 5), (3 * WINDOW + 1, 3), (slots - 1, 4), (7, 2)] {
            for k in 0..n {
                batch.push((home, (home << 8) | (k << 1) | 1, batch.len() as u64));
            }
        }
        batch.push((WINDOW - 2, ((WINDOW - 2) << 8) | 1, 999));
        let placed = batch.clone();
        place(&file, slots, &mut batch.clone())?;
        assert!(batch.len() == placed.len());
        for &(home, t, loc) in &placed {
            let mut i = home;
            let found = loop {
                let mut slot = [0u8; SLOT as usize];
                file.read_exact_at(&mut slot, HEADER + i * SLOT)?;
                let have = slot_tag(&slot, 0);
                assert_ne!(have, 0, "slot of {loc} not found");
                if have == t {
                    break u64::from_le_bytes(slot[8..].try_into().map_err(io::Error::other)?);
                }
                i = (i + 1) & (slots - 1);
            };
            // The first of a tag in the batch's order is found first.
            let first = placed.iter().find(|b| b.1 == t).map(|b| b.2);
            assert_eq!(Some(found), first);
        }
        Ok(())
    }
}
