//! Retention end to end: 40 days of daily runs with the default policy,
//! append-only helpers refusing to prune, an interrupted prune, and the
//! host-side `offsnap-remote prune`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use offsnap_tests::random::{Rng, make_tree, mutate};
use offsnap_tests::*;

#[test]
fn forty_days_of_runs_keep_the_last_thirty() {
    let s = Scratch::new();
    let mut rng = Rng::new(40);
    make_tree(&mut rng, &s.src(), 40);
    let mut restored = Vec::new();
    for d in 0..40u32 {
        if d % 5 == 4 {
            mutate(&mut rng, &s.src(), 3);
        }
        let snap = s.backup(&day(d, 3600));
        if d >= 35 {
            restored.push((snap.clone(), s.restore(&snap)));
        }
    }
    let snaps = dated_snapshots(&s.set_dir());
    // Day 39's run pruned everything older than 30 days before it: days 10..=39 remain.
    assert_eq!(snaps.len(), 30, "{snaps:?}");
    assert_eq!(snaps[0], SnapFmt(10).to_string());
    assert_eq!(snaps[29], SnapFmt(39).to_string());
    let manifests = fs::read_dir(s.set_dir().join(".offsnap/manifests"))
        .unwrap()
        .count();
    assert_eq!(manifests, 30, "manifests follow their snapshots");
    assert_eq!(
        fs::read_dir(s.set_dir().join(".offsnap/trash"))
            .unwrap()
            .count(),
        0
    );
    // The survivors are intact: hard-linked files shared with pruned
    // snapshots still hold their content.
    for (snap, copy) in &restored {
        assert_same_tree(copy, &s.restore(snap));
    }
    assert_same_tree(&s.src(), &s.set_dir().join(&snaps[29]).join("src"));

    // --no-prune keeps everything; a later run with a rule prunes.
    let kept = s.offsnap(
        Some(&day(80, 0)),
        &[
            &"backup",
            &"--set",
            &"t",
            &"--no-prune",
            &s.src(),
            &s.dest(),
        ],
    );
    assert_ok(&kept);
    assert_eq!(dated_snapshots(&s.set_dir()).len(), 31);
    // Away for weeks: nothing is pruned by age (the newest is older than 30 days).
    let out = s.offsnap(Some(&day(200, 0)), &[&"prune", &"--set", &"t", &s.dest()]);
    assert_ok(&out);
    assert_eq!(dated_snapshots(&s.set_dir()).len(), 31, "{}", stdout(&out));
    let out = s.offsnap(
        Some(&day(200, 0)),
        &[&"prune", &"--set", &"t", &"--keep-last", &"2", &s.dest()],
    );
    assert_ok(&out);
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.ends_with("removed"))
            .count(),
        29
    );
    assert_eq!(dated_snapshots(&s.set_dir()).len(), 2);
}

/// Snapshot name of day N at 01:00.
struct SnapFmt(u32);

impl std::fmt::Display for SnapFmt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = day(self.0, 3600).replace([':', '-'], "");
        // 20260111T010000Z -> 2026-01-11T010000Z
        write!(f, "{}-{}-{}", &t[0..4], &t[4..6], &t[6..])
    }
}

#[test]
fn dry_run_lists_reasons_and_removes_nothing() {
    let s = Scratch::new();
    write_file(&s.src().join("f"), b"f", 0o644, (1_700_000_000, 0));
    // No gap longer than the 30-day window: nothing counts as time away.
    for d in [0, 1, 2, 25, 50] {
        let out = s.offsnap(
            Some(&day(d, 0)),
            &[
                &"backup",
                &"--set",
                &"t",
                &"--no-prune",
                &s.src(),
                &s.dest(),
            ],
        );
        assert_ok(&out);
    }
    let out = s.offsnap(
        Some(&day(41, 0)),
        &[&"prune", &"--set", &"t", &"--dry-run", &s.dest()],
    );
    assert_ok(&out);
    let text = stdout(&out);
    assert_eq!(
        text.lines().filter(|l| l.ends_with("would remove")).count(),
        3,
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("keep (within 30d)")),
        "{text}"
    );
    assert_eq!(dated_snapshots(&s.set_dir()).len(), 5);
}

fn append_only_wrapper(s: &Scratch) -> String {
    let wrapper = s.path("append-only-helper");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} \"$@\" --append-only\n",
            remote_bin().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper.display().to_string()
}

#[test]
fn the_first_backup_after_weeks_away_keeps_the_history() {
    let s = Scratch::new();
    write_file(&s.src().join("f"), b"f", 0o644, (1_700_000_000, 0));
    for d in 0..5 {
        s.backup(&day(d, 0));
    }
    // Six weeks away, then a backup (which prunes by the default policy).
    s.backup(&day(47, 0));
    assert_eq!(dated_snapshots(&s.set_dir()).len(), 6);
}

