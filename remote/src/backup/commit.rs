//! Commit: makes a run's snapshot durable and visible, then tidies up.
//!
//! Order: the tree's last directory metadata, one flush of the
//! filesystem, the manifest written and fsynced (rewritten without the
//! files asked for again that never came), moved into `manifests/`, the
//! tree moved to `SET/NAME`, `latest` swapped. Until the tree's rename
//! nothing new is visible under a dated name. What follows that rename is
//! tidying (the resumed run, `incomplete/NAME`, the next run's content
//! index), whose failure is a warning: the snapshot is committed.

use std::collections::HashSet;
use std::io::BufWriter;
use std::os::fd::{AsFd, OwnedFd};

use offsnap_fs::fsx;
use offsnap_protocol::manifest::{ManifestReader, ManifestWriter};
use offsnap_protocol::{CommitStats, Hash, RelPath, SnapshotName};

use super::BackupRun;
use crate::content_index::BaseIndex;
use crate::error::{Context, Error, protocol};
use crate::set::{SetDir, SetLock};

/// Where a run's snapshot is built (`incomplete/NAME`, held open) and
/// where it goes, with the set's lock held for the run.
pub(super) struct Target {
    pub(super) set: SetDir,
    _lock: SetLock,
    pub(super) name: SnapshotName,
    pub(super) work: OwnedFd,
}

impl Target {
    /// The target of a run of `set` building `name` in `work`.
    pub(super) fn new(set: SetDir, lock: SetLock, name: SnapshotName, work: OwnedFd) -> Target {
        Target {
            set,
            _lock: lock,
            name,
            work,
        }
    }

    /// Removes what the run wrote.
    pub(super) fn remove(self) {
        let name = self.name.to_string();
        if let Ok(incomplete) = self.set.meta_dir("incomplete") {
            drop(self.work);
            let _ = fsx::remove_tree(incomplete.as_fd(), name.as_bytes());
        }
    }

    /// Moves the finished manifest and tree to their places (the step
    /// that makes the snapshot visible).
    fn publish(&self, ctx: &str) -> Result<(), Error> {
        let name = self.name.to_string();
        let manifests = self.set.meta_dir("manifests")?;
        fsx::rename_between(
            self.work.as_fd(),
            b"manifest",
            manifests.as_fd(),
            name.as_bytes(),
            false,
        )
        .ctx(ctx)?;
        fsx::fsync(&manifests).ctx(ctx)?;
        fsx::rename_between(
            self.work.as_fd(),
            b"tree",
            self.set.fd(),
            name.as_bytes(),
            false,
        )
        .ctx(ctx)?;
        fsx::fsync(self.set.fd()).ctx(ctx)
    }

    /// After the snapshot is visible: `latest`, the resumed run, the
    /// run's directory and the next run's content index (built now from
    /// the manifest just written, so that the next run starts at once and
    /// needs no new space before it writes; should it fail, the next run
    /// builds it). Failures are warnings.
    fn tidy(self, manifest_hash: &Hash, ctx: &str) {
        let warn = |e: Error, then: &str| crate::say::note(&format!("warning: {e}{then}"));
        if let Err(e) = self.set.set_latest(&self.name) {
            warn(e, "");
        }
        if let Err(e) = crate::resume::clear(&self.set) {
            warn(e, " (the next run clears it)");
        }
        let name = self.name.to_string();
        drop(self.work);
        let removed = self
            .set
            .meta_dir("incomplete")
            .and_then(|dir| fsx::remove_tree(dir.as_fd(), name.as_bytes()).ctx(ctx));
        if let Err(e) = removed {
            warn(e, " (the next run clears it)");
        }
        let index = self.set.meta_dir_or_new("index").and_then(|dir| {
            let manifest = self.set.open_manifest(&self.name)?;
            BaseIndex::open_or_build(&dir, &manifest, manifest_hash)
                .map(drop)
                .ctx("the content index")
        });
        if let Err(e) = index {
            warn(e, " (the next run builds it)");
        }
    }
}

