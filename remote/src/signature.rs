//! rsync signatures of stored files: built window by window (memory stays
//! bounded), on request or while a large file is being written, and kept
//! in `.offsnap/signatures/<BLAKE3>` so the next run's delta does not wait
//! for the helper to re-read the old version.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use offsnap_protocol::Hash;
use offsnap_protocol::delta::{block_size_for, check_signature};

use crate::fsx;

/// Files at least this large get a cached signature.
pub const CACHE_MIN: u64 = 1 << 20;
/// Bytes of strong hash per block.
const HASH_SIZE: u32 = 16;
/// About how much data is signed per call.
const WINDOW: usize = 8 << 20;

/// Builds the signature of a file fed in order.
pub struct SigBuilder {
    opts: fast_rsync::SignatureOptions,
    window: usize,
    pending: Vec<u8>,
    out: Option<Vec<u8>>,
}

impl SigBuilder {
    /// For a file of `size` bytes.
    pub fn new(size: u64) -> SigBuilder {
        let block = block_size_for(size);
        SigBuilder {
            opts: fast_rsync::SignatureOptions {
                block_size: block,
                crypto_hash_size: HASH_SIZE,
            },
            window: (block as usize) * (WINDOW / block as usize).max(1),
            pending: Vec::new(),
            out: None,
        }
    }

    fn sign(&mut self, upto: usize) {
        let sig = fast_rsync::Signature::calculate(&self.pending[..upto], self.opts);
        match &mut self.out {
            None => self.out = Some(sig.into_serialized()),
            Some(o) => o.extend_from_slice(&sig.serialized()[12..]),
        }
        self.pending.drain(..upto);
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
        while self.pending.len() >= self.window {
            self.sign(self.window);
        }
    }

    /// The signature of everything fed.
    pub fn finish(mut self) -> Vec<u8> {
        if !self.pending.is_empty() || self.out.is_none() {
            let n = self.pending.len();
            self.sign(n);
        }
        self.out.unwrap_or_default()
    }
}

/// Signs a whole file by reading it.
pub fn of_file(file: &mut std::fs::File, len: u64) -> std::io::Result<Vec<u8>> {
    let mut b = SigBuilder::new(len);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        file.read_exact(&mut buf[..want])?;
        b.update(&buf[..want]);
        done += want as u64;
    }
    Ok(b.finish())
}

/// The cache directory of a set's signatures, created if missing.
pub fn cache_dir(meta: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    match fsx::open_dir(meta, b"signatures") {
        Ok(fd) => Ok(fd),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match fsx::create_dir(meta, b"signatures") {
                Ok(fd) => Ok(fd),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    fsx::open_dir(meta, b"signatures")
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// The cached signature of content `hash` of `size` bytes, if it is there
/// and consistent.
pub fn cached(dir: BorrowedFd<'_>, hash: &Hash, size: u64) -> Option<Vec<u8>> {
    let mut f = fsx::open_file(dir, hash.to_hex().as_bytes()).ok()?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    check_signature(&bytes, size).ok()?;
    Some(bytes)
}

/// Keeps a signature for content `hash` (a failure only costs speed).
pub fn keep(dir: BorrowedFd<'_>, hash: &Hash, sig: &[u8]) {
    let Ok((tmp, mut f)) = fsx::create_temp(dir) else {
        return;
    };
    let ok = f.write_all(sig).is_ok();
    drop(f);
    if !ok || fsx::rename(dir, &tmp, hash.to_hex().as_bytes(), true).is_err() {
        let _ = fsx::unlink(dir, &tmp);
    }
}

/// Removes cached signatures of contents not in `keep`.
pub fn trim(dir: impl AsFd, keep: &std::collections::HashSet<Hash>) -> std::io::Result<()> {
    let wanted: std::collections::HashSet<String> = keep.iter().map(Hash::to_hex).collect();
    for (name, _) in fsx::read_dir(dir.as_fd())? {
        if !wanted.contains(String::from_utf8_lossy(&name).as_ref()) {
            let _ = fsx::unlink(dir.as_fd(), &name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windowed_signature_equals_whole() {
        let data: Vec<u8> = (0..(20u32 << 20))
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut b = SigBuilder::new(data.len() as u64);
        for chunk in data.chunks(300_001) {
            b.update(chunk);
        }
        let got = b.finish();
        let whole = fast_rsync::Signature::calculate(
            &data,
            fast_rsync::SignatureOptions {
                block_size: block_size_for(data.len() as u64),
                crypto_hash_size: HASH_SIZE,
            },
        );
        assert_eq!(got, whole.serialized());
        assert!(check_signature(&got, data.len() as u64).is_ok());
        let empty = SigBuilder::new(0).finish();
        assert!(check_signature(&empty, 0).is_ok());
    }
}
