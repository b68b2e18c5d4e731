//! A signature computed as a file is written: the bytes of a file of a
//! known length are fed in order, in pieces of any size, and at the end
//! [`Signer::finish`] gives the same signature [`crate::diff::sign`] would
//! read from the finished file, without reading it again.
//!
//! Blocks are gathered into a window of whole blocks (about 4 MiB) and
//! signed a window at a time with fast_rsync's multi-buffer routine.

use fast_rsync::Signature;
pub use fast_rsync::SignatureOptions;

use crate::diff::{HEADER, options_for};

/// About this many bytes of whole blocks are signed at once.
const WINDOW: usize = 4 << 20;

/// A signature being built from a file's bytes.
pub struct Signer {
    opts: SignatureOptions,
    len: u64,
    fed: u64,
    window: Vec<u8>,
    cap: usize,
    out: Vec<u8>,
}

impl Signer {
    /// A signer for a file of `len` bytes, in [`options_for`] it.
    pub fn new(len: u64) -> Signer {
        Signer::with_options(len, options_for(len))
    }

    /// A signer for a file of `len` bytes, in `opts`.
    pub fn with_options(len: u64, opts: SignatureOptions) -> Signer {
        let block = opts.block_size as usize;
        let cap = block * (WINDOW / block).max(1);
        // Not reserved from `len`: it is what a peer announced.
        let out = Signature::calculate(&[], opts).into_serialized();
        Signer {
            opts,
            len,
            fed: 0,
            window: Vec::with_capacity(cap.min(usize::try_from(len).unwrap_or(cap))),
            cap,
            out,
        }
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        self.fed = self.fed.saturating_add(data.len() as u64);
        while !data.is_empty() {
            let n = (self.cap - self.window.len()).min(data.len());
            self.window.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.window.len() == self.cap {
                self.sign_window();
            }
        }
    }

    fn sign_window(&mut self) {
        let sig = Signature::calculate(&self.window, self.opts);
        self.out.extend_from_slice(&sig.serialized()[HEADER..]);
        self.window.clear();
    }

    /// The block size and strong hash size it signs with.
    pub fn options(&self) -> (u32, u32) {
        (self.opts.block_size, self.opts.crypto_hash_size)
    }

    /// Whether what was fed so far ends on a block boundary.
    pub fn at_block(&self) -> bool {
        self.fed.is_multiple_of(u64::from(self.opts.block_size))
    }

    /// Takes `entries` (rolling checksum and strong hash per block, in this
    /// signer's options) as those of the next whole blocks, whose bytes are
    /// not fed: they are known to be blocks another signature describes.
    /// Returns false, taking nothing, unless it is at a block boundary and
    /// the blocks are whole ones within the announced length.
    pub fn take_blocks(&mut self, entries: &[u8]) -> bool {
        let per = 4 + self.opts.crypto_hash_size as usize;
        let bs = u64::from(self.opts.block_size);
        if !self.at_block() || !entries.len().is_multiple_of(per) {
            return false;
        }
        let bytes = (entries.len() / per) as u64 * bs;
        if self.fed.checked_add(bytes).is_none_or(|end| end > self.len) {
            return false;
        }
        if !self.window.is_empty() {
            self.sign_window();
        }
        self.out.extend_from_slice(entries);
        self.fed += bytes;
        true
    }

    /// The signature, if exactly the announced length was fed.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.fed != self.len {
            return None;
        }
        if !self.window.is_empty() {
            self.sign_window();
        }
        Some(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::sign_bytes;

    fn data(n: usize) -> Vec<u8> {
        (0..n as u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 29) as u8)
            .collect()
    }

    #[test]
    fn pieces_of_any_size_sign_as_the_whole_file_does() {
        for n in [0usize, 1, 4095, 4096, 100_000, (9 << 20) + 12_345] {
            let d = data(n);
            for piece in [1usize << 20, 7_777, 65_536] {
                let mut s = Signer::new(n as u64);
                for c in d.chunks(piece) {
                    s.update(c);
                }
                assert!(s.finish() == Some(sign_bytes(&d)), "{n} bytes in {piece}");
            }
        }
    }

    #[test]
    fn blocks_taken_from_another_signature_sign_as_if_fed() {
        let n = (6 << 20) + 999;
        let d = data(n);
        let whole = sign_bytes(&d);
        let mut s = Signer::new(n as u64);
        let (bs, hs) = s.options();
        let (bs, per) = (bs as usize, 4 + hs as usize);
        // Feed 3 blocks and a bit: not at a block boundary, nothing taken.
        s.update(&d[..3 * bs + 1]);
        assert!(!s.take_blocks(&whole[HEADER..HEADER + per]));
        s.update(&d[3 * bs + 1..5 * bs]);
        // Blocks 5..9 from the signature itself, the rest fed.
        assert!(s.take_blocks(&whole[HEADER + 5 * per..HEADER + 9 * per]));
        s.update(&d[9 * bs..]);
        assert!(s.finish() == Some(whole));
        // Past the announced length: refused.
        let mut s = Signer::new(bs as u64);
        assert!(!s.take_blocks(&[0; 40][..2 * per]));
    }

    #[test]
    fn a_file_that_grows_a_little_keeps_its_base_s_blocks() {
        use crate::diff::{acceptable_shape, options_following};
        let base = options_for(1 << 30);
        let grown = options_following(base.block_size, (1 << 30) + (1 << 20));
        assert_eq!(grown.block_size, base.block_size);
        assert_ne!(
            options_for((1 << 30) + (1 << 20)).block_size,
            base.block_size
        );
        // Far from the base's size, the file's own blocks.
        let far = options_following(4096, 1 << 34);
        assert_eq!(far.block_size, options_for(1 << 34).block_size);
        // What it gives is always as safe as a fresh signature.
        for len in [1u64 << 20, (1 << 30) + 7, 1 << 36] {
            let o = options_following(base.block_size, len);
            let shape = crate::delta::SignatureShape {
                block_size: o.block_size,
                hash_size: o.crypto_hash_size,
                blocks: len.div_ceil(u64::from(o.block_size)),
            };
            assert!(acceptable_shape(&shape), "{len}");
        }
    }

    #[test]
    fn too_few_or_too_many_bytes_give_no_signature() {
        let d = data(10_000);
        let mut s = Signer::new(10_001);
        s.update(&d);
        assert!(s.finish().is_none());
        let mut s = Signer::new(9_999);
        s.update(&d);
        assert!(s.finish().is_none());
    }
}
