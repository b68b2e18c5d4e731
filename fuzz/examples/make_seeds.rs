//! Writes a few small, valid seed inputs for each fuzz target into
//! `DIR/<target>/` (DIR defaults to `corpus`), so that fuzzing starts from
//! real messages, manifests, signatures and deltas. Run by `run.sh`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use offsnap_fuzz::layout::{Builder, helper_base};
use offsnap_fuzz::wire::frame;
use offsnap_protocol::delta::DeltaWriter;
use offsnap_protocol::manifest::{MANIFEST_MAGIC, MANIFEST_VERSION, ManifestWriter};
use offsnap_protocol::{
    CommitStats, Entry, EntryKind, ErrorKind, Finding, FindingKind, FrameWriter, Hash, Hello, Meta,
    Op, Policy, PruneDecision, RelPath, RemoteError, Request, Response, SetName, SnapshotInfo,
    SnapshotName, SnapshotStats, VerifyProgress, VerifySummary,
};
use serde::Serialize;

fn main() -> io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("corpus"), PathBuf::from);
    let s = Samples::new();

    let hellos = [Hello::ours("offsnap 0.1.0"), {
        let mut h = Hello::ours("offsnap-remote 0.1.0");
        h.features = vec!["append-only".into()];
        h
    }];
    write_all(&dir, "decode_hello", hellos.iter().map(encode))?;
    write_all(&dir, "decode_request", s.requests().iter().map(encode))?;
    write_all(&dir, "decode_response", s.responses().iter().map(encode))?;
    write_all(&dir, "decode_op", s.ops().iter().map(encode))?;
    write_all(&dir, "frame", s.streams())?;
    write_all(&dir, "manifest", s.manifests())?;
    write_all(&dir, "signature", s.signatures())?;
    write_all(&dir, "delta_parse", s.deltas())?;
    write_all(&dir, "helper_delta", s.helper_inputs())?;
    Ok(())
}

/// Writes `seeds` as `DIR/target/seed-N`.
fn write_all(dir: &Path, target: &str, seeds: impl IntoIterator<Item = Vec<u8>>) -> io::Result<()> {
    let dir = dir.join(target);
    fs::create_dir_all(&dir)?;
    for (i, seed) in seeds.into_iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:02}")), seed)?;
    }
    Ok(())
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("a sample encodes")
}

/// Sample values of every kind a peer sends.
struct Samples {
    set: SetName,
    snap: SnapshotName,
    path: RelPath,
    meta: Meta,
    entries: Vec<Entry>,
}

impl Samples {
    fn new() -> Samples {
        let meta = Meta {
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            mtime_sec: 1_764_000_000,
            mtime_nsec: 123,
        };
        let entry = |p: &[u8], kind| Entry {
            path: RelPath::new(p.to_vec()).expect("a valid sample path"),
            kind,
            meta,
            xattrs: Vec::new(),
        };
        Samples {
            set: SetName::new("laptop").expect("a valid set name"),
            snap: "2026-11-26T014929Z".parse().expect("a valid snapshot name"),
            path: RelPath::new(b"docs/a.txt".to_vec()).expect("a valid path"),
            meta,
            entries: vec![
                entry(b"docs", EntryKind::Dir),
                entry(
                    b"docs/a.txt",
                    EntryKind::File {
                        size: 5,
                        hash: Hash::of(b"hello"),
                    },
                ),
                entry(
                    b"docs/link",
                    EntryKind::Symlink {
                        target: b"../x".to_vec(),
                    },
                ),
                entry(b"docs.old", EntryKind::Dir),
            ],
        }
    }

    fn ops(&self) -> Vec<Op> {
        vec![
            Op::Entry(self.entries[0].clone()),
            Op::Entry(self.entries[2].clone()),
            Op::Unchanged(3),
            Op::Skip(70_000),
            Op::LinkFrom(self.entries[1].clone()),
            Op::File {
                path: self.path.clone(),
                meta: self.meta,
                size: 5,
                xattrs: Vec::new(),
            },
            Op::Data(b"hello".to_vec()),
            Op::DataZstd(zstd::bulk::compress(&[b'a'; 300], 3).expect("compresses")),
            Op::Delta {
                path: self.path.clone(),
                meta: self.meta,
                size: 5,
                xattrs: Vec::new(),
            },
            Op::DeltaPiece {
                zstd: false,
                bytes: small_delta(),
            },
            Op::End {
                hash: Hash::of(b"hello"),
            },
            Op::Cancel,
        ]
    }

