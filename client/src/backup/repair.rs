//! The repair stage, after the walk: waits until the helper has applied
//! every op, then sends whole the files it asks for again (a delta that
//! rebuilt other content than was read, a leftover of an interrupted run
//! found altered, a stored copy found altered on the host). A file sent
//! again must still read as it did when first read, else it is cancelled
//! and left out.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use offsnap_fs::fsx;
use offsnap_protocol::{Hash, Meta, Op, RelPath, Request, Xattr};

use super::pipeline::Run;
use crate::error::{Error, Result};
use crate::scan::{ScanItem, Source};

/// A file the helper may ask for again, as it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Resendable {
    local: PathBuf,
    meta: Meta,
    xattrs: Vec<Xattr>,
    size: u64,
    hash: Hash,
}

/// The files sent as deltas or linked by content this run, as they were
/// read, in case the helper asks for one again.
#[derive(Debug, Default)]
pub struct Kept {
    files: HashMap<RelPath, Resendable>,
}

impl Kept {
    /// Remembers a file as it was read.
    pub fn keep(&mut self, item: &ScanItem, meta: Meta, size: u64, hash: Hash) {
        let sent = Resendable {
            local: item.local.clone(),
            meta,
            xattrs: item.xattrs.clone(),
            size,
            hash,
        };
        self.files.insert(item.path.clone(), sent);
    }

    /// Whether nothing was kept.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Of `asked`, the paths not kept here (files reported unchanged).
    fn unkept(&self, asked: &[RelPath]) -> HashSet<RelPath> {
        asked
            .iter()
            .filter(|p| !self.files.contains_key(*p))
            .cloned()
            .collect()
    }
}

impl Run<'_> {
    /// Waits for the helper to apply every op, then sends again what it
    /// asks for. With a base snapshot this costs a round trip even when
    /// nothing is asked for.
    pub fn repair(&mut self, base: Option<&File>, sources: &[Source]) -> Result<()> {
        if self.resend.is_empty() && base.is_none() {
            return Ok(());
        }
        self.wire.send(&Request::Sync)?;
        self.wire.flush()?;
        self.sigs.synced()?;
        // Files reported unchanged: as the base manifest recorded them.
        let unkept = self.resend.unkept(&self.sigs.resends);
        if let Some(base) = base {
            for (path, r) in crate::unchanged::find(base, sources, &unkept)? {
                let sent = Resendable {
                    local: r.local,
                    meta: r.meta,
                    xattrs: r.xattrs,
                    size: r.size,
                    hash: r.hash,
                };
                self.resend.files.insert(path, sent);
            }
        }
        for path in std::mem::take(&mut self.sigs.resends) {
            let Some(sent) = self.resend.files.remove(&path) else {
                return Err(Error::Corrupt(format!(
                    "the helper asked to resend {path}, which this run did not send or keep"
                )));
            };
            self.resend_one(&path, &sent)?;
        }
        Ok(())
    }

    /// Sends again, whole, a file the helper asked for.
    fn resend_one(&mut self, path: &RelPath, sent: &Resendable) -> Result<()> {
        let (size, hash) = (sent.size, sent.hash);
        let problem = |why: &str| format!("{}: {why}; not backed up", sent.local.display());
        let as_read = |f: &File| {
            f.metadata()
                .is_ok_and(|m| m.len() == size && fsx::meta_of_metadata(&m) == sent.meta)
        };
        // By its path: the scan's directory handles are long closed.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&sent.local);
        let mut file = match file {
            Ok(f) if as_read(&f) => f,
            _ => {
                self.tally
                    .problems
                    .push(problem("changed before it could be sent again"));
                return Ok(());
            }
        };
        self.wire.op(Op::File {
            path: path.clone(),
            meta: sent.meta,
            size,
            xattrs: sent.xattrs.clone(),
        })?;
        let same = match self.wire.stream(&mut file, size, self.progress)? {
            Ok(h) => h == hash && as_read(&file),
            Err(_) => false,
        };
        if same {
            self.wire.op(Op::End { hash })?;
            self.tally.resent += 1;
            self.wire.sent.literal_bytes += size;
        } else {
            self.wire.op(Op::Cancel)?;
            self.tally
                .problems
                .push(problem("changed while being sent again"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const META: Meta = Meta::with_mode(0o644);

    fn item(p: &str) -> ScanItem {
        let dir = std::fs::File::open(".").expect("a directory");
        ScanItem {
            path: RelPath::new(p.as_bytes().to_vec()).expect("path"),
            local: p.into(),
            kind: crate::scan::ScanKind::File(3),
            meta: META,
            xattrs: Vec::new(),
            xattrs_read: true,
            inode: None,
            parent: Arc::new(dir.into()),
            name: p.as_bytes().to_vec(),
        }
    }

    #[test]
    fn files_asked_for_and_not_kept_are_looked_up_in_the_base() {
        let mut kept = Kept::default();
        assert!(kept.is_empty());
        let a = item("s/a");
        kept.keep(&a, META, 3, Hash([1; 32]));
        assert!(!kept.is_empty());
        let asked = [a.path.clone(), item("s/b").path];
        let unkept = kept.unkept(&asked);
        assert_eq!(unkept.len(), 1);
        assert!(unkept.contains(&item("s/b").path));
    }
}
