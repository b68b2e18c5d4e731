//! Files the helper asks for again that this client did not keep in
//! memory: files it reported unchanged, whose stored copy the helper found
//! altered on the backup host. What the helper recorded for them is their
//! base manifest entry, read again here (one pass over the manifest, only
//! when there is something to find), and where they are on this machine
//! follows from the sources.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use offsnap_protocol::{Entry, EntryKind, Hash, Meta, RelPath, Xattr};

use crate::error::{Error, Result};
use crate::manifests;
use crate::scan::Source;

/// A file of the base snapshot as recorded, and where it is here.
pub struct Recorded {
    /// Its path on this machine.
    pub local: PathBuf,
    /// What the base manifest recorded.
    pub meta: Meta,
    /// Its recorded extended attributes.
    pub xattrs: Vec<Xattr>,
    /// Its recorded size.
    pub size: u64,
    /// Its recorded content hash.
    pub hash: Hash,
}

/// The base manifest's records of the files `paths`, by path; paths not
/// recorded there as files are missing from the map.
pub fn find(
    base: &File,
    sources: &[Source],
    paths: &HashSet<RelPath>,
) -> Result<HashMap<RelPath, Recorded>> {
    let mut found = HashMap::new();
    if paths.is_empty() {
        return Ok(found);
    }
    for e in manifests::entries(base)? {
        let e: Entry = e.map_err(|e| Error::Corrupt(format!("base manifest: {e}")))?;
        let EntryKind::File { size, hash } = e.kind else {
            continue;
        };
        if !paths.contains(&e.path) {
            continue;
        }
        let Some(local) = local_path(sources, &e.path) else {
            continue;
        };
        found.insert(
            e.path,
            Recorded {
                local,
                meta: e.meta,
                xattrs: e.xattrs,
                size,
                hash,
            },
        );
        if found.len() == paths.len() {
            break;
        }
    }
    Ok(found)
}

/// Where the snapshot path `path` is on this machine: under the source
/// named by its first component.
fn local_path(sources: &[Source], path: &RelPath) -> Option<PathBuf> {
    let bytes = path.as_bytes();
    sources.iter().find_map(|s| {
        let name = s.name.as_bytes();
        if bytes == name {
            return Some(s.path.clone());
        }
        let rest = bytes.strip_prefix(name)?.strip_prefix(b"/")?;
        Some(s.path.join(std::ffi::OsStr::from_bytes(rest)))
    })
}
