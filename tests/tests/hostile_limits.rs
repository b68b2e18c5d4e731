//! A hostile client against the real `offsnap-remote serve`, round two:
//! commits spammed to push names ahead of the clock, trees too deep to
//! delete by recursion, hard links `verify` would call damaged, deltas and
//! zstd streams that amplify what was sent, copies at the hard-link limit,
//! entries with as many extended attributes as allowed, and the owner's
//! prune meeting a backup in progress. Each is refused or made harmless;
//! the honest client's next run and the owner's prune still work.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use offsnap_protocol::{
    Entry, EntryKind, Hash, Meta, Op, RelPath, Request, Response, SetName, SnapshotName, Xattr,
};
use offsnap_tests::raw::{self, Live, frames};
use offsnap_tests::*;

const DIR: Meta = Meta {
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtime_sec: 1_700_000_000,
    mtime_nsec: 0,
};

const FILE: Meta = Meta { mode: 0o644, ..DIR };

/// The small limits a careful host's owner might run the helper under.
const SMALL: &str = "ulimit -s 256 && ulimit -n 1024";

fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).unwrap()
}

fn begin(set: &str) -> Request {
    Request::BeginBackup {
        set: SetName::new(set).unwrap(),
    }
}

fn dir(path: &str) -> Request {
    Request::Op(Op::Entry(Entry {
        path: p(path),
        kind: EntryKind::Dir,
        meta: DIR,
        xattrs: Vec::new(),
    }))
}

fn file(path: &str, data: &[u8], meta: Meta) -> Vec<Request> {
    vec![
        Request::Op(Op::File {
            path: p(path),
            meta,
            size: data.len() as u64,
            xattrs: Vec::new(),
        }),
        Request::Op(Op::Data(data.to_vec())),
        Request::Op(Op::End {
            hash: Hash::of(data),
        }),
    ]
}

fn hard_link(path: &str, target: &str, meta: Meta) -> Request {
    Request::Op(Op::Entry(Entry {
        path: p(path),
        kind: EntryKind::HardLink { target: p(target) },
        meta,
        xattrs: Vec::new(),
    }))
}

/// Bytes allocated under `root` (st_blocks), each inode counted once.
fn allocated(root: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if seen.insert(md.ino()) {
                total += md.blocks() * 512;
            }
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Entries left in `SET/.offsnap/SUB`.
fn left_in(set: &Path, sub: &str) -> usize {
    fs::read_dir(set.join(".offsnap").join(sub))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn verify(s: &Scratch, set: &str) -> std::process::Output {
    s.offsnap(None, &[&"verify", &"--set", &set, &"--all", &s.dest()])
}

fn owner_prune(root: &Path, now: &str, limits: &str, args: &[&str]) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("{limits}\nexec \"$@\""))
        .arg("prune")
        .arg(remote_bin())
        .args(["prune", "--root"])
        .arg(root)
        .args(args)
        .env("OFFSNAP_NOW", now)
        .output()
        .unwrap()
}

