//! Signatures: the rsync signature of the file a delta for a path would
//! be made against (what an interrupted run received of it, else the base
//! snapshot's file), signed by `offsnap_protocol::diff::sign` (in
//! parallel ranges of whole blocks).

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
        offsnap_protocol::diff::sign(&file, len)
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
