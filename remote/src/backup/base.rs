//! The base snapshot a run builds on: its tree, to link and diff against,
//! and its manifest, read in step with the client's `Unchanged` and `Skip`
//! ops (both sides walk the same base in the same order).

use std::fs::File;

use offsnap_fs::cursor::DirCursor;
use offsnap_fs::fsx;
use offsnap_protocol::manifest::ManifestReader;
use offsnap_protocol::{Entry, RelPath, SnapshotInfo};

use crate::content_index::BaseIndex;
use crate::error::{Context, Error, protocol};
use crate::set::SetDir;

/// The base snapshot, open.
pub(super) struct Base {
    /// Its tree.
    pub(super) tree: DirCursor,
    /// Its manifest, read along with the client's ops.
    entries: ManifestReader<File>,
}

impl Base {
    /// Opens the snapshot `info` of `set`.
    pub(super) fn open(set: &SetDir, info: &SnapshotInfo) -> Result<Base, Error> {
        let tree = DirCursor::new(set.open_snapshot(&info.name)?);
        let entries = offsnap_protocol::manifest::open_file(set.open_manifest(&info.name)?)
            .map_err(|e| Error::corrupt(format!("manifest of {}", info.name), e))?;
        Ok(Base { tree, entries })
    }

    /// The next entry of its manifest.
    pub(super) fn next(&mut self) -> Result<Entry, Error> {
        self.entries
            .next_entry()
            .map_err(|e| Error::corrupt("base manifest", e))?
            .ok_or_else(|| protocol("more unchanged entries than the base snapshot holds"))
    }

    /// Its file at `path`, with its length.
    pub(super) fn open_file(&mut self, path: &RelPath) -> Result<(File, u64), Error> {
        let (dir, name) = self.tree.parent_of(path).ctx(format!("base of {path}"))?;
        let f = fsx::open_file(dir, name).ctx(format!("base of {path}"))?;
        let len = f.metadata().ctx(format!("base of {path}"))?.len();
        Ok((f, len))
    }
}

/// The index of the contents of the snapshot `info` of `set`, by hash
/// (built from its manifest if the set's index is missing or stale).
pub(super) fn index(set: &SetDir, info: &SnapshotInfo) -> Result<BaseIndex, Error> {
    BaseIndex::open_or_build(
        &set.meta_dir_or_new("index")?,
        &set.open_manifest(&info.name)?,
        &info.manifest_hash,
    )
    .map_err(|e| Error::corrupt(format!("manifest of {}", info.name), e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{self, Fixture};
    use super::*;

    #[test]
    fn the_base_is_read_in_step_and_no_further() {
        let fx = Fixture::new();
        fx.commit_files(&[("a", b"first"), ("b", b"second file")]);
        let set = fx.root.open_set(&fx.set).unwrap();
        let info = set.snapshots().unwrap().pop().unwrap();
        let mut base = Base::open(&set, &info).unwrap();
        let names: Vec<RelPath> = (0..2).map(|_| base.next().unwrap().path).collect();
        assert_eq!(names, [testing::path("a"), testing::path("b")]);
        let past = base.next().unwrap_err();
        assert!(matches!(past, Error::Protocol(_)), "{past}");
        let (_, len) = base.open_file(&testing::path("b")).unwrap();
        assert_eq!(len, 11);
        let missing = base.open_file(&testing::path("c")).unwrap_err();
        assert_eq!(missing.kind(), offsnap_protocol::ErrorKind::NotFound);
        let mut index = index(&set, &info).unwrap();
        let found = index.get(&offsnap_protocol::Hash::of(b"first")).unwrap();
        assert_eq!(found, Some(testing::path("a")));
    }
}
