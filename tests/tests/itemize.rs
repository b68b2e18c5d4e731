//! What `backup` tells: a dry run changes nothing on the destination and
//! lists what the real run then does; `--stats` and `--json` count each
//! category exactly; an interrupted run says what it kept, and the next
//! one that it resumed and what it reused. Every real run restores exactly.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use offsnap_tests::random::{Rng, files, make_tree, mutate};
use offsnap_tests::*;
use proptest::prelude::*;

const CACHE_TAG: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55\n";

fn backup(s: &Scratch, now: &str, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"backup", &"--set", &"t"];
    for e in extra {
        args.push(e);
    }
    let (src, dest) = (s.src(), s.dest());
    args.push(&src);
    args.push(&dest);
    s.offsnap(Some(now), &args)
}

/// The destination, every byte and mode of it (manifests included).
fn destination(s: &Scratch) -> std::collections::BTreeMap<Vec<u8>, Node> {
    if s.dest().exists() {
        tree(&s.dest())
    } else {
        Default::default()
    }
}

/// A dry run, then the real run: the destination is untouched by the
/// first, and both list the same entries.
fn dry_then_real(s: &Scratch, now: &str) {
    let before = destination(s);
    let dry = backup(s, now, &["--dry-run", "--itemize"]);
    assert_ok(&dry);
    assert_eq!(before, destination(s), "a dry run changed the destination");
    let real = backup(s, now, &["--itemize"]);
    assert_ok(&real);
    let text = stdout(&real);
    let mut lines: Vec<&str> = text.lines().collect();
    let snap = lines.pop().unwrap().to_string();
    assert_eq!(stdout(&dry).lines().collect::<Vec<_>>(), lines);
    assert_restores_without(s, &snap, "cache");
}

/// Snapshot `snap` restores to the source but for the cache directory
/// `cache`, which a run leaves out.
fn assert_restores_without(s: &Scratch, snap: &str, cache: &str) {
    let expected = s.path("expected");
    let _ = fs::remove_dir_all(&expected);
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(s.src())
        .arg(&expected)
        .status()
        .unwrap();
    assert!(cp.success());
    fs::remove_dir_all(expected.join(cache)).unwrap();
    set_mtime(&expected, mtime_of(&s.src()));
    assert_same_tree(&expected, &s.restore(snap).join("src"));
}

fn mtime_of(p: &std::path::Path) -> (i64, u32) {
    use std::os::unix::fs::MetadataExt;
    let md = fs::symlink_metadata(p).unwrap();
    (md.mtime(), md.mtime_nsec() as u32)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    #[test]
    fn a_dry_run_changes_nothing_and_lists_what_the_run_does(
        seed in any::<u64>(),
        changes in 1usize..12,
    ) {
        let s = Scratch::new();
        let mut rng = Rng::new(seed);
        make_tree(&mut rng, &s.src(), 50);
        // A cache directory, and a second name of a file.
        fs::create_dir(s.src().join("cache")).unwrap();
        fs::write(s.src().join("cache/CACHEDIR.TAG"), CACHE_TAG).unwrap();
        fs::write(s.src().join("cache/junk"), b"junk").unwrap();
        fs::write(s.src().join("linked-a"), rng.bytes(300)).unwrap();
        fs::hard_link(s.src().join("linked-a"), s.src().join("linked-b")).unwrap();
        dry_then_real(&s, &day(0, 0));
        mutate(&mut rng, &s.src(), changes);
        // The mutations may have rewritten, removed or locked the tag: the
        // directory stays a cache, as the check after the run expects.
        write_file(&s.src().join("cache/CACHEDIR.TAG"), CACHE_TAG, 0o644, (1_700_000_000, 0));
        // A copy of a stored file, found on the host by content.
        if let Some(f) = files(&s.src()).first() {
            fs::copy(f, s.src().join("a-copy")).unwrap();
        }
        dry_then_real(&s, &day(1, 0));
    }
}

/// Sets every directory's mtime back to what it was (recorded by `tree`).
fn keep_dir_times(root: &std::path::Path, before: &std::collections::BTreeMap<Vec<u8>, Node>) {
    set_mtime(root, (1_600_000_000, 0));
    for (rel, node) in before {
        if let Node::Dir { mtime, .. } = node {
            let p = root.join(os(rel));
            if p.is_dir() {
                set_mtime(&p, (mtime.0, mtime.1 as u32));
            }
        }
    }
}

