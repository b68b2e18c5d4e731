//! A hostile client speaking raw frames at the real `offsnap-remote serve`:
//! paths that try to escape, symlinked parents, lying lengths, oversized
//! frames, garbage. Each gets a clear error; nothing is written outside the
//! snapshot being built, and no snapshot appears.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use offsnap_protocol::{
    Entry, EntryKind, FrameReader, FrameWriter, Hash, Hello, Meta, Op, RelPath, Request, Response,
    SetName,
};
use offsnap_tests::*;

const META: Meta = Meta {
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtime_sec: 1_700_000_000,
    mtime_nsec: 0,
};

fn helper(root: &Path) -> Child {
    Command::new(remote_bin())
        .args(["serve", "--root"])
        .arg(root)
        .env("OFFSNAP_NOW", "2026-01-01T00:00:00Z")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn encode(req: &Request) -> Vec<u8> {
    let mut w = FrameWriter::new(Vec::new());
    w.write(req).unwrap();
    w.into_inner().unwrap()
}

/// Replaces the only occurrence of `from` with `to` (same length).
fn patch(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    bytes[at..at + from.len()].copy_from_slice(to);
    bytes
}

fn dir(path: &str) -> Request {
    Request::Op(Op::Entry(Entry {
        path: RelPath::new(path.as_bytes().to_vec()).unwrap(),
        kind: EntryKind::Dir,
        meta: META,
        xattrs: Vec::new(),
    }))
}

/// Runs a session: hello, begin a backup of set `t`, then `raw` bytes; returns
/// the helper's error message (the last Response::Error) and exit status.
fn attack(root: &Path, raw: &[u8]) -> (String, bool) {
    let (responses, ok) = session(root, raw);
    let last_error = responses
        .into_iter()
        .filter_map(|r| match r {
            Response::Error(e) => Some(e.message),
            _ => None,
        })
        .next_back()
        .unwrap_or_default();
    (last_error, ok)
}

/// Runs a session as [`attack`] does; returns every response and whether
/// the helper exited successfully.
fn session(root: &Path, raw: &[u8]) -> (Vec<Response>, bool) {
    let mut child = helper(root);
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut hello = FrameWriter::new(Vec::new());
    hello.write(&Hello::ours("hostile")).unwrap();
    stdin.write_all(&hello.into_inner().unwrap()).unwrap();
    stdin
        .write_all(&encode(&Request::BeginBackup {
            set: SetName::new("t").unwrap(),
        }))
        .unwrap();
    let _ = stdin.write_all(raw);
    drop(stdin);
    let mut r = FrameReader::new(stdout);
    r.read_hello("hostile").unwrap();
    let mut responses = Vec::new();
    while let Ok(resp) = r.read::<Response>() {
        responses.push(resp);
    }
    let mut rest = Vec::new();
    let _ = r.into_inner().read_to_end(&mut rest);
    let status = child.wait().unwrap();
    (responses, status.success())
}

fn assert_no_snapshot(root: &Path) {
    assert!(
        dated_snapshots(&root.join("t")).is_empty(),
        "a snapshot appeared"
    );
}

#[test]
fn escaping_paths_are_refused() {
    let s = Scratch::new();
    let root = s.dest();
    for (from, to) in [
        (&b"xx/yy"[..], &b"../yy"[..]),
        (b"xx/yy", b"/etc/"),
        (b"xx/yy", b"xx/.."),
        (b"xx/yy", b"x\0/yy"),
        (b"xx/yy", b"xx//y"),
    ] {
        let raw = patch(encode(&dir("xx/yy")), from, to);
        let (err, ok) = attack(&root, &raw);
        assert!(!ok, "{to:?} accepted");
        assert!(err.contains("malformed"), "{to:?}: {err}");
        assert_no_snapshot(&root);
    }
    assert!(!s.path("yy").exists() && !s.dir.path().parent().unwrap().join("yy").exists());
}

#[test]
fn a_symlinked_parent_is_never_followed() {
    let s = Scratch::new();
    let outside = s.path("outside");
    fs::create_dir(&outside).unwrap();
    let root = s.dest();
    let link = Request::Op(Op::Entry(Entry {
        path: RelPath::new(b"d".to_vec()).unwrap(),
        kind: EntryKind::Symlink {
            target: outside.as_os_str().as_encoded_bytes().to_vec(),
        },
        meta: META,
        xattrs: Vec::new(),
    }));
    // A directory, a file and a link through the symlink.
    let file = Request::Op(Op::File {
        path: RelPath::new(b"d/f".to_vec()).unwrap(),
        meta: META,
        size: 1,
        xattrs: Vec::new(),
    });
    for second in [dir("d/x"), file] {
        let mut raw = encode(&link);
        raw.extend(encode(&second));
        raw.extend(encode(&Request::Op(Op::Data(vec![b'!']))));
        raw.extend(encode(&Request::Op(Op::End {
            hash: Hash::of(b"!"),
        })));
        raw.extend(encode(&Request::Commit));
        let (err, ok) = attack(&root, &raw);
        assert!(!ok);
        assert!(err.contains("not a directory"), "{err}");
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "wrote through the symlink"
        );
        assert_no_snapshot(&root);
    }
}

