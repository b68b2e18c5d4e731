//! Random round trips: every message a peer sends comes back equal through
//! `FrameWriter` and `FrameReader`, and a manifest comes back as the same
//! entries through the writer and the file reader, which refuses the file
//! once any single byte of it is changed.

use std::io::{Seek, SeekFrom, Write};

use jiff::Timestamp;
use offsnap_protocol::manifest::{self, ManifestWriter};
use offsnap_protocol::{
    CommitStats, Entry, EntryKind, ErrorKind, Finding, FindingKind, FrameError, FrameReader,
    FrameWriter, Hash, Hello, Meta, Op, Policy, PruneDecision, RelPath, RemoteError, Request,
    Response, Resume, SetName, SnapshotInfo, SnapshotName, SnapshotStats, VerifyProgress,
    VerifySummary, Xattr,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

// ---- strategies -----------------------------------------------------------

/// One file name: bytes other than `/` and NUL, never `.` or `..`.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Mostly short names over a few bytes, so paths share prefixes.
        vec(prop::sample::select(b"ab.-_\xff \n".to_vec()), 1..4),
        vec((1u8..=255).prop_filter("no slash", |b| *b != b'/'), 1..12),
    ]
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

/// A valid relative path of one to four names, built with `RelPath::name`
/// and `RelPath::join`.
fn rel_path() -> impl Strategy<Value = RelPath> {
    vec(name(), 1..5).prop_map(|names| {
        let mut path = RelPath::name(names[0].clone()).expect("a valid name");
        for n in &names[1..] {
            path = path.join(n).expect("a valid name joins");
        }
        path
    })
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn meta() -> impl Strategy<Value = Meta> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<i64>(),
        any::<u32>(),
    )
        .prop_map(|(mode, uid, gid, mtime_sec, mtime_nsec)| Meta {
            mode,
            uid,
            gid,
            mtime_sec,
            mtime_nsec,
        })
}

fn entry_kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        Just(EntryKind::Dir),
        (any::<u64>(), hash()).prop_map(|(size, hash)| EntryKind::File { size, hash }),
        vec(any::<u8>(), 0..40).prop_map(|target| EntryKind::Symlink { target }),
        Just(EntryKind::Fifo),
        Just(EntryKind::Socket),
        (any::<bool>(), any::<u64>()).prop_map(|(block, rdev)| EntryKind::Device { block, rdev }),
    ]
}

