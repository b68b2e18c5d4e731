//! The rsync delta format that fast_rsync writes, read and written here so
//! that deltas can be cut into bounded windows (client) and applied with
//! positioned reads and strict bounds (helper).
//!
//! A delta is the big-endian `u32` magic `0x72730236`, then commands:
//! `0x00` ends it; `0x01..=0x40` is a literal of that many bytes;
//! `0x41..=0x44` a literal whose length follows in 1, 2, 4 or 8 bytes;
//! `0x45..=0x54` a copy from the base, with `m = op - 0x45`, an offset of
//! `1 << (m / 4)` bytes and a length of `1 << (m % 4)` bytes. Nothing may
//! follow the end.

/// The first four bytes of a delta.
pub const DELTA_MAGIC: u32 = 0x7273_0236;
/// The first four bytes of an MD4 signature.
pub const SIGNATURE_MAGIC: u32 = 0x7273_0136;

/// Why a delta or signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// Not the expected magic.
    #[error("not an rsync delta (bad magic)")]
    Magic,
    /// It ends inside a command.
    #[error("delta cut short")]
    Truncated,
    /// An unknown command byte.
    #[error("unknown delta command {0:#x}")]
    Command(u8),
    /// A copy of zero bytes.
    #[error("empty copy in delta")]
    EmptyCopy,
    /// Bytes after the end command.
    #[error("bytes after the end of a delta")]
    Trailing,
    /// No end command.
    #[error("delta without an end")]
    NoEnd,
    /// A signature that would make diffing panic, loop or lie.
    #[error("bad signature: {0}")]
    Signature(String),
}

/// One command of a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOp<'a> {
    /// Copy `len` bytes from `offset` of the base.
    Copy {
        /// Offset in the base.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// These bytes.
    Literal(&'a [u8]),
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], DeltaError> {
    if data.len() < n {
        return Err(DeltaError::Truncated);
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Ok(head)
}

fn uint(data: &mut &[u8], width: usize) -> Result<u64, DeltaError> {
    let bytes = take(data, width)?;
    Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Parses a whole delta into its commands (literals borrow from it).
pub fn parse(delta: &[u8]) -> Result<Vec<DeltaOp<'_>>, DeltaError> {
    let mut data = delta;
    if uint(&mut data, 4).map_err(|_| DeltaError::Magic)? != u64::from(DELTA_MAGIC) {
        return Err(DeltaError::Magic);
    }
    let mut ops = Vec::new();
    loop {
        let Some((&op, rest)) = data.split_first() else {
            return Err(DeltaError::NoEnd);
        };
        data = rest;
        match op {
            0 => {
                return if data.is_empty() {
                    Ok(ops)
                } else {
                    Err(DeltaError::Trailing)
                };
            }
            1..=0x40 => ops.push(DeltaOp::Literal(take(&mut data, usize::from(op))?)),
            0x41..=0x44 => {
                let len = uint(&mut data, 1 << (op - 0x41))?;
                let len = usize::try_from(len).map_err(|_| DeltaError::Truncated)?;
                ops.push(DeltaOp::Literal(take(&mut data, len)?));
            }
            0x45..=0x54 => {
                let m = op - 0x45;
                let offset = uint(&mut data, 1 << (m / 4))?;
                let len = uint(&mut data, 1 << (m % 4))?;
                if len == 0 {
                    return Err(DeltaError::EmptyCopy);
                }
                ops.push(DeltaOp::Copy { offset, len });
            }
            other => return Err(DeltaError::Command(other)),
        }
    }
}

fn width(v: u64) -> u8 {
    match v {
        0..=0xFF => 0,
        0x100..=0xFFFF => 1,
        0x1_0000..=0xFFFF_FFFF => 2,
        _ => 3,
    }
}

fn put(out: &mut Vec<u8>, v: u64, w: u8) {
    out.extend_from_slice(&v.to_be_bytes()[8 - (1usize << w)..]);
}

/// Writes a standalone delta, command by command, merging adjacent
/// literals and contiguous copies.
#[derive(Debug, Default)]
pub struct DeltaWriter {
    out: Vec<u8>,
    pending_copy: Option<(u64, u64)>,
    pending_literal: Vec<u8>,
    /// Bytes of output this delta produces so far.
    pub produced: u64,
    /// Of which literal.
    pub literal: u64,
}

impl DeltaWriter {
    /// An empty delta.
    pub fn new() -> DeltaWriter {
        let mut w = DeltaWriter::default();
        w.out.extend_from_slice(&DELTA_MAGIC.to_be_bytes());
        w
    }

    /// Appends a copy of `len` bytes from `offset` of the base. Copies whose
    /// ends pass `u64::MAX` are written as given, never merged (the helper
    /// refuses them); `produced` then stops at `u64::MAX`.
    pub fn copy(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        self.flush_literal();
        self.produced = self.produced.saturating_add(len);
        if let Some((o, l)) = &mut self.pending_copy
            && o.checked_add(*l) == Some(offset)
            && let Some(merged) = l.checked_add(len)
        {
            *l = merged;
            return;
        }
        self.flush_copy();
        self.pending_copy = Some((offset, len));
    }

    /// Appends literal bytes.
    pub fn literal(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.flush_copy();
        self.produced = self.produced.saturating_add(data.len() as u64);
        self.literal += data.len() as u64;
        self.pending_literal.extend_from_slice(data);
    }

    fn flush_copy(&mut self) {
        if let Some((offset, len)) = self.pending_copy.take() {
            let (wo, wl) = (width(offset), width(len));
            self.out.push(0x45 + wo * 4 + wl);
            put(&mut self.out, offset, wo);
            put(&mut self.out, len, wl);
        }
    }

    fn flush_literal(&mut self) {
        if self.pending_literal.is_empty() {
            return;
        }
        let lit = std::mem::take(&mut self.pending_literal);
        let n = lit.len() as u64;
        if n <= 0x40 {
            self.out.push(n as u8);
        } else {
            let w = width(n);
            self.out.push(0x41 + w);
            put(&mut self.out, n, w);
        }
        self.out.extend_from_slice(&lit);
    }

    /// Bytes the delta holds so far (roughly its size on the wire).
    pub fn len(&self) -> usize {
        self.out.len() + self.pending_literal.len() + 17
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.produced == 0
    }

    /// Ends the delta and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.flush_copy();
        self.flush_literal();
        self.out.push(0);
        self.out
    }
}

/// What a validated signature says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureShape {
    /// Block size.
    pub block_size: u32,
    /// Bytes of strong hash per block.
    pub hash_size: u32,
    /// Number of blocks.
    pub blocks: u64,
}

