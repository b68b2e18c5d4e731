//! Signatures and block hashes kept beside the newest snapshot, so that a
//! large file's next delta does not begin by reading its whole base again,
//! and its next version sent whole over a clone of it (a local destination
//! on a filesystem that clones) is compared with it without reading it.
//!
//! A file of at least [`KEEP_FROM`] bytes is signed as it is written
//! ([`offsnap_fs::tree::FileSink::sign_as_written`]: the bytes pass through
//! memory anyway, for its BLAKE3), and the signature goes to
//! `.offsnap/signatures/<BLAKE3 of the path, hex>`, with the identity of
//! the stored inode (number, size, mtime). When the next run asks for the
//! signature of that path's base, a kept one whose identity is the base
//! file's is served instead of reading the file; an unchanged file keeps
//! its inode (a hard link), so its signature stays good for as long as
//! the file does not change.
//!
//! Nothing read here is trusted: a signature is checked for its shape
//! against the base's size like a peer's, and one that is stale or
//! damaged can at worst make a delta that does not rebuild the client's
//! file, which the BLAKE3 check catches (the file is then sent whole). It
//! is a cache: failing to write, read or sweep it only costs the read it
//! saves. After a committed run, signatures of paths the new snapshot
//! neither wrote nor linked unchanged are deleted.
//!
//! Block hashes ([`offsnap_fs::blocks`]) of a large file written on a
//! filesystem that clones go to `.offsnap/blocks/<same name>`, with the
//! same identity. They are trusted the way a hard link trusts the inode it
//! shares: a block of the next version whose hash is the kept one is left
//! as the clone has it, unread. A stored file changed in place keeps its
//! identity only if its mtime was put back too, and then a hard link to
//! it would carry the change as well; `verify` hashes what is stored.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::ops::RangeInclusive;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use offsnap_fs::{blocks, fsx};
use offsnap_protocol::{Meta, RelPath, delta::check_signature, diff::acceptable_shape};

use crate::set::SetDir;

/// Files at least this large are signed as they are written.
pub const KEEP_FROM: u64 = 16 << 20;

const MAGIC: &[u8; 8] = b"ofsig\x01\0\0";
const BLOCKS_MAGIC: &[u8; 8] = b"ofblk\x01\0\0";
const HEAD: usize = 40;

/// Which stored inode a signature is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, u32),
}

impl Identity {
    /// The identity of the open stored file `file`.
    pub fn of_file(file: &File) -> std::io::Result<Identity> {
        let st = rustix::fs::fstat(file)?;
        Ok(Identity {
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
        })
    }

    /// The identity of a file written as inode `ino`, `size` bytes, with
    /// `meta`'s mtime.
    pub fn written(ino: u64, size: u64, meta: &Meta) -> Identity {
        Identity {
            ino,
            size,
            mtime: (meta.mtime_sec, meta.mtime_nsec),
        }
    }

    fn encode(&self, magic: &[u8; 8]) -> [u8; HEAD] {
        let mut h = [0u8; HEAD];
        h[..8].copy_from_slice(magic);
        h[8..16].copy_from_slice(&self.ino.to_le_bytes());
        h[16..24].copy_from_slice(&self.size.to_le_bytes());
        h[24..32].copy_from_slice(&self.mtime.0.to_le_bytes());
        h[32..36].copy_from_slice(&self.mtime.1.to_le_bytes());
        h
    }
}

/// The set's kept signatures and block hashes, and the names this run
/// keeps.
pub struct KeptSignatures {
    dir: OwnedFd,
    blocks: Option<OwnedFd>,
    live: HashSet<[u8; 32]>,
}

fn key(path: &RelPath) -> [u8; 32] {
    *blake3::hash(path.as_bytes()).as_bytes()
}

fn name(key: &[u8; 32]) -> Vec<u8> {
    blake3::Hash::from_bytes(*key).to_hex().as_bytes().to_vec()
}

/// The longest signature kept for a file of `size` bytes (4 KiB blocks,
/// 16-byte strong hashes).
fn longest(size: u64) -> Option<u64> {
    size.div_ceil(4096).checked_mul(20)?.checked_add(12)
}

/// Whether `sig` is a signature of a `size`-byte file, shaped as safely as
/// a fresh one (see [`acceptable_shape`]).
fn fits(sig: &[u8], size: u64) -> bool {
    check_signature(sig, size).is_ok_and(|shape| acceptable_shape(&shape))
}

impl KeptSignatures {
    /// Opens (or makes) the set's `signatures` directory; `None` where it
    /// cannot be had (runs then sign as before).
    pub fn open(set: &SetDir) -> Option<KeptSignatures> {
        let dir = set.meta_dir_or_new("signatures").ok()?;
        Some(KeptSignatures {
            dir,
            blocks: set.meta_dir_or_new("blocks").ok(),
            live: HashSet::new(),
        })
    }

