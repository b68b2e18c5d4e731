//! A plain model of what a delta means, to check the real code against.

use offsnap_protocol::delta::{DeltaOp, DeltaWriter};

/// One step of a delta with adjacent literals joined and contiguous copies
/// merged, so that two deltas that rebuild the same way compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Copy from the base.
    Copy {
        /// Offset in the base.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// These bytes.
    Literal(Vec<u8>),
}

/// The canonical form of `ops`: empty literals dropped, neighbours merged.
/// `None` when the lengths overflow a `u64`.
pub fn canonical(ops: &[DeltaOp<'_>]) -> Option<Vec<Step>> {
    let mut out: Vec<Step> = Vec::new();
    for op in ops {
        match (*op, out.last_mut()) {
            (DeltaOp::Literal([]), _) => {}
            (DeltaOp::Literal(l), Some(Step::Literal(prev))) => prev.extend_from_slice(l),
            (DeltaOp::Literal(l), _) => out.push(Step::Literal(l.to_vec())),
            (DeltaOp::Copy { offset, len }, Some(Step::Copy { offset: o, len: n }))
                if o.checked_add(*n) == Some(offset) =>
            {
                *n = n.checked_add(len)?;
            }
            (DeltaOp::Copy { offset, len }, _) => out.push(Step::Copy { offset, len }),
        }
    }
    Some(out)
}

/// Total bytes `ops` produce, `None` on overflow.
pub fn output_len(ops: &[DeltaOp<'_>]) -> Option<u64> {
    ops.iter().try_fold(0u64, |acc, op| {
        acc.checked_add(match op {
            DeltaOp::Copy { len, .. } => *len,
            DeltaOp::Literal(l) => l.len() as u64,
        })
    })
}

/// Why the model refuses to apply a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The output would pass `limit` bytes.
    TooLong,
    /// A copy reaches outside the base.
    OutsideBase,
}

/// Appends what `ops` rebuild from `base` to `out`, refusing (as the
/// helper must) any copy outside the base and any output past `limit`.
pub fn apply(
    base: &[u8],
    ops: &[DeltaOp<'_>],
    out: &mut Vec<u8>,
    limit: u64,
) -> Result<(), Refusal> {
    for op in ops {
        let len = match op {
            DeltaOp::Copy { len, .. } => *len,
            DeltaOp::Literal(l) => l.len() as u64,
        };
        if (out.len() as u64).saturating_add(len) > limit {
            return Err(Refusal::TooLong);
        }
        match *op {
            DeltaOp::Literal(l) => out.extend_from_slice(l),
            DeltaOp::Copy { offset, len } => {
                let end = offset.checked_add(len).ok_or(Refusal::OutsideBase)?;
                if end > base.len() as u64 {
                    return Err(Refusal::OutsideBase);
                }
                out.extend_from_slice(&base[offset as usize..end as usize]);
            }
        }
    }
    Ok(())
}

/// Writes `ops` again with a [`DeltaWriter`].
pub fn rewrite(ops: &[DeltaOp<'_>]) -> (Vec<u8>, u64, u64) {
    let mut w = DeltaWriter::new();
    for op in ops {
        match *op {
            DeltaOp::Copy { offset, len } => w.copy(offset, len),
            DeltaOp::Literal(l) => w.literal(l),
        }
    }
    let (produced, literal) = (w.produced, w.literal);
    (w.finish(), produced, literal)
}
