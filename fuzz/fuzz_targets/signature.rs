//! A helper's signature, as the client uses it to send a file as a delta
//! (client backup.rs `delta()`): `diff::BaseSignature::parse` (which runs
//! `check_signature`) and, only when it accepts, the delta engine over the
//! data in two windows, then `parse` of each piece. Nothing may panic or
//! loop; the pieces must parse, rebuild exactly as many bytes as the data
//! holds, carry the data's own bytes as literals and copy only blocks the
//! signature lists, from their starts (whole blocks, or up to the base's
//! end).
//!
//! Input: a flag byte (bit 0: derive the base size from the signature's
//! own shape, so that its block count usually fits), the base size (`u64`),
//! a `u16` where to cut the data into windows, the signature (a `u16`
//! length, then the bytes), then the data.

#![no_main]

use libfuzzer_sys::fuzz_target;
use offsnap_fuzz::layout::Cursor;
use offsnap_fuzz::model::output_len;
use offsnap_protocol::delta::{DeltaOp, parse};
use offsnap_protocol::diff::BaseSignature;

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let (flags, size, cut) = (c.u8(), c.u64(), c.u16());
    let (sig_bytes, data) = (c.part(), c.rest());
    let base_size = if flags & 1 == 1 {
        fitted(sig_bytes, size)
    } else {
        size
    };
    let sig = match BaseSignature::parse(sig_bytes, base_size) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let shape = sig.shape();
    let mut differ = sig.differ();
    let first = usize::from(cut).min(data.len());
    let mut buf = data[..first].to_vec();
    let mut pieces = Vec::new();
    let Ok(piece) = differ.window(&buf, false) else {
        return;
    };
    buf.drain(..piece.used);
    pieces.push(piece.bytes);
    buf.extend_from_slice(&data[first..]);
    let Ok(piece) = differ.window(&buf, true) else {
        return;
    };
    assert_eq!(piece.used, buf.len(), "the last window is used whole");
    pieces.push(piece.bytes);
    let mut ops = Vec::new();
    for piece in &pieces {
        ops.extend(parse(piece).expect("a piece the engine wrote parses"));
    }
    assert_eq!(output_len(&ops), Some(data.len() as u64));
    let block = u64::from(shape.block_size);
    let mut pos = 0usize;
    for op in &ops {
        match *op {
            DeltaOp::Literal(l) => {
                assert_eq!(l, &data[pos..pos + l.len()]);
                pos += l.len();
            }
            DeltaOp::Copy { offset, len } => {
                assert_eq!(offset % block, 0, "copy not at a block start");
                assert!(
                    len % block == 0 || offset + len == base_size,
                    "copy neither of whole blocks nor to the base's end"
                );
                assert!(
                    offset + len <= shape.blocks * block,
                    "copy past the last block"
                );
                pos += len as usize;
            }
        }
    }
});

/// A base size whose block count matches the signature's length, when the
/// header can be read; `salt` picks where in the last block the file ends.
fn fitted(sig: &[u8], salt: u64) -> u64 {
    let word = |i: usize| {
        sig.get(i..i + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    let (Some(block), Some(hash)) = (word(4), word(8)) else {
        return salt;
    };
    let (block, per) = (u64::from(block), 4 + u64::from(hash));
    if block == 0 {
        return salt;
    }
    match (sig.len() as u64 - 12) / per {
        0 => 0,
        blocks => (blocks - 1) * block + 1 + salt % block,
    }
}
