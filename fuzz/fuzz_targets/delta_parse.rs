//! The delta parser over arbitrary bytes (what the helper does with every
//! delta piece a client sends). A delta it accepts must write back with
//! `DeltaWriter` to a delta that parses to the same steps, and the writer's
//! counters must agree with the commands.

#![no_main]

use libfuzzer_sys::fuzz_target;
use offsnap_fuzz::model::{canonical, output_len, rewrite};
use offsnap_protocol::delta::{DeltaOp, parse};

fuzz_target!(|data: &[u8]| {
    let ops = match parse(data) {
        Ok(ops) => ops,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let (bytes, produced, literal) = rewrite(&ops);
    let again = parse(&bytes).expect("a written delta parses");
    if let Some(total) = output_len(&ops) {
        assert_eq!(produced, total);
        assert_eq!(output_len(&again), Some(total));
    }
    let literals: u64 = ops
        .iter()
        .map(|op| match op {
            DeltaOp::Literal(l) => l.len() as u64,
            DeltaOp::Copy { .. } => 0,
        })
        .sum();
    assert_eq!(literal, literals);
    if let Some(steps) = canonical(&ops) {
        assert_eq!(canonical(&again), Some(steps), "written back differently");
    }
});