    fn requests(&self) -> Vec<Request> {
        let mut out = vec![
            Request::ListSnapshots {
                set: self.set.clone(),
            },
            Request::GetManifest {
                set: self.set.clone(),
                snapshot: self.snap,
            },
            Request::GetFile {
                set: self.set.clone(),
                snapshot: self.snap,
                path: self.path.clone(),
            },
            Request::BeginBackup {
                set: self.set.clone(),
            },
            Request::Signature {
                path: self.path.clone(),
            },
            Request::Commit,
            Request::Stats {
                set: self.set.clone(),
            },
            Request::Verify {
                set: self.set.clone(),
                snapshot: Some(self.snap),
                read_limit: Some(48 << 20),
            },
            Request::Prune {
                set: self.set.clone(),
                policy: Policy {
                    keep_last: Some(3),
                    ..Policy::thirty_days()
                },
                dry_run: true,
            },
        ];
        out.extend(self.ops().into_iter().map(Request::Op));
        out
    }

    fn responses(&self) -> Vec<Response> {
        let info = SnapshotInfo {
            name: self.snap,
            manifest_hash: Hash::of(b"manifest"),
            manifest_len: 4242,
        };
        vec![
            Response::Snapshots(vec![info.clone()]),
            Response::ManifestChunk(self.manifest()),
            Response::ManifestEnd,
            Response::Signature(Some(signature(&helper_base(), 512))),
            Response::Signature(None),
            Response::FileData(b"hello".to_vec()),
            Response::FileEnd,
            Response::BackupStarted {
                snapshot: self.snap.next(),
                base: Some(info),
                resume: Default::default(),
            },
            Response::Committed {
                snapshot: self.snap,
                stats: CommitStats {
                    entries: 4,
                    files: 1,
                    manifest_hash: Some(Hash::of(b"m")),
                    ..CommitStats::default()
                },
            },
            Response::Stats(vec![SnapshotStats {
                name: self.snap,
                files: 1,
                dirs: 2,
                symlinks: 1,
                total_bytes: 5,
                unique_bytes: 5,
                added: 4,
                changed: 0,
                removed: 0,
            }]),
            Response::Finding(Finding {
                snapshot: self.snap,
                path: b"docs/a.txt".to_vec(),
                kind: FindingKind::Changed("size 5, found 6".into()),
            }),
            Response::VerifyProgress(VerifyProgress {
                files: 1,
                files_total: 2,
                bytes: 5,
                bytes_total: 9,
                path: b"docs/a.txt".to_vec(),
            }),
            Response::Verified(VerifySummary {
                snapshots: 1,
                entries: 4,
                inodes_hashed: 1,
                bytes_hashed: 5,
                findings: 1,
            }),
            Response::Pruned(vec![PruneDecision {
                name: self.snap,
                kept_by: vec!["last".into()],
            }]),
            Response::Warning("docs/x: vanished".into()),
            Response::Error(RemoteError {
                kind: ErrorKind::Locked,
                message: "another run holds the lock".into(),
            }),
        ]
    }

    /// Streams for the `frame` target: mode, plan length, plan, frames.
    fn streams(&self) -> Vec<Vec<u8>> {
        let stream = |messages: &mut dyn FnMut(&mut FrameWriter<Vec<u8>>)| {
            let mut w = FrameWriter::new(Vec::new());
            w.write(&Hello::ours("offsnap 0.1.0")).expect("encodes");
            messages(&mut w);
            w.into_inner().expect("writes to memory")
        };
        let requests = stream(&mut |w| {
            for r in self.requests() {
                w.write(&r).expect("encodes");
            }
        });
        let responses = stream(&mut |w| {
            for r in self.responses() {
                w.write(&r).expect("encodes");
            }
        });
        let bare = frame(&encode(&Request::Commit));
        vec![
            Builder::default().u8(0).u8(0).raw(&requests).0,
            Builder::default().u8(1).u8(0).raw(&responses).0,
            Builder::default()
                .u8(0)
                .u8(3)
                .raw(&[3, 0, 1])
                .raw(&requests)
                .0,
            Builder::default().u8(2).u8(0).raw(&bare).0,
        ]
    }

