//! The repair stage, after the walk: waits until the helper has applied
//! every op, then sends whole the files it asks for again (a delta that
//! rebuilt other content than was read, a leftover of an interrupted run
//! found altered, a stored copy found altered on the host). A file sent
//! again must still read as it did when first read, else it is cancelled
//! and left out.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use offsnap_fs::fsx;
use offsnap_protocol::{Hash, Meta, Op, RelPath, Request, Xattr};

use super::pipeline::Run;
use crate::error::{Error, Result};
use crate::manifests::scratch_error;
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

/// A kept file as written to the scratch file.
#[derive(Serialize, Deserialize)]
struct Record {
    path: RelPath,
    #[serde(with = "serde_bytes")]
    local: Vec<u8>,
    meta: Meta,
    xattrs: Vec<Xattr>,
    size: u64,
    hash: Hash,
}

/// The files sent as deltas or linked by content this run, as they were
/// read, in case the helper asks for one again. A run may link millions of
/// files by content, so they go to a scratch file
/// ([`crate::manifests::scratch_file`]), length-prefixed postcard records,
/// read back once, after the walk, for the few the helper asks for.
#[derive(Debug, Default)]
pub struct Kept {
    file: Option<BufWriter<File>>,
    count: u64,
}

impl Kept {
    /// Remembers a file as it was read.
    pub fn keep(&mut self, item: &ScanItem, meta: Meta, size: u64, hash: Hash) -> Result<()> {
        let record = Record {
            path: item.path.clone(),
            local: item.local.clone().into_os_string().into_vec(),
            meta,
            xattrs: item.xattrs.clone(),
            size,
            hash,
        };
        let bytes = postcard::to_stdvec(&record)
            .map_err(|e| Error::Local(format!("recording a file kept for resending: {e}")))?;
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(BufWriter::new(
                crate::manifests::scratch_file().map_err(scratch_error)?,
            )),
        };
        file.write_all(&(bytes.len() as u32).to_le_bytes())
            .and_then(|()| file.write_all(&bytes))
            .map_err(scratch_error)?;
        self.count += 1;
        Ok(())
    }

    /// Whether nothing was kept.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Those of `asked` that were kept, as they were read (the last record
    /// of a path wins).
    fn take(&mut self, asked: &HashSet<&RelPath>) -> Result<HashMap<RelPath, Resendable>> {
        let mut found = HashMap::new();
        let Some(file) = self.file.take() else {
            return Ok(found);
        };
        let mut file = file
            .into_inner()
            .map_err(|e| scratch_error(e.into_error()))?;
        file.rewind().map_err(scratch_error)?;
        let mut read = BufReader::new(file);
        let mut buf = Vec::new();
        for _ in 0..self.count {
            let mut len = [0u8; 4];
            read.read_exact(&mut len).map_err(scratch_error)?;
            buf.resize(u32::from_le_bytes(len) as usize, 0);
            read.read_exact(&mut buf).map_err(scratch_error)?;
            let r: Record = postcard::from_bytes(&buf)
                .map_err(|e| Error::Corrupt(format!("the scratch file of kept files: {e}")))?;
            if asked.contains(&r.path) {
                let sent = Resendable {
                    local: PathBuf::from(OsString::from_vec(r.local)),
                    meta: r.meta,
                    xattrs: r.xattrs,
                    size: r.size,
                    hash: r.hash,
                };
                found.insert(r.path, sent);
            }
        }
        self.count = 0;
        Ok(found)
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
        let asked: HashSet<&RelPath> = self.sigs.resends.iter().collect();
        let mut kept = self.resend.take(&asked)?;
        // Files reported unchanged: as the base manifest recorded them.
        let unkept: HashSet<RelPath> = asked
            .into_iter()
            .filter(|p| !kept.contains_key(*p))
            .cloned()
            .collect();
        if let Some(base) = base {
            for (path, r) in crate::unchanged::find(base, sources, &unkept)? {
                let sent = Resendable {
                    local: r.local,
                    meta: r.meta,
                    xattrs: r.xattrs,
                    size: r.size,
                    hash: r.hash,
                };
                kept.insert(path, sent);
            }
        }
        for path in std::mem::take(&mut self.sigs.resends) {
            let Some(sent) = kept.remove(&path) else {
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
    fn kept_files_are_found_again_as_they_were_read() -> Result<()> {
        let mut kept = Kept::default();
        assert!(kept.is_empty());
        let mut a = item("s/a");
        a.xattrs = vec![Xattr {
            name: b"user.k".to_vec(),
            value: vec![0xff; 300],
        }];
        a.local = PathBuf::from(OsString::from_vec(b"/src/\xff-not-utf8".to_vec()));
        for i in 0..1000u32 {
            kept.keep(&item(&format!("s/x{i}")), META, 3, Hash([2; 32]))?;
        }
        kept.keep(&a, META, 3, Hash([1; 32]))?;
        assert!(!kept.is_empty());
        let (pa, pb) = (a.path.clone(), item("s/b").path);
        let found = kept.take(&[&pa, &pb].into_iter().collect())?;
        assert_eq!(found.len(), 1, "only what was asked for and kept");
        let want = Resendable {
            local: a.local.clone(),
            meta: META,
            xattrs: a.xattrs.clone(),
            size: 3,
            hash: Hash([1; 32]),
        };
        assert_eq!(found.get(&pa), Some(&want));
        Ok(())
    }
}
