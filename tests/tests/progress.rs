//! The progress bar tells the truth: under a terminal (tmux), a backup of
//! a file of a few hundred MiB shows its bytes growing through the file,
//! the file counted and named, and ends on the run's own summary;
//! `--no-progress` shows no bar.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use offsnap_tests::random::Rng;
use offsnap_tests::*;

const MIB: usize = 1 << 20;
const SIZE_MIB: usize = 256;

/// The screen of tmux session `name` on server `sock`.
fn screen(sock: &str, name: &str) -> String {
    let pane = Command::new("tmux")
        .args(["-L", sock, "capture-pane", "-p", "-t", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&pane.stdout).into_owned()
}

/// Runs `offsnap backup EXTRA src dest` in a tmux session, sampling the
/// screen until it ends; returns the samples, the last screen and the
/// exit status.
fn run_in_tmux(s: &Scratch, name: &str, extra: &str) -> (Vec<String>, String, i32) {
    let sock = format!("offsnap-progress-{}-{name}", std::process::id());
    let status = s.path(&format!("{name}.status"));
    let script = format!(
        "cd {dir} && XDG_CACHE_HOME={dir}/cache XDG_CONFIG_HOME={dir}/config \
         XDG_STATE_HOME={dir}/state OFFSNAP_NOW={now} {bin} backup --set t {extra} {src} {dest}; \
         echo $? > {status}; sleep 60",
        dir = s.dir.path().display(),
        now = day(0, 0),
        bin = offsnap_bin().display(),
        src = s.src().display(),
        dest = s.dest().display(),
        status = status.display(),
    );
    let st = Command::new("tmux")
        .args(["-L", &sock, "new-session", "-d", "-x", "200", "-y", "30"])
        .args(["-s", name, &script])
        .env_remove("TMUX")
        .status()
        .unwrap();
    assert!(st.success());
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !status.exists() {
        assert!(Instant::now() < deadline, "the run never ended");
        samples.push(screen(&sock, name));
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let last = screen(&sock, name);
    let _ = Command::new("tmux")
        .args(["-L", &sock, "kill-server"])
        .stderr(Stdio::null())
        .status();
    let code = fs::read_to_string(&status).unwrap().trim().parse().unwrap();
    (samples, last, code)
}

/// The bytes a screen's bar shows as done, in MiB.
fn shown_mib(screen: &str) -> Option<String> {
    let total = format!("/{SIZE_MIB}.00 MiB");
    let line = screen.lines().find(|l| l.contains(&total))?;
    let before = &line[..line.find(&total)?];
    let start = before.rfind(']')? + 1;
    Some(before[start..].trim().to_string())
}

#[test]
fn the_bar_moves_through_a_big_file_and_ends_on_the_summary() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("OFFSNAP_REQUIRE_SSHD").is_none_or(|v| v != "1"),
            "OFFSNAP_REQUIRE_SSHD=1 but tmux is not installed"
        );
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    let s = Scratch::new();
    let mut rng = Rng::new(256);
    let path = s.src().join("big.bin");
    let mut f = fs::File::create(&path).unwrap();
    for _ in 0..SIZE_MIB {
        f.write_all(&rng.noise(MIB)).unwrap();
    }
    drop(f);
    set_mtime(&path, (1_700_000_000, 0));
    let (samples, last, code) = run_in_tmux(&s, "bar", "--progress --bwlimit 48M");
    assert_eq!(code, 0, "{last}");
    let shown: BTreeSet<String> = samples.iter().filter_map(|s| shown_mib(s)).collect();
    assert!(
        shown.len() >= 5,
        "the bar showed only {shown:?}; last screen:\n{last}"
    );
    assert!(
        samples
            .iter()
            .any(|s| s.contains("0/1 files") && s.contains("big.bin")),
        "the file was never counted and named"
    );
    let snap = dated_snapshots(&s.set_dir()).pop().unwrap();
    assert!(last.contains(&snap), "{last}");
    let summary = format!(
        "1 files: 0 unchanged, 0 found on the host, 1 sent whole ({SIZE_MIB}.0 MiB), 0 as deltas (0 B), 0 removed"
    );
    assert!(last.contains(&summary), "{last}");
    assert!(
        last.contains(&format!("{SIZE_MIB}.00 MiB/{SIZE_MIB}.00 MiB")),
        "{last}"
    );
    assert_same_tree(&s.src(), &s.restore(&snap).join("src"));

    // Without a bar: the same summary, no bar drawn.
    fs::write(s.src().join("small"), b"small").unwrap();
    let (samples, last, code) = run_in_tmux(&s, "quiet", "--no-progress");
    assert_eq!(code, 0, "{last}");
    assert!(
        samples.iter().chain([&last]).all(|s| !s.contains("ETA")),
        "{last}"
    );
    assert!(last.contains("2 files: 1 unchanged"), "{last}");
}
