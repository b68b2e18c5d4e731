//! History: sizes and changes per snapshot, `ls`, `versions`, `diff`, and
//! `verify` finding damage (and staying silent on a healthy set).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use offsnap_tests::random::{Rng, files, make_tree};
use offsnap_tests::*;

fn three_snapshots(s: &Scratch) -> Vec<String> {
    let mut rng = Rng::new(77);
    make_tree(&mut rng, &s.src(), 60);
    write_file(
        &s.src().join("notes.txt"),
        b"version one",
        0o644,
        (1_700_000_000, 0),
    );
    write_file(&s.src().join("gone.txt"), b"bye", 0o644, (1_700_000_000, 0));
    let a = s.backup(&day(0, 0));
    write_file(
        &s.src().join("notes.txt"),
        b"version two!",
        0o644,
        (1_700_000_100, 0),
    );
    fs::remove_file(s.src().join("gone.txt")).unwrap();
    write_file(&s.src().join("new.txt"), b"new", 0o600, (1_700_000_200, 0));
    let b = s.backup(&day(1, 0));
    write_file(
        &s.src().join("notes.txt"),
        b"version one",
        0o644,
        (1_700_000_300, 0),
    );
    let c = s.backup(&day(2, 0));
    vec![a, b, c]
}

#[test]
fn sizes_changes_versions_and_diff_agree_with_what_changed() {
    let s = Scratch::new();
    let snaps = three_snapshots(&s);
    let out = s.offsnap(None, &[&"snapshots", &"--set", &"t", &"--json", &s.dest()]);
    assert_ok(&out);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows.len(), 3);
    let n = |i: usize, k: &str| rows[i][k].as_u64().unwrap();
    assert_eq!(rows[1]["name"], snaps[1].as_str());
    assert_eq!((n(1, "added"), n(1, "changed"), n(1, "removed")), (1, 1, 1));
    assert_eq!((n(2, "added"), n(2, "changed"), n(2, "removed")), (0, 1, 0));

    // Unique sizes add up: unique + shared = bytes on disk, counting each
    // inode once (as `du -l` would not, and `du` does).
    let mut inodes: HashMap<u64, (u64, u64)> = HashMap::new();
    for snap in &snaps {
        for f in files(&s.set_dir().join(snap)) {
            let md = fs::symlink_metadata(&f).unwrap();
            inodes.insert(md.ino(), (md.size(), md.nlink()));
        }
    }
    let on_disk: u64 = inodes.values().map(|(sz, _)| sz).sum();
    let shared: u64 = inodes
        .values()
        .filter(|(_, l)| *l > 1)
        .map(|(sz, _)| sz)
        .sum();
    let unique: u64 = (0..3).map(|i| n(i, "unique_bytes")).sum();
    assert_eq!(unique + shared, on_disk);
    let totals: Vec<u64> = (0..3).map(|i| n(i, "total_bytes")).collect();
    assert!(totals.iter().all(|t| *t >= on_disk / 3));
    assert_eq!(n(2, "unique_bytes"), "version one".len() as u64);

    // versions: two distinct contents, three versions (one came back).
    let out = s.offsnap(
        None,
        &[&"versions", &"--set", &"t", &s.dest(), &"src/notes.txt"],
    );
    assert_ok(&out);
    let lines: Vec<String> = stdout(&out).lines().skip(1).map(String::from).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, snap) in lines.iter().zip(&snaps) {
        assert!(line.starts_with(snap.as_str()), "{line}");
    }
    assert!(
        lines[0].contains(" 11 B ") && lines[1].contains(" 12 B "),
        "{lines:?}"
    );

    // diff between the first and second snapshots.
    let out = s.offsnap(
        None,
        &[&"diff", &"--set", &"t", &s.dest(), &snaps[0], &snaps[1]],
    );
    assert_ok(&out);
    let diff: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(
        diff,
        vec!["- src/gone.txt", "+ src/new.txt", "M src/notes.txt"]
    );

    // ls of the source's root in the latest snapshot.
    let out = s.offsnap(None, &[&"ls", &"--set", &"t", &s.dest(), &"src"]);
    assert_ok(&out);
    let names: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.rsplit("  ").next().unwrap().to_string())
        .collect();
    assert!(names.contains(&"notes.txt".to_string()) && names.contains(&"new.txt".to_string()));
    assert!(!names.contains(&"gone.txt".to_string()));
    let top = fs::read_dir(s.src()).unwrap().count();
    assert_eq!(names.len(), top);
}

fn verify(s: &Scratch, args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"verify", &"--set", &"t"];
    all.extend_from_slice(args);
    let dest = s.dest();
    all.push(&dest);
    s.offsnap(None, &all)
}

