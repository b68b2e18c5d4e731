//! What the delta engine costs on real files, against plain fast_rsync
//! (the engine before in-place matching: 16-byte MD4 signatures, every
//! window through `fast_rsync::diff`). Run under `valgrind --tool=callgrind`
//! or `perf stat` for instruction counts.
//!
//! ```text
//! delta_cost sign BASE SIG [--plain]
//! delta_cost diff SIG BASE NEW [--plain] [--threads N]
//! ```
//!
//! `sign` writes the helper's signature of BASE; `diff` reads NEW in 2 MiB
//! windows as the client does and prints the delta's size, its literal and
//! matched bytes, and the time taken.

use std::fs::File;
use std::io::Read;
use std::time::Instant;

use offsnap_protocol::delta::{DeltaOp, DeltaWriter, block_size_for, parse};
use offsnap_protocol::diff::{BaseSignature, sign};

const WINDOW: usize = 2 << 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plain = args.iter().any(|a| a == "--plain");
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse())
        .transpose()?;
    let t = Instant::now();
    match args.first().map(String::as_str) {
        Some("sign") if args.len() >= 3 => {
            let base = File::open(&args[1])?;
            let len = base.metadata()?.len();
            let sig = if plain {
                let mut data = Vec::new();
                (&base).read_to_end(&mut data)?;
                let opts = fast_rsync::SignatureOptions {
                    block_size: block_size_for(len),
                    crypto_hash_size: 16,
                };
                fast_rsync::Signature::calculate(&data, opts).into_serialized()
            } else {
                sign(&base, len)?
            };
            std::fs::write(&args[2], &sig)?;
            println!("signature: {} bytes in {:?}", sig.len(), t.elapsed());
        }
        Some("diff") if args.len() >= 4 => {
            let sig = std::fs::read(&args[1])?;
            let base_size = std::fs::metadata(&args[2])?.len();
            let mut new = File::open(&args[3])?;
            let size = new.metadata()?.len();
            let (bytes, literal, matched) = if plain {
                diff_plain(&sig, base_size, &mut new, size)?
            } else {
                diff_engine(&sig, base_size, &mut new, size, threads)?
            };
            println!(
                "delta: {bytes} bytes, literal {literal}, matched {matched}, in {:?}",
                t.elapsed()
            );
        }
        _ => return Err("usage: delta_cost sign BASE SIG | diff SIG BASE NEW [--plain]".into()),
    }
    Ok(())
}

fn diff_engine(
    sig: &[u8],
    base_size: u64,
    new: &mut File,
    size: u64,
    threads: Option<usize>,
) -> Result<(u64, u64, u64), Box<dyn std::error::Error>> {
    let base = BaseSignature::parse(sig, base_size)?;
    let mut differ = base.differ();
    if let Some(n) = threads {
        differ.set_threads(n);
    }
    let mut buf = vec![0u8; WINDOW + base.shape().block_size as usize];
    let (mut done, mut held, mut totals) = (0u64, 0usize, (0u64, 0u64, 0u64));
    loop {
        let want = (WINDOW as u64).min(size - done) as usize;
        new.read_exact(&mut buf[held..held + want])?;
        done += want as u64;
        held += want;
        let piece = differ.window(&buf[..held], done == size)?;
        totals.0 += piece.bytes.len() as u64;
        totals.1 += piece.literal;
        totals.2 += piece.matched;
        buf.copy_within(piece.used..held, 0);
        held -= piece.used;
        if done == size {
            return Ok(totals);
        }
    }
}

/// The client's loop before the engine: every window through
/// `fast_rsync::diff`, its untested tail carried into the next.
fn diff_plain(
    sig: &[u8],
    base_size: u64,
    new: &mut File,
    size: u64,
) -> Result<(u64, u64, u64), Box<dyn std::error::Error>> {
    let shape = offsnap_protocol::delta::check_signature(sig, base_size)?;
    let sig = fast_rsync::Signature::deserialize(sig.to_vec())?;
    let index = sig.index();
    let keep = shape.block_size as usize - 1;
    let mut buf: Vec<u8> = Vec::with_capacity(WINDOW + keep);
    let (mut done, mut totals) = (0u64, (0u64, 0u64, 0u64));
    let mut delta = Vec::new();
    loop {
        let want = (WINDOW as u64).min(size - done) as usize;
        let start = buf.len();
        buf.resize(start + want, 0);
        new.read_exact(&mut buf[start..])?;
        done += want as u64;
        let eof = done == size;
        delta.clear();
        fast_rsync::diff(&index, &buf, &mut delta)?;
        let ops = parse(&delta)?;
        let (mut pos, mut last_copy_end) = (0usize, 0usize);
        for op in &ops {
            match op {
                DeltaOp::Copy { len, .. } => {
                    pos += *len as usize;
                    last_copy_end = pos;
                }
                DeltaOp::Literal(l) => pos += l.len(),
            }
        }
        let cut = if eof {
            buf.len()
        } else {
            last_copy_end.max(buf.len().saturating_sub(keep))
        };
        let mut piece = DeltaWriter::new();
        let mut pos = 0usize;
        for op in ops {
            if pos >= cut {
                break;
            }
            match op {
                DeltaOp::Copy { offset, len } => {
                    piece.copy(offset, len);
                    pos += len as usize;
                }
                DeltaOp::Literal(l) => {
                    let take = l.len().min(cut - pos);
                    piece.literal(&l[..take]);
                    pos += take;
                }
            }
        }
        totals.1 += piece.literal;
        totals.2 += piece.produced - piece.literal;
        totals.0 += piece.finish().len() as u64;
        buf.drain(..cut);
        if eof {
            return Ok(totals);
        }
    }
}
