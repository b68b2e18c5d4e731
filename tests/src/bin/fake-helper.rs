//! A hostile helper for the test suites: speaks the offsnap protocol on
//! stdin/stdout but lies. `FAKE_HELPER_MODE` picks the lie:
//! `bad-signature` (block size 0), `lying-count` (a signature for another
//! size), `escape` (a manifest whose paths leave the restore target),
//! `absolute` (the same with an absolute path), `link-escape` (a hard
//! link whose target leaves the target), `link-forward` (a hard link to a
//! later path), `link-to-dir` (a hard link to a directory),
//! `system-xattr` (an extended attribute outside the user namespace).
//! One mode does not lie: `resend` answers with a real signature (of
//! zeros), then asks for the delta file again whole, and writes what it
//! receives to the file `FAKE_HELPER_OUT` names.

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write;

use offsnap_protocol::delta::SIGNATURE_MAGIC;
use offsnap_protocol::manifest::{MANIFEST_MAGIC, MANIFEST_VERSION};
use offsnap_protocol::{
    FrameReader, FrameWriter, Hash, Hello, Meta, Request, Response, SnapshotInfo, SnapshotName,
    Xattr,
};

#[derive(serde::Serialize)]
struct RawEntry {
    #[serde(with = "serde_bytes")]
    path: Vec<u8>,
    kind: RawKind,
    meta: Meta,
    xattrs: Vec<Xattr>,
}

