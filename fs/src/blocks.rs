//! A file's BLAKE3 and the hashes of its fixed-size blocks, in one pass.
//!
//! A large file on a filesystem that clones keeps, beside the snapshot, a
//! hash of each of its [`BLOCK`]-byte blocks. The next version of the
//! file begins as a clone of this one and is compared with it block by
//! block *by these hashes*, so the clone (whose page cache is its own, so
//! cold even when its source was just read) is never read back for the
//! blocks that did not change.
//!
//! The block hashes are the BLAKE3 chaining values of the blocks as
//! subtrees of the file's own BLAKE3 tree (a block is 64 chunks, a
//! power of two, so every block but a lone one is such a subtree), merged
//! into the file's hash as they come: hashing the blocks costs nothing on
//! top of hashing the file. Each is kept to [`HASH_LEN`] bytes; a block
//! hash depends on the block's bytes, its length and its offset.

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};
use offsnap_protocol::Hash;

/// The size of a hashed block (a multiple of the usual filesystem block).
pub const BLOCK: usize = 64 * 1024;

/// Bytes kept of each block's hash.
pub const HASH_LEN: usize = 16;

/// A block's kept hash.
pub type BlockHash = [u8; HASH_LEN];

/// How many block hashes a file of `len` bytes has.
pub fn count(len: u64) -> u64 {
    len.div_ceil(BLOCK as u64)
}

/// Hashes a file as it is written, and each of its blocks.
pub struct BlockHasher {
    /// The file's hash while it is no longer than one block (a lone block
    /// is the root of its tree, not a subtree).
    first: blake3::Hasher,
    /// The part of the block being filled that came in earlier pieces.
    buf: Vec<u8>,
    /// Bytes hashed so far.
    len: u64,
    /// The chaining value of the last full block, merged into the stack
    /// only once more data shows it is not the last.
    pending: Option<ChainingValue>,
    /// Chaining values of complete subtrees, largest first.
    stack: Vec<ChainingValue>,
    /// Blocks merged into the stack.
    merged: u64,
    /// The kept hashes of the blocks so far, [`HASH_LEN`] bytes each.
    hashes: Vec<u8>,
}

impl Default for BlockHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockHasher {
    /// A hasher for a new file.
    pub fn new() -> BlockHasher {
        BlockHasher {
            first: blake3::Hasher::new(),
            buf: Vec::new(),
            len: 0,
            pending: None,
            stack: Vec::new(),
            merged: 0,
            hashes: Vec::new(),
        }
    }

    /// Hashes `data`, which follows what came before. Each block completed
    /// (and, once the file's length `end` is reached, the short last one)
    /// is given to `each` with its offset and hash, in order.
    pub fn update<E>(
        &mut self,
        mut data: &[u8],
        end: u64,
        mut each: impl FnMut(u64, &[u8], &BlockHash) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.len < BLOCK as u64 {
            let n = (BLOCK as u64 - self.len).min(data.len() as u64) as usize;
            self.first.update(&data[..n]);
        }
        while !data.is_empty() {
            self.merge_pending();
            let at = self.len - self.buf.len() as u64;
            let room = BLOCK - self.buf.len();
            let take = room.min(data.len());
            let (piece, rest) = data.split_at(take);
            self.len += take as u64;
            data = rest;
            let full = take == room;
            if !full && self.len != end {
                self.buf.extend_from_slice(piece);
                continue;
            }
            // A block is complete: hashed where it lies when it came in
            // one piece.
            let block = if self.buf.is_empty() {
                piece
            } else {
                self.buf.extend_from_slice(piece);
                &self.buf[..]
            };
            let cv = block_cv(at, block);
            let hash = short(&cv);
            self.hashes.extend_from_slice(&hash);
            each(at, block, &hash)?;
            if full {
                self.pending = Some(cv);
                self.buf.clear();
            } else if self.buf.is_empty() {
                // The short last block stays, for the file's hash.
                self.buf.extend_from_slice(piece);
            }
        }
        Ok(())
    }

