//! The delta engine: the helper's signature of a base file ([`sign`]) and
//! the client's delta of the new file against it ([`Differ`]).
//!
//! A signature is fast_rsync's MD4 format (see [`crate::delta`]) with a
//! strong hash cut to [`strong_size_for`] bytes: a false match only costs
//! a resend, because the helper keeps a rebuilt file only when its BLAKE3
//! equals the client's, and asks for it whole otherwise.
//!
//! Most changes to large files leave most blocks where they were (in-place
//! edits, appends), so the differ first hashes the new file's blocks at the
//! base's block boundaries (fast_rsync's multi-buffer MD4, on every core)
//! and compares each with the signature's block at the same offset; only
//! the regions that did not match go through fast_rsync's rolling search.
//! Once a window finds nothing in place but the rolling search finds
//! shifted copies (an insertion or deletion moved the rest of the file),
//! the in-place pass is skipped until the data lines up again.

use std::cell::OnceCell;
use std::fs::File;
use std::os::unix::fs::FileExt;

use fast_rsync::{IndexedSignature, Signature, SignatureOptions};

use crate::delta::{DeltaError, DeltaOp, DeltaWriter, SignatureShape, check_signature, parse};

/// Bytes of MD4 per block in a signature of `blocks` blocks: enough that
/// comparing every block of a file against the wrong content collides
/// with probability at most 2⁻¹⁶ on the strong hash alone (the 32-bit
/// rolling checksum comes on top), at least 4 and at most 16.
pub fn strong_size_for(blocks: u64) -> u32 {
    let log2 = u64::BITS - blocks.saturating_sub(1).leading_zeros();
    (log2 + 16).div_ceil(8).clamp(4, 16)
}

/// The signature options for a base file of `len` bytes.
pub fn options_for(len: u64) -> SignatureOptions {
    let block_size = crate::delta::block_size_for(len);
    SignatureOptions {
        block_size,
        crypto_hash_size: strong_size_for(len.div_ceil(u64::from(block_size))),
    }
}

/// The options for signing a new version of a file, `len` bytes, whose
/// base was signed in blocks of `base_block` bytes: the base's block size
/// while it is a multiple of 4 KiB within a factor of two of the one for
/// `len` (a file that grows a little keeps its blocks, so entries of the
/// blocks it shares with its base carry over), the strong hash sized for
/// the block count either way.
pub fn options_following(base_block: u32, len: u64) -> SignatureOptions {
    let own = crate::delta::block_size_for(len);
    let block_size = if base_block.is_multiple_of(4096)
        && base_block >= own / 2
        && base_block <= own.saturating_mul(2)
    {
        base_block
    } else {
        own
    };
    SignatureOptions {
        block_size,
        crypto_hash_size: strong_size_for(len.div_ceil(u64::from(block_size))),
    }
}

/// Whether a signature of this shape, for a file of `len` bytes, is as
/// safe as one [`options_for`] would make: blocks a multiple of 4 KiB and
/// a strong hash at least as long as [`strong_size_for`] its block count.
pub fn acceptable_shape(shape: &crate::delta::SignatureShape) -> bool {
    shape.block_size.is_multiple_of(4096) && shape.hash_size >= strong_size_for(shape.blocks)
}

/// The signature of `data` (a base held in memory).
pub fn sign_bytes(data: &[u8]) -> Vec<u8> {
    Signature::calculate(data, options_for(data.len() as u64)).into_serialized()
}