impl BackupRun {
    /// Makes the snapshot durable and visible; see the module documentation.
    pub fn commit(self) -> Result<(SnapshotName, CommitStats), Error> {
        if let Some(open) = &self.file {
            return Err(protocol(format!(
                "commit while {} is incomplete",
                open.sink.path()
            )));
        }
        let BackupRun {
            target,
            mut tree,
            record,
            repair,
            contents,
            sigs,
            ..
        } = self;
        let ctx = format!(
            "set {:?}: committing snapshot {}",
            target.set.name(),
            target.name
        );
        let _unfinished = target.set.unfinished(&target.name)?;
        tree.finish().ctx(&ctx)?;
        fsx::sync_filesystem(&target.work).ctx(&ctx)?;
        let (mut hash, mut stats) = record.finish(&ctx)?;
        let gone = repair.never_came();
        if !gone.is_empty() {
            hash = drop_awaited(&target.work, &gone, &mut stats).ctx(&ctx)?;
        }
        stats.manifest_hash = Some(hash);
        target.publish(&ctx)?;
        // The snapshot is complete and visible from here on.
        drop(contents);
        let name = target.name;
        target.tidy(&hash, &ctx);
        if let Some(sigs) = sigs {
            sigs.sweep();
        }
        Ok((name, stats))
    }
}

/// Rewrites a run's manifest without the files asked for again that never
/// came (the client found them changed) and the names waiting for them;
/// returns its hash.
fn drop_awaited(
    work: &OwnedFd,
    gone: &HashSet<RelPath>,
    stats: &mut CommitStats,
) -> std::io::Result<Hash> {
    let input = fsx::open_file(work.as_fd(), b"manifest")?;
    let reader = ManifestReader::new(input).map_err(std::io::Error::other)?;
    let _ = fsx::unlink(work.as_fd(), b"manifest.new");
    let out = fsx::create_file(work.as_fd(), b"manifest.new")?;
    let mut w = ManifestWriter::new(BufWriter::new(out)).map_err(std::io::Error::other)?;
    for e in reader {
        let e = e.map_err(std::io::Error::other)?;
        if gone.contains(&e.path) {
            stats.entries -= 1;
            if e.is_file() {
                stats.files -= 1;
            }
            continue;
        }
        w.push(&e).map_err(std::io::Error::other)?;
    }
    let (out, hash, _) = w.finish().map_err(std::io::Error::other)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    fsx::rename(work.as_fd(), b"manifest.new", b"manifest", true)?;
    Ok(hash)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{Fixture, file_ops};

    /// The names in `dir` (none if it does not exist).
    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    #[test]
    fn a_commit_makes_the_snapshot_visible_and_leaves_no_work_behind() {
        let fx = Fixture::new();
        let snap = fx.commit_files(&[("a", b"one"), ("b", b"two")]);
        let set = fx.dir.path().join("test");
        let name = fx.manifest_name();
        assert_eq!(snap, set.join(&name));
        assert_eq!(std::fs::read(snap.join("a")).unwrap(), b"one");
        assert_eq!(std::fs::read(snap.join("b")).unwrap(), b"two");
        // `latest` names it; the manifest is in place and lists both.
        let latest = std::fs::read_link(set.join("latest")).unwrap();
        assert_eq!(latest.to_string_lossy(), name);
        assert_eq!(names(&set.join(".offsnap/manifests")), vec![name.clone()]);
        let listed: Vec<String> = fx.manifest().iter().map(|e| e.path.to_string()).collect();
        assert_eq!(listed, ["a", "b"]);
        // Nothing of the run is left, and the next run's index is built.
        assert!(names(&set.join(".offsnap/incomplete")).is_empty());
        assert!(!names(&set.join(".offsnap/index")).is_empty());
    }

    #[test]
    fn an_aborted_run_leaves_nothing_visible() {
        let fx = Fixture::new();
        fx.commit_files(&[("a", b"one")]);
        let before = fx.manifest_name();
        let mut run = fx.start();
        for op in file_ops("b", b"two") {
            run.apply(op).unwrap();
        }
        run.abort();
        let set = fx.dir.path().join("test");
        assert_eq!(fx.manifest_name(), before);
        assert_eq!(names(&set.join(".offsnap/manifests")), vec![before.clone()]);
        assert!(names(&set.join(".offsnap/incomplete")).is_empty());
        assert_eq!(
            std::fs::read_link(set.join("latest"))
                .unwrap()
                .to_string_lossy(),
            before
        );
    }
}