#[test]
fn verify_finds_flipped_truncated_deleted_and_unexpected() {
    let s = Scratch::new();
    let snaps = three_snapshots(&s);
    let out = verify(&s, &[&"--all"]);
    assert_ok(&out);
    assert_eq!(stdout(&out), "", "a healthy set has no findings");
    assert!(stderr(&out).contains("0 problem(s)"));

    // Damage files of the first snapshot (later ones may share their inodes).
    let set = s.set_dir();
    let shared: Vec<_> = files(&set.join(&snaps[0]))
        .into_iter()
        .filter(|f| fs::metadata(f).unwrap().size() > 10)
        .collect();
    let (flip, trunc, del) = (&shared[0], &shared[1], &shared[2]);
    let keep_mtime = |p: &Path, f: &dyn Fn()| {
        let md = fs::metadata(p).unwrap();
        let mode = md.mode();
        fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        f();
        fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        set_mtime(p, (md.mtime(), md.mtime_nsec() as u32));
    };
    keep_mtime(flip, &|| {
        let mut b = fs::read(flip).unwrap();
        b[5] ^= 0x40;
        fs::write(flip, b).unwrap();
    });
    keep_mtime(trunc, &|| {
        let f = fs::OpenOptions::new().write(true).open(trunc).unwrap();
        f.set_len(3).unwrap();
    });
    fs::remove_file(del).unwrap();
    fs::write(set.join(&snaps[2]).join("src/stowaway"), b"?").unwrap();

    let out = verify(&s, &[&"--all"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let rel = |p: &Path| {
        p.strip_prefix(set.join(&snaps[0]))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    assert!(
        text.contains(&format!("{}: changed: content differs", rel(flip))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}: changed: 3 bytes", rel(trunc))),
        "{text}"
    );
    assert!(text.contains(&format!("{}: missing", rel(del))), "{text}");
    assert!(
        text.contains(&format!("{}  src/stowaway: unexpected", snaps[2])),
        "{text}"
    );

    // Only the damaged snapshot when asked for it; the latest is clean of
    // content damage, but holds the stowaway.
    let out = verify(&s, &[&"--snapshot", &snaps[1]]);
    let shared_damage = stdout(&out);
    let out0 = verify(&s, &[&"--snapshot", &snaps[0]]);
    assert_eq!(out0.status.code(), Some(1));
    assert_eq!(stdout(&out0).lines().count(), 3, "{}", stdout(&out0));
    // Damage to inodes the second snapshot shares shows there too.
    for line in shared_damage.lines() {
        assert!(line.starts_with(&snaps[1]), "{line}");
    }
    // The default is the latest snapshot: the stowaway, and the damaged
    // inodes it shares with the first.
    let out = verify(&s, &[]);
    assert_eq!(out.status.code(), Some(1));
    let latest = stdout(&out);
    assert!(latest.contains("src/stowaway: unexpected"), "{latest}");
    assert!(latest.lines().all(|l| l.starts_with(&snaps[2])), "{latest}");
}

#[test]
fn snapshots_are_chosen_by_prefix_by_latest_n_and_as_of_a_time() {
    let s = Scratch::new();
    // Snapshots at midnight UTC on 2026-01-01, -02 and -03: notes.txt reads
    // "version one", "version two!", "version one".
    let snaps = three_snapshots(&s);
    let notes = |to: &Path| fs::read_to_string(to.join("src/notes.txt")).unwrap();
    assert_eq!(notes(&s.restore("latest~1")), "version two!");
    assert_same_tree(&s.restore("latest~2"), &s.restore(&snaps[0]));
    assert_eq!(notes(&s.restore("2026-01-02")), "version two!");

    let restore_as_of = |when: &str| {
        let to = s.path(&format!("as-of-{}", when.replace([' ', ':'], "_")));
        let out = s.offsnap(
            None,
            &[
                &"restore",
                &"--set",
                &"t",
                &"--as-of",
                &when,
                &s.dest(),
                &"--to",
                &to,
            ],
        );
        (out, to)
    };
    let (out, to) = restore_as_of("2026-01-02T12:00:00Z");
    assert_ok(&out);
    assert_eq!(notes(&to), "version two!");
    let (out, to) = restore_as_of("2026-01-01T23:59:59Z");
    assert_ok(&out);
    assert_eq!(notes(&to), "version one");

    // Before the first snapshot, an ambiguous prefix, past the oldest:
    // clear errors, exit 2, nothing written.
    let (out, to) = restore_as_of("2025-12-31T00:00:00Z");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no snapshot at or before"),
        "{}",
        stderr(&out)
    );
    assert!(!to.exists());
    let ls = |snap: &str| {
        s.offsnap(
            None,
            &[&"ls", &"--set", &"t", &"--snapshot", &snap, &s.dest()],
        )
    };
    let out = ls("2026-01-0");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("matches 3 snapshots"),
        "{}",
        stderr(&out)
    );
    let out = ls("latest~3");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("has 3 snapshot(s)"),
        "{}",
        stderr(&out)
    );
    let out = ls("2026-01-03");
    assert_ok(&out);
    assert!(stdout(&out).contains("src"), "{}", stdout(&out));
}