    /// The kept signature of `path` if it is of the file `id` describes.
    pub fn get(&self, path: &RelPath, id: Identity) -> Option<Vec<u8>> {
        let sig = read(self.dir.as_fd(), path, (id, MAGIC), 0..=longest(id.size)?)?;
        fits(&sig, id.size).then_some(sig)
    }

    /// The kept block hashes of `path` if they are of the file `id`
    /// describes.
    pub fn get_blocks(&self, path: &RelPath, id: Identity) -> Option<Vec<u8>> {
        let want = blocks_len(id.size)?;
        read(
            self.blocks.as_ref()?.as_fd(),
            path,
            (id, BLOCKS_MAGIC),
            want..=want,
        )
    }

    /// Keeps `hashes` as the block hashes of `path` in the new snapshot,
    /// stored as `id`.
    pub fn put_blocks(&mut self, path: &RelPath, id: Identity, hashes: &[u8]) {
        let Some(dir) = &self.blocks else {
            return;
        };
        if Some(hashes.len() as u64) == blocks_len(id.size)
            && write(dir.as_fd(), path, (id, BLOCKS_MAGIC), hashes)
        {
            self.live.insert(key(path));
        }
    }

    /// Keeps `sig` as the signature of `path` in the new snapshot, stored
    /// as `id`.
    pub fn put(&mut self, path: &RelPath, id: Identity, sig: &[u8]) {
        if self.write(path, id, sig) {
            self.live.insert(key(path));
        }
    }

    /// Keeps `sig` as the signature of the base's file at `path`, for a
    /// later run should this one not commit (a committed one replaces the
    /// file, or links it unchanged and keeps the signature, or sweeps it).
    pub fn put_base(&mut self, path: &RelPath, id: Identity, sig: &[u8]) {
        self.write(path, id, sig);
    }

    fn write(&self, path: &RelPath, id: Identity, sig: &[u8]) -> bool {
        fits(sig, id.size) && write(self.dir.as_fd(), path, (id, MAGIC), sig)
    }

    /// Notes that `path` is in the new snapshot as the same inode as in
    /// the base: its kept signature, if any, stays.
    pub fn keep(&mut self, path: &RelPath) {
        self.live.insert(key(path));
    }

    /// Deletes every kept signature but those of this run's paths (after
    /// the run is committed).
    pub fn sweep(&self) {
        let live: HashSet<Vec<u8>> = self.live.iter().map(name).collect();
        for dir in std::iter::once(&self.dir).chain(&self.blocks) {
            let Ok(names) = fsx::read_dir(dir.as_fd()) else {
                continue;
            };
            for (n, _) in names {
                if !live.contains(&n) {
                    let _ = fsx::unlink(dir.as_fd(), &n);
                }
            }
        }
    }
}

/// The length of the block hashes of a file of `size` bytes.
fn blocks_len(size: u64) -> Option<u64> {
    blocks::count(size).checked_mul(blocks::HASH_LEN as u64)
}

/// What is kept in `dir` for `path`, if it is of the file `id` describes
/// (and of the kind `magic` marks) and its length is in `lens`.
fn read(
    dir: BorrowedFd<'_>,
    path: &RelPath,
    (id, magic): (Identity, &[u8; 8]),
    lens: RangeInclusive<u64>,
) -> Option<Vec<u8>> {
    let mut file = fsx::open_file(dir, &name(&key(path))).ok()?;
    let len = file.metadata().ok()?.len();
    let want = len.checked_sub(HEAD as u64)?;
    if !lens.contains(&want) {
        return None;
    }
    let mut head = [0u8; HEAD];
    file.read_exact(&mut head).ok()?;
    if head != id.encode(magic) {
        return None;
    }
    let mut body = vec![0u8; usize::try_from(want).ok()?];
    file.read_exact(&mut body).ok()?;
    Some(body)
}

/// Keeps `body` in `dir` for `path`, as of the file `id` describes;
/// whether it was.
fn write(
    dir: BorrowedFd<'_>,
    path: &RelPath,
    (id, magic): (Identity, &[u8; 8]),
    body: &[u8],
) -> bool {
    let Ok((tmp, mut file)) = fsx::create_temp(dir) else {
        return false;
    };
    let written = file
        .write_all(&id.encode(magic))
        .and_then(|()| file.write_all(body))
        .and_then(|()| fsx::rename(dir, &tmp, &name(&key(path)), true));
    if written.is_err() {
        let _ = fsx::unlink(dir, &tmp);
    }
    written.is_ok()
}