/// Extended attributes as recorded: user names, sorted, no repeats.
fn xattrs() -> impl Strategy<Value = Vec<Xattr>> {
    vec(("[a-z0-9.]{1,12}", vec(any::<u8>(), 0..40)), 0..4).prop_map(|list| {
        let mut out: Vec<Xattr> = list
            .into_iter()
            .map(|(n, value)| Xattr {
                name: format!("user.{n}").into_bytes(),
                value,
            })
            .collect();
        out.sort();
        out.dedup_by(|a, b| a.name == b.name);
        out
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    (rel_path(), entry_kind(), meta(), xattrs()).prop_map(|(path, kind, meta, xattrs)| Entry {
        path,
        kind,
        meta,
        xattrs,
    })
}

fn set_name() -> impl Strategy<Value = SetName> {
    "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}".prop_map(|s| SetName::new(&s).expect("a valid set name"))
}

fn snapshot_name() -> impl Strategy<Value = SnapshotName> {
    (Timestamp::MIN.as_second()..=Timestamp::MAX.as_second()).prop_map(|s| {
        SnapshotName::from_timestamp(Timestamp::from_second(s).expect("within range"))
    })
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..64)
}

fn text() -> impl Strategy<Value = String> {
    any::<String>()
}

fn policy() -> impl Strategy<Value = Policy> {
    let secs = || option::of(any::<i64>());
    let count = || option::of(any::<u32>());
    (
        (secs(), count(), count(), count(), count(), count()),
        (count(), secs(), secs(), secs(), secs()),
    )
        .prop_map(|((a, b, c, d, e, f), (g, h, i, j, k))| Policy {
            keep_within: a,
            keep_last: b,
            keep_hourly: c,
            keep_daily: d,
            keep_weekly: e,
            keep_monthly: f,
            keep_yearly: g,
            keep_within_hourly: h,
            keep_within_daily: i,
            keep_within_weekly: j,
            keep_within_monthly: k,
        })
}

fn hello() -> impl Strategy<Value = Hello> {
    (any::<[u8; 8]>(), any::<u32>(), text(), vec(text(), 0..3)).prop_map(
        |(magic, version, software, features)| Hello {
            magic,
            version,
            software,
            features,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        entry().prop_map(Op::Entry),
        any::<u64>().prop_map(Op::Unchanged),
        any::<u64>().prop_map(Op::Skip),
        entry().prop_map(Op::LinkFrom),
        (rel_path(), meta(), any::<u64>(), xattrs()).prop_map(|(path, meta, size, xattrs)| {
            Op::File {
                path,
                meta,
                size,
                xattrs,
            }
        }),
        bytes().prop_map(Op::Data),
        bytes().prop_map(Op::DataZstd),
        (rel_path(), meta(), any::<u64>(), xattrs()).prop_map(|(path, meta, size, xattrs)| {
            Op::Delta {
                path,
                meta,
                size,
                xattrs,
            }
        }),
        (any::<bool>(), bytes()).prop_map(|(zstd, bytes)| Op::DeltaPiece { zstd, bytes }),
        hash().prop_map(|hash| Op::End { hash }),
        Just(Op::Cancel),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        set_name().prop_map(|set| Request::ListSnapshots { set }),
        (set_name(), snapshot_name())
            .prop_map(|(set, snapshot)| Request::GetManifest { set, snapshot }),
        (set_name(), snapshot_name(), rel_path()).prop_map(|(set, snapshot, path)| {
            Request::GetFile {
                set,
                snapshot,
                path,
            }
        }),
        set_name().prop_map(|set| Request::BeginBackup { set }),
        rel_path().prop_map(|path| Request::Signature { path }),
        op().prop_map(Request::Op),
        Just(Request::Commit),
        Just(Request::Sync),
        set_name().prop_map(|set| Request::Stats { set }),
        (
            set_name(),
            option::of(snapshot_name()),
            option::of(any::<u64>())
        )
            .prop_map(|(set, snapshot, read_limit)| Request::Verify {
                set,
                snapshot,
                read_limit
            }),
        (set_name(), policy(), any::<bool>()).prop_map(|(set, policy, dry_run)| {
            Request::Prune {
                set,
                policy,
                dry_run,
            }
        }),
    ]
}

fn snapshot_info() -> impl Strategy<Value = SnapshotInfo> {
    (snapshot_name(), hash(), any::<u64>()).prop_map(|(name, manifest_hash, manifest_len)| {
        SnapshotInfo {
            name,
            manifest_hash,
            manifest_len,
        }
    })
}

fn commit_stats() -> impl Strategy<Value = CommitStats> {
    (any::<[u64; 8]>(), option::of(hash())).prop_map(|(n, manifest_hash)| CommitStats {
        entries: n[0],
        files: n[1],
        linked: n[2],
        linked_by_hash: n[3],
        written: n[4],
        delta_files: n[5],
        bytes_written: n[6],
        manifest_hash,
        link_limit_copies: n[7],
    })
}

fn snapshot_stats() -> impl Strategy<Value = SnapshotStats> {
    (snapshot_name(), any::<[u64; 8]>()).prop_map(|(name, n)| SnapshotStats {
        name,
        files: n[0],
        dirs: n[1],
        symlinks: n[2],
        total_bytes: n[3],
        unique_bytes: n[4],
        added: n[5],
        changed: n[6],
        removed: n[7],
    })
}

fn finding() -> impl Strategy<Value = Finding> {
    let kind = prop_oneof![
        Just(FindingKind::Missing),
        text().prop_map(FindingKind::Changed),
        Just(FindingKind::Unexpected),
        text().prop_map(FindingKind::Manifest),
    ];
    (snapshot_name(), bytes(), kind).prop_map(|(snapshot, path, kind)| Finding {
        snapshot,
        path,
        kind,
    })
}

fn remote_error() -> impl Strategy<Value = RemoteError> {
    let kind = prop::sample::select(vec![
        ErrorKind::Protocol,
        ErrorKind::Locked,
        ErrorKind::NotFound,
        ErrorKind::Refused,
        ErrorKind::Corrupt,
        ErrorKind::Io,
    ]);
    (kind, text()).prop_map(|(kind, message)| RemoteError { kind, message })
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        vec(snapshot_info(), 0..3).prop_map(Response::Snapshots),
        bytes().prop_map(Response::ManifestChunk),
        Just(Response::ManifestEnd),
        option::of(bytes()).prop_map(Response::Signature),
        bytes().prop_map(Response::FileData),
        Just(Response::FileEnd),
        (
            snapshot_name(),
            option::of(snapshot_info()),
            vec((hash(), any::<u64>()), 0..3),
            vec((rel_path(), any::<u64>()), 0..2)
        )
            .prop_map(
                |(snapshot, base, finished, partial)| Response::BackupStarted {
                    snapshot,
                    base,
                    resume: Resume { finished, partial },
                }
            ),
        rel_path().prop_map(|path| Response::Resend { path }),
        Just(Response::Synced),
        (snapshot_name(), commit_stats())
            .prop_map(|(snapshot, stats)| Response::Committed { snapshot, stats }),
        vec(snapshot_stats(), 0..3).prop_map(Response::Stats),
        finding().prop_map(Response::Finding),
        (any::<[u64; 4]>(), bytes()).prop_map(|(n, path)| Response::VerifyProgress(
            VerifyProgress {
                files: n[0],
                files_total: n[1],
                bytes: n[2],
                bytes_total: n[3],
                path,
            }
        )),
        any::<[u64; 5]>().prop_map(|n| Response::Verified(VerifySummary {
            snapshots: n[0],
            entries: n[1],
            inodes_hashed: n[2],
            bytes_hashed: n[3],
            findings: n[4],
        })),
        vec(
            (snapshot_name(), vec(text(), 0..3))
                .prop_map(|(name, kept_by)| PruneDecision { name, kept_by }),
            0..3
        )
        .prop_map(Response::Pruned),
        text().prop_map(Response::Warning),
        remote_error().prop_map(Response::Error),
    ]
}

/// Entries with distinct paths, sorted in walk order.
fn sorted_entries() -> impl Strategy<Value = Vec<Entry>> {
    vec(entry(), 0..24).prop_map(|mut entries| {
        entries.sort_by(|a, b| a.path.walk_cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path);
        // Second names of files, each pointing at an earlier file.
        let mut files: Vec<RelPath> = Vec::new();
        for (i, e) in entries.iter_mut().enumerate() {
            if i % 5 == 4
                && let Some(target) = files.last()
            {
                e.kind = EntryKind::HardLink {
                    target: target.clone(),
                };
            } else if e.is_file() {
                files.push(e.path.clone());
            }
        }
        entries
    })
}

// ---- checks ----------------------------------------------------------------

/// Writes `values` as frames, reads them back in order, then the end.
fn frames_round_trip<T>(values: &[T]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut w = FrameWriter::new(Vec::new());
    for v in values {
        w.write(v).expect("encodes");
    }
    let written = w.bytes_written();
    let bytes = w.into_inner().expect("writes to memory");
    prop_assert_eq!(written, bytes.len() as u64);
    let mut r = FrameReader::new(&bytes[..]);
    for v in values {
        let got: T = r.read().expect("decodes");
        prop_assert_eq!(&got, v);
    }
    prop_assert!(matches!(r.read::<T>(), Err(FrameError::Closed)));
    prop_assert_eq!(r.bytes_read(), bytes.len() as u64);
    Ok(())
}

fn manifest_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut w = ManifestWriter::new(Vec::new()).expect("writes to memory");
    for e in entries {
        w.push(e).expect("entries in walk order");
    }
    w.finish().expect("writes to memory").0
}