#[test]
fn an_append_only_helper_refuses_to_prune() {
    let s = Scratch::new();
    write_file(&s.src().join("f"), b"f", 0o644, (1_700_000_000, 0));
    let helper = append_only_wrapper(&s);
    for d in [0, 50, 100] {
        // Backups work and skip their prune quietly: the host prunes instead.
        let out = s.offsnap(
            Some(&day(d, 0)),
            &[
                &"backup",
                &"--set",
                &"t",
                &"--remote-cmd",
                &helper,
                &s.src(),
                &s.dest(),
            ],
        );
        assert_ok(&out);
    }
    assert_eq!(dated_snapshots(&s.set_dir()).len(), 3);
    let out = s.offsnap(
        Some(&day(100, 0)),
        &[
            &"prune",
            &"--set",
            &"t",
            &"--keep-last",
            &"1",
            &"--remote-cmd",
            &helper,
            &s.dest(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("append-only") && stderr(&out).contains("offsnap-remote prune"),
        "{}",
        stderr(&out)
    );
    assert_eq!(dated_snapshots(&s.set_dir()).len(), 3);

    // The host's owner prunes with offsnap-remote.
    let out = std::process::Command::new(remote_bin())
        .args(["prune", "--root"])
        .arg(s.dest())
        .args(["--keep-last", "1"])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.ends_with("removed"))
            .count(),
        2,
        "{}",
        stdout(&out)
    );
    assert_eq!(dated_snapshots(&s.set_dir()).len(), 1);
}

#[test]
fn an_interrupted_prune_leaves_whole_snapshots_and_the_next_run_finishes() {
    let s = Scratch::new();
    let mut rng = Rng::new(3);
    make_tree(&mut rng, &s.src(), 30);
    for d in [0, 1, 2] {
        let out = s.offsnap(
            Some(&day(d, 0)),
            &[
                &"backup",
                &"--set",
                &"t",
                &"--no-prune",
                &s.src(),
                &s.dest(),
            ],
        );
        assert_ok(&out);
    }
    let set = s.set_dir();
    let snaps = dated_snapshots(&set);
    // A prune killed right after its first step: the snapshot is in the
    // trash (half deleted), its manifest still listed.
    fs::rename(
        set.join(&snaps[0]),
        set.join(".offsnap/trash").join(format!("{}.999", snaps[0])),
    )
    .unwrap();
    let half = set
        .join(".offsnap/trash")
        .join(format!("{}.999", snaps[0]))
        .join("src");
    let victim = offsnap_tests::random::files(&half)
        .into_iter()
        .next()
        .unwrap();
    fs::remove_file(victim).unwrap();
    // No dated name shows the half-deleted snapshot; the others are whole.
    assert_eq!(dated_snapshots(&set), snaps[1..].to_vec());
    let out = s.offsnap(None, &[&"snapshots", &"--set", &"t", &s.dest()]);
    assert_eq!(stdout(&out).lines().count(), 2);
    let before = s.restore(&snaps[2]);
    // The next run clears the trash and the orphaned manifest.
    s.backup(&day(3, 0));
    assert_eq!(fs::read_dir(set.join(".offsnap/trash")).unwrap().count(), 0);
    assert!(!set.join(".offsnap/manifests").join(&snaps[0]).exists());
    assert_same_tree(&before, &s.restore(&snaps[2]));
}

#[test]
fn killed_prunes_leave_whole_snapshots() {
    let s = Scratch::new();
    let mut rng = Rng::new(8);
    make_tree(&mut rng, &s.src(), 400);
    for d in 0..8 {
        mutate(&mut rng, &s.src(), 40);
        let out = s.offsnap(
            Some(&day(d, 0)),
            &[
                &"backup",
                &"--set",
                &"t",
                &"--no-prune",
                &s.src(),
                &s.dest(),
            ],
        );
        assert_ok(&out);
    }
    let set = s.set_dir();
    let mut kills = 0;
    for delay_ms in [0u64, 1, 2, 4, 7, 12, 20] {
        let before = dated_snapshots(&set);
        if before.len() <= 1 {
            break;
        }
        let mut child = std::process::Command::new(remote_bin())
            .args(["prune", "--root"])
            .arg(s.dest())
            .args(["--keep-last", "1"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        kills += 1;
        // Whatever survived under a dated name is whole, and nothing is locked.
        assert!(lock_is_free(&set));
        let out = s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &s.dest()]);
        assert_ok(&out);
        assert!(dated_snapshots(&set).iter().all(|n| before.contains(n)));
    }
    assert!(kills > 0);
    // The next run finishes the job.
    let out = s.offsnap(
        Some(&day(9, 0)),
        &[&"prune", &"--set", &"t", &"--keep-last", &"1", &s.dest()],
    );
    assert_ok(&out);
    assert_eq!(dated_snapshots(&set).len(), 1);
    assert_eq!(fs::read_dir(set.join(".offsnap/trash")).unwrap().count(), 0);
}