    /// Merges the last full block into the stack, now that data follows it
    /// (the way BLAKE3 itself merges chunks, a block standing for one).
    fn merge_pending(&mut self) {
        let Some(mut cv) = self.pending.take() else {
            return;
        };
        self.merged += 1;
        let mut total = self.merged;
        while total & 1 == 0 {
            if let Some(left) = self.stack.pop() {
                cv = merge_subtrees_non_root(&left, &cv, Mode::Hash);
            }
            total >>= 1;
        }
        self.stack.push(cv);
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was hashed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The BLAKE3 of everything hashed so far.
    pub fn finalize(&self) -> Hash {
        if self.len <= BLOCK as u64 {
            return Hash::from(self.first.finalize());
        }
        // The last subtree: the block being filled (or the short last
        // one), else the last full block; then the stack, right to left.
        let mut right = match (self.buf.is_empty(), &self.pending) {
            (false, _) => block_cv(self.len - self.buf.len() as u64, &self.buf),
            (true, Some(cv)) => *cv,
            (true, None) => return Hash::from(self.first.finalize()),
        };
        let Some((bottom, above)) = self.stack.split_first() else {
            return Hash::from(self.first.finalize());
        };
        for left in above.iter().rev() {
            right = merge_subtrees_non_root(left, &right, Mode::Hash);
        }
        Hash::from(merge_subtrees_root(bottom, &right, Mode::Hash))
    }

    /// The hashes of the blocks so far, [`HASH_LEN`] bytes each; all of
    /// them once the file's length was reached.
    pub fn hashes(&self) -> &[u8] {
        &self.hashes
    }

    /// Takes the block hashes.
    pub fn take_hashes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.hashes)
    }
}

/// The chaining value of a (non-empty) block at offset `at`.
fn block_cv(at: u64, block: &[u8]) -> ChainingValue {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(at);
    h.update(block);
    h.finalize_non_root()
}

fn short(cv: &ChainingValue) -> BlockHash {
    let mut h = [0u8; HASH_LEN];
    h.copy_from_slice(&cv[..HASH_LEN]);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn data(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_u32;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// Hashes `d` in pieces of `step` bytes; returns the hash after every
    /// piece and the blocks handed on.
    fn run(d: &[u8], step: usize) -> (BlockHasher, Vec<(u64, usize)>) {
        let mut h = BlockHasher::new();
        let mut seen = Vec::new();
        for piece in d.chunks(step.max(1)) {
            h.update(piece, d.len() as u64, |at, b, hash| {
                assert_eq!(&short(&block_cv(at, b)), hash);
                seen.push((at, b.len()));
                Ok::<(), Infallible>(())
            })
            .unwrap_or_else(|e| match e {});
            assert_eq!(h.finalize(), Hash::of(&d[..h.len() as usize]));
        }
        (h, seen)
    }

    #[test]
    fn the_hash_is_blake3_and_every_block_is_handed_on_once() {
        let b = BLOCK;
        for len in [
            0,
            1,
            1024,
            1025,
            b - 1,
            b,
            b + 1,
            2 * b,
            3 * b + 7,
            4 * b,
            5 * b,
            8 * b + 1,
            13 * b,
        ] {
            let d = data(len);
            for step in [1000, b, 3 * b + 5, len.max(1)] {
                if len > 4 * b && step == 1000 {
                    continue;
                }
                let (h, seen) = run(&d, step);
                assert_eq!(h.finalize(), Hash::of(&d), "len {len} step {step}");
                assert_eq!(
                    seen.len() as u64,
                    count(len as u64),
                    "len {len} step {step}"
                );
                for (i, (at, n)) in seen.iter().enumerate() {
                    assert_eq!(*at, (i * b) as u64);
                    assert_eq!(*n, b.min(len - i * b));
                }
                assert_eq!(h.hashes().len(), seen.len() * HASH_LEN);
            }
        }
    }

    #[test]
    fn a_block_hash_changes_with_the_block_and_its_place() {
        let d = data(2 * BLOCK);
        let (a, _) = run(&d, BLOCK);
        let mut e = d.clone();
        e[BLOCK + 5] ^= 1;
        let (b, _) = run(&e, BLOCK);
        assert_eq!(a.hashes()[..HASH_LEN], b.hashes()[..HASH_LEN]);
        assert_ne!(a.hashes()[HASH_LEN..], b.hashes()[HASH_LEN..]);
        let same = [&d[..BLOCK], &d[..BLOCK]].concat();
        let (c, _) = run(&same, BLOCK);
        assert_ne!(c.hashes()[..HASH_LEN], c.hashes()[HASH_LEN..]);
    }
}