/// The signature of the first `len` bytes of `file`. Blocks are
/// independent, so the file is cut into one contiguous range of whole
/// blocks per core, each read (with positioned reads, a window at a time:
/// memory stays bounded) and signed by its own thread; the ranges' block
/// signatures are then joined in order behind one header.
pub fn sign(file: &File, len: u64) -> std::io::Result<Vec<u8>> {
    let opts = options_for(len);
    let block = u64::from(opts.block_size);
    let window = block * (4 * 1024 * 1024 / block).max(1);
    let blocks = len.div_ceil(block);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    // Small files are not worth a thread.
    let parts = cores.min(len / (8 << 20)).clamp(1, 8);
    let per = blocks.div_ceil(parts) * block;
    let sign_range = |start: u64, end: u64| -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; window.min(end - start) as usize];
        let mut at = start;
        while at < end {
            let n = window.min(end - at) as usize;
            file.read_exact_at(&mut buf[..n], at)?;
            let sig = Signature::calculate(&buf[..n], opts);
            out.extend_from_slice(&sig.serialized()[HEADER..]);
            at += n as u64;
        }
        Ok(out)
    };
    let ranges: Vec<(u64, u64)> = (0..parts)
        .map(|i| ((i * per).min(len), ((i + 1) * per).min(len)))
        .filter(|(a, b)| a < b)
        .collect();
    let bodies = on_threads(&ranges, |&(a, b)| sign_range(a, b));
    let mut out = Signature::calculate(&[], opts).into_serialized();
    for body in bodies {
        out.extend_from_slice(&body?);
    }
    Ok(out)
}

/// Bytes before the first block of a serialized signature.
pub(crate) const HEADER: usize = 12;

/// Runs `f` on each item, one scoped thread per item after the first
/// (which runs on the caller's); an item whose thread cannot start or
/// panics is done on the caller's thread. Results come back in order.
fn on_threads<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let Some((first, rest)) = items.split_first() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = rest
            .iter()
            .map(|item| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || f(item))
                    .ok()
            })
            .collect();
        let mut out = vec![f(first)];
        for (item, handle) in rest.iter().zip(handles) {
            out.push(match handle.map(|h| h.join()) {
                Some(Ok(r)) => r,
                _ => f(item),
            });
        }
        out
    })
}

/// A helper's signature, checked against the base file's size.
#[derive(Debug)]
pub struct BaseSignature {
    sig: Signature,
    shape: SignatureShape,
    base_size: u64,
}

impl BaseSignature {
    /// Checks `sig` (see [`check_signature`]) for a base of `base_size`
    /// bytes.
    pub fn parse(sig: &[u8], base_size: u64) -> Result<BaseSignature, DeltaError> {
        let shape = check_signature(sig, base_size)?;
        let sig = Signature::deserialize(sig.to_vec())
            .map_err(|e| DeltaError::Signature(e.to_string()))?;
        Ok(BaseSignature {
            sig,
            shape,
            base_size,
        })
    }

    /// Its shape.
    pub fn shape(&self) -> SignatureShape {
        self.shape
    }

    /// A differ of a new file against it, from the file's start.
    pub fn differ(&self) -> Differ<'_> {
        Differ {
            base: self,
            index: OnceCell::new(),
            at: 0,
            in_place: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        }
    }

    fn options(&self) -> SignatureOptions {
        SignatureOptions {
            block_size: self.shape.block_size,
            crypto_hash_size: self.shape.hash_size,
        }
    }

    /// The signature's entry (rolling checksum and strong hash) of block
    /// `i`.
    fn entry(&self, i: u64) -> &[u8] {
        let per = 4 + self.shape.hash_size as usize;
        let at = HEADER + i as usize * per;
        &self.sig.serialized()[at..at + per]
    }
}

/// One window's delta, as a standalone delta.
#[derive(Debug)]
pub struct Piece {
    /// The delta's bytes.
    pub bytes: Vec<u8>,
    /// How many bytes of the window it covers: the caller drops these and
    /// passes the rest again at the front of the next window.
    pub used: usize,
    /// Of the bytes covered, how many travel as literals.
    pub literal: u64,
    /// And how many are copied from the base.
    pub matched: u64,
}

/// Diffs a new file, window by window, against a [`BaseSignature`].
pub struct Differ<'a> {
    base: &'a BaseSignature,
    /// fast_rsync's index of the signature, built when first needed.
    index: OnceCell<IndexedSignature<'a>>,
    /// Offset in the new file of the next window's first byte.
    at: u64,
    /// Whether to look for blocks at their old offsets first.
    in_place: bool,
    /// Threads hashing blocks in place.
    threads: usize,
}

/// What one window found, for the next window's choice of passes.
#[derive(Debug, Default)]
struct Found {
    in_place: u64,
    compared: u64,
    rolled_copies: u64,
    same_offset: bool,
}

