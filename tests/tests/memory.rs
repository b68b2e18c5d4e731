//! Memory of both sides, measured: their peak RSS (from `wait4`'s rusage,
//! through GNU time) must not grow with the length of the stored paths or
//! with the number of files.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::Path;

use offsnap_tests::*;
use rustix::fs::{Mode, OFlags};

/// Levels of 255-byte directory names: paths of about 64 KiB.
const LEVELS: usize = 250;

fn level(i: usize) -> String {
    format!("{i:03}{}", "d".repeat(252))
}

/// The bottom directory of the chain under `root`, made if `make`.
fn bottom(root: &Path, make: bool) -> OwnedFd {
    let mut dir =
        rustix::fs::open(root, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    for i in 0..LEVELS {
        if make {
            rustix::fs::mkdirat(&dir, level(i).as_str(), Mode::from_raw_mode(0o755)).unwrap();
        }
        dir = rustix::fs::openat(
            &dir,
            level(i).as_str(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap();
    }
    dir
}

/// Name and content of every file in the bottom directory under `root`.
fn files(root: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let dir = bottom(root, false);
    let mut out = BTreeMap::new();
    let list = rustix::fs::Dir::read_from(&dir).unwrap();
    for e in list {
        let e = e.unwrap();
        let name = e.file_name().to_bytes().to_vec();
        if name == b"." || name == b".." {
            continue;
        }
        let f = rustix::fs::openat(&dir, name.as_slice(), OFlags::RDONLY, Mode::empty()).unwrap();
        let mut content = vec![0u8; 256];
        let n = rustix::io::read(&f, &mut content).unwrap();
        content.truncate(n);
        out.insert(name, content);
    }
    out
}

/// One backup of set `t` through a separate helper process; returns the
/// report and the helper's peak RSS in KiB.
fn backup(s: &Scratch, now: &str) -> (serde_json::Value, u64) {
    let rss = s.path("helper-rss");
    let helper = measure::timed_helper(&rss);
    let out = s.offsnap(
        Some(now),
        &[
            &"backup",
            &"--set",
            &"t",
            &"--json",
            &"--no-prune",
            &"--remote-cmd",
            &helper,
            &s.src(),
            &s.dest(),
        ],
    );
    assert_ok(&out);
    let kib = measure::peak_kib(&rss);
    (serde_json::from_str(&stdout(&out)).unwrap(), kib)
}

/// Backs up `n` files with 64 KiB paths, then renames a tenth of them
/// (linked by content from the base); returns the helper's peak RSS in
/// KiB for each run.
fn two_runs(n: usize) -> (u64, u64) {
    let s = Scratch::new();
    {
        let dir = bottom(&s.src(), true);
        for i in 0..n {
            let f = rustix::fs::openat(
                &dir,
                format!("f{i:06}").as_str(),
                OFlags::WRONLY | OFlags::CREATE,
                Mode::from_raw_mode(0o644),
            )
            .unwrap();
            rustix::io::write(&f, format!("content of file {i}").as_bytes()).unwrap();
        }
    }
    let (_, first) = backup(&s, "2026-11-01T00:00:00Z");
    {
        let dir = bottom(&s.src(), false);
        for i in (0..n).step_by(10) {
            rustix::fs::renameat(
                &dir,
                format!("f{i:06}").as_str(),
                &dir,
                format!("g{i:06}").as_str(),
            )
            .unwrap();
        }
    }
    let (report, later) = backup(&s, "2026-11-02T00:00:00Z");
    assert_eq!(report["linked_by_hash"], n.div_ceil(10), "{report}");
    let snap = report["snapshot"].as_str().unwrap().to_string();
    let out = s.offsnap(
        None,
        &[&"verify", &"--set", &"t", &"--snapshot", &snap, &s.dest()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let restored = s.restore(&snap);
    assert_eq!(files(&restored.join("src")), files(&s.src()));
    (first, later)
}

#[test]
fn helper_memory_does_not_grow_with_path_bytes_or_file_count() {
    if !measure::have_gnu_time() {
        return;
    }
    // 300 and 600 files of 64 KiB paths: 19 and 38 MiB of path bytes (a
    // helper holding them would pass the bound).
    let (small_first, small_later) = two_runs(300);
    let (big_first, big_later) = two_runs(600);
    eprintln!(
        "helper peak RSS KiB: 300 files {small_first} / {small_later}, 600 files {big_first} / {big_later}"
    );
    for kib in [small_first, small_later, big_first, big_later] {
        assert!(kib < 32 * 1024, "helper peak RSS {kib} KiB");
    }
    // Flat: twice the files cost no more than 1.2 times the memory.
    assert!(
        big_later * 10 <= small_later * 12,
        "{small_later} -> {big_later} KiB"
    );
    assert!(
        big_first * 10 <= small_first * 12,
        "{small_first} -> {big_first} KiB"
    );
}

/// Peak RSS in KiB of a helper process running `offsnap verify` of the
/// latest snapshot of set `t`, which must find nothing.
fn verify_rss(s: &Scratch) -> u64 {
    let rss = s.path("verify-rss");
    let helper = measure::timed_helper(&rss);
    let out = s.offsnap(
        None,
        &[
            &"verify",
            &"--set",
            &"t",
            &"--remote-cmd",
            &helper,
            &s.dest(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    measure::peak_kib(&rss)
}

/// Backs up `n` files of about 1,300-byte paths, one in ten with a second
/// name (a hard link), restores them if `restore`, and returns the peak
/// RSS in KiB of verifying the snapshot.
fn verify_snapshot_of(n: usize, restore: bool) -> u64 {
    let s = Scratch::new();
    let long = |c: &str| c.repeat(250);
    for d in 0..n.div_ceil(1000) {
        let mut dir = s.src().join(format!("d{d:03}{}", long("x")));
        for c in ["v", "w", "y", "z"] {
            dir.push(long(c));
        }
        fs::create_dir_all(&dir).unwrap();
        for i in d * 1000..((d + 1) * 1000).min(n) {
            let f = dir.join(format!("file{i:06}"));
            fs::write(&f, format!("content of file {i}")).unwrap();
            if i % 10 == 0 {
                fs::hard_link(&f, dir.join(format!("link{i:06}"))).unwrap();
            }
        }
    }
    let snap = s.backup("2026-11-01T00:00:00Z");
    if restore {
        let restored = s.restore(&snap);
        assert_same_tree(&s.src(), &restored.join("src"));
    }
    verify_rss(&s)
}

#[test]
fn verify_memory_does_not_grow_with_entries() {
    if !measure::have_gnu_time() {
        return;
    }
    // 1,000 and 10,000 files (and a tenth more links): about 1.4 and 14
    // MiB of path bytes (a verify holding the entries passes the bound).
    let small = verify_snapshot_of(1_000, false);
    let big = verify_snapshot_of(10_000, true);
    eprintln!("verify peak RSS KiB: 1,000 files {small}, 10,000 files {big}");
    assert!(big < 16 * 1024, "verify peak RSS {big} KiB");
    // Flat: ten times the entries cost no more than 1.2 times the memory.
    assert!(big * 10 <= small * 12, "{small} -> {big} KiB");
}

/// Peak RSS in KiB of the client (GNU time: the larger of the client and
/// the helper it waits for) and of the helper alone, for one backup of set
/// `t` through a separate helper process; and the snapshot's name.
fn both_peaks(s: &Scratch, now: &str) -> ((u64, u64), String) {
    let (client_rss, helper_rss) = (s.path("client-rss"), s.path("helper-rss"));
    let mut cmd = measure::timed(&client_rss);
    cmd.arg(offsnap_bin());
    s.setup(&mut cmd, Some(now));
    let helper = measure::timed_helper(&helper_rss);
    let out = cmd
        .args([
            "backup",
            "--set",
            "t",
            "--no-prune",
            "--remote-cmd",
            &helper,
        ])
        .arg(s.src())
        .arg(s.dest())
        .output()
        .unwrap();
    assert_ok(&out);
    let peaks = (
        measure::peak_kib(&client_rss),
        measure::peak_kib(&helper_rss),
    );
    (peaks, stdout(&out).trim().to_string())
}

/// Backs up `n` small files (a thousand per directory, each content once)
/// twice, the second time with nothing changed, checks the restore if
/// `restore`, and returns the peaks `(client, helper)` of each run.
fn many_files(n: usize, restore: bool) -> [(u64, u64); 2] {
    let s = Scratch::in_memory();
    for d in 0..n.div_ceil(1000) {
        let dir = s.src().join(format!("d{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for i in d * 1000..((d + 1) * 1000).min(n) {
            fs::write(dir.join(format!("f{i:06}")), format!("content {i}")).unwrap();
        }
    }
    let (first, _) = both_peaks(&s, "2026-11-01T00:00:00Z");
    let (later, snap) = both_peaks(&s, "2026-11-02T00:00:00Z");
    if restore {
        assert_same_tree(&s.src(), &s.restore(&snap).join("src"));
    }
    [first, later]
}

#[test]
fn neither_side_grows_with_the_number_of_files() {
    if !measure::have_gnu_time() {
        return;
    }
    // Past every in-memory batch (32,768 keys), so what is left to grow
    // is what holds one thing per file: the content indexes of both sides
    // (about 40 bytes a file in a hash table: 1.6 MiB more at twice the
    // files) and the client's record of files it may send again.
    let small = many_files(40_000, false);
    let big = many_files(80_000, true);
    eprintln!(
        "peak RSS KiB (client, helper), first run / no-change run: 40,000 files {small:?}, 80,000 files {big:?}"
    );
    for ((c, h), (c2, h2)) in small.iter().zip(&big) {
        for kib in [c, h, c2, h2] {
            assert!(*kib < 48 * 1024, "peak RSS {kib} KiB");
        }
        assert!(
            c2 <= &(c + 1024),
            "client: {c} -> {c2} KiB at twice the files"
        );
        assert!(
            h2 <= &(h + 1024),
            "helper: {h} -> {h2} KiB at twice the files"
        );
    }
}
