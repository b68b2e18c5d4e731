//! A helper's signature, as the client uses it to send a file as a delta
//! (client backup.rs `delta()`): `check_signature` first, and only when it
//! accepts, `fast_rsync::Signature::deserialize`, `index()` and
//! `fast_rsync::diff` over some data, then `parse` of the delta. Nothing
//! may panic or loop; the delta must parse, rebuild exactly as many bytes
//! as the data holds, carry the data's own bytes as literals and copy only
//! whole blocks the signature lists.
//!
//! Input: a flag byte (bit 0: derive the base size from the signature's
//! own shape, so that its block count usually fits), the base size (`u64`),
//! the signature (a `u16` length, then the bytes), then the data.

#![no_main]

use libfuzzer_sys::fuzz_target;
use offsnap_fuzz::layout::Cursor;
use offsnap_fuzz::model::output_len;
use offsnap_protocol::delta::{DeltaOp, check_signature, parse};

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let (flags, size) = (c.u8(), c.u64());
    let (sig_bytes, data) = (c.part(), c.rest());
    let base_size = if flags & 1 == 1 {
        fitted(sig_bytes, size)
    } else {
        size
    };
    let shape = match check_signature(sig_bytes, base_size) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let Ok(sig) = fast_rsync::Signature::deserialize(sig_bytes.to_vec()) else {
        return;
    };
    let index = sig.index();
    let mut delta = Vec::new();
    if fast_rsync::diff(&index, data, &mut delta).is_err() {
        return;
    }
    let ops = parse(&delta).expect("a delta fast_rsync wrote parses");
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
                assert_eq!(len % block, 0, "copy not of whole blocks");
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