/// `EntryKind` as it travels, with paths as unchecked bytes.
#[derive(serde::Serialize)]
enum RawKind {
    Dir,
    File {
        size: u64,
        hash: Hash,
    },
    #[allow(dead_code)]
    Symlink {
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
    HardLink {
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
}

const META: Meta = Meta {
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime_sec: 1_600_000_000,
    mtime_nsec: 0,
};

/// A manifest with these raw entries, valid but for what the paths say.
fn manifest(entries: &[RawEntry]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in entries {
        let rec = postcard::to_stdvec(e).unwrap();
        body.extend_from_slice(&(rec.len() as u32).to_le_bytes());
        body.extend_from_slice(&rec);
    }
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let mut out = MANIFEST_MAGIC.to_vec();
    out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
    out.extend(zstd::bulk::compress(&body, 3).unwrap());
    let hash = blake3::hash(&out);
    out.extend_from_slice(hash.as_bytes());
    out
}

fn main() {
    let mode = std::env::var("FAKE_HELPER_MODE").unwrap_or_default();
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    let mut rx = FrameReader::new(stdin);
    let mut tx = FrameWriter::new(stdout);
    tx.write(&Hello::ours("fake-helper")).unwrap();
    tx.flush().unwrap();
    if rx.read_hello("fake-helper").is_err() {
        return;
    }
    let file = |path: &[u8], size: u64| RawEntry {
        path: path.to_vec(),
        kind: RawKind::File {
            size,
            hash: Hash([7; 32]),
        },
        meta: META,
        xattrs: Vec::new(),
    };
    let dir = |path: &[u8]| RawEntry {
        path: path.to_vec(),
        kind: RawKind::Dir,
        meta: META,
        xattrs: Vec::new(),
    };
    let entries = match mode.as_str() {
        "escape" => vec![dir(b"src"), file(b"src/../../evil", 4)],
        "absolute" => vec![file(b"/tmp/offsnap-fake-helper-evil", 4)],
        "link-escape" | "link-forward" | "link-to-dir" => {
            let target: &[u8] = match mode.as_str() {
                "link-escape" => b"../../evil",
                "link-forward" => b"src/z",
                _ => b"src/d",
            };
            vec![
                dir(b"src"),
                file(b"src/a", 4),
                dir(b"src/d"),
                RawEntry {
                    path: b"src/e".to_vec(),
                    kind: RawKind::HardLink {
                        target: target.to_vec(),
                    },
                    meta: META,
                    xattrs: Vec::new(),
                },
            ]
        }
        "system-xattr" => {
            let mut f = file(b"src/a", 4);
            f.xattrs = vec![Xattr {
                name: b"security.capability".to_vec(),
                value: vec![1, 0, 0, 2],
            }];
            vec![dir(b"src"), f]
        }
        _ => vec![dir(b"src"), file(b"src/big", 300_000)],
    };
    let bytes = manifest(&entries);
    let name: SnapshotName = "2026-01-01T000000Z".parse().unwrap();
    let info = SnapshotInfo {
        name,
        manifest_hash: Hash(*blake3::hash(&bytes[..bytes.len() - 32]).as_bytes()),
        manifest_len: bytes.len() as u64,
    };
    // The file being received, for `resend`.
    let mut receiving: Option<Vec<u8>> = None;
    while let Ok(req) = rx.read::<Request>() {
        let answers = match req {
            Request::ListSnapshots { .. } => vec![Response::Snapshots(vec![info.clone()])],
            // The true manifest, then chunk after chunk (256 MiB in all)
            // past the length announced.
            Request::GetManifest { .. } if mode == "manifest-flood" => {
                let mut flood = vec![Response::ManifestChunk(bytes.clone())];
                flood.extend((0..4096).map(|_| Response::ManifestChunk(vec![0x5a; 64 * 1024])));
                flood.push(Response::ManifestEnd);
                flood
            }
            Request::GetManifest { .. } => vec![
                Response::ManifestChunk(bytes.clone()),
                Response::ManifestEnd,
            ],
            Request::BeginBackup { .. } => vec![Response::BackupStarted {
                snapshot: name.next(),
                base: Some(info.clone()),
                resume: Default::default(),
            }],
            Request::Signature { .. } if mode == "resend" => {
                let opts = fast_rsync::SignatureOptions {
                    block_size: offsnap_protocol::delta::block_size_for(300_000),
                    crypto_hash_size: 16,
                };
                let sig = fast_rsync::Signature::calculate(&[0u8; 300_000], opts);
                vec![Response::Signature(Some(sig.into_serialized()))]
            }
            Request::Sync => vec![
                Response::Resend {
                    path: offsnap_protocol::RelPath::new(b"src/big".to_vec()).unwrap(),
                },
                Response::Synced,
            ],
            Request::Op(op) => {
                match op {
                    offsnap_protocol::Op::File { .. } => receiving = Some(Vec::new()),
                    offsnap_protocol::Op::Data(d) => {
                        if let Some(r) = &mut receiving {
                            r.extend_from_slice(&d);
                        }
                    }
                    offsnap_protocol::Op::DataZstd(z) => {
                        if let Some(r) = &mut receiving {
                            r.extend(zstd::bulk::decompress(&z, 1 << 20).unwrap());
                        }
                    }
                    offsnap_protocol::Op::End { hash } => {
                        if let Some(r) = receiving.take() {
                            assert_eq!(Hash(*blake3::hash(&r).as_bytes()), hash);
                            std::fs::write(std::env::var("FAKE_HELPER_OUT").unwrap(), r).unwrap();
                        }
                    }
                    _ => {}
                }
                Vec::new()
            }
            Request::Commit => vec![Response::Committed {
                snapshot: name.next(),
                stats: Default::default(),
            }],
            Request::Signature { .. } => {
                let (block, blocks) = match mode.as_str() {
                    "lying-count" => (2048u32, 3usize),
                    _ => (0u32, 0usize),
                };
                let mut sig = SIGNATURE_MAGIC.to_be_bytes().to_vec();
                sig.extend_from_slice(&block.to_be_bytes());
                sig.extend_from_slice(&8u32.to_be_bytes());
                sig.extend(std::iter::repeat_n(0u8, blocks * 12));
                vec![Response::Signature(Some(sig))]
            }
            Request::GetFile { .. } => {
                vec![Response::FileData(b"evil".to_vec()), Response::FileEnd]
            }
            _ => vec![Response::Error(offsnap_protocol::RemoteError {
                kind: offsnap_protocol::ErrorKind::Refused,
                message: "fake helper".into(),
            })],
        };
        for a in answers {
            if tx.write(&a).is_err() {
                return;
            }
        }
        if tx.flush().is_err() {
            return;
        }
    }
    let _ = std::io::stdout().flush();
}