#[test]
fn lying_lengths_and_bad_streams_are_refused() {
    let s = Scratch::new();
    let root = s.dest();
    let file = |size| {
        Request::Op(Op::File {
            path: RelPath::new(b"f".to_vec()).unwrap(),
            meta: META,
            size,
            xattrs: Vec::new(),
        })
    };
    let data = |d: &[u8]| Request::Op(Op::Data(d.to_vec()));
    let cases: Vec<(Vec<Request>, &str)> = vec![
        (vec![file(2), data(b"abc")], "more data than"),
        (
            vec![
                file(5),
                data(b"abc"),
                Request::Op(Op::End {
                    hash: Hash::of(b"abc"),
                }),
            ],
            "3 bytes received, 5 announced",
        ),
        (
            vec![
                file(3),
                data(b"abc"),
                Request::Op(Op::End {
                    hash: Hash::of(b"xyz"),
                }),
            ],
            "does not match",
        ),
        (vec![data(b"abc")], "outside a file"),
        (vec![dir("b"), dir("a")], "out of order"),
        (vec![dir("a/b")], "does not exist"),
        (
            vec![file(3), Request::Commit],
            "commit while f is incomplete",
        ),
        (vec![file(3), dir("g")], "expected file data"),
        // A compressed chunk that expands past the chunk limit.
        (
            vec![
                file(64 << 20),
                Request::Op(Op::DataZstd(
                    zstd::bulk::compress(&vec![0u8; 16 << 20], 3).unwrap(),
                )),
            ],
            "bad compressed data",
        ),
        (
            vec![file(3), Request::Op(Op::DataZstd(b"not zstd".to_vec()))],
            "bad compressed data",
        ),
        // Unchanged entries of a base snapshot that does not exist.
        (vec![Request::Op(Op::Unchanged(5))], "no base snapshot"),
        // Content claimed to be stored already, that is not.
        (
            vec![Request::Op(Op::LinkFrom(Entry {
                path: RelPath::new(b"f".to_vec()).unwrap(),
                kind: EntryKind::File {
                    size: 3,
                    hash: Hash::of(b"abc"),
                },
                meta: META,
                xattrs: Vec::new(),
            }))],
            "no stored file has its content",
        ),
    ];
    for (reqs, want) in cases {
        let mut raw = Vec::new();
        for r in &reqs {
            raw.extend(encode(r));
        }
        raw.extend(encode(&Request::Commit));
        let (err, ok) = attack(&root, &raw);
        assert!(!ok, "{reqs:?} accepted");
        assert!(err.contains(want), "{reqs:?}: {err}");
        assert_no_snapshot(&root);
    }

    // An oversized frame header, garbage, and a stream cut inside a frame.
    let mut huge = (u32::MAX).to_le_bytes().to_vec();
    huge.extend([0; 16]);
    let mut cut = encode(&dir("a"));
    cut.truncate(cut.len() - 2);
    for (raw, want) in [
        (huge, "above the limit"),
        (b"\x05\0\0\0\xff\xff\xff\xff\xff".to_vec(), "malformed"),
        (cut, "hung up during a backup"),
    ] {
        let (err, ok) = attack(&root, &raw);
        assert!(!ok);
        if want != "hung up during a backup" {
            assert!(err.contains(want), "{want}: {err}");
        }
        assert_no_snapshot(&root);
    }
    // A cut stream is kept for the next run to resume from (under
    // incomplete/, never under a dated name); garbage is not. The next
    // run clears what it cannot use.
    let left = fs::read_dir(root.join("t/.offsnap/incomplete"))
        .unwrap()
        .count();
    assert!(left <= 1, "{left} runs left in incomplete/");
    let (err, ok) = attack(&root, &encode(&Request::Commit));
    assert!(ok, "{err}");
    assert_eq!(
        fs::read_dir(root.join("t/.offsnap/incomplete"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        fs::read_dir(root.join("t/.offsnap/resume"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_wrong_protocol_version_names_both_versions() {
    let s = Scratch::new();
    let mut child = helper(&s.dest());
    let mut stdin = child.stdin.take().unwrap();
    let mut hello = Hello::ours("offsnap 9.9.9");
    hello.version = 99;
    let mut w = FrameWriter::new(Vec::new());
    w.write(&hello).unwrap();
    stdin.write_all(&w.into_inner().unwrap()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "version {}",
            offsnap_protocol::message::PROTOCOL_VERSION
        )) && err.contains("version 99")
            && err.contains("offsnap 9.9.9"),
        "{err}"
    );
}

/// Makes a base snapshot of set `t` holding `src/f` (1,000 bytes) with the
/// real client, so deltas have something to apply to.
fn with_base(s: &Scratch) -> std::path::PathBuf {
    write_file(&s.src().join("f"), &[7u8; 1000], 0o644, (1_700_000_000, 0));
    let out = s.offsnap(
        Some("2025-01-01T00:00:00Z"),
        &[&"backup", &"--set", &"t", &s.src(), &s.dest()],
    );
    assert_ok(&out);
    s.dest()
}

#[test]
fn hostile_deltas_are_refused() {
    use offsnap_protocol::delta::DeltaWriter;
    let s = Scratch::new();
    let root = with_base(&s);
    let before = dated_snapshots(&root.join("t"));
    let src = Request::Op(Op::Entry(Entry {
        path: RelPath::new(b"src".to_vec()).unwrap(),
        kind: EntryKind::Dir,
        meta: META,
        xattrs: Vec::new(),
    }));
    let delta = |size| {
        Request::Op(Op::Delta {
            path: RelPath::new(b"src/f".to_vec()).unwrap(),
            meta: META,
            size,
            xattrs: Vec::new(),
        })
    };
    let piece = |build: &dyn Fn(&mut DeltaWriter)| {
        let mut w = DeltaWriter::new();
        build(&mut w);
        Request::Op(Op::DeltaPiece {
            zstd: false,
            bytes: w.finish(),
        })
    };
    let cases: Vec<(Vec<Request>, &str)> = vec![
        // A delta that expands past its declared size, by literal or by copy.
        (
            vec![src.clone(), delta(10), piece(&|w| w.literal(&[1; 100]))],
            "expands past",
        ),
        (
            vec![src.clone(), delta(10), piece(&|w| w.copy(0, 900))],
            "expands past",
        ),
        // Copies from outside the base.
        (
            vec![src.clone(), delta(5000), piece(&|w| w.copy(900, 200))],
            "outside its base",
        ),
        (
            vec![
                src.clone(),
                delta(5000),
                piece(&|w| w.copy(u64::MAX - 5, 10)),
            ],
            "outside its base",
        ),
        // Garbage and bombs.
        (
            vec![
                src.clone(),
                delta(10),
                Request::Op(Op::DeltaPiece {
                    zstd: false,
                    bytes: b"junk".to_vec(),
                }),
            ],
            "bad magic",
        ),
        (
            vec![
                src.clone(),
                delta(64 << 20),
                Request::Op(Op::DeltaPiece {
                    zstd: true,
                    bytes: zstd::bulk::compress(&vec![0u8; 32 << 20], 3).unwrap(),
                }),
            ],
            "bad compressed delta",
        ),
        // A delta for a path with no base, and through ../
        (
            vec![
                src.clone(),
                Request::Op(Op::Delta {
                    path: RelPath::new(b"src/nothing".to_vec()).unwrap(),
                    meta: META,
                    size: 1,
                    xattrs: Vec::new(),
                }),
            ],
            "base of src/nothing",
        ),
    ];
    for (reqs, want) in cases {
        let mut raw = Vec::new();
        for r in &reqs {
            raw.extend(encode(r));
        }
        raw.extend(encode(&Request::Op(Op::End {
            hash: Hash::of(b""),
        })));
        raw.extend(encode(&Request::Commit));
        let (err, ok) = attack(&root, &raw);
        assert!(!ok, "{want}: accepted");
        assert!(err.contains(want), "{want}: {err}");
        assert_eq!(dated_snapshots(&root.join("t")), before);
    }
    // More unchanged entries than the base holds.
    let (err, ok) = attack(&root, &encode(&Request::Op(Op::Unchanged(1000))));
    assert!(!ok && err.contains("more unchanged entries"), "{err}");
    // A signature request through `..` never reaches the wire as a path.
    let sig = patch(
        encode(&Request::Signature {
            path: RelPath::new(b"xx/ff".to_vec()).unwrap(),
        }),
        b"xx/ff",
        b"../ff",
    );
    let (err, ok) = attack(&root, &sig);
    assert!(!ok && err.contains("malformed"), "{err}");
    // The base snapshot is intact.
    assert_eq!(
        fs::read(root.join("t").join(&before[0]).join("src/f")).unwrap(),
        vec![7u8; 1000]
    );
}

fn entry(path: &str, kind: EntryKind) -> Entry {
    Entry {
        path: RelPath::new(path.as_bytes().to_vec()).unwrap(),
        kind,
        meta: META,
        xattrs: Vec::new(),
    }
}

fn hard_link(path: &str, target: &str) -> Request {
    Request::Op(Op::Entry(entry(
        path,
        EntryKind::HardLink {
            target: RelPath::new(target.as_bytes().to_vec()).unwrap(),
        },
    )))
}

#[test]
fn hard_links_and_extended_attributes_that_lie_are_refused() {
    let s = Scratch::new();
    let outside = s.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    let root = s.dest();
    let symlink = Request::Op(Op::Entry(entry(
        "l",
        EntryKind::Symlink {
            target: outside.as_os_str().as_encoded_bytes().to_vec(),
        },
    )));
    let mut bad_xattr = entry("x", EntryKind::Dir);
    bad_xattr.xattrs = vec![offsnap_protocol::Xattr {
        name: b"trusted.evil".to_vec(),
        value: b"1".to_vec(),
    }];
    let mut huge_xattr = entry("x", EntryKind::Dir);
    huge_xattr.xattrs = vec![offsnap_protocol::Xattr {
        name: b"user.big".to_vec(),
        value: vec![0; 70_000],
    }];
    let cases: Vec<(Vec<Request>, &str)> = vec![
        // A link to a later path, to itself, to a directory, through a
        // symlinked parent, to nothing.
        (
            vec![dir("a"), hard_link("a/b", "a/c")],
            "does not come before",
        ),
        (
            vec![dir("a"), hard_link("a/b", "a/b")],
            "does not come before",
        ),
        (vec![dir("a"), hard_link("b", "a")], "not a regular file"),
        (
            vec![symlink.clone(), hard_link("m", "l/secret")],
            "symlinks are never followed",
        ),
        (
            vec![Request::Op(Op::Entry(bad_xattr)), Request::Commit],
            "not a user attribute",
        ),
        (
            vec![Request::Op(Op::Entry(huge_xattr)), Request::Commit],
            "over 65536 bytes",
        ),
    ];
    for (requests, want) in cases {
        let raw: Vec<u8> = requests.iter().flat_map(encode).collect();
        let (err, ok) = attack(&root, &raw);
        assert!(!ok, "{want}: accepted");
        assert!(err.contains(want), "{want}: {err}");
        assert_no_snapshot(&root);
    }
    // A link to a name never written is left out, with a warning; the
    // snapshot holds what was sent.
    let raw: Vec<u8> = [dir("a"), hard_link("a/z", "a/y"), Request::Commit]
        .iter()
        .flat_map(encode)
        .collect();
    let (err, ok) = attack(&root, &raw);
    assert!(ok && err.is_empty(), "{err}");
    let snaps = dated_snapshots(&root.join("t"));
    assert_eq!(snaps.len(), 1);
    assert!(!root.join("t").join(&snaps[0]).join("a/z").exists());
    // Nothing outside changed.
    assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
}

/// Ops that send `src/f` (1,000 bytes, a base from [`with_base`]) as a
/// delta rebuilding the base's 1,000 sevens while claiming the hash of
/// `read`, as an MD4 collision would make a client believe.
fn wrong_delta(read: &[u8]) -> Vec<Request> {
    use offsnap_protocol::delta::DeltaWriter;
    let mut piece = DeltaWriter::new();
    piece.copy(0, 1000);
    vec![
        Request::Op(Op::Delta {
            path: RelPath::new(b"src/f".to_vec()).unwrap(),
            meta: META,
            size: 1000,
            xattrs: Vec::new(),
        }),
        Request::Op(Op::DeltaPiece {
            zstd: false,
            bytes: piece.finish(),
        }),
        Request::Op(Op::End {
            hash: Hash::of(read),
        }),
    ]
}

/// Ops that send `src/f` again whole, holding `read`.
fn sent_again(read: &[u8]) -> Vec<Request> {
    vec![
        Request::Op(Op::File {
            path: RelPath::new(b"src/f".to_vec()).unwrap(),
            meta: META,
            size: read.len() as u64,
            xattrs: Vec::new(),
        }),
        Request::Op(Op::Data(read.to_vec())),
        Request::Op(Op::End {
            hash: Hash::of(read),
        }),
    ]
}

#[test]
fn a_delta_that_rebuilds_other_content_is_asked_for_again_whole() {
    let s = Scratch::new();
    let root = with_base(&s);
    let path = RelPath::new(b"src/f".to_vec()).unwrap();
    let read: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    // The walk (0..5), the file sent again whole after it (5..8), commit.
    let mut reqs = vec![dir("src")];
    reqs.extend(wrong_delta(&read));
    reqs.push(Request::Sync);
    reqs.extend(sent_again(&read));
    reqs.push(Request::Commit);
    let raw: Vec<u8> = reqs.iter().flat_map(encode).collect();
    let (responses, ok) = session(&root, &raw);
    assert!(ok, "{responses:?}");
    let resend = responses
        .iter()
        .position(|r| *r == Response::Resend { path: path.clone() })
        .unwrap();
    let synced = responses
        .iter()
        .position(|r| *r == Response::Synced)
        .unwrap();
    assert!(resend < synced);
    let snaps = dated_snapshots(&root.join("t"));
    let new = root.join("t").join(snaps.last().unwrap()).join("src/f");
    assert_eq!(fs::read(new).unwrap(), read);
    // Its directory, finished before the file came again, keeps its
    // recorded mtime.
    let dir_md = fs::metadata(root.join("t").join(snaps.last().unwrap()).join("src")).unwrap();
    assert_eq!(
        (dir_md.mtime(), dir_md.mtime_nsec()),
        (META.mtime_sec, 0),
        "the directory's mtime moved"
    );
    let out = s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &root]);
    assert_ok(&out);

    // Sent again with another size, as a delta, or with another hash: refused.
    for (i, want) in [(5, "another size"), (6, "another hash than recorded")] {
        let mut bad = reqs.clone();
        match i {
            5 => {
                bad[5] = Request::Op(Op::File {
                    path: path.clone(),
                    meta: META,
                    size: 999,
                    xattrs: Vec::new(),
                })
            }
            _ => {
                bad[6] = Request::Op(Op::Data(vec![0; 1000]));
                bad[7] = Request::Op(Op::End {
                    hash: Hash::of(&[0; 1000]),
                });
            }
        }
        let raw: Vec<u8> = bad.iter().flat_map(encode).collect();
        let s = Scratch::new();
        let (err, ok) = attack(&with_base(&s), &raw);
        assert!(!ok && err.contains(want), "{want}: {err}");
    }
    // Never sent again (the client found it changed): the entry goes.
    reqs.drain(5..8);
    let raw: Vec<u8> = reqs.iter().flat_map(encode).collect();
    let s = Scratch::new();
    let root = with_base(&s);
    let (responses, ok) = session(&root, &raw);
    assert!(ok, "{responses:?}");
    let snaps = dated_snapshots(&root.join("t"));
    assert!(
        !root
            .join("t")
            .join(snaps.last().unwrap())
            .join("src/f")
            .exists()
    );
    let out = s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &root]);
    assert_ok(&out);
}