/// Reads a manifest file as every caller does (`manifest::open_file`):
/// its entries, or the first error.
fn read_manifest(file: &mut std::fs::File, bytes: &[u8]) -> Result<Vec<Entry>, String> {
    file.set_len(0).expect("truncates");
    file.seek(SeekFrom::Start(0)).expect("seeks");
    file.write_all(bytes).expect("writes");
    let reader = manifest::open_file(file.try_clone().expect("clones a handle"))
        .map_err(|e| e.to_string())?;
    reader
        .collect::<Result<Vec<Entry>, _>>()
        .map_err(|e| e.to_string())
}

// ---- properties --------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn paths_entries_and_metadata(
        paths in vec(rel_path(), 1..8),
        kinds in vec(entry_kind(), 1..8),
        metas in vec(meta(), 1..8),
        entries in vec(entry(), 1..8),
    ) {
        frames_round_trip(&paths)?;
        frames_round_trip(&kinds)?;
        frames_round_trip(&metas)?;
        frames_round_trip(&entries)?;
    }

    #[test]
    fn hellos(hellos in vec(hello(), 1..4)) {
        frames_round_trip(&hellos)?;
    }

    #[test]
    fn ops(ops in vec(op(), 1..12)) {
        frames_round_trip(&ops)?;
    }

    #[test]
    fn requests(requests in vec(request(), 1..12)) {
        frames_round_trip(&requests)?;
    }

    #[test]
    fn responses(responses in vec(response(), 1..12)) {
        frames_round_trip(&responses)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn manifests_round_trip_and_refuse_any_changed_byte(
        entries in sorted_entries(),
        masks in vec(1u8..=255, 1..16),
    ) {
        let bytes = manifest_bytes(&entries);
        let mut file = tempfile::tempfile().expect("a temporary file");
        prop_assert_eq!(read_manifest(&mut file, &bytes), Ok(entries.clone()));
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= masks[at % masks.len()];
            let got = read_manifest(&mut file, &bad);
            prop_assert!(
                got.is_err(),
                "byte {} of {} changed, yet the manifest read as {:?}",
                at,
                bytes.len(),
                got
            );
        }
    }
}