/// Checks a serialized MD4 signature of a `base_size`-byte file before it
/// is used: fast_rsync panics or loops on a block size of 0 and trusts the
/// rest, so the shape must be consistent with the file.
pub fn check_signature(sig: &[u8], base_size: u64) -> Result<SignatureShape, DeltaError> {
    let bad = |why: &str| DeltaError::Signature(why.to_string());
    if sig.len() < 12 {
        return Err(bad("shorter than its header"));
    }
    let word = |i: usize| u32::from_be_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
    if word(0) != SIGNATURE_MAGIC {
        return Err(bad("not an MD4 rsync signature"));
    }
    let (block_size, hash_size) = (word(4), word(8));
    if block_size == 0 || block_size > 1 << 26 {
        return Err(bad("block size out of range"));
    }
    if !(4..=16).contains(&hash_size) {
        return Err(bad("strong hash size out of range"));
    }
    let per = 4 + hash_size as usize;
    if !(sig.len() - 12).is_multiple_of(per) {
        return Err(bad("length is not a whole number of blocks"));
    }
    let blocks = ((sig.len() - 12) / per) as u64;
    if blocks != base_size.div_ceil(u64::from(block_size)) || blocks > u64::from(u32::MAX) {
        return Err(bad("block count does not match the file's size"));
    }
    Ok(SignatureShape {
        block_size,
        hash_size,
        blocks,
    })
}

