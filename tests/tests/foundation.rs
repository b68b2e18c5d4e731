//! End-to-end: back up, list, restore, with the real binaries on real
//! filesystems; hard links between snapshots; locking; kills; bad input.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use offsnap_tests::random::{Rng, make_tree, mutate};
use offsnap_tests::*;

/// A tree with every kind of entry and awkward name the foundation handles.
fn awkward_tree(src: &Path) {
    let docs = src.join("docs");
    fs::create_dir_all(docs.join("empty")).unwrap();
    fs::create_dir_all(docs.join("deep/er/still")).unwrap();
    write_file(
        &docs.join("plain.txt"),
        b"hello\n",
        0o644,
        (1_700_000_000, 123_456_789),
    );
    write_file(
        &docs.join("with space.txt"),
        b"spaces",
        0o600,
        (1_700_000_001, 1),
    );
    write_file(
        &docs.join("new\nline"),
        b"newline",
        0o640,
        (1_700_000_002, 2),
    );
    write_file(&docs.join("-rf"), b"dash", 0o755, (1_700_000_003, 3));
    write_file(
        &docs.join(os(b"bad\xffutf8")),
        b"latin",
        0o444,
        (1_700_000_004, 4),
    );
    write_file(&docs.join("empty-file"), b"", 0o644, (1_700_000_005, 5));
    write_file(
        &docs.join("deep/er/still/big.bin"),
        &(0..700_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
        0o600,
        (1_700_000_006, 999_999_999),
    );
    std::os::unix::fs::symlink("plain.txt", docs.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", docs.join("dangling")).unwrap();
    std::os::unix::fs::symlink("../../etc", docs.join("escape")).unwrap();
    set_mtime(&docs.join("link"), (1_700_000_007, 7));
    // A read-only directory with a file inside.
    fs::create_dir(docs.join("ro")).unwrap();
    write_file(&docs.join("ro/inside"), b"in ro", 0o644, (1_700_000_008, 8));
    fs::set_permissions(docs.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    for d in [
        "docs/empty",
        "docs/deep/er/still",
        "docs/deep/er",
        "docs/deep",
        "docs/ro",
        "docs",
    ] {
        set_mtime(&src.join(d), (1_600_000_000, 42));
    }
}

#[test]
fn two_backups_link_unchanged_files_and_restore_exactly() {
    let s = Scratch::new();
    awkward_tree(&s.src());
    let first = s.backup(&day(0, 0));

    // Restore the first snapshot now: it must equal the source as it is.
    let r1 = s.restore(&first);
    assert_same_tree(&s.src(), &r1.join("src"));

    // Change one file (same size, new content and mtime) and back up again.
    let changed = s.src().join("docs/plain.txt");
    write_file(&changed, b"HELLO\n", 0o644, (1_700_000_100, 0));
    let second = s.backup(&day(1, 0));
    assert_ne!(first, second);

    let set = s.set_dir();
    assert_eq!(dated_snapshots(&set), vec![first.clone(), second.clone()]);
    let in_snap = |snap: &str, rel: &str| set.join(snap).join("src").join(rel);
    for rel in [
        "docs/with space.txt",
        "docs/-rf",
        "docs/empty-file",
        "docs/deep/er/still/big.bin",
        "docs/ro/inside",
    ] {
        assert_eq!(
            inode(&in_snap(&first, rel)),
            inode(&in_snap(&second, rel)),
            "{rel} not linked"
        );
    }
    let bad = Path::new("docs").join(os(b"bad\xffutf8"));
    assert_eq!(
        inode(&set.join(&first).join("src").join(&bad)),
        inode(&set.join(&second).join("src").join(&bad))
    );
    assert_ne!(
        inode(&in_snap(&first, "docs/plain.txt")),
        inode(&in_snap(&second, "docs/plain.txt"))
    );
    assert_eq!(
        fs::read(in_snap(&first, "docs/plain.txt")).unwrap(),
        b"hello\n"
    );

    // `latest` points at the second.
    assert_eq!(
        fs::read_link(set.join("latest")).unwrap(),
        Path::new(&second)
    );

    // `snapshots` lists both, name in the first column, oldest first.
    let out = s.offsnap(None, &[&"snapshots", &"--set", &"t", &s.dest()]);
    assert_ok(&out);
    let names: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(names, vec![first.clone(), second.clone()]);

    // Each snapshot restores to the source as it was then.
    let r2 = s.restore(&second);
    assert_same_tree(&s.src(), &r2.join("src"));
    let r1_again = s.restore(&first);
    assert_same_tree(&r1, &r1_again);

    // The snapshot itself is a faithful plain copy too (cp -a would give this).
    assert_same_tree(&s.src(), &set.join(&second).join("src"));
    for d in [&r1, &r2, &r1_again] {
        fs::set_permissions(d.join("src/docs/ro"), fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(s.src().join("docs/ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn restore_selected_paths_and_refuse_to_overwrite() {
    let s = Scratch::new();
    awkward_tree(&s.src());
    let snap = s.backup(&day(0, 0));
    let to = s.path("partial");
    let out = s.offsnap(
        None,
        &[
            &"restore",
            &"--set",
            &"t",
            &s.dest(),
            &"--to",
            &to,
            &"--json",
            &"src/docs/deep/",
            &"src/docs/-rf",
        ],
    );
    assert_ok(&out);
    assert_same_tree(&s.src().join("docs/deep"), &to.join("src/docs/deep"));
    // It counts what was asked for (the folder, what is in it, the file),
    // not the folders above them made on the way.
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let deep = tree(&s.src().join("docs/deep")).len() as u64;
    assert_eq!(report["entries"], deep + 2, "{report}");
    assert_eq!(report["snapshot"], snap.as_str());
    assert_eq!(fs::read(to.join("src/docs/-rf")).unwrap(), b"dash");
    assert!(!to.join("src/docs/plain.txt").exists());

    // A second restore over it refuses, changes nothing, and names the file.
    write_file(&to.join("src/docs/-rf"), b"mine", 0o644, (1, 0));
    let out = s.offsnap(
        None,
        &[
            &"restore",
            &"--set",
            &"t",
            &"--snapshot",
            &snap,
            &s.dest(),
            &"--to",
            &to,
            &"src/docs/-rf",
        ],
    );
    // Refused, with its own exit status (not "bad arguments").
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("--overwrite"), "{}", stderr(&out));
    assert_eq!(fs::read(to.join("src/docs/-rf")).unwrap(), b"mine");

    // With --overwrite it is replaced.
    let out = s.offsnap(
        None,
        &[
            &"restore",
            &"--set",
            &"t",
            &s.dest(),
            &"--to",
            &to,
            &"--overwrite",
            &"--json",
            &"src/docs/-rf",
        ],
    );
    assert_ok(&out);
    assert_eq!(fs::read(to.join("src/docs/-rf")).unwrap(), b"dash");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["entries"], 1, "one file: {report}");
    assert_eq!(report["bytes"], 4, "{report}");

    // A path not in the snapshot is a clear error.
    let out = s.offsnap(
        None,
        &[
            &"restore",
            &"--set",
            &"t",
            &s.dest(),
            &"--to",
            &to,
            &"src/nope",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not in snapshot"), "{}", stderr(&out));
    fs::set_permissions(s.src().join("docs/ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn several_sources_each_under_its_name() {
    let s = Scratch::new();
    let a = s.path("a/Documents");
    let b = s.path("b/Pictures");
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    write_file(&a.join("x"), b"x", 0o644, (1_700_000_000, 0));
    write_file(&b.join("y"), b"y", 0o644, (1_700_000_000, 0));
    let single = s.path("notes.txt");
    write_file(&single, b"notes", 0o600, (1_700_000_000, 5));
    let out = s.offsnap(
        Some(&day(0, 0)),
        &[&"backup", &"--set", &"t", &b, &single, &a, &s.dest()],
    );
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    let root = s.set_dir().join(&snap);
    assert_eq!(fs::read(root.join("Documents/x")).unwrap(), b"x");
    assert_eq!(fs::read(root.join("Pictures/y")).unwrap(), b"y");
    assert_eq!(fs::read(root.join("notes.txt")).unwrap(), b"notes");

    // Two sources with the same final name are refused before anything is made.
    let other = s.path("c/Documents");
    fs::create_dir_all(&other).unwrap();
    let out = s.offsnap(
        Some(&day(1, 0)),
        &[&"backup", &"--set", &"t", &a, &other, &s.dest()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("both be stored as"),
        "{}",
        stderr(&out)
    );
    assert_eq!(dated_snapshots(&s.set_dir()).len(), 1);
}

#[test]
fn random_trees_and_mutations_round_trip() {
    let seeds: u64 = std::env::var("OFFSNAP_PROPTEST_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    for seed in 0..seeds {
        let s = Scratch::new();
        let mut rng = Rng::new(seed * 7919 + 1);
        make_tree(&mut rng, &s.src(), 60);
        let mut snaps = Vec::new();
        let mut copies = Vec::new();
        for round in 0..4u32 {
            if round > 0 {
                mutate(&mut rng, &s.src(), 8);
            }
            let snap = s.backup(&day(round, 0));
            let restored = s.restore(&snap);
            assert_same_tree(&s.src(), &restored.join("src"));
            snaps.push(snap);
            copies.push(restored);
        }
        // Every older snapshot still restores to what it was.
        for (snap, copy) in snaps.iter().zip(&copies) {
            let again = s.restore(snap);
            assert_same_tree(copy, &again);
        }
        // Files identical in content and metadata across snapshots share inodes.
        let set = s.set_dir();
        let (a, b) = (set.join(&snaps[2]), set.join(&snaps[3]));
        let ta = tree(&a);
        for (rel, node) in tree(&b) {
            if matches!(node, Node::File { .. }) && ta.get(&rel) == Some(&node) {
                let rel = os(&rel);
                assert_eq!(
                    inode(&a.join(&rel)),
                    inode(&b.join(&rel)),
                    "seed {seed}: {rel:?} not linked"
                );
            }
        }
    }
}

/// Starts `offsnap backup` of a large source in its own process group and
/// waits until the helper has begun writing the snapshot.
fn start_slow_backup(s: &Scratch, now: &str, extra: &[&std::ffi::OsStr]) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let child = Command::new(offsnap_bin())
        .args(["backup", "--set", "t"])
        .args(extra)
        .arg(s.src())
        .arg(s.dest())
        .env("OFFSNAP_NOW", now)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let incomplete = s.set_dir().join(".offsnap/incomplete");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if fs::read_dir(&incomplete)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the backup never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

fn big_source(s: &Scratch) {
    let mut rng = Rng::new(99);
    make_tree(&mut rng, &s.src(), 30);
    let big: Vec<u8> = rng.bytes(96 << 20);
    write_file(&s.src().join("zz-big.bin"), &big, 0o644, (1_700_000_000, 0));
}

fn signal_group(child: &std::process::Child, sig: rustix::process::Signal) {
    let pgid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process_group(pgid, sig).unwrap();
}

#[test]
fn a_second_backup_of_the_same_set_fails_fast() {
    let s = Scratch::new();
    big_source(&s);
    let first = start_slow_backup(&s, &day(0, 0), &[]);
    // Freeze the first run so it certainly holds the lock meanwhile.
    signal_group(&first, rustix::process::Signal::STOP);
    let t0 = Instant::now();
    let out = s.offsnap(
        Some(&day(0, 60)),
        &[&"backup", &"--set", &"t", &s.src(), &s.dest()],
    );
    let took = t0.elapsed();
    signal_group(&first, rustix::process::Signal::CONT);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("busy") && err.contains("already running since"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let out = first.wait_with_output().unwrap();
    assert_ok(&out);
    let snaps = dated_snapshots(&s.set_dir());
    assert_eq!(snaps.len(), 1);
    let r = s.restore(&snaps[0]);
    assert_same_tree(&s.src(), &r.join("src"));
}

#[test]
fn a_killed_backup_leaves_no_snapshot_no_lock_and_the_next_run_works() {
    let s = Scratch::new();
    let mut rng = Rng::new(5);
    make_tree(&mut rng, &s.src(), 40);
    let good = s.backup(&day(0, 0));
    let good_copy = s.restore(&good);
    big_source(&s);

    // Kill client and helper together with SIGKILL, half-way.
    let mut child = start_slow_backup(&s, &day(1, 0), &[]);
    signal_group(&child, rustix::process::Signal::KILL);
    let _ = child.wait();
    let set = s.set_dir();
    assert_eq!(
        dated_snapshots(&set),
        vec![good.clone()],
        "a killed run left a snapshot"
    );
    assert_eq!(fs::read_link(set.join("latest")).unwrap(), Path::new(&good));
    assert!(lock_is_free(&set), "a killed run left its lock");
    assert_same_tree(&good_copy, &s.restore(&good));

    // The next run succeeds, clears the leftovers, and restores exactly.
    let next = s.backup(&day(2, 0));
    assert_eq!(dated_snapshots(&set), vec![good.clone(), next.clone()]);
    assert_eq!(
        fs::read_dir(set.join(".offsnap/incomplete"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(fs::read_dir(set.join(".offsnap/trash")).unwrap().count(), 0);
    assert_same_tree(&s.src(), &s.restore(&next).join("src"));
}

#[test]
fn a_killed_helper_fails_the_client_cleanly() {
    let s = Scratch::new();
    let mut rng = Rng::new(6);
    make_tree(&mut rng, &s.src(), 20);
    let good = s.backup(&day(0, 0));
    big_source(&s);
    let helper_cmd = remote_bin();
    let child = start_slow_backup(
        &s,
        &day(1, 0),
        &["--remote-cmd".as_ref(), helper_cmd.as_os_str()],
    );
    // Kill only the helper: the client must report it and fail.
    let helper = fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse::<i32>()
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(helper).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("offsnap:"), "{}", stderr(&out));
    let set = s.set_dir();
    assert_eq!(dated_snapshots(&set), vec![good]);
    assert!(lock_is_free(&set));
    let next = s.backup(&day(2, 0));
    assert_same_tree(&s.src(), &s.restore(&next).join("src"));
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let s = Scratch::new();
    write_file(&s.src().join("f"), b"f", 0o644, (1_700_000_000, 0));

    // A missing source: nothing is created at the destination.
    let out = s.offsnap(
        Some(&day(0, 0)),
        &[&"backup", &"--set", &"t", &s.path("nope"), &s.dest()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no such file or directory"),
        "{}",
        stderr(&out)
    );
    assert!(!s.dest().exists());

    // A destination that is a file.
    let file_dest = s.path("a-file");
    fs::write(&file_dest, b"keep me").unwrap();
    let out = s.offsnap(
        Some(&day(0, 0)),
        &[&"backup", &"--set", &"t", &s.src(), &file_dest],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
    assert_eq!(fs::read(&file_dest).unwrap(), b"keep me");

    // A destination whose parent does not exist is not created wholesale.
    let deep = s.path("no/such/parent/backups");
    let out = s.offsnap(
        Some(&day(0, 0)),
        &[&"backup", &"--set", &"t", &s.src(), &deep],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot create the backup root"),
        "{}",
        stderr(&out)
    );
    assert!(!s.path("no").exists());

    // An unwritable destination.
    let ro = unwritable_dir(&s);
    let out = s.offsnap(
        Some(&day(0, 0)),
        &[&"backup", &"--set", &"t", &s.src(), &ro],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        ["ermission denied", "not permitted", "ead-only file system"]
            .iter()
            .any(|m| err.contains(m)),
        "{err}"
    );

    // A bad set name.
    let out = s.offsnap(
        Some(&day(0, 0)),
        &[&"backup", &"--set", &"../x", &s.src(), &s.dest()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a valid set name"),
        "{}",
        stderr(&out)
    );

    // Listing a destination with no backups.
    let out = s.offsnap(None, &[&"snapshots", &"--set", &"t", &s.path("empty-dest")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no backups at"), "{}", stderr(&out));
}

/// A directory this process cannot write in: mode 0555 for ordinary users;
/// for root (who ignores modes) a directory under /sys.
fn unwritable_dir(s: &Scratch) -> std::path::PathBuf {
    if rustix::process::geteuid().is_root() {
        Path::new("/sys/offsnap-test-dest").to_path_buf()
    } else {
        let d = s.path("readonly");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o555)).unwrap();
        d.join("backups")
    }
}

#[test]
fn the_helper_can_be_named_with_remote_cmd() {
    let s = Scratch::new();
    write_file(&s.src().join("f"), b"f", 0o644, (1_700_000_000, 0));
    let wrapper = s.path("wrapped-helper");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho wrapped >> {}\nexec {} \"$@\"\n",
            s.path("log").display(),
            remote_bin().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let cmd = format!("sh {}", wrapper.display());
    let out = s.offsnap(
        Some(&day(0, 0)),
        &[
            &"backup",
            &"--set",
            &"t",
            &"--remote-cmd",
            &cmd,
            &s.src(),
            &s.dest(),
        ],
    );
    assert_ok(&out);
    assert_eq!(fs::read_to_string(s.path("log")).unwrap(), "wrapped\n");

    let out = s.offsnap(
        Some(&day(1, 0)),
        &[
            &"backup",
            &"--set",
            &"t",
            &"--remote-cmd",
            &"/no/such/helper",
            &s.src(),
            &s.dest(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot start the helper"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_default_set_is_the_hostname() {
    let s = Scratch::new();
    write_file(&s.src().join("f"), b"f", 0o644, (1_700_000_000, 0));
    let out = s.offsnap(Some(&day(0, 0)), &[&"backup", &s.src(), &s.dest()]);
    assert_ok(&out);
    let sets: Vec<_> = fs::read_dir(s.dest())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(sets.len(), 1);
    let host = rustix::system::uname().nodename().to_bytes().to_vec();
    assert!(host.starts_with(sets[0].as_bytes()) || sets[0].as_bytes().starts_with(&host[..1]));
    let out = s.offsnap(None, &[&"snapshots", &s.dest()]);
    assert_ok(&out);
    assert_eq!(stdout(&out).lines().count(), 1);
}

#[test]
fn thousands_of_files_back_up_and_restore_exactly() {
    // Big enough that the manifest spans many read buffers.
    let s = Scratch::new();
    for d in 0..40 {
        let dir = s.src().join(format!("dir{d:02}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..100 {
            let body = format!("file {d}/{f} {}", "x".repeat(f * 3));
            write_file(
                &dir.join(format!("f{f:03}")),
                body.as_bytes(),
                0o644,
                (1_700_000_000 + f as i64, d),
            );
        }
    }
    let first = s.backup(&day(0, 0));
    assert_same_tree(&s.src(), &s.restore(&first).join("src"));
    write_file(
        &s.src().join("dir07/f050"),
        b"changed",
        0o600,
        (1_800_000_000, 0),
    );
    let second = s.backup(&day(1, 0));
    assert_same_tree(&s.src(), &s.restore(&second).join("src"));
    let set = s.set_dir();
    let linked = tree(&set.join(&second))
        .keys()
        .filter(|k| {
            let rel = os(k);
            let p = set.join(&second).join(&rel);
            p.is_file() && inode(&p) == inode(&set.join(&first).join(&rel))
        })
        .count();
    assert_eq!(linked, 3999);

    // A fatal error early in a large restore (a directory where a file must
    // go) ends it promptly with a clear error: nothing waits forever.
    let to = s.path("blocked");
    fs::create_dir_all(to.join("src/dir00/f000/sub")).unwrap();
    let mut child = Command::new(offsnap_bin())
        .args(["restore", "--set", "t", "--overwrite", "--to"])
        .arg(&to)
        .arg(s.dest())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the restore hung after a fatal error");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("src/dir00/f000 already exists"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_damaged_stored_file_is_reported_and_sent_again() {
    let s = Scratch::new();
    let mut rng = Rng::new(31);
    make_tree(&mut rng, &s.src(), 40);
    write_file(
        &s.src().join("precious"),
        b"keep me safe",
        0o644,
        (1_700_000_000, 0),
    );
    let first = s.backup(&day(0, 0));
    // Someone deletes a file from the stored snapshot by hand.
    fs::remove_file(s.set_dir().join(&first).join("src/precious")).unwrap();
    let out = s.offsnap(
        Some(&day(1, 0)),
        &[&"backup", &"--set", &"t", &s.src(), &s.dest()],
    );
    // The damage is reported, and the file is sent again at once: the new
    // snapshot is complete and exact.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("src/precious: the stored copy"),
        "{}",
        stderr(&out)
    );
    let second = stdout(&out).trim().to_string();
    assert_same_tree(&s.src(), &s.restore(&second).join("src"));

    // Two new copies of a content whose only stored copy is gone: both are
    // stored all the same, from what the client sends.
    write_file(
        &s.src().join("shared"),
        b"one content",
        0o644,
        (1_700_000_000, 0),
    );
    let fourth = s.backup(&day(3, 0));
    fs::remove_file(s.set_dir().join(&fourth).join("src/shared")).unwrap();
    for copy in ["zz-copy1", "zz-copy2"] {
        write_file(
            &s.src().join(copy),
            b"one content",
            0o600,
            (1_700_000_009, 0),
        );
    }
    let out = s.offsnap(
        Some(&day(4, 0)),
        &[&"backup", &"--set", &"t", &s.src(), &s.dest()],
    );
    assert_ok(&out);
    let fifth = stdout(&out).trim().to_string();
    assert_same_tree(&s.src(), &s.restore(&fifth).join("src"));
    let out = s.offsnap(
        None,
        &[&"verify", &"--set", &"t", &"--snapshot", &fifth, &s.dest()],
    );
    assert_ok(&out);
}

#[test]
#[cfg_attr(
    offsnap_not_root,
    ignore = "needs root to run the helper as another user"
)]
fn a_helper_that_is_not_root_keeps_odd_modes_working() {
    if !rustix::process::geteuid().is_root()
        || Command::new("setpriv").arg("--version").output().is_err()
    {
        return offsnap_tests::privileged::skip(
            "needs root and setpriv to run the helper as another user",
        );
    }
    let s = Scratch::new();
    // A destination the unprivileged helper owns, reachable by it.
    let place = tempfile::Builder::new()
        .prefix("offsnap-nobody.")
        .tempdir()
        .unwrap();
    fs::set_permissions(place.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let dest = place.path().join("dest");
    fs::create_dir(&dest).unwrap();
    rustix::fs::chown(
        &dest,
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    let helper = format!(
        "setpriv --reuid=65534 --regid=65534 --clear-groups {}",
        remote_bin().display()
    );
    let src = s.src();
    fs::create_dir(src.join("locked")).unwrap();
    write_file(
        &src.join("locked/inside"),
        b"behind 0311",
        0o644,
        (1_700_000_000, 0),
    );
    write_file(&src.join("secret"), b"mode 0000", 0o000, (1_700_000_001, 0));
    write_file(&src.join("plain"), b"plain", 0o644, (1_700_000_002, 0));
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o311)).unwrap();
    set_mtime(&src.join("locked"), (1_600_000_000, 0));
    let run = |now: &str| {
        let out = s.offsnap(
            Some(now),
            &[
                &"backup",
                &"--set",
                &"t",
                &"--remote-cmd",
                &helper,
                &src,
                &dest,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let first = run(&day(0, 0));
    write_file(
        &src.join("plain"),
        b"plain, changed",
        0o644,
        (1_700_000_100, 0),
    );
    let second = run(&day(1, 0));
    let set = dest.join("t");
    for rel in ["locked/inside", "secret"] {
        assert_eq!(
            inode(&set.join(&first).join("src").join(rel)),
            inode(&set.join(&second).join("src").join(rel)),
            "{rel} not linked"
        );
    }
    // Restored exactly, odd modes included (the manifest has them).
    let to = s.path("restored");
    let out = s.offsnap(
        None,
        &[
            &"restore",
            &"--set",
            &"t",
            &"--remote-cmd",
            &helper,
            &dest,
            &"--to",
            &to,
        ],
    );
    assert_ok(&out);
    assert_same_tree(&src, &to.join("src"));
    let out = s.offsnap(
        None,
        &[
            &"verify",
            &"--set",
            &"t",
            &"--all",
            &"--remote-cmd",
            &helper,
            &dest,
        ],
    );
    assert_ok(&out);
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(to.join("src/locked"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
#[cfg_attr(offsnap_not_root, ignore = "needs root to apply owners")]
fn owners_are_kept_by_a_root_helper_and_restored_by_root() {
    if !rustix::process::geteuid().is_root() {
        return offsnap_tests::privileged::skip("owners can only be applied as root");
    }
    use std::os::unix::fs::MetadataExt;
    let s = Scratch::new();
    let src = s.src();
    fs::create_dir(src.join("d")).unwrap();
    write_file(&src.join("d/f"), b"owned", 0o640, (1_700_000_000, 0));
    std::os::unix::fs::symlink("f", src.join("d/l")).unwrap();
    let own = |p: &Path, u: u32, g: u32| {
        rustix::fs::chownat(
            rustix::fs::CWD,
            p,
            Some(rustix::fs::Uid::from_raw(u)),
            Some(rustix::fs::Gid::from_raw(g)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap()
    };
    own(&src.join("d/f"), 1234, 5678);
    own(&src.join("d/l"), 2345, 6789);
    own(&src.join("d"), 3456, 7890);
    let snap = s.backup(&day(0, 0));
    let to = s.restore(&snap);
    for root in [s.set_dir().join(&snap), to] {
        let ids = |rel: &str| {
            let md = fs::symlink_metadata(root.join("src").join(rel)).unwrap();
            (md.uid(), md.gid())
        };
        assert_eq!(ids("d/f"), (1234, 5678), "{}", root.display());
        assert_eq!(ids("d/l"), (2345, 6789), "{}", root.display());
        assert_eq!(ids("d"), (3456, 7890), "{}", root.display());
    }
    // A change of owner alone gives a new inode, with the new owner.
    own(&src.join("d/f"), 4321, 8765);
    let second = s.backup(&day(1, 0));
    let md = fs::metadata(s.set_dir().join(&second).join("src/d/f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (4321, 8765));
    assert_ne!(
        inode(&s.set_dir().join(&snap).join("src/d/f")),
        inode(&s.set_dir().join(&second).join("src/d/f"))
    );
}

/// Stored files altered on the host as a user would (an append, a
/// same-size overwrite in place) are never carried into the next snapshot,
/// whether they would be hard-linked as unchanged, copied because their
/// metadata no longer matches, or linked by content from a renamed file:
/// each is found not to match its manifest and is sent again.
#[test]
fn a_stored_file_altered_on_the_host_is_sent_again() {
    let s = Scratch::new();
    let mut rng = offsnap_tests::random::Rng::new(7);
    let t = (1_700_000_000, 0);
    let src = s.src();
    write_file(&src.join("appended"), &rng.noise(20_000), 0o644, t);
    write_file(&src.join("overwritten"), &rng.noise(20_000), 0o644, t);
    write_file(&src.join("renamed"), &rng.noise(30_000), 0o644, t);
    write_file(&src.join("kept"), &rng.noise(5_000), 0o644, t);
    let first = s.backup("2026-11-01T00:00:00Z");
    let snap = s.set_dir().join(&first).join("src");
    let status = Command::new("sh")
        .arg("-c")
        .arg("echo x >> \"$1\"")
        .arg("sh")
        .arg(snap.join("appended"))
        .status()
        .unwrap();
    assert!(status.success());
    for name in ["overwritten", "renamed"] {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(snap.join(name))
            .unwrap();
        std::io::Write::write_all(&mut f, b"damage").unwrap();
    }
    // The damage is there, and verify sees it.
    let out = s.offsnap(
        None,
        &[&"verify", &"--set", &"t", &"--snapshot", &first, &s.dest()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // The source renames one file: its content is on the host, by hash.
    fs::rename(src.join("renamed"), src.join("moved")).unwrap();

    let out = s.offsnap(
        Some("2026-11-02T00:00:00Z"),
        &[&"backup", &"--set", &"t", &"--json", &src, &s.dest()],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for name in ["appended", "overwritten", "moved"] {
        assert!(
            err.contains(&format!("src/{name}: the stored copy"))
                && err.contains("does not match its manifest"),
            "{name}: {err}"
        );
    }
    assert!(!err.contains("hard-link limit"), "{err}");
    assert!(!err.contains("src/kept"), "{err}");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["resent_whole"], 3, "{report}");
    let second = report["snapshot"].as_str().unwrap().to_string();
    let out = s.offsnap(
        None,
        &[&"verify", &"--set", &"t", &"--snapshot", &second, &s.dest()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let restored = s.restore(&second);
    assert_same_tree(&src, &restored.join("src"));
    // The unchanged file is still shared with the first snapshot.
    assert_eq!(
        inode(&snap.join("kept")),
        inode(&s.set_dir().join(&second).join("src/kept"))
    );
}