impl<'a> Differ<'a> {
    /// Hashes blocks in place on at most `n` threads (at least one).
    pub fn set_threads(&mut self, n: usize) {
        self.threads = n.max(1);
    }

    /// The delta of `buf`, the bytes of the new file that follow what
    /// earlier windows used; `eof` when `buf` ends the file. Unless `eof`,
    /// the last bytes of `buf` may be left unused (less than a block past
    /// the last match): they must come again at the front of the next
    /// window, so that no match is lost at a window's edge.
    pub fn window(&mut self, buf: &[u8], eof: bool) -> Result<Piece, DeltaError> {
        let mut found = Found::default();
        let spans = if self.in_place {
            self.in_place_spans(buf, &mut found)
        } else {
            Vec::new()
        };
        let mut out = DeltaWriter::new();
        let mut cursor = 0usize;
        for &(start, len) in &spans {
            if start > cursor {
                self.roll(&buf[cursor..start], cursor, true, &mut out, &mut found)?;
            }
            out.copy(self.at + start as u64, len as u64);
            cursor = start + len;
        }
        let used = if cursor < buf.len() {
            cursor + self.roll(&buf[cursor..], cursor, eof, &mut out, &mut found)?
        } else {
            buf.len()
        };
        self.at += used as u64;
        self.in_place = found.in_place > 0
            || found.same_offset
            || found.rolled_copies == 0
            || found.compared == 0 && self.in_place;
        Ok(Piece {
            literal: out.literal,
            matched: out.produced - out.literal,
            bytes: out.finish(),
            used,
        })
    }

    /// The runs of `buf` (start, length) whose blocks equal the base's
    /// blocks at the same offsets, in order.
    fn in_place_spans(&self, buf: &[u8], found: &mut Found) -> Vec<(usize, usize)> {
        let base = self.base;
        let b = u64::from(base.shape.block_size);
        let end = self.at + buf.len() as u64;
        let full = base.base_size / b;
        let first = self.at.div_ceil(b);
        let last = (end / b).min(full);
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut push = |start: u64, len: usize| {
            let start = (start - self.at) as usize;
            match spans.last_mut() {
                Some((s, l)) if *s + *l == start => *l += len,
                _ => spans.push((start, len)),
            }
        };
        if first < last {
            let from = (first * b - self.at) as usize;
            let to = (last * b - self.at) as usize;
            let entries = self.hash_blocks(&buf[from..to]);
            let per = 4 + base.shape.hash_size as usize;
            for (k, entry) in entries.chunks_exact(per).enumerate() {
                let i = first + k as u64;
                found.compared += 1;
                if entry == base.entry(i) {
                    found.in_place += 1;
                    push(i * b, b as usize);
                }
            }
        }
        // The base's last block, if short, matches a prefix of the new
        // file's block there.
        let short = (base.base_size % b) as usize;
        let off = full * b;
        if short > 0 && off >= self.at && off + short as u64 <= end {
            let from = (off - self.at) as usize;
            let sig = Signature::calculate(&buf[from..from + short], base.options());
            found.compared += 1;
            if sig.serialized()[HEADER..] == *base.entry(full) {
                found.in_place += 1;
                push(off, short);
            }
        }
        spans
    }

    /// The signature entries of the whole blocks of `data`, hashed in
    /// parallel ranges when that is worth a thread.
    fn hash_blocks(&self, data: &[u8]) -> Vec<u8> {
        let opts = self.base.options();
        let b = opts.block_size as usize;
        let blocks = data.len() / b;
        let parts = self
            .threads
            .min(data.len() / (512 << 10))
            .clamp(1, blocks.max(1));
        let per = blocks.div_ceil(parts) * b;
        let ranges: Vec<&[u8]> = data.chunks(per.max(b)).collect();
        let bodies = on_threads(&ranges, |r| Signature::calculate(r, opts).into_serialized());
        let mut out = Vec::with_capacity(blocks * (4 + opts.crypto_hash_size as usize));
        for body in &bodies {
            out.extend_from_slice(&body[HEADER..]);
        }
        out
    }

