//! A hostile helper against the real client: bad signatures (block size
//! 0, lying counts) and manifests whose paths leave the restore target.
//! Each is a clear error, never a panic, and nothing is written outside.

#![allow(clippy::unwrap_used)]

use std::fs;

use offsnap_tests::*;

fn fake(mode: &str) -> String {
    format!(
        "env FAKE_HELPER_MODE={mode} {}",
        env!("CARGO_BIN_EXE_fake-helper")
    )
}

/// `offsnap restore` of set `t` into `to`, from the fake helper in `mode`.
fn restore_from(s: &Scratch, mode: &str, to: &std::path::Path) -> std::process::Output {
    let helper = fake(mode);
    s.offsnap(
        None,
        &[
            &"restore",
            &"--set",
            &"t",
            &"--remote-cmd",
            &helper,
            &s.dest(),
            &"--to",
            &to,
        ],
    )
}

#[test]
fn bad_signatures_are_refused_without_a_panic() {
    for (mode, want) in [
        ("bad-signature", "block size out of range"),
        ("lying-count", "block count does not match"),
    ] {
        let s = Scratch::new();
        let mut rng = offsnap_tests::random::Rng::new(1);
        write_file(
            &s.src().join("big"),
            &rng.noise(300_000),
            0o644,
            (1_700_000_000, 0),
        );
        let helper = fake(mode);
        let out = s.offsnap(
            None,
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
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("bad signature") && err.contains(want),
            "{mode}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn restore_paths_that_escape_are_refused() {
    for mode in [
        "escape",
        "absolute",
        "link-escape",
        "link-forward",
        "system-xattr",
    ] {
        let s = Scratch::new();
        let outside = s.path("evil");
        let to = s.path("deep/to");
        let out = restore_from(&s, mode, &to);
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("manifest") && err.contains("damaged"),
            "{mode}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(!outside.exists() && !s.path("deep/evil").exists());
        assert!(!std::path::Path::new("/tmp/offsnap-fake-helper-evil").exists());
        // Nothing at all was written in the target.
        assert!(fs::read_dir(&to).map(|d| d.count() == 0).unwrap_or(true));
    }
}

#[test]
fn a_hard_link_to_a_directory_is_refused() {
    let s = Scratch::new();
    let to = s.path("to");
    let out = restore_from(&s, "link-to-dir", &to);
    // Only a file restored by this run can be linked to: the link is left
    // out and reported (the fake's file content is wrong too).
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("src/e: not restored"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The directory stays a directory, and nothing else took its name.
    assert!(to.join("src/d").is_dir());
    assert!(!to.join("src/e").exists());
}

#[test]
fn a_file_the_helper_asks_for_again_is_sent_whole() {
    let s = Scratch::new();
    let mut rng = offsnap_tests::random::Rng::new(2);
    let content = rng.noise(300_000);
    write_file(&s.src().join("big"), &content, 0o644, (1_700_000_000, 0));
    let received = s.path("received");
    let helper = format!(
        "env FAKE_HELPER_MODE=resend FAKE_HELPER_OUT={} {}",
        received.display(),
        env!("CARGO_BIN_EXE_fake-helper")
    );
    let out = s.offsnap(
        None,
        &[
            &"backup",
            &"--set",
            &"t",
            &"--no-prune",
            &"--json",
            &"--remote-cmd",
            &helper,
            &s.src(),
            &s.dest(),
        ],
    );
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["sent_delta"], 1, "{report}");
    assert_eq!(report["resent_whole"], 1, "{report}");
    assert_eq!(fs::read(&received).unwrap(), content);
}

#[test]
fn a_manifest_longer_than_announced_is_stopped_at_its_length() {
    let s = Scratch::new();
    let to = s.path("to");
    // Under a 4 MiB file-size limit: a client that wrote what the helper
    // sends past the announced length would be killed by SIGXFSZ.
    let helper = fake("manifest-flood");
    let mut cmd = std::process::Command::new("sh");
    s.setup(&mut cmd, None);
    cmd.arg("-c")
        .arg("ulimit -f 8192 && exec \"$0\" \"$@\"")
        .arg(offsnap_bin())
        .args(["restore", "--set", "t", "--remote-cmd", &helper])
        .arg(s.dest())
        .arg("--to")
        .arg(&to);
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("more than the") && err.contains("bytes it announced"),
        "{err}"
    );
    // Nothing of the flood is left in the cache, and nothing restored.
    let cached: u64 = fs::read_dir(s.cache())
        .map(|d| d.flatten().map(|e| e.metadata().unwrap().len()).sum())
        .unwrap_or(0);
    assert!(cached < 1024, "{cached} bytes in the manifest cache");
    assert!(fs::read_dir(&to).map(|d| d.count() == 0).unwrap_or(true));
}
