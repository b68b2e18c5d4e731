//! The extent-map results of `offsnap snapshots` kept between listings, so
//! that listing a big store on a filesystem that clones does not map every
//! single-link file again ([`crate::extents`]).
//!
//! The cache is one file of the set, `.offsnap/extents`: for each file
//! mapped, its shared bytes, keyed by device, inode, size, mtime and ctime
//! (a file rewritten or whose metadata changed is mapped again). Which
//! extents are shared also depends on the *other* files: a new snapshot
//! cloned from an old one, or a snapshot deleted, changes what the old one
//! shares without touching its inodes. The cache therefore names the list
//! of snapshots it was made for (names and manifest hashes, hashed) and is
//! used only for that same list.
//!
//! It is written whole under a temporary name and renamed into place, at
//! most [`MAX_RECORDS`] files, and ends with a BLAKE3 of what comes before.
//! A cache that is missing, damaged, too large or made for another list is
//! ignored and rebuilt; whatever it holds is only ever a size figure
//! (clamped to the file's size), never a reason to trust a file.

use std::collections::HashMap;
use std::io::{Read, Write};

use offsnap_fs::fsx;
use offsnap_protocol::SnapshotInfo;

use crate::set::SetDir;

/// The cache's name in `.offsnap`.
const NAME: &[u8] = b"extents";
const MAGIC: &[u8; 16] = b"offsnap-extents1";
/// Files kept at most (64 bytes each: about 12 MiB).
pub const MAX_RECORDS: usize = 200_000;
const RECORD: usize = 64;

/// What identifies one version of a stored file: device, inode, size,
/// mtime and ctime (seconds, nanoseconds).
pub type Key = [u64; 7];

/// The key of a file from its `lstat` and size.
pub fn key(st: &rustix::fs::Stat, size: u64) -> Key {
    #[allow(clippy::unnecessary_cast)]
    [
        st.st_dev as u64,
        st.st_ino as u64,
        size,
        st.st_mtime as u64,
        st.st_mtime_nsec as u64,
        st.st_ctime as u64,
        st.st_ctime_nsec as u64,
    ]
}

/// The results read from the set's cache, and those of this listing.
pub struct ExtentCache {
    generation: [u8; 32],
    old: HashMap<Key, u64>,
    new: HashMap<Key, u64>,
    /// Files mapped in this listing (not found in the cache).
    mapped: u64,
}

impl ExtentCache {
    /// The cache of `set` for the list `snaps`; empty when there is none
    /// usable.
    pub fn load(set: &SetDir, snaps: &[SnapshotInfo]) -> ExtentCache {
        let generation = generation(snaps);
        let old = read(set, &generation).unwrap_or_default();
        ExtentCache {
            generation,
            old,
            new: HashMap::new(),
            mapped: 0,
        }
    }

    /// The shared bytes of the file `key` names (of `key[2]` bytes): from
    /// the cache, else from `map` (0 if it fails, as the listing counts a
    /// file it cannot map whole).
    pub fn shared(&mut self, key: Key, map: impl FnOnce() -> std::io::Result<u64>) -> u64 {
        if let Some(&n) = self.new.get(&key) {
            return n;
        }
        let n = match self.old.get(&key) {
            Some(&n) => n,
            None => {
                self.mapped += 1;
                map().unwrap_or(0)
            }
        };
        let n = n.min(key[2]);
        self.new.insert(key, n);
        n
    }

    /// Files mapped because the cache did not know them.
    pub fn mapped(&self) -> u64 {
        self.mapped
    }

    /// Writes this listing's results as the set's cache, if they differ
    /// from what was read. Failures (a read-only store, a full disk) are
    /// ignored: the next listing maps again.
    pub fn save(self, set: &SetDir) {
        if self.mapped == 0 && self.new.len() == self.old.len() {
            return;
        }
        let _ = write(set, &self.generation, &self.new);
    }
}

