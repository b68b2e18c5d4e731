//! Signatures: the rsync signature of the file a delta for a path would
//! be made against (what an interrupted run received of it, else the base
//! snapshot's file), signed in parallel ranges of whole blocks.

use std::fs::File;

use offsnap_protocol::{ErrorKind, RelPath};

use super::BackupRun;
use crate::error::{Context, Error, protocol};

impl BackupRun {
    /// The rsync signature of the file a delta for `path` would be made
    /// against (see [`Self::delta_base`]), or `None` if there is none.
    pub fn signature(&mut self, path: &RelPath) -> Result<Option<Vec<u8>>, Error> {
        let (file, len) = match self.delta_base(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        signature_of(&file, len)
            .map(Some)
            .ctx(format!("base of {path}"))
    }

    /// Opens the file a delta for `path` is made against: the part of it
    /// an interrupted run received, else the base snapshot's file.
    pub(super) fn delta_base(&mut self, path: &RelPath) -> Result<(File, u64), Error> {
        if let Some(r) = &mut self.contents.resume
            && let Some(found) = r
                .open_partial(path)
                .ctx(format!("what an interrupted run received of {path}"))?
        {
            return Ok(found);
        }
        let Some(base) = &mut self.base else {
            return Err(protocol(format!(
                "{path}: no base snapshot to diff against"
            )));
        };
        base.open_file(path)
    }
}

/// The rsync signature of the first `len` bytes of `file`. Blocks are
/// independent, so the file is cut into one contiguous range of whole
/// blocks per core, each read (with positioned reads, a window at a time:
/// memory stays bounded) and signed by its own thread; the ranges' block
/// signatures are then joined in order behind one header.
fn signature_of(file: &File, len: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let block = offsnap_protocol::delta::block_size_for(len);
    let opts = fast_rsync::SignatureOptions {
        block_size: block,
        crypto_hash_size: 16,
    };
    let window = u64::from(block) * (4 * 1024 * 1024 / u64::from(block)).max(1);
    let blocks = len.div_ceil(u64::from(block));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    // Small files are not worth a thread.
    let parts = cores.min(len / (8 << 20)).clamp(1, 8);
    let per = blocks.div_ceil(parts) * u64::from(block);
    let sign_range = |start: u64, end: u64| -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; window.min(end - start) as usize];
        let mut at = start;
        while at < end {
            let n = window.min(end - at) as usize;
            file.read_exact_at(&mut buf[..n], at)?;
            let sig = fast_rsync::Signature::calculate(&buf[..n], opts);
            out.extend_from_slice(&sig.serialized()[12..]);
            at += n as u64;
        }
        Ok(out)
    };
    let header = fast_rsync::Signature::calculate(&[], opts).into_serialized();
    let ranges: Vec<(u64, u64)> = (0..parts)
        .map(|i| ((i * per).min(len), ((i + 1) * per).min(len)))
        .filter(|(a, b)| a < b)
        .collect();
    let bodies: Vec<std::io::Result<Vec<u8>>> = std::thread::scope(|scope| {
        // A range whose thread cannot start is signed here instead.
        let handles: Vec<_> = ranges
            .iter()
            .map(|&(a, b)| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || sign_range(a, b))
                    .map_err(|_| (a, b))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("signing thread panicked"))),
                Err((a, b)) => sign_range(a, b),
            })
            .collect()
    });
    let mut out = header;
    for body in bodies {
        out.extend_from_slice(&body?);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{Fixture, path};
    use super::*;

    #[test]
    fn a_signature_made_in_parallel_ranges_is_the_whole_files() -> std::io::Result<()> {
        for len in [0usize, 1, 5000, (20 << 20) + 12_345, 33 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4099) as u8).collect();
            let mut f = tempfile::tempfile()?;
            std::io::Write::write_all(&mut f, &data)?;
            let opts = fast_rsync::SignatureOptions {
                block_size: offsnap_protocol::delta::block_size_for(len as u64),
                crypto_hash_size: 16,
            };
            let whole = fast_rsync::Signature::calculate(&data, opts).into_serialized();
            assert!(signature_of(&f, len as u64)? == whole, "length {len}");
        }
        Ok(())
    }

    #[test]
    fn a_run_signs_its_base_files_and_nothing_else() {
        let fx = Fixture::new();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        fx.commit_files(&[("big", &data)]);
        let mut run = fx.start();
        let sig = run.signature(&path("big")).unwrap().unwrap();
        let opts = fast_rsync::SignatureOptions {
            block_size: offsnap_protocol::delta::block_size_for(data.len() as u64),
            crypto_hash_size: 16,
        };
        assert!(sig == fast_rsync::Signature::calculate(&data, opts).into_serialized());
        assert_eq!(run.signature(&path("new")).unwrap(), None);
        run.abort();
    }

    #[test]
    fn without_a_base_there_is_nothing_to_sign_against() {
        let fx = Fixture::new();
        let mut run = fx.start();
        let e = run.signature(&path("f")).unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e}");
        run.abort();
    }
}
