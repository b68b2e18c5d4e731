//! Resuming: a run cut short leaves its finished files and the part of the
//! file it was writing; the next run reuses them (after checking their
//! hashes) instead of sending them again, and restores exactly.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use offsnap_tests::random::Rng;
use offsnap_tests::*;

const BIG: usize = 48 << 20;

/// Starts a backup at 8 MB/s (the helper as a separate process when
/// `remote`), waits until about `bytes` have been stored, then SIGKILLs
/// the client.
fn cut_backup(s: &Scratch, now: &str, remote: bool, bytes: u64) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(offsnap_bin());
    cmd.args(["backup", "--set", "t", "--bwlimit", "8M"]);
    if remote {
        cmd.arg("--remote-cmd").arg(remote_bin());
    }
    let mut child = cmd
        .arg(s.src())
        .arg(s.dest())
        .env("OFFSNAP_NOW", now)
        .env("XDG_CACHE_HOME", s.path("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let incomplete = s.set_dir().join(".offsnap/incomplete");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored_bytes(&incomplete) < bytes {
        assert!(Instant::now() < deadline, "the backup never got going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it was cut"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Only the client: a separate helper sees its client vanish.
    child.kill().unwrap();
    child.wait().unwrap();
    if remote {
        // The helper notices the end of its input and stops by itself.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !lock_is_free(&s.set_dir()) {
            assert!(Instant::now() < deadline, "the helper kept the lock");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Bytes of regular files under `dir`.
fn stored_bytes(dir: &std::path::Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => stored_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn json_backup(s: &Scratch, now: &str) -> serde_json::Value {
    let out = s.offsnap(
        Some(now),
        &[&"backup", &"--set", &"t", &"--json", &s.src(), &s.dest()],
    );
    assert_ok(&out);
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn a_big_file_cut_half_way_costs_about_the_other_half() {
    for remote in [false, true] {
        let s = Scratch::new();
        let mut rng = Rng::new(8);
        write_file(
            &s.src().join("big.bin"),
            &rng.noise(BIG),
            0o644,
            (1_700_000_000, 0),
        );
        cut_backup(&s, &day(0, 0), remote, (BIG / 2) as u64);
        let set = s.set_dir();
        assert!(dated_snapshots(&set).is_empty());
        let report = json_backup(&s, &day(0, 60));
        let sent = report["wire_bytes_sent"].as_u64().unwrap();
        // About half arrived before the cut; allow for what was in flight.
        assert!(
            sent < (BIG as u64) * 3 / 4 && sent > (BIG as u64) / 4,
            "remote {remote}: sent {sent} bytes of {BIG}"
        );
        assert_eq!(report["sent_delta"], 1, "{report}");
        let snap = report["snapshot"].as_str().unwrap().to_string();
        assert_same_tree(&s.src(), &s.restore(&snap).join("src"));
        // The leftovers are gone once a run commits.
        assert_eq!(
            fs::read_dir(set.join(".offsnap/resume")).unwrap().count(),
            0
        );
        assert_eq!(
            fs::read_dir(set.join(".offsnap/incomplete"))
                .unwrap()
                .count(),
            0
        );
        let out = s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &s.dest()]);
        assert_ok(&out);
    }
}

#[test]
fn finished_files_of_a_cut_run_are_reused_after_their_hashes_are_checked() {
    let s = Scratch::new();
    let mut rng = Rng::new(9);
    fs::create_dir(s.src().join("d")).unwrap();
    for i in 0..200 {
        write_file(
            &s.src().join(format!("d/f{i:03}")),
            &rng.noise(160_000),
            0o644,
            (1_700_000_000, 0),
        );
    }
    let total = 200 * 160_000u64;
    cut_backup(&s, &day(0, 0), true, total / 2);
    // Damage one finished file the cut run left: it must not be reused.
    let resume_tree = fs::read_dir(s.set_dir().join(".offsnap/incomplete"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("tree/src/d");
    let damaged = resume_tree.join("f000");
    let mut bytes = fs::read(&damaged).unwrap();
    bytes[100] ^= 1;
    fs::write(&damaged, &bytes).unwrap();

    let report = json_backup(&s, &day(0, 60));
    let reused = report["linked_by_hash"].as_u64().unwrap();
    let sent = report["wire_bytes_sent"].as_u64().unwrap();
    assert!((50..200).contains(&reused), "{report}");
    assert!(sent < total * 3 / 4, "{report}");
    assert!(
        report["problems"].as_array().unwrap().is_empty(),
        "{report}"
    );
    // The damaged leftover was found out when first used and sent whole.
    assert_eq!(report["resent_whole"], 1, "{report}");
    let snap = report["snapshot"].as_str().unwrap().to_string();
    assert_same_tree(&s.src(), &s.restore(&snap).join("src"));
}

#[test]
fn a_resumed_run_that_is_cut_again_still_resumes() {
    let s = Scratch::new();
    let mut rng = Rng::new(10);
    write_file(
        &s.src().join("big.bin"),
        &rng.noise(BIG),
        0o644,
        (1_700_000_000, 0),
    );
    cut_backup(&s, &day(0, 0), true, (BIG / 3) as u64);
    cut_backup(&s, &day(0, 30), true, (BIG * 2 / 3) as u64);
    let report = json_backup(&s, &day(0, 60));
    let sent = report["wire_bytes_sent"].as_u64().unwrap();
    assert!(sent < (BIG as u64) / 2, "sent {sent} of {BIG}");
    let snap = report["snapshot"].as_str().unwrap().to_string();
    assert_same_tree(&s.src(), &s.restore(&snap).join("src"));
}