#[test]
fn spammed_commits_cannot_age_the_history() {
    let s = Scratch::new();
    write_file(&s.src().join("f"), b"honest", 0o644, (1_700_000_000, 0));
    let honest = s.backup("2026-01-01T00:00:00Z");
    let now = "2026-01-01T00:00:10Z";
    // One session commits empty snapshots in a loop, then many sessions
    // try once each.
    let mut spam = Vec::new();
    for _ in 0..250 {
        spam.push(begin("t"));
        spam.push(Request::Commit);
    }
    let helper = || raw::serve(&s.dest(), &["--append-only"], Some(now), "");
    let first = raw::run(helper(), frames(&spam));
    let mut committed = first.committed();
    let mut refusals = first.errors();
    for _ in 0..30 {
        let out = raw::run(helper(), frames(&[begin("t"), Request::Commit]));
        committed += out.committed();
        refusals.extend(out.errors());
    }
    assert!(committed <= 6, "{committed} spammed snapshots committed");
    assert!(
        refusals
            .iter()
            .all(|e| e.contains("ahead of this host's clock")),
        "{refusals:?}"
    );
    let clock: jiff::Timestamp = now.parse().unwrap();
    for name in dated_snapshots(&s.set_dir()) {
        let at = name.parse::<SnapshotName>().unwrap().timestamp();
        assert!(
            at.as_second() - clock.as_second() <= 5,
            "{name} is ahead of the clock ({now})"
        );
    }
    // The owner's prune keeps what is recent, the honest snapshot first.
    let out = owner_prune(&s.dest(), now, "", &["--keep-within", "180s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        dated_snapshots(&s.set_dir()).contains(&honest),
        "the honest snapshot was pruned: {}",
        stdout(&out)
    );
    // The next honest backup, once the clock has moved on, works.
    let later = s.backup("2026-01-01T00:01:00Z");
    assert_same_tree(&s.src(), &s.restore(&later).join("src"));
}

/// `depth` nested directories `d/d/…` as entries, in batches.
fn deep_dirs(depth: usize) -> impl Iterator<Item = Vec<Request>> {
    let mut path = String::new();
    let mut level = 0;
    std::iter::from_fn(move || {
        if level == depth {
            return None;
        }
        let mut batch = Vec::new();
        while level < depth && batch.len() < 256 {
            if !path.is_empty() {
                path.push('/');
            }
            path.push('d');
            batch.push(dir(&path));
            level += 1;
        }
        Some(batch)
    })
}

/// A chain of `depth` directories named `d` at `at`, each holding a file,
/// made through one handle at a time (as a session that hung up leaves).
fn chain(at: &Path, depth: usize) {
    use rustix::fs::{Mode, OFlags};
    fs::create_dir_all(at).unwrap();
    let mut fd = rustix::fs::open(at, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    for _ in 0..depth {
        drop(
            rustix::fs::openat(
                &fd,
                "f",
                OFlags::CREATE | OFlags::WRONLY,
                Mode::from_raw_mode(0o644),
            )
            .unwrap(),
        );
        rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(&fd, "d", OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
            .unwrap();
    }
}

/// Commits a snapshot of set `set` at `now` holding `depth` nested
/// directories (the helper needs a handle per level to write them).
fn deep_snapshot(root: &Path, set: &str, depth: usize, now: &str) {
    let mut live = Live::start(raw::serve(root, &[], Some(now), "ulimit -n 20000"));
    live.send(&[begin(set)]);
    for batch in deep_dirs(depth) {
        live.send(&batch);
    }
    let out = live.finish(frames(&[Request::Commit]));
    assert!(out.status.success() && out.committed() == 1, "{out:?}");
}

#[test]
fn a_tree_too_deep_to_recurse_is_deleted() {
    let s = Scratch::new();
    let root = s.dest();
    write_file(&s.src().join("f"), b"honest", 0o644, (1_700_000_000, 0));
    s.backup("2026-01-01T00:00:00Z");
    // 4,000 levels, then garbage: the helper deletes its run itself (a
    // session sends its whole path with each level: 16 MB).
    let mut live = Live::start(raw::serve(
        &root,
        &[],
        Some("2026-01-02T00:00:00Z"),
        "ulimit -n 20000",
    ));
    live.send(&[begin("t")]);
    for batch in deep_dirs(4_000) {
        live.send(&batch);
    }
    let out = live.finish(b"\x05\0\0\0\xff\xff\xff\xff\xff".to_vec());
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.errors().iter().any(|e| e.contains("malformed")),
        "{out:?}"
    );
    assert_eq!(left_in(&s.set_dir(), "incomplete"), 0);
    assert_eq!(left_in(&s.set_dir(), "trash"), 0);
    // Trees of 16,000 levels, as a session that hung up (or a killed
    // cleanup) leaves them: the honest client's next backup clears them, through a
    // helper with a small stack and the usual open-file limit.
    chain(
        &s.set_dir()
            .join(".offsnap/incomplete/2026-01-02T000001Z/tree"),
        16_000,
    );
    chain(&s.set_dir().join(".offsnap/trash/old.1"), 16_000);
    let helper = format!(
        "sh -c '{SMALL} && exec {} \"$@\"' helper",
        remote_bin().display()
    );
    let out = s.offsnap(
        Some("2026-01-03T00:00:00Z"),
        &[
            &"backup",
            &"--set",
            &"t",
            &"--remote-cmd",
            &helper,
            &s.src(),
            &root,
        ],
    );
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    assert_same_tree(&s.src(), &s.restore(&snap).join("src"));
    assert_eq!(left_in(&s.set_dir(), "incomplete"), 0);
    assert_eq!(left_in(&s.set_dir(), "trash"), 0);
    assert_ok(&verify(&s, "t"));
}

#[test]
fn deep_snapshots_are_pruned_by_the_owner_and_by_a_local_client() {
    let s = Scratch::new();
    let root = s.dest();
    write_file(&s.src().join("f"), b"honest", 0o644, (1_700_000_000, 0));
    deep_snapshot(&root, "t", 4_000, "2025-06-01T00:00:00Z");
    deep_snapshot(&root, "v", 4_000, "2025-06-01T00:00:00Z");
    // And 16,000 levels left in v's trash by a prune that was killed.
    chain(&root.join("v/.offsnap/trash/old.1"), 16_000);
    for set in ["t", "v"] {
        let out = s.offsnap(
            Some("2026-01-01T00:00:00Z"),
            &[&"backup", &"--set", &set, &"--no-prune", &s.src(), &root],
        );
        assert_ok(&out);
    }
    // A local destination prunes on the client's own helper thread.
    let out = s.offsnap(
        Some("2026-01-02T00:00:00Z"),
        &[&"prune", &"--set", &"t", &"--keep-last", &"1", &root],
    );
    assert_ok(&out);
    assert_eq!(dated_snapshots(&root.join("t")).len(), 1);
    // The owner's prune of every set, with a small stack and open-file
    // limit, and a set it cannot prune (a broken one) among them.
    fs::create_dir_all(root.join("broken/.offsnap")).unwrap();
    fs::write(root.join("broken/.offsnap/format"), b"not a format").unwrap();
    let out = owner_prune(&root, "2026-01-02T00:00:00Z", SMALL, &["--keep-last", "1"]);
    assert!(!out.status.success(), "a broken set went unreported");
    assert!(stderr(&out).contains("set broken"), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("v  2025-06-01T000000Z  removed"),
        "{}",
        stdout(&out)
    );
    for set in ["t", "v"] {
        assert_eq!(dated_snapshots(&root.join(set)).len(), 1, "set {set}");
        assert_eq!(left_in(&root.join(set), "trash"), 0);
        assert_ok(&verify(&s, set));
    }
}

#[test]
fn hard_links_verify_would_call_damaged_are_left_out() {
    let s = Scratch::new();
    let mut other = FILE;
    other.mode = 0o600;
    let mut reqs = vec![begin("t"), dir("a")];
    reqs.extend(file("a/f", b"content", FILE));
    reqs.extend([
        hard_link("a/g", "a/f", FILE),
        // A hard link to a hard link, and one with another mode.
        hard_link("a/h", "a/g", FILE),
        hard_link("a/m", "a/f", other),
        Request::Commit,
    ]);
    let out = raw::run(raw::serve(&s.dest(), &[], None, ""), frames(&reqs));
    assert!(out.status.success() && out.committed() == 1, "{out:?}");
    let warnings = out.warnings().join("\n");
    assert!(warnings.contains("a/h: a hard link to a/g, which is itself a hard link"));
    assert!(warnings.contains("a/m: a hard link whose mode, owner or mtime differ"));
    let snap = s.set_dir().join(&dated_snapshots(&s.set_dir())[0]);
    assert_eq!(inode(&snap.join("a/g")), inode(&snap.join("a/f")));
    assert!(!snap.join("a/h").exists() && !snap.join("a/m").exists());
    assert_ok(&verify(&s, "t"));
}

/// A base snapshot of set `t` holding `src/f` with `content`, made by the
/// real client.
fn with_base(s: &Scratch, content: &[u8]) -> std::path::PathBuf {
    write_file(&s.src().join("f"), content, 0o644, (1_700_000_000, 0));
    let out = s.offsnap(
        Some("2025-01-01T00:00:00Z"),
        &[&"backup", &"--set", &"t", &s.src(), &s.dest()],
    );
    assert_ok(&out);
    s.set_dir()
        .join(&dated_snapshots(&s.set_dir())[0])
        .join("src/f")
}

#[test]
fn a_delta_rebuilds_no_more_than_its_base_and_what_was_sent() {
    use offsnap_protocol::delta::DeltaWriter;
    let s = Scratch::new();
    let base = offsnap_tests::random::Rng::new(11).noise(16 << 10);
    with_base(&s, &base);
    let before = allocated(&s.dest());
    // 1,024 copies of the whole base: a few KiB announcing 16 MiB.
    let mut piece = DeltaWriter::new();
    for _ in 0..1024 {
        piece.copy(0, base.len() as u64);
    }
    let piece = piece.finish();
    assert!(piece.len() < 32 << 10, "{} bytes", piece.len());
    let rebuilt = base.repeat(1024);
    let reqs = vec![
        begin("t"),
        dir("src"),
        Request::Op(Op::Delta {
            path: p("src/f"),
            meta: FILE,
            size: rebuilt.len() as u64,
            xattrs: Vec::new(),
        }),
        Request::Op(Op::DeltaPiece {
            zstd: false,
            bytes: piece,
        }),
        Request::Op(Op::End {
            hash: Hash::of(&rebuilt),
        }),
        Request::Sync,
        Request::Commit,
    ];
    let out = raw::run(raw::serve(&s.dest(), &[], None, ""), frames(&reqs));
    assert!(out.status.success() && out.committed() == 1, "{out:?}");
    // Asked for whole instead; never sent, so left out.
    assert!(
        out.responses
            .contains(&Response::Resend { path: p("src/f") }),
        "{out:?}"
    );
    let snaps = dated_snapshots(&s.set_dir());
    assert!(!s.set_dir().join(&snaps[1]).join("src/f").exists());
    let grown = allocated(&s.dest()) - before;
    assert!(grown < 2 << 20, "the backup grew by {grown} bytes");
    assert_ok(&verify(&s, "t"));
}

#[test]
fn sizes_above_the_owners_limits_are_refused_and_leave_nothing() {
    let s = Scratch::new();
    let root = s.dest();
    // 1 GiB announced, in zstd chunks of a few hundred bytes each.
    let chunk = vec![0xa5u8; offsnap_protocol::DATA_CHUNK];
    let z = zstd::bulk::compress(&chunk, 19).unwrap();
    let mut bomb = vec![
        begin("t"),
        dir("a"),
        Request::Op(Op::File {
            path: p("a/bomb"),
            meta: FILE,
            size: 1 << 30,
            xattrs: Vec::new(),
        }),
    ];
    bomb.extend((0..(1 << 30) / chunk.len()).map(|_| Request::Op(Op::DataZstd(z.clone()))));
    bomb.push(Request::Commit);
    let sent = frames(&bomb);
    assert!(sent.len() < 4 << 20, "{} bytes", sent.len());
    // Two files within the per-file limit, over the per-snapshot one.
    let mut two = vec![begin("t"), dir("a")];
    two.extend(file("a/one", &[1u8; 700 << 10], FILE));
    two.extend(file("a/two", &[2u8; 700 << 10], FILE));
    two.push(Request::Commit);
    for (args, raw, want) in [
        (&["--max-file-size", "64M"][..], sent, "--max-file-size"),
        (
            &["--max-snapshot-size", "1M"][..],
            frames(&two),
            "--max-snapshot-size",
        ),
    ] {
        let out = raw::run(raw::serve(&root, args, None, ""), raw);
        assert!(!out.status.success(), "{want}: accepted");
        assert!(
            out.errors().iter().any(|e| e.contains(want)),
            "{want}: {out:?}"
        );
        assert!(dated_snapshots(&s.set_dir()).is_empty());
        assert_eq!(left_in(&s.set_dir(), "incomplete"), 0, "{want}");
        assert!(
            allocated(&root) < 1 << 20,
            "{want}: {} bytes",
            allocated(&root)
        );
    }
    // Within the limits, a backup goes through.
    let out = raw::run(
        raw::serve(&root, &["--max-snapshot-size", "2M"], None, ""),
        frames(&two),
    );
    assert!(out.status.success() && out.committed() == 1, "{out:?}");
}

#[test]
fn links_at_the_hard_link_limit_cost_one_copy_not_one_each() {
    let s = Scratch::new();
    let content = offsnap_tests::random::Rng::new(12).noise(256 << 10);
    let stored = with_base(&s, &content);
    // Other names for the stored inode, until the filesystem refuses.
    let links = s.dest().join("links");
    fs::create_dir(&links).unwrap();
    let mut limited = false;
    for i in 0..70_000 {
        match fs::hard_link(&stored, links.join(i.to_string())) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {
                limited = true;
                break;
            }
            Err(e) => panic!("link: {e}"),
        }
    }
    if !limited {
        offsnap_tests::skip::skip(
            None,
            "no hard-link limit reached within 70,000 links on this filesystem",
        );
        return;
    }
    let before = allocated(&s.dest());
    // 300 names of that content, each by content: every one would be a
    // copy of 256 KiB.
    let mut reqs = vec![begin("t"), dir("src")];
    for i in 0..300 {
        reqs.push(Request::Op(Op::LinkFrom(Entry {
            path: p(&format!("src/c{i:03}")),
            kind: EntryKind::File {
                size: content.len() as u64,
                hash: Hash::of(&content),
            },
            meta: FILE,
            xattrs: Vec::new(),
        })));
    }
    reqs.push(Request::Commit);
    let out = raw::run(
        raw::serve(&s.dest(), &["--max-snapshot-size", "4M"], None, ""),
        frames(&reqs),
    );
    assert!(out.status.success() && out.committed() == 1, "{out:?}");
    let snaps = dated_snapshots(&s.set_dir());
    let snap = s.set_dir().join(&snaps[1]);
    let inodes: std::collections::HashSet<u64> = (0..300)
        .map(|i| inode(&snap.join(format!("src/c{i:03}"))))
        .collect();
    assert_eq!(inodes.len(), 1, "{} copies", inodes.len());
    assert!(!inodes.contains(&inode(&stored)));
    let grown = allocated(&s.dest()) - before;
    assert!(grown < 1 << 20, "grew by {grown} bytes");
    fs::remove_dir_all(&links).unwrap();
    assert_ok(&verify(&s, "t"));
}

#[test]
fn entries_with_many_extended_attributes() {
    use offsnap_protocol::entry::{MAX_XATTR_TOTAL, MAX_XATTRS};
    let s = Scratch::new();
    let xattrs = |n: usize, value: usize| -> Vec<Xattr> {
        (0..n)
            .map(|i| Xattr {
                name: format!("user.a{i:03}").into_bytes(),
                value: vec![b'x'; value],
            })
            .collect()
    };
    let with = |path: &str, x: Vec<Xattr>| {
        Request::Op(Op::File {
            path: p(path),
            meta: FILE,
            size: 1,
            xattrs: x,
        })
    };
    // As many attributes as allowed, as large as allowed in all, on 200
    // files: accepted, kept in the manifest, memory flat.
    let full = xattrs(MAX_XATTRS, MAX_XATTR_TOTAL / MAX_XATTRS - 16);
    let mut live = Live::start(raw::serve(&s.dest(), &[], None, ""));
    live.send(&[begin("t"), dir("a")]);
    for i in 0..200 {
        live.send(&[
            with(&format!("a/f{i:03}"), full.clone()),
            Request::Op(Op::Data(b"x".to_vec())),
            Request::Op(Op::End {
                hash: Hash::of(b"x"),
            }),
        ]);
    }
    live.send(&[Request::Commit]);
    let mut committed = false;
    while let Some(r) = live.recv() {
        if matches!(r, Response::Committed { .. }) {
            committed = true;
            break;
        }
    }
    assert!(committed);
    let peak = live.peak_rss_kib();
    println!("helper peak RSS after 200 entries of 256 KiB of attributes: {peak} KiB");
    assert!(peak < 64 << 10, "peak RSS {peak} KiB");
    let out = live.finish(Vec::new());
    assert!(out.status.success(), "{out:?}");
    assert_ok(&verify(&s, "t"));
    let out = s.offsnap(None, &[&"ls", &"--set", &"t", &s.dest(), &"a"]);
    assert_ok(&out);
    assert!(stdout(&out).contains("f199"), "{}", stdout(&out));
    // One more attribute, or more bytes in all: refused.
    for (x, want) in [
        (xattrs(MAX_XATTRS + 1, 1), "more than 128"),
        (xattrs(8, MAX_XATTR_TOTAL / 8), "bytes in all"),
    ] {
        let reqs = [begin("t"), dir("b"), with("b/f", x), Request::Commit];
        let out = raw::run(raw::serve(&s.dest(), &[], None, ""), frames(&reqs));
        assert!(!out.status.success(), "{want}: accepted");
        assert!(out.errors().iter().any(|e| e.contains(want)), "{out:?}");
    }
    assert_eq!(dated_snapshots(&s.set_dir()).len(), 1);
}

#[test]
fn the_owners_prune_meets_a_backup_in_progress() {
    let s = Scratch::new();
    let root = s.dest();
    write_file(&s.src().join("f"), b"honest", 0o644, (1_700_000_000, 0));
    for (set, days) in [("t", 0..1), ("u", 0..3)] {
        for d in days {
            let out = s.offsnap(
                Some(&day(d, 0)),
                &[&"backup", &"--set", &set, &"--no-prune", &s.src(), &root],
            );
            assert_ok(&out);
        }
    }
    // A client's backup of t holds its lock.
    let mut live = Live::start(raw::serve(&root, &["--append-only"], Some(&day(5, 0)), ""));
    live.send(&[begin("t")]);
    assert!(
        matches!(live.recv(), Some(Response::BackupStarted { .. })),
        "no backup started"
    );
    live.send(&[dir("x")]);
    let out = owner_prune(&root, &day(6, 0), "", &["--keep-last", "1"]);
    assert!(!out.status.success(), "a busy set went unreported");
    assert!(
        stderr(&out).contains("set t") && stderr(&out).contains("busy"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        dated_snapshots(&root.join("u")).len(),
        1,
        "{}",
        stdout(&out)
    );
    // The backup commits undisturbed; the next prune does t too.
    let done = live.finish(frames(&[Request::Commit]));
    assert!(done.status.success() && done.committed() == 1, "{done:?}");
    assert_eq!(dated_snapshots(&root.join("t")).len(), 2);
    let out = owner_prune(&root, &day(6, 0), "", &["--keep-last", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dated_snapshots(&root.join("t")).len(), 1);
    assert_ok(&verify(&s, "t"));
    assert_ok(&verify(&s, "u"));
}

/// Peak RSS in KiB of the owner's `prune` of every set under `root`,
/// measured by GNU time, after checking that it succeeded.
fn owner_prune_rss(root: &Path, now: &str) -> u64 {
    let rss = root.with_extension("rss");
    let out = measure::timed(&rss)
        .arg("sh")
        .arg("-c")
        .arg(format!("{SMALL}\nexec \"$@\""))
        .arg("prune")
        .arg(remote_bin())
        .args(["prune", "--root"])
        .arg(root)
        .args(["--keep-last", "5"])
        .env("OFFSNAP_NOW", now)
        .output()
        .unwrap();
    assert_ok(&out);
    measure::peak_kib(&rss)
}

/// `n` files of 120-byte names, and a subdirectory (with a file and a
/// symlink to `/`) for every hundredth, in a tree at `at`.
fn wide(at: &Path, n: usize) {
    fs::create_dir_all(at).unwrap();
    for i in 0..n {
        let name = format!("{i:07}{}", "w".repeat(113));
        fs::write(at.join(&name), b"").unwrap();
        if i % 100 == 0 {
            let d = at.join(format!("d{name}"));
            fs::create_dir(&d).unwrap();
            fs::write(d.join("f"), b"x").unwrap();
            std::os::unix::fs::symlink("/", d.join("up")).unwrap();
        }
    }
}

#[test]
fn a_very_wide_tree_in_the_trash_is_deleted_in_bounded_memory() {
    if !measure::have_gnu_time() {
        return;
    }
    let s = Scratch::new();
    write_file(&s.src().join("f"), b"honest", 0o644, (1_700_000_000, 0));
    let snap = s.backup("2026-01-01T00:00:00Z");
    // 200,000 names in one directory left in the trash, and 20,000 more
    // straight in the trash: about 30 MiB of names to list.
    let trash = s.set_dir().join(".offsnap/trash");
    wide(&trash.join("old.1"), 200_000);
    for i in 0..20_000 {
        fs::write(trash.join(format!("{i:06}{}", "t".repeat(100))), b"").unwrap();
    }
    let kib = owner_prune_rss(&s.dest(), "2026-01-02T00:00:00Z");
    eprintln!("owner's prune peak RSS: {kib} KiB");
    assert_eq!(left_in(&s.set_dir(), "trash"), 0);
    assert!(kib < 12 * 1024, "owner's prune peak RSS {kib} KiB");
    // The set still works: its snapshot restores and a backup succeeds.
    let restored = s.restore(&snap);
    assert_same_tree(&s.src(), &restored.join("src"));
    s.backup("2026-01-03T00:00:00Z");
}