    /// A manifest of the sample entries.
    fn manifest(&self) -> Vec<u8> {
        let mut w = ManifestWriter::new(Vec::new()).expect("writes to memory");
        for e in &self.entries {
            w.push(e).expect("in walk order");
        }
        w.finish().expect("writes to memory").0
    }

    /// Inputs for the `manifest` target: a whole file, and the records
    /// alone (the target compresses and wraps them).
    fn manifests(&self) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        for e in &self.entries {
            let r = encode(e);
            records.extend_from_slice(&(r.len() as u32).to_le_bytes());
            records.extend_from_slice(&r);
        }
        records.extend_from_slice(&0u32.to_le_bytes());
        records.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        let mut header = MANIFEST_MAGIC.to_vec();
        header.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        vec![
            Builder::default().u8(0).raw(&self.manifest()).0,
            Builder::default().u8(1).raw(&records).0,
            Builder::default().u8(0).raw(&header).0,
        ]
    }

    /// Inputs for the `signature` target: flags, base size, window cut,
    /// signature, data.
    fn signatures(&self) -> Vec<Vec<u8>> {
        let base = helper_base();
        let new = edited(&base);
        [(16, 0), (512, 1), (2048, 0)]
            .into_iter()
            .map(|(block, flags)| {
                Builder::default()
                    .u8(flags)
                    .u64(base.len() as u64)
                    .u16(block as u16 * 3 + 1)
                    .part(&signature(&base, block))
                    .raw(&new)
                    .0
            })
            .collect()
    }

    /// Deltas for the `delta_parse` target.
    fn deltas(&self) -> Vec<Vec<u8>> {
        let base = helper_base();
        vec![small_delta(), rsync_delta(&base, &edited(&base), 64), {
            let mut w = DeltaWriter::new();
            w.copy(1 << 40, 70_000);
            w.literal(&[7; 300]);
            w.copy(0, 1);
            w.finish()
        }]
    }

    /// Inputs for the `helper_delta` target: the announced size, then
    /// pieces (kind, length, bytes) that rebuild an edited base.
    fn helper_inputs(&self) -> Vec<Vec<u8>> {
        let base = helper_base();
        let new = edited(&base);
        let whole = rsync_delta(&base, &new, 128);
        let size = new.len() as u16;
        let mut first = DeltaWriter::new();
        first.copy(0, 1000);
        first.literal(b"changed");
        let mut second = DeltaWriter::new();
        second.copy(1007, base.len() as u64 - 1007);
        second.literal(b"tail");
        vec![
            Builder::default().u16(size).u8(0).part(&whole).0,
            Builder::default().u16(size).u8(1).part(&whole).0,
            Builder::default()
                .u16(size)
                .u8(0)
                .part(&first.finish())
                .u8(1)
                .part(&second.finish())
                .0,
        ]
    }
}

/// The base with a few bytes changed and a tail added.
fn edited(base: &[u8]) -> Vec<u8> {
    let mut new = base.to_vec();
    new[1000..1007].copy_from_slice(b"changed");
    new.extend_from_slice(b"tail");
    new
}

fn signature(base: &[u8], block: u32) -> Vec<u8> {
    fast_rsync::Signature::calculate(
        base,
        fast_rsync::SignatureOptions {
            block_size: block,
            crypto_hash_size: 8,
        },
    )
    .into_serialized()
}

fn rsync_delta(base: &[u8], new: &[u8], block: u32) -> Vec<u8> {
    let sig = fast_rsync::Signature::deserialize(signature(base, block)).expect("deserializes");
    let mut out = Vec::new();
    fast_rsync::diff(&sig.index(), new, &mut out).expect("diffs");
    out
}

fn small_delta() -> Vec<u8> {
    let mut w = DeltaWriter::new();
    w.copy(0, 3);
    w.literal(b"lo");
    w.finish()
}