#[test]
fn a_stored_symlink_is_never_a_way_out() {
    // A base snapshot holding a symlink `src/l` to a directory outside.
    let s = Scratch::new();
    let outside = s.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), vec![9u8; 200_000]).unwrap();
    std::os::unix::fs::symlink(&outside, s.src().join("l")).unwrap();
    write_file(&s.src().join("m"), b"m", 0o644, (1_700_000_000, 0));
    let out = s.offsnap(
        Some("2025-01-01T00:00:00Z"),
        &[&"backup", &"--set", &"t", &s.src(), &s.dest()],
    );
    assert_ok(&out);
    let root = s.dest();
    let p = |s: &str| RelPath::new(s.as_bytes().to_vec()).unwrap();
    let cases: Vec<(Vec<Request>, &str)> = vec![
        // A signature of a file through the stored symlink.
        (
            vec![Request::Signature {
                path: p("src/l/secret"),
            }],
            "symlinks are never followed",
        ),
        // A delta against it.
        (
            vec![
                dir("src"),
                Request::Op(Op::Delta {
                    path: p("src/l/secret"),
                    meta: META,
                    size: 10,
                    xattrs: Vec::new(),
                }),
            ],
            "symlinks are never followed",
        ),
        // The symlink kept as it was (src, src/l), then a file and a
        // hard link through it: the kept link is a link, not a directory.
        (
            vec![
                Request::Op(Op::Unchanged(2)),
                Request::Op(Op::File {
                    path: p("src/l/new"),
                    meta: META,
                    size: 1,
                    xattrs: Vec::new(),
                }),
            ],
            "symlinks are never followed",
        ),
        (
            vec![Request::Op(Op::Unchanged(2)), hard_link("src/l/z", "src/l")],
            "not a regular file",
        ),
    ];
    for (reqs, want) in cases {
        let raw: Vec<u8> = reqs.iter().flat_map(encode).collect();
        let (err, ok) = attack(&root, &raw);
        assert!(!ok, "{want}: accepted");
        assert!(err.contains(want), "{want}: {err}");
    }
    assert_eq!(dated_snapshots(&root.join("t")).len(), 1);
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    assert_eq!(
        fs::read(outside.join("secret")).unwrap(),
        vec![9u8; 200_000]
    );
}