/// The block size for a base file of `size` bytes: about its square root,
/// at least 4 KiB, at most 128 KiB, but large enough that a signature has
/// at most 256 Ki blocks; always a multiple of 4 KiB, so that the blocks a
/// delta copies from the base stay aligned to a filesystem's blocks and can
/// be cloned instead of copied.
pub fn block_size_for(size: u64) -> u32 {
    const PAGE: u64 = 4096;
    let root = (size as f64).sqrt() as u64;
    let b = root
        .clamp(PAGE, 128 * 1024)
        .max(size.div_ceil(256 * 1024))
        .next_multiple_of(PAGE);
    u32::try_from(b.min(1 << 26)).unwrap_or(1 << 26)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_parser_agree() -> Result<(), DeltaError> {
        let mut w = DeltaWriter::new();
        w.copy(0, 10);
        w.copy(10, 5); // merges
        w.literal(b"hello");
        w.literal(&[7u8; 300]); // merges, long form
        w.copy(1 << 40, 70_000);
        let bytes = w.finish();
        let ops = parse(&bytes)?;
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0], DeltaOp::Copy { offset: 0, len: 15 });
        assert!(matches!(ops[1], DeltaOp::Literal(l) if l.len() == 305));
        assert_eq!(
            ops[2],
            DeltaOp::Copy {
                offset: 1 << 40,
                len: 70_000
            }
        );
        Ok(())
    }

    #[test]
    fn writer_keeps_copies_that_reach_past_u64() -> Result<(), DeltaError> {
        // Found by fuzzing: contiguity and totals overflowed (a panic in
        // debug builds, a wrong merge in release builds).
        let mut w = DeltaWriter::new();
        w.copy(u64::MAX, 1);
        w.copy(0, 5);
        w.copy(5, u64::MAX);
        w.copy(u64::MAX, 1);
        assert_eq!(w.produced, u64::MAX);
        w.literal(b"x");
        assert_eq!(w.produced, u64::MAX);
        let bytes = w.finish();
        assert_eq!(
            parse(&bytes)?,
            vec![
                DeltaOp::Copy {
                    offset: u64::MAX,
                    len: 1
                },
                DeltaOp::Copy { offset: 0, len: 5 },
                DeltaOp::Copy {
                    offset: 5,
                    len: u64::MAX
                },
                DeltaOp::Copy {
                    offset: u64::MAX,
                    len: 1
                },
                DeltaOp::Literal(b"x"),
            ]
        );
        Ok(())
    }

    #[test]
    fn parses_what_fast_rsync_writes() -> Result<(), DeltaError> {
        let base: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut new = base.clone();
        new[100_000..100_010].copy_from_slice(b"0123456789");
        new.extend_from_slice(b"tail");
        let sig = fast_rsync::Signature::calculate(
            &base,
            fast_rsync::SignatureOptions {
                block_size: 2048,
                crypto_hash_size: 8,
            },
        );
        check_signature(sig.serialized(), base.len() as u64)?;
        let mut delta = Vec::new();
        fast_rsync::diff(&sig.index(), &new, &mut delta).map_err(|_| DeltaError::Truncated)?;
        let mut rebuilt = Vec::new();
        for op in parse(&delta)? {
            match op {
                DeltaOp::Copy { offset, len } => {
                    rebuilt.extend_from_slice(&base[offset as usize..(offset + len) as usize])
                }
                DeltaOp::Literal(l) => rebuilt.extend_from_slice(l),
            }
        }
        assert_eq!(rebuilt, new);
        Ok(())
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(parse(b"nope"), Err(DeltaError::Magic));
        let mut d = DELTA_MAGIC.to_be_bytes().to_vec();
        assert_eq!(parse(&d), Err(DeltaError::NoEnd));
        d.extend_from_slice(&[0x45, 0, 0, 0]);
        assert_eq!(parse(&d), Err(DeltaError::EmptyCopy));
        let mut d = DELTA_MAGIC.to_be_bytes().to_vec();
        d.extend_from_slice(&[0x44, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(parse(&d), Err(DeltaError::Truncated));
        let mut d = DELTA_MAGIC.to_be_bytes().to_vec();
        d.extend_from_slice(&[0x99, 0]);
        assert_eq!(parse(&d), Err(DeltaError::Command(0x99)));
        let mut d = DELTA_MAGIC.to_be_bytes().to_vec();
        d.extend_from_slice(&[0, 0]);
        assert_eq!(parse(&d), Err(DeltaError::Trailing));
    }

    #[test]
    fn hostile_signatures_are_refused() {
        let sig = |bs: u32, hs: u32, blocks: usize| {
            let mut v = SIGNATURE_MAGIC.to_be_bytes().to_vec();
            v.extend_from_slice(&bs.to_be_bytes());
            v.extend_from_slice(&hs.to_be_bytes());
            v.extend(std::iter::repeat_n(0u8, blocks * (4 + hs as usize)));
            v
        };
        assert!(check_signature(&sig(0, 8, 0), 0).is_err(), "block size 0");
        assert!(
            check_signature(&sig(2048, 17, 1), 100).is_err(),
            "hash size 17"
        );
        assert!(
            check_signature(&sig(2048, 3, 1), 100).is_err(),
            "hash size 3"
        );
        assert!(
            check_signature(&sig(2048, 4, 1), 100).is_ok(),
            "hash size 4"
        );
        assert!(
            check_signature(&sig(2048, 8, 5), 100).is_err(),
            "lying count"
        );
        assert!(
            check_signature(&sig(2048, 8, 1)[..20], 100).is_err(),
            "truncated"
        );
        assert!(
            check_signature(b"\x72\x73\x01\x37aaaaaaaa", 0).is_err(),
            "blake2"
        );
        assert!(check_signature(&sig(2048, 8, 1), 100).is_ok());
        assert!(check_signature(&sig(2048, 8, 0), 0).is_ok());
    }

    #[test]
    fn block_sizes() {
        assert_eq!(block_size_for(0), 4096);
        assert_eq!(block_size_for(100 << 20), 12_288);
        assert_eq!(block_size_for(3 << 30), 57_344);
        assert_eq!(block_size_for(1 << 30), 32768);
        assert_eq!(block_size_for(1 << 40), 4_194_304);
        for size in (0..64).map(|i| (1u64 << (i % 45)) + i * 7919) {
            assert_eq!(block_size_for(size) % 4096, 0, "size {size}");
        }
    }
}