#[test]
fn stats_count_whole_delta_linked_metadata_and_removed_entries_exactly() {
    let s = Scratch::new();
    let src = s.src();
    let mut rng = Rng::new(77);
    let t = (1_700_000_000, 0);
    write_file(&src.join("a"), &rng.bytes(100), 0o644, t);
    let mut big = rng.noise(200 << 10);
    write_file(&src.join("b"), &big, 0o644, t);
    write_file(&src.join("c"), &rng.bytes(50), 0o644, t);
    fs::create_dir(src.join("d")).unwrap();
    write_file(&src.join("d/e"), &rng.bytes(10), 0o644, t);
    fs::create_dir(src.join("tmp")).unwrap();
    fs::write(src.join("tmp/CACHEDIR.TAG"), CACHE_TAG).unwrap();
    set_mtime(&src, (1_600_000_000, 0));
    let first = backup(&s, &day(0, 0), &["--stats"]);
    assert_ok(&first);
    let text = stdout(&first);
    for line in [
        "Number of files: 4 (6 entries scanned)",
        "Sent whole: 4 (200.2 KiB)",
        "Sent as deltas: 0: 0 B literal, 0 B matched on the host",
        "New: 6 (200.2 KiB)",
        "Skipped as cache: 1\n",
        "Deleted: 0\n",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }

    let dirs = tree(&src);
    big[1000] ^= 0xff;
    write_file(&src.join("b"), &big, 0o644, (1_700_000_100, 0));
    set_mtime(&src.join("a"), (1_700_000_200, 0));
    fs::copy(src.join("c"), src.join("c2")).unwrap();
    set_mtime(&src.join("c2"), t);
    fs::remove_file(src.join("d/e")).unwrap();
    write_file(&src.join("f"), &rng.bytes(30), 0o644, t);
    keep_dir_times(&src, &dirs);
    // Through a helper process, where the changed file travels as a delta
    // (to a plain local path it would travel whole).
    let helper = remote_bin();
    let helper = helper.to_str().unwrap();
    let second = backup(&s, &day(1, 0), &["--stats", "--remote-cmd", helper]);
    assert_ok(&second);
    let text = stdout(&second);
    for line in [
        "Number of files: 5 (7 entries scanned)",
        "Unchanged, hard-linked: 1\n",
        "Already on the host, linked by content: 2\n",
        "Sent whole: 1 (30 B)",
        "Sent as deltas: 1 (200.0 KiB):",
        "New: 1 (30 B)",
        "Content changed: 1 (200.0 KiB)",
        "Metadata only: 1 (100 B)",
        "Deleted: 1 (10 B)",
        "Linked by content: 1 (50 B)",
        "Skipped as cache: 1\n",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    let snap = text.lines().next().unwrap().to_string();
    assert_restores_without(&s, &snap, "tmp");

    // The same run's figures as raw numbers.
    fs::remove_file(src.join("c2")).unwrap();
    keep_dir_times(&src, &dirs);
    let third = backup(&s, &day(2, 0), &["--json"]);
    assert_ok(&third);
    let j: serde_json::Value = serde_json::from_str(&stdout(&third)).unwrap();
    assert_eq!(j["removed_entries"], 1, "{j}");
    assert_eq!(j["changes"]["deleted"]["bytes"], 50, "{j}");
    assert_eq!(j["linked_unchanged"], 4, "{j}");
    assert_eq!(j["sent_whole"], 0, "{j}");
    assert_eq!(j["whole_bytes"], 0, "{j}");
    assert_restores_without(&s, j["snapshot"].as_str().unwrap(), "tmp");
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

#[test]
fn sigint_says_what_was_kept_and_the_next_run_what_it_reused() {
    let s = Scratch::new();
    let mut rng = Rng::new(5);
    fs::create_dir(s.src().join("a")).unwrap();
    for i in 0..10 {
        let data = rng.noise(160_000);
        write_file(
            &s.src().join(format!("a/f{i}")),
            &data,
            0o644,
            (1_700_000_000, 0),
        );
    }
    let big = 48usize << 20;
    write_file(
        &s.src().join("big.bin"),
        &rng.noise(big),
        0o644,
        (1_700_000_000, 0),
    );
    let mut cmd = s.command(Some(&day(0, 0)));
    let mut child = cmd
        .args(["backup", "--set", "t", "--bwlimit", "8M"])
        .arg(s.src())
        .arg(s.dest())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let incomplete = s.set_dir().join(".offsnap/incomplete");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored_bytes(&incomplete) < 1_600_000 + (4 << 20) {
        assert!(Instant::now() < deadline, "the backup never got going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id() as i32;
    // SIGINT to the client this test started, as Ctrl-C would.
    assert_eq!(
        std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted: 10 file(s) (1.5 MiB) sent so far are kept for the next run, and what arrived of ")
            && err.contains("big.bin"),
        "{err}"
    );
    assert!(dated_snapshots(&s.set_dir()).is_empty());
    let partial = stored_bytes(&incomplete) - 1_600_000;

    let next = backup(&s, &day(0, 60), &["--json"]);
    assert_ok(&next);
    let err = stderr(&next);
    assert!(
        err.contains("resumed an interrupted run (10 finished and 1 begun file(s) left on the host): reused 11 file(s)"),
        "{err}"
    );
    let j: serde_json::Value = serde_json::from_str(&stdout(&next)).unwrap();
    assert_eq!(j["resumed"], true, "{j}");
    assert_eq!(j["resumed_files"], 11, "{j}");
    assert_eq!(j["linked_by_hash"], 10, "{j}");
    assert_eq!(j["sent_delta"], 1, "{j}");
    let reused = j["resumed_bytes"].as_u64().unwrap();
    let matched = j["matched_bytes"].as_u64().unwrap();
    assert_eq!(reused, 1_600_000 + matched, "{j}");
    // What arrived of the big file is matched, but for the last block.
    assert!(
        matched <= partial && matched + (1 << 20) >= partial,
        "matched {matched} of {partial}"
    );
    let snap = j["snapshot"].as_str().unwrap().to_string();
    assert_same_tree(&s.src(), &s.restore(&snap).join("src"));
}
