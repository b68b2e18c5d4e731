//! Signatures: the rsync signature of the file a delta for a path would
//! be made against (what an interrupted run received of it, else the base
//! snapshot's file), signed by `offsnap_protocol::diff::sign` (in
//! parallel ranges of whole blocks).

use std::fs::File;

use offsnap_protocol::{ErrorKind, RelPath};

use super::BackupRun;
use crate::error::{Context, Error, protocol};
use crate::kept_signatures::{Identity, KEEP_FROM};

impl BackupRun {
    /// The rsync signature of the file a delta for `path` would be made
    /// against (see [`Self::delta_base`]), or `None` if there is none.
    pub fn signature(&mut self, path: &RelPath) -> Result<Option<Vec<u8>>, Error> {
        let (file, len, partial) = match self.delta_base_of(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // A base snapshot's file may have its signature kept from when it
        // was written; what an interrupted run received never has.
        let id = match (&self.sigs, partial) {
            (Some(_), false) if len >= KEEP_FROM => Identity::of_file(&file).ok(),
            _ => None,
        };
        if let (Some(sigs), Some(id)) = (&self.sigs, id)
            && let Some(sig) = sigs.get(path, id)
        {
            return Ok(Some(sig));
        }
        let sig = offsnap_protocol::diff::sign(&file, len).ctx(format!("base of {path}"))?;
        if let (Some(sigs), Some(id)) = (&mut self.sigs, id) {
            sigs.put_base(path, id, &sig);
        }
        Ok(Some(sig))
    }

    /// Opens the file a delta for `path` is made against: the part of it
    /// an interrupted run received, else the base snapshot's file.
    pub(super) fn delta_base(&mut self, path: &RelPath) -> Result<(File, u64), Error> {
        self.delta_base_of(path).map(|(f, len, _)| (f, len))
    }

    /// [`Self::delta_base`], and whether it is what an interrupted run
    /// received.
    fn delta_base_of(&mut self, path: &RelPath) -> Result<(File, u64, bool), Error> {
        if let Some(r) = &mut self.contents.resume
            && let Some((f, len)) = r
                .open_partial(path)
                .ctx(format!("what an interrupted run received of {path}"))?
        {
            return Ok((f, len, true));
        }
        let Some(base) = &mut self.base else {
            return Err(protocol(format!(
                "{path}: no base snapshot to diff against"
            )));
        };
        base.open_file(path).map(|(f, len)| (f, len, false))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{Fixture, path};
    use super::*;

    #[test]
    fn a_run_signs_its_base_files_and_nothing_else() {
        let fx = Fixture::new();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        fx.commit_files(&[("big", &data)]);
        let mut run = fx.start();
        let sig = run.signature(&path("big")).unwrap().unwrap();
        assert!(sig == offsnap_protocol::diff::sign_bytes(&data));
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod kept {
    use super::super::testing::{Fixture, path};
    use crate::kept_signatures::KEEP_FROM;

    fn big() -> Vec<u8> {
        (0..KEEP_FROM + 12_345)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 31) as u8)
            .collect()
    }

    fn kept_files(fx: &Fixture) -> Vec<std::path::PathBuf> {
        let dir = fx.dir.path().join("test/.offsnap/signatures");
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        out.sort();
        out
    }

    /// Asks a run for the signatures of `paths` (kept on the way), and
    /// drops the run.
    fn ask(fx: &Fixture, paths: &[&str]) -> Vec<Vec<u8>> {
        let mut run = fx.start();
        let sigs = paths
            .iter()
            .map(|p| run.signature(&path(p)).unwrap().unwrap())
            .collect();
        run.abort();
        sigs
    }

    #[test]
    fn a_signature_asked_for_is_kept_and_served_from_what_is_kept() {
        let fx = Fixture::new();
        let data = big();
        fx.commit_files(&[("big", &data), ("small", b"x")]);
        assert!(
            kept_files(&fx).is_empty(),
            "files sent whole are not signed"
        );
        let want = offsnap_protocol::diff::sign_bytes(&data);
        assert!(ask(&fx, &["big"])[0] == want);
        let kept = kept_files(&fx);
        assert_eq!(kept.len(), 1, "{kept:?}");
        let stored = std::fs::read(&kept[0]).unwrap();
        assert!(stored[40..] == want[..], "the kept signature is the file's");

        // Served from the store: a kept signature altered in a block's
        // strong hash (still well formed) is what the next run gets.
        let mut altered = stored.clone();
        let last = altered.len() - 1;
        altered[last] ^= 0xff;
        std::fs::write(&kept[0], &altered).unwrap();
        assert!(
            ask(&fx, &["big"])[0][..] == altered[40..],
            "not read from what is kept"
        );
    }

    #[test]
    fn a_damaged_or_stale_kept_signature_is_not_used() {
        let fx = Fixture::new();
        let data = big();
        fx.commit_files(&[("big", &data)]);
        let want = ask(&fx, &["big"]).remove(0);
        let kept = kept_files(&fx).remove(0);
        let good = std::fs::read(&kept).unwrap();
        // Cut short; another inode's identity; a broken header.
        let mut other = good.clone();
        other[8] ^= 1;
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 1;
        for damaged in [good[..good.len() - 1].to_vec(), other, bad_magic] {
            std::fs::write(&kept, &damaged).unwrap();
            assert!(ask(&fx, &["big"])[0] == want, "signed from the file again");
        }
    }

    #[test]
    fn a_commit_keeps_the_signatures_of_the_new_snapshot_only() {
        let fx = Fixture::new();
        let data = big();
        fx.commit_files(&[("a", &data), ("b", &data[1..])]);
        ask(&fx, &["a", "b"]);
        assert_eq!(kept_files(&fx).len(), 2);
        // The next snapshot has `a` unchanged and no `b`: `b`'s goes.
        let mut run = fx.start();
        run.apply(offsnap_protocol::Op::Unchanged(1)).unwrap();
        run.apply(offsnap_protocol::Op::Skip(1)).unwrap();
        fx.commit(run);
        assert_eq!(kept_files(&fx).len(), 1);
        let before = kept_files(&fx);
        assert!(ask(&fx, &["a"])[0] == offsnap_protocol::diff::sign_bytes(&data));
        assert_eq!(kept_files(&fx), before);
    }
}