#[test]
fn a_hard_link_to_a_file_asked_for_again_is_made_when_it_comes() {
    use std::os::unix::fs::MetadataExt;
    let read: Vec<u8> = (0..1000u32).map(|i| (i * 3) as u8).collect();
    let mut walk = vec![dir("src")];
    walk.extend(wrong_delta(&read));
    // Its other name, before the file itself comes again.
    walk.push(hard_link("src/g", "src/f"));
    walk.push(Request::Sync);
    let again = sent_again(&read);
    for comes in [true, false] {
        let s = Scratch::new();
        let root = with_base(&s);
        let mut reqs = walk.clone();
        if comes {
            reqs.extend(again.clone());
        }
        reqs.push(Request::Commit);
        let raw: Vec<u8> = reqs.iter().flat_map(encode).collect();
        let (responses, ok) = session(&root, &raw);
        assert!(ok, "{responses:?}");
        let snaps = dated_snapshots(&root.join("t"));
        let snap = root.join("t").join(snaps.last().unwrap());
        if comes {
            let (f, g) = (snap.join("src/f"), snap.join("src/g"));
            assert_eq!(fs::read(&g).unwrap(), read);
            assert_eq!(
                fs::metadata(&f).unwrap().ino(),
                fs::metadata(&g).unwrap().ino()
            );
        } else {
            // Never sent again: the file and the name waiting for it go.
            assert!(!snap.join("src/f").exists() && !snap.join("src/g").exists());
        }
        let out = s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &root]);
        assert_ok(&out);
    }
}
