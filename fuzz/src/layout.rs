//! Plain input layouts for the targets that take several parts, so that
//! the seed generator can write inputs the targets read back part by part.

/// Reads parts off the front of an input.
pub struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor(data)
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// A byte, 0 past the end.
    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    /// A little-endian `u16`, missing bytes read as 0.
    pub fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        let got = self.bytes(2);
        b[..got.len()].copy_from_slice(got);
        u16::from_le_bytes(b)
    }

    /// A little-endian `u64`, missing bytes read as 0.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let got = self.bytes(8);
        b[..got.len()].copy_from_slice(got);
        u64::from_le_bytes(b)
    }

    /// A `u16` length, then up to that many bytes.
    pub fn part(&mut self) -> &'a [u8] {
        let n = self.u16();
        self.bytes(usize::from(n))
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.0.len())
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Writes what a [`Cursor`] reads.
#[derive(Default)]
pub struct Builder(pub Vec<u8>);

impl Builder {
    /// Appends a byte.
    pub fn u8(mut self, v: u8) -> Builder {
        self.0.push(v);
        self
    }

    /// Appends a little-endian `u16`.
    pub fn u16(mut self, v: u16) -> Builder {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian `u64`.
    pub fn u64(mut self, v: u64) -> Builder {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a `u16` length and the bytes (at most 65,535 of them).
    pub fn part(self, bytes: &[u8]) -> Builder {
        let n = bytes.len().min(usize::from(u16::MAX));
        let mut b = self.u16(n as u16);
        b.0.extend_from_slice(&bytes[..n]);
        b
    }

    /// Appends bytes as they are.
    pub fn raw(mut self, bytes: &[u8]) -> Builder {
        self.0.extend_from_slice(bytes);
        self
    }
}

/// The content of the base file the `helper_delta` target diffs against.
pub fn helper_base() -> Vec<u8> {
    (0..3000u32).map(|i| (i * 7 + i / 251) as u8).collect()
}