    /// Runs the rolling search over `data` (which starts `rel` bytes into
    /// the window) and adds its commands to `out`. Unless `last`, stops
    /// less than a block before the end, after the last copy: returns how
    /// many bytes of `data` it covered.
    fn roll(
        &self,
        data: &[u8],
        rel: usize,
        last: bool,
        out: &mut DeltaWriter,
        found: &mut Found,
    ) -> Result<usize, DeltaError> {
        let keep = self.base.shape.block_size as usize - 1;
        if !last && data.len() <= keep {
            return Ok(0);
        }
        if data.len() <= keep {
            out.literal(data);
            return Ok(data.len());
        }
        let index = self.index.get_or_init(|| self.base.sig.index());
        let mut delta = Vec::new();
        fast_rsync::diff(index, data, &mut delta)
            .map_err(|e| DeltaError::Signature(e.to_string()))?;
        let ops = parse(&delta)?;
        let cut = if last {
            data.len()
        } else {
            let mut pos = 0usize;
            let mut last_copy_end = 0usize;
            for op in &ops {
                pos += op_len(op);
                if matches!(op, DeltaOp::Copy { .. }) {
                    last_copy_end = pos;
                }
            }
            last_copy_end.max(data.len() - keep)
        };
        let mut pos = 0usize;
        for op in ops {
            if pos >= cut {
                break;
            }
            match op {
                DeltaOp::Copy { offset, len } => {
                    found.rolled_copies += 1;
                    found.same_offset |= offset == self.at + (rel + pos) as u64;
                    out.copy(offset, len);
                    pos += len as usize;
                }
                DeltaOp::Literal(l) => {
                    let take = l.len().min(cut - pos);
                    out.literal(&l[..take]);
                    pos += take;
                }
            }
        }
        Ok(cut)
    }
}