/// What names a list of snapshots.
fn generation(snaps: &[SnapshotInfo]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for s in snaps {
        h.update(s.name.to_string().as_bytes());
        h.update(&[0]);
        h.update(&s.manifest_hash.0);
    }
    *h.finalize().as_bytes()
}

/// The cache's records, if it is whole and made for `generation`.
fn read(set: &SetDir, generation: &[u8; 32]) -> Option<HashMap<Key, u64>> {
    let f = fsx::open_file(set.meta_fd(), NAME).ok()?;
    let mut bytes = Vec::new();
    let max = (MAGIC.len() + 32 + 8 + MAX_RECORDS * RECORD + 32) as u64;
    f.take(max + 1).read_to_end(&mut bytes).ok()?;
    parse(&bytes, generation)
}

/// Checks and decodes a cache's bytes.
pub fn parse(bytes: &[u8], generation: &[u8; 32]) -> Option<HashMap<Key, u64>> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let rest = body.strip_prefix(MAGIC)?.strip_prefix(generation)?;
    let (count, records) = rest.split_at_checked(8)?;
    let count = usize::try_from(u64::from_le_bytes(count.try_into().ok()?)).ok()?;
    if count > MAX_RECORDS || records.len() != count.checked_mul(RECORD)? {
        return None;
    }
    let word = |r: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&r[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    Some(
        records
            .chunks_exact(RECORD)
            .map(|r| (std::array::from_fn(|i| word(r, i)), word(r, 7)))
            .collect(),
    )
}

/// Encodes records as a cache (at most [`MAX_RECORDS`] of them).
pub fn encode(generation: &[u8; 32], records: &HashMap<Key, u64>) -> Vec<u8> {
    let n = records.len().min(MAX_RECORDS);
    let mut out = Vec::with_capacity(MAGIC.len() + 32 + 8 + n * RECORD + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(generation);
    out.extend_from_slice(&(n as u64).to_le_bytes());
    for (key, shared) in records.iter().take(n) {
        for w in key.iter().chain([shared]) {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

fn write(set: &SetDir, generation: &[u8; 32], records: &HashMap<Key, u64>) -> std::io::Result<()> {
    let dir = set.meta_fd();
    let (tmp, mut f) = fsx::create_temp(dir)?;
    let done = f
        .write_all(&encode(generation, records))
        .and_then(|()| fsx::rename(dir, &tmp, NAME, true));
    if done.is_err() {
        let _ = fsx::unlink(dir, &tmp);
    }
    done
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_reads_back_only_whole_and_for_its_own_list() {
        let g = [7u8; 32];
        let records: HashMap<Key, u64> =
            (0..100u64).map(|i| ([1, i, 4096, 5, 6, 7, 8], i)).collect();
        let bytes = encode(&g, &records);
        assert_eq!(parse(&bytes, &g), Some(records));
        assert_eq!(parse(&bytes, &[8u8; 32]), None, "another list of snapshots");
        for cut in [0, 1, 40, bytes.len() - 1] {
            assert_eq!(parse(&bytes[..cut], &g), None, "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[70] ^= 1;
        assert_eq!(parse(&flipped, &g), None, "a flipped bit");
        assert_eq!(parse(b"garbage", &g), None);
    }

    #[test]
    fn a_cached_figure_is_never_more_than_the_file() {
        let mut c = ExtentCache {
            generation: [0; 32],
            old: HashMap::from([([1, 2, 100, 0, 0, 0, 0], u64::MAX)]),
            new: HashMap::new(),
            mapped: 0,
        };
        assert_eq!(c.shared([1, 2, 100, 0, 0, 0, 0], || Ok(0)), 100);
        assert_eq!(c.shared([1, 3, 100, 0, 0, 0, 0], || Ok(40)), 40);
        assert_eq!(
            c.shared([1, 3, 100, 0, 0, 0, 0], || Ok(99)),
            40,
            "asked once"
        );
        assert_eq!(c.mapped(), 1);
    }
}
