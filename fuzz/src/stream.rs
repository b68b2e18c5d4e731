//! A byte stream that delivers its data the way a pipe or socket may: in
//! short reads of varying size, now and then interrupted.

use std::io::{self, Read};

/// Reads `data` in pieces whose sizes cycle through `plan`; a size of 0 in
/// the plan is an [`io::ErrorKind::Interrupted`] read.
pub struct Choppy<'a> {
    data: &'a [u8],
    plan: Vec<u8>,
    step: usize,
}

impl<'a> Choppy<'a> {
    /// A stream of `data`; an empty plan reads as much as asked each time.
    pub fn new(data: &'a [u8], plan: &[u8]) -> Choppy<'a> {
        Choppy {
            data,
            plan: plan.to_vec(),
            step: 0,
        }
    }
}

impl Read for Choppy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let limit = match self.plan.get(self.step % self.plan.len().max(1)) {
            None => usize::MAX,
            Some(0) => {
                self.step += 1;
                // At most one interruption in a row, or a plan of zeros loops.
                if self.plan.iter().all(|&p| p == 0) {
                    self.plan.clear();
                }
                return Err(io::ErrorKind::Interrupted.into());
            }
            Some(&n) => usize::from(n),
        };
        self.step += 1;
        let n = limit.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
