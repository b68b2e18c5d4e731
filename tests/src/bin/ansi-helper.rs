//! A helper for the test suites whose every text carries terminal escape
//! sequences: its error messages, warnings, verify findings and progress,
//! the names in its manifest, and what it writes on its stderr. The client must print
//! them escaped.

#![allow(clippy::unwrap_used, missing_docs)]

use offsnap_protocol::manifest::{MANIFEST_MAGIC, MANIFEST_VERSION};
use offsnap_protocol::{
    Entry, EntryKind, ErrorKind, Finding, FindingKind, FrameReader, FrameWriter, Hash, Hello, Meta,
    RelPath, RemoteError, Request, Response, SnapshotInfo, SnapshotName, VerifyProgress,
    VerifySummary,
};

/// Clears the screen and retitles the terminal.
const EVIL: &str = "\x1b[2J\x1b]0;owned\x07";

const META: Meta = Meta {
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime_sec: 1_600_000_000,
    mtime_nsec: 0,
};

fn manifest(entries: &[Entry]) -> Vec<u8> {
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
    eprintln!("ansi-helper starts {EVIL}here");
    let mut rx = FrameReader::new(std::io::stdin().lock());
    let mut tx = FrameWriter::new(std::io::stdout().lock());
    tx.write(&Hello::ours("ansi-helper")).unwrap();
    tx.flush().unwrap();
    if rx.read_hello("ansi-helper").is_err() {
        return;
    }
    let evil_name = format!("src/{EVIL}name").into_bytes();
    let entries = vec![
        Entry {
            path: RelPath::new(b"src".to_vec()).unwrap(),
            kind: EntryKind::Dir,
            meta: Meta {
                mode: 0o755,
                ..META
            },
            xattrs: Vec::new(),
        },
        Entry {
            path: RelPath::new(evil_name.clone()).unwrap(),
            kind: EntryKind::File {
                size: 4,
                hash: Hash([7; 32]),
            },
            meta: META,
            xattrs: Vec::new(),
        },
    ];
    let bytes = manifest(&entries);
    let name: SnapshotName = "2026-01-01T000000Z".parse().unwrap();
    let info = SnapshotInfo {
        name,
        manifest_hash: Hash(*blake3::hash(&bytes[..bytes.len() - 32]).as_bytes()),
        manifest_len: bytes.len() as u64,
    };
    while let Ok(req) = rx.read::<Request>() {
        let answers = match req {
            Request::ListSnapshots { .. } => vec![Response::Snapshots(vec![info.clone()])],
            Request::GetManifest { .. } => vec![
                Response::ManifestChunk(bytes.clone()),
                Response::ManifestEnd,
            ],
            Request::GetFile { .. } => {
                vec![Response::FileData(b"evil".to_vec()), Response::FileEnd]
            }
            Request::Verify { .. } => vec![
                Response::VerifyProgress(VerifyProgress {
                    files_total: 1,
                    bytes_total: 10,
                    path: evil_name.clone(),
                    ..Default::default()
                }),
                Response::Finding(Finding {
                    snapshot: name,
                    path: evil_name.clone(),
                    kind: FindingKind::Changed(format!("{EVIL}content")),
                }),
                Response::Verified(VerifySummary {
                    snapshots: 1,
                    findings: 1,
                    ..Default::default()
                }),
            ],
            Request::BeginBackup { .. } => vec![Response::BackupStarted {
                snapshot: name,
                base: None,
                resume: Default::default(),
            }],
            Request::Op(_) => Vec::new(),
            Request::Commit => vec![
                Response::Warning(format!("src/x: {EVIL}left out")),
                Response::Committed {
                    snapshot: name,
                    stats: Default::default(),
                },
            ],
            _ => vec![Response::Error(RemoteError {
                kind: ErrorKind::Refused,
                message: format!("refused {EVIL}here"),
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
}
