//! `verify`: re-reads a set's snapshots and checks them against their
//! manifests. Each inode is hashed once, however many snapshots share it.
//! Reports entries that are missing, different (content, size, kind, mode,
//! mtime, symlink target) or not in the manifest, and damaged manifests.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;

use offsnap_protocol::manifest::{self};
use offsnap_protocol::{Entry, EntryKind, Finding, FindingKind, Hash, SnapshotName, VerifySummary};
use rustix::fs::FileType;

use crate::error::{Context, Error};
use crate::set::SetDir;
use offsnap_fs::cursor::DirCursor;
use offsnap_fs::fsx;

/// Checks `snapshots` of the set, calling `report` for each finding.
pub fn verify(
    set: &SetDir,
    snapshots: &[SnapshotName],
    mut report: impl FnMut(Finding) -> Result<(), Error>,
) -> Result<VerifySummary, Error> {
    let mut sum = VerifySummary::default();
    // (device, inode) -> (size, hash) of what was read.
    let mut hashed: HashMap<(u64, u64), (u64, Hash)> = HashMap::new();
    let mut buf = vec![0u8; 1 << 20];
    let readable = !fsx::is_root();
    for snap in snapshots {
        sum.snapshots += 1;
        let mut found = |path: &[u8], kind: FindingKind| {
            sum.findings += 1;
            report(Finding {
                snapshot: *snap,
                path: path.to_vec(),
                kind,
            })
        };
        let entries: Vec<Entry> = match set
            .open_manifest(snap)
            .map_err(|e| e.to_string())
            .and_then(|f| manifest::open_file(f).map_err(|e| e.to_string()))
            .and_then(|r| r.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string()))
        {
            Ok(e) => e,
            Err(why) => {
                found(b"", FindingKind::Manifest(why))?;
                continue;
            }
        };
        let root = set.open_snapshot(snap)?;
        let mut cursor = DirCursor::new(root.try_clone().ctx("snapshot")?);
        let known: HashSet<&[u8]> = entries.iter().map(|e| e.path.as_bytes()).collect();
        // Unexpected entries at the top.
        for (name, _) in fsx::read_dir(root.as_fd()).ctx(snap)? {
            if !known.contains(name.as_slice()) {
                found(&name, FindingKind::Unexpected)?;
            }
        }
        for e in &entries {
            sum.entries += 1;
            let path = e.path.as_bytes();
            let Ok((dir, name)) = cursor.parent_of(&e.path) else {
                found(path, FindingKind::Missing)?;
                continue;
            };
            let Some(st) = fsx::lstat(dir.as_fd(), name).ctx(&e.path)? else {
                if !e.kind.is_special() {
                    found(path, FindingKind::Missing)?;
                }
                continue;
            };
            let kind = fsx::file_type(&st);
            let want = match e.kind {
                EntryKind::Dir => FileType::Directory,
                EntryKind::File { .. } | EntryKind::HardLink { .. } => FileType::RegularFile,
                EntryKind::Symlink { .. } => FileType::Symlink,
                EntryKind::Fifo | EntryKind::Socket | EntryKind::Device { .. } => {
                    // Recorded only: nothing of the kind is made on the host.
                    found(path, FindingKind::Unexpected)?;
                    continue;
                }
            };
            if kind != want {
                found(
                    path,
                    FindingKind::Changed(format!("is not a {}", e.kind.word())),
                )?;
                continue;
            }
            if want != FileType::Symlink
                && (st.st_mode & 0o7777
                    != fsx::stored_mode(e.meta.mode, want == FileType::Directory, readable)
                    || (want == FileType::RegularFile
                        && (st.st_mtime, st.st_mtime_nsec as i64)
                            != (e.meta.mtime_sec, i64::from(e.meta.mtime_nsec))))
            {
                found(path, FindingKind::Changed("mode or mtime differ".into()))?;
            }
            match &e.kind {
                EntryKind::Dir => {
                    let sub = fsx::open_dir(dir.as_fd(), name).ctx(&e.path)?;
                    for (child, _) in fsx::read_dir(sub.as_fd()).ctx(&e.path)? {
                        let mut p = path.to_vec();
                        p.push(b'/');
                        p.extend_from_slice(&child);
                        if !known.contains(p.as_slice()) {
                            found(&p, FindingKind::Unexpected)?;
                        }
                    }
                }
                EntryKind::Symlink { target } => {
                    if fsx::read_link(dir.as_fd(), name).ctx(&e.path)? != *target {
                        found(path, FindingKind::Changed("points elsewhere".into()))?;
                    }
                }
                EntryKind::Fifo | EntryKind::Socket | EntryKind::Device { .. } => {}
                EntryKind::File { .. } | EntryKind::HardLink { .. } => {
                    // A hard link holds its target's content (a copy when
                    // the inode was at its link limit).
                    let content = match &e.kind {
                        EntryKind::HardLink { target } => entries
                            .binary_search_by(|x| x.path.walk_cmp(target))
                            .ok()
                            .map(|i| &entries[i].kind),
                        kind => Some(kind),
                    };
                    let Some(&EntryKind::File { size, hash }) = content else {
                        found(
                            path,
                            FindingKind::Manifest("a hard link to no recorded file".into()),
                        )?;
                        continue;
                    };
                    let (size, hash) = (&size, &hash);
                    let key = (st.st_dev, st.st_ino);
                    let got = match hashed.get(&key) {
                        Some(v) => *v,
                        None => {
                            let mut f = fsx::open_file(dir.as_fd(), name).ctx(&e.path)?;
                            let (n, got) = fsx::hash_all(&mut f, &mut buf).ctx(&e.path)?;
                            sum.inodes_hashed += 1;
                            sum.bytes_hashed += n;
                            let v = (n, got);
                            hashed.insert(key, v);
                            v
                        }
                    };
                    if got.0 != *size {
                        found(
                            path,
                            FindingKind::Changed(format!("{} bytes, {size} recorded", got.0)),
                        )?;
                    } else if got.1 != *hash {
                        found(path, FindingKind::Changed("content differs".into()))?;
                    }
                }
            }
        }
    }
    Ok(sum)
}
