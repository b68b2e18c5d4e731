//! Deltas of genuine signatures: a base, a new version made from pieces of
//! the base and new bytes, a signature of the base with any block size and
//! hash size. `check_signature` must accept it; the client's path (the
//! delta engine, `diff::Differ`, over two windows cut where the input says)
//! must give pieces that rebuild the new version from the base; and
//! cutting their steps into two standalone pieces with `DeltaWriter` must
//! rebuild it too.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use offsnap_fuzz::model::{apply, canonical, rewrite};
use offsnap_protocol::delta::{DeltaOp, check_signature, parse};
use offsnap_protocol::diff::BaseSignature;

#[derive(Arbitrary, Debug)]
enum Edit<'a> {
    /// `len` bytes of the base from `from` (both taken modulo its length).
    Copy { from: u16, len: u16 },
    /// New bytes.
    Insert(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    block: u16,
    hash: u8,
    /// Where (modulo the new length) to cut the delta in two.
    cut: u16,
    base: &'a [u8],
    edits: Vec<Edit<'a>>,
}

fuzz_target!(|input: Input<'_>| {
    let base = input.base;
    let new = build(base, &input.edits);
    let opts = fast_rsync::SignatureOptions {
        block_size: 1 + u32::from(input.block % 4096),
        crypto_hash_size: 4 + u32::from(input.hash % 13),
    };
    let sig = fast_rsync::Signature::calculate(base, opts);
    let shape = check_signature(sig.serialized(), base.len() as u64)
        .expect("a genuine signature is accepted");
    assert_eq!(shape.block_size, opts.block_size);
    assert_eq!(shape.hash_size, opts.crypto_hash_size);

    let sig = BaseSignature::parse(sig.serialized(), base.len() as u64).expect("parses");
    let mut differ = sig.differ();
    let first = if new.is_empty() {
        0
    } else {
        usize::from(input.cut) % new.len()
    };
    let mut pieces = Vec::new();
    let mut buf = new[..first].to_vec();
    let piece = differ.window(&buf, false).expect("diffs");
    buf.drain(..piece.used);
    pieces.push(piece.bytes);
    buf.extend_from_slice(&new[first..]);
    let piece = differ.window(&buf, true).expect("diffs");
    assert_eq!(piece.used, buf.len(), "the last window is used whole");
    pieces.push(piece.bytes);
    let mut ops = Vec::new();
    for piece in &pieces {
        ops.extend(parse(piece).expect("a piece the engine wrote parses"));
    }
    let mut rebuilt = Vec::new();
    apply(base, &ops, &mut rebuilt, new.len() as u64).expect("applies within bounds");
    assert!(rebuilt == new, "the delta does not rebuild the new version");

    let (whole, _, _) = rewrite(&ops);
    let again = parse(&whole).expect("a rewritten delta parses");
    assert_eq!(canonical(&again), canonical(&ops));

    let cut = if new.is_empty() {
        0
    } else {
        usize::from(input.cut) % new.len()
    };
    let (head, tail) = split(&ops, cut as u64);
    let mut rebuilt = Vec::new();
    for piece in [rewrite(&head).0, rewrite(&tail).0] {
        let ops = parse(&piece).expect("a piece parses");
        apply(base, &ops, &mut rebuilt, new.len() as u64).expect("a piece applies");
    }
    assert!(
        rebuilt == new,
        "the two pieces do not rebuild the new version"
    );
});

/// The new version the edits describe.
fn build(base: &[u8], edits: &[Edit<'_>]) -> Vec<u8> {
    let mut new = Vec::new();
    for edit in edits {
        match *edit {
            Edit::Copy { from, len } if !base.is_empty() => {
                let from = usize::from(from) % base.len();
                let len = usize::from(len) % (base.len() - from + 1);
                new.extend_from_slice(&base[from..from + len]);
            }
            Edit::Copy { .. } => {}
            Edit::Insert(bytes) => new.extend_from_slice(bytes),
        }
    }
    new
}

/// `ops` cut at output position `at`: what comes before and after.
fn split<'a>(ops: &[DeltaOp<'a>], at: u64) -> (Vec<DeltaOp<'a>>, Vec<DeltaOp<'a>>) {
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    let mut pos = 0u64;
    for op in ops {
        let len = match op {
            DeltaOp::Copy { len, .. } => *len,
            DeltaOp::Literal(l) => l.len() as u64,
        };
        if pos + len <= at {
            head.push(*op);
        } else if pos >= at {
            tail.push(*op);
        } else {
            let k = at - pos;
            match *op {
                DeltaOp::Copy { offset, len } => {
                    head.push(DeltaOp::Copy { offset, len: k });
                    tail.push(DeltaOp::Copy {
                        offset: offset + k,
                        len: len - k,
                    });
                }
                DeltaOp::Literal(l) => {
                    let (a, b) = l.split_at(k as usize);
                    head.push(DeltaOp::Literal(a));
                    tail.push(DeltaOp::Literal(b));
                }
            }
        }
        pos += len;
    }
    (head, tail)
}
