//! The progress bar tells the truth: under a terminal (tmux), a backup of
//! a file of a few hundred MiB shows its bytes growing through the file,
//! the file counted and named, and ends on the run's own summary;
//! `--no-progress` shows no bar. A restore of that file shows the bytes
//! it writes the same way, and `verify` the bytes its helper has hashed,
//! as the helper reports them.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use offsnap_tests::random::Rng;
use offsnap_tests::terminal::Tmux;
use offsnap_tests::*;

const MIB: usize = 1 << 20;
const SIZE_MIB: usize = 256;

/// Runs `offsnap backup EXTRA src dest` in a tmux session, sampling the
/// screen until it ends; returns the samples, the last screen and the
/// exit status.
fn run_in_tmux(s: &Scratch, name: &str, extra: &str) -> (Vec<String>, String, i32) {
    let args = format!(
        "backup --set t {extra} {src} {dest}",
        src = s.src().display(),
        dest = s.dest().display(),
    );
    offsnap_in_tmux(s, name, &args, Duration::from_millis(100))
}

/// Runs `offsnap ARGS` in a tmux session, sampling the screen every
/// `every` until it ends; returns the samples, the last screen and the
/// exit status.
fn offsnap_in_tmux(
    s: &Scratch,
    name: &str,
    args: &str,
    every: Duration,
) -> (Vec<String>, String, i32) {
    let status = s.path(&format!("{name}.status"));
    let script = format!(
        "cd {dir} && XDG_CACHE_HOME={dir}/cache XDG_CONFIG_HOME={dir}/config \
         XDG_STATE_HOME={dir}/state OFFSNAP_NOW={now} {bin} {args}; \
         echo $? > {status}; sleep 60",
        dir = s.dir.path().display(),
        now = day(0, 0),
        bin = offsnap_bin().display(),
        status = status.display(),
    );
    let tmux = Tmux::start(name, (200, 30), &script);
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !status.exists() {
        assert!(Instant::now() < deadline, "the run never ended");
        samples.push(tmux.screen());
        std::thread::sleep(every);
    }
    std::thread::sleep(Duration::from_millis(200));
    let last = tmux.screen();
    drop(tmux);
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

/// Writes `src/big.bin`, SIZE_MIB MiB of noise.
fn big_file(s: &Scratch, seed: u64) {
    let mut rng = Rng::new(seed);
    let path = s.src().join("big.bin");
    let mut f = fs::File::create(&path).unwrap();
    for _ in 0..SIZE_MIB {
        f.write_all(&rng.noise(MIB)).unwrap();
    }
    drop(f);
    set_mtime(&path, (1_700_000_000, 0));
}

#[test]
fn the_bar_moves_through_a_big_file_and_ends_on_the_summary() {
    if !Tmux::here() {
        return;
    }
    let s = Scratch::new();
    big_file(&s, 256);
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

#[test]
fn restore_shows_the_bytes_it_writes_and_verify_the_bytes_it_hashes() {
    if !Tmux::here() {
        return;
    }
    let s = Scratch::new();
    big_file(&s, 257);
    let snap = s.backup(&day(0, 0));

    // Restore: the bytes written grow through the file, which is counted
    // and named; the last screen is the finished bar and the summary.
    let to = s.path("restored");
    let args = format!(
        "restore --set t --progress --bwlimit 48M --to {} {}",
        to.display(),
        s.dest().display()
    );
    let (samples, last, code) = offsnap_in_tmux(&s, "restore", &args, Duration::from_millis(100));
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
    assert!(
        last.contains(&format!("{SIZE_MIB}.00 MiB/{SIZE_MIB}.00 MiB"))
            && last.contains("1/1 files"),
        "{last}"
    );
    let summary = format!(
        "restored 2 entries ({SIZE_MIB}.0 MiB) from {snap} into {}",
        to.display()
    );
    assert!(last.contains(&summary), "{last}");
    assert_same_tree(&s.src(), &to.join("src"));

    // Verify: the bar moves by the bytes the helper hashes (its reads
    // kept to 48 MiB/s, so the run lasts long enough to be sampled),
    // names the file being read, and ends on the whole file and the
    // summary.
    let args = format!("verify --set t --read-limit 48M {}", s.dest().display());
    let started = Instant::now();
    let (samples, last, code) = offsnap_in_tmux(&s, "verify", &args, Duration::from_millis(100));
    assert_eq!(code, 0, "{last}");
    // The limit holds: 256 MiB at 48 MiB/s take over 5 s.
    assert!(started.elapsed() > Duration::from_secs(5), "{last}");
    let shown: BTreeSet<String> = samples.iter().filter_map(|s| shown_mib(s)).collect();
    assert!(
        shown.len() >= 5,
        "the verify bar showed only {shown:?}; last screen:\n{last}"
    );
    assert!(
        samples
            .iter()
            .any(|s| s.contains("0/1 files, ") && s.contains("big.bin") && s.contains("ETA")),
        "the file being read was never counted and named"
    );
    let verified =
        format!("verified 1 snapshot(s), 2 entries, 1 files read ({SIZE_MIB}.0 MiB): 0 problem(s)");
    assert!(
        last.contains(&verified)
            && last.contains(&format!("{SIZE_MIB}.00 MiB/{SIZE_MIB}.00 MiB"))
            && last.contains("1/1 files"),
        "{last}"
    );

    // Not on a terminal: nothing but the summary, unless forced.
    let out = s.offsnap(None, &[&"verify", &"--set", &"t", &s.dest()]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), verified);
    let out = s.offsnap(None, &[&"verify", &"--progress", &"--set", &"t", &s.dest()]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{SIZE_MIB}.00 MiB/{SIZE_MIB}.00 MiB")) && err.contains(&verified),
        "{err}"
    );
    // The summary starts a line of its own after the last frame.
    assert!(err.contains(&format!("\n{verified}")), "{err:?}");
    // The bar is verify's own from its first frame.
    assert!(!err.contains("scanning"), "{err}");
}