fn op_len(op: &DeltaOp<'_>) -> usize {
    match op {
        DeltaOp::Copy { len, .. } => *len as usize,
        DeltaOp::Literal(l) => l.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Diffs `new` against `base`'s signature in windows of the given
    /// sizes (cycled), applies every piece to `base`, and returns what was
    /// rebuilt and how many bytes travelled as literals.
    fn round_trip(
        base: &[u8],
        new: &[u8],
        windows: &[usize],
        threads: usize,
    ) -> Result<(Vec<u8>, u64), DeltaError> {
        let sig = BaseSignature::parse(&sign_bytes(base), base.len() as u64)?;
        let mut differ = sig.differ();
        differ.set_threads(threads);
        let (mut buf, mut rebuilt, mut read, mut literal) = (Vec::new(), Vec::new(), 0, 0);
        for w in windows.iter().cycle() {
            let take = (*w).max(1).min(new.len() - read);
            buf.extend_from_slice(&new[read..read + take]);
            read += take;
            let eof = read == new.len();
            let piece = differ.window(&buf, eof)?;
            literal += piece.literal;
            assert_eq!(piece.literal + piece.matched, piece.used as u64);
            for op in parse(&piece.bytes)? {
                match op {
                    DeltaOp::Copy { offset, len } => {
                        let (a, b) = (offset as usize, (offset + len) as usize);
                        assert!(b <= base.len(), "copy past the base");
                        rebuilt.extend_from_slice(&base[a..b]);
                    }
                    DeltaOp::Literal(l) => rebuilt.extend_from_slice(l),
                }
            }
            buf.drain(..piece.used);
            if eof {
                assert!(buf.is_empty(), "the last window is used whole");
                break;
            }
        }
        Ok((rebuilt, literal))
    }

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Overwrite(usize, Vec<u8>),
        Insert(usize, Vec<u8>),
        Delete(usize, usize),
        Append(Vec<u8>),
        Truncate(usize),
    }

    fn apply(data: &mut Vec<u8>, edit: &Edit) {
        match edit {
            Edit::Overwrite(at, bytes) => {
                let at = at % (data.len() + 1);
                let end = (at + bytes.len()).min(data.len());
                data[at..end].copy_from_slice(&bytes[..end - at]);
            }
            Edit::Insert(at, bytes) => {
                let at = at % (data.len() + 1);
                data.splice(at..at, bytes.iter().copied());
            }
            Edit::Delete(at, n) => {
                let at = at % (data.len() + 1);
                let end = (at + n).min(data.len());
                data.drain(at..end);
            }
            Edit::Append(bytes) => data.extend_from_slice(bytes),
            Edit::Truncate(n) => data.truncate(data.len().saturating_sub(*n)),
        }
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let bytes = || prop::collection::vec(any::<u8>(), 1..20_000);
        prop_oneof![
            (any::<usize>(), bytes()).prop_map(|(a, b)| Edit::Overwrite(a, b)),
            (any::<usize>(), bytes()).prop_map(|(a, b)| Edit::Insert(a, b)),
            (any::<usize>(), 1..20_000usize).prop_map(|(a, n)| Edit::Delete(a, n)),
            bytes().prop_map(Edit::Append),
            (1..20_000usize).prop_map(Edit::Truncate),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn a_delta_rebuilds_the_new_file(
            len in 0usize..400_000,
            seed in any::<u64>(),
            edits in prop::collection::vec(edit(), 0..5),
            windows in prop::collection::vec(1usize..150_000, 1..4),
            threads in 1usize..3,
        ) {
            let base = random(len, seed);
            let mut new = base.clone();
            for e in &edits {
                apply(&mut new, e);
            }
            let (rebuilt, _) = round_trip(&base, &new, &windows, threads)?;
            prop_assert!(rebuilt == new);
        }
    }

    #[test]
    fn in_place_edits_and_appends_send_only_what_changed() -> Result<(), DeltaError> {
        let base = random(3 << 20, 7);
        let block = crate::delta::block_size_for(base.len() as u64) as u64;
        let mut new = base.clone();
        new[1_000_123..1_100_000].copy_from_slice(&random(99_877, 8));
        new.extend_from_slice(&random(300_001, 9));
        for threads in [1, 2] {
            let (rebuilt, literal) = round_trip(&base, &new, &[2 << 20], threads)?;
            assert!(rebuilt == new);
            // The changed bytes, widened to whole blocks, and the append.
            assert!(literal <= 99_877 + 2 * block + 300_001, "literal {literal}");
        }
        Ok(())
    }

    #[test]
    fn shifted_data_is_still_found() -> Result<(), DeltaError> {
        let base = random(2 << 20, 11);
        let block = crate::delta::block_size_for(base.len() as u64) as u64;
        for new in [
            [b"inserted".as_slice(), &base].concat(),
            base[77..].to_vec(),
            [&base[..1 << 20], b"x".as_slice(), &base[1 << 20..]].concat(),
        ] {
            let (rebuilt, literal) = round_trip(&base, &new, &[300_000], 2)?;
            assert!(rebuilt == new);
            assert!(literal <= 3 * block, "literal {literal}");
        }
        Ok(())
    }

    #[test]
    fn a_short_last_block_matches_in_place_before_an_append() -> Result<(), DeltaError> {
        let base = random(1_000_001, 5);
        let mut new = base.clone();
        new.extend_from_slice(b"more");
        let (rebuilt, literal) = round_trip(&base, &new, &[1 << 20], 1)?;
        assert!(rebuilt == new);
        assert_eq!(literal, 4);
        Ok(())
    }

    #[test]
    fn strong_hash_sizes() {
        assert_eq!(strong_size_for(0), 4);
        assert_eq!(strong_size_for(1 << 15), 4);
        assert_eq!(strong_size_for((1 << 16) + 1), 5);
        assert_eq!(strong_size_for(1 << 18), 5);
        assert_eq!(strong_size_for(u64::MAX), 10);
        let opts = options_for(1 << 30);
        assert_eq!((opts.block_size, opts.crypto_hash_size), (32_768, 4));
    }

    #[test]
    fn a_signature_made_in_parallel_ranges_is_the_whole_files() -> std::io::Result<()> {
        for len in [0usize, 1, 5000, (20 << 20) + 12_345, 33 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4099) as u8).collect();
            let mut f = tempfile::tempfile()?;
            std::io::Write::write_all(&mut f, &data)?;
            assert!(sign(&f, len as u64)? == sign_bytes(&data), "length {len}");
        }
        Ok(())
    }
}
