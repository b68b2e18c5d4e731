//! Faults, end to end with the real binaries: SIGKILL at random points of
//! backups and prunes (the client, the helper, or both), a full disk on the
//! backup host, and sources that change, cannot be read or vanish while a
//! backup reads them.
//!
//! `OFFSNAP_KILLS=N` sets how many kills the kill loop does,
//! `OFFSNAP_KILL_SEED=S` replays a seed it printed.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use offsnap_tests::privileged::{self, Tmpfs};
use offsnap_tests::random::{Rng, make_tree, mutate};
use offsnap_tests::*;

// ---------------------------------------------------------------------------
// Processes

/// Waits for `child` to end, at most `limit`; a run that outlives it is
/// killed (its whole process group) and the test fails.
fn wait_limited(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            kill_group(child);
            let _ = child.wait();
            panic!("{what} still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// SIGKILLs the process group `child` leads (spawned with `process_group(0)`).
fn kill_group(child: &Child) {
    let pgid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
}

/// Sends `sig` to the process group `child` leads.
fn signal_group(child: &Child, sig: rustix::process::Signal) {
    let pgid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process_group(pgid, sig).unwrap();
}

/// State letter and parent of a process, from `/proc/PID/stat`.
fn proc_state(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold anything, so parse after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut words = rest.split_whitespace();
    let state = words.next()?.chars().next()?;
    let ppid = words.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some((s, _)) if s != 'Z' && s != 'X')
}

/// Whether `pid` is a live helper started through [`pid_wrapper`] (not
/// another process that got its pid since).
fn helper_alive(pid: i32) -> bool {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    alive(pid) && ["offsnap-remote", "helper-with-pid"].contains(&comm.trim())
}

/// Waits until the helper `pid` is gone (or a zombie), at most `limit`.
fn wait_gone(pid: i32, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while helper_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) still running {limit:?} after its client ended"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A helper command that writes its pid to `pidfile` and becomes the real
/// helper (same pid), so a test can kill the helper alone.
fn pid_wrapper(dir: &Path, pidfile: &Path) -> PathBuf {
    let wrapper = dir.join("helper-with-pidfile");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho $$ > '{p}.new' && mv '{p}.new' '{p}'\nexec '{h}' \"$@\"\n",
            p = pidfile.display(),
            h = remote_bin().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

// ---------------------------------------------------------------------------
// Trees

/// Every entry of `root` except those `skip` names (relative path bytes).
fn tree_except(root: &Path, skip: &dyn Fn(&[u8]) -> bool) -> BTreeMap<Vec<u8>, Node> {
    tree(root).into_iter().filter(|(k, _)| !skip(k)).collect()
}

/// [`tree`] of a tree this process may not wholly read (when not root):
/// the `locked` entries (relative paths) are opened to their owner while it
/// is read, then given their modes back, which the result shows.
fn tree_opening(root: &Path, locked: &[&str]) -> BTreeMap<Vec<u8>, Node> {
    let modes: Vec<(&str, u32)> = locked
        .iter()
        .filter_map(|rel| {
            let md = fs::symlink_metadata(root.join(rel)).ok()?;
            Some((*rel, md.permissions().mode() & 0o7777))
        })
        .collect();
    for (rel, _) in &modes {
        let p = root.join(rel);
        let open = if p.is_dir() { 0o700 } else { 0o600 };
        fs::set_permissions(&p, fs::Permissions::from_mode(open)).unwrap();
    }
    let mut t = tree(root);
    for (rel, mode) in &modes {
        fs::set_permissions(root.join(rel), fs::Permissions::from_mode(*mode)).unwrap();
        if let Some(Node::Dir { mode: m, .. } | Node::File { mode: m, .. }) =
            t.get_mut(rel.as_bytes())
        {
            *m = *mode;
        }
    }
    t
}

/// Asserts `got` (a restored tree) holds exactly the entries of `want`.
fn assert_same_entries(want: &BTreeMap<Vec<u8>, Node>, got: &BTreeMap<Vec<u8>, Node>) {
    for (k, v) in want {
        match got.get(k) {
            None => panic!("{} missing from the restore", String::from_utf8_lossy(k)),
            Some(w) => assert!(
                w == v,
                "{} differs: expected {v:?}, restored {w:?}",
                String::from_utf8_lossy(k)
            ),
        }
    }
    for k in got.keys() {
        assert!(
            want.contains_key(k),
            "{} should not have been stored",
            String::from_utf8_lossy(k)
        );
    }
}

/// Asserts a restored tree holds exactly the source's entries but those
/// `skip` names (which must not be there either).
fn assert_same_except(src: &Path, restored: &Path, skip: &dyn Fn(&[u8]) -> bool) {
    assert_same_entries(&tree_except(src, skip), &tree(restored));
}

/// Writes `n` bytes of noise with an mtime from `rng`.
fn noise_file(rng: &mut Rng, path: &Path, n: usize) {
    let data = rng.noise(n);
    write_file(path, &data, 0o644, rng.mtime());
}

// ---------------------------------------------------------------------------
// The kill loop

/// Kills the loop does unless `OFFSNAP_KILLS` says otherwise.
const DEFAULT_KILLS: u64 = 200;
/// Every this many kills a run is let finish and its restore compared.
const CHECK_EVERY: u64 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Work {
    Backup,
    Prune,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum How {
    /// `offsnap` to a local path: the helper runs in the client's process.
    InProcess,
    /// `offsnap --remote-cmd`: the helper is the client's child process.
    Child,
    /// `offsnap-remote prune` alone, as the host's cron runs it.
    HostPrune,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// The process we started (client, or `offsnap-remote prune`).
    Client,
    /// The helper the client started, alone.
    Helper,
    /// The client's whole process group (client and helper).
    Group,
}

#[derive(Default)]
struct Tally {
    kills: u64,
    mid: u64,
    after: u64,
    backup_mid: u64,
    backup_after: u64,
    prune_mid: u64,
    prune_after: u64,
    client: u64,
    helper: u64,
    group: u64,
    checked_restores: u64,
}

struct KillLoop {
    s: Scratch,
    rng: Rng,
    seed: u64,
    wrapper: PathBuf,
    pidfile: PathBuf,
    errfile: PathBuf,
    hour: u32,
    /// Seconds each kind of run takes, roughly (where to aim the kills).
    est: HashMap<(Work, How), f64>,
    /// What is being done, for a failure's message.
    step: String,
    tally: Tally,
}

impl Drop for KillLoop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "kill loop FAILED with OFFSNAP_KILL_SEED={} after {} kill(s), during: {}\n\
                 stderr of the last run:\n{}",
                self.seed,
                self.tally.kills,
                self.step,
                fs::read_to_string(&self.errfile).unwrap_or_default()
            );
        }
    }
}

impl KillLoop {
    fn new(seed: u64) -> KillLoop {
        let s = Scratch::new();
        let pidfile = s.path("helper.pid");
        let wrapper = pid_wrapper(s.dir.path(), &pidfile);
        let errfile = s.path("run.stderr");
        let mut l = KillLoop {
            s,
            rng: Rng::new(seed),
            seed,
            wrapper,
            pidfile,
            errfile,
            hour: 0,
            est: HashMap::new(),
            step: "building the source".into(),
            tally: Tally::default(),
        };
        let tree_dir = l.s.src().join("tree");
        fs::create_dir(&tree_dir).unwrap();
        make_tree(&mut l.rng, &tree_dir, 250);
        fs::create_dir(l.s.src().join("big")).unwrap();
        for name in ["a.bin", "b.bin"] {
            let n = (2 << 20) + l.rng.below(2 << 20) as usize;
            noise_file(&mut l.rng, &l.s.src().join("big").join(name), n);
        }
        l
    }

    fn now(&mut self) -> String {
        self.hour += 1;
        day(0, self.hour * 3600)
    }

    fn big_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.s.src().join("big"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    /// Changes the source: small files, and often one of the big ones
    /// (a region rewritten, appended to, replaced, renamed or touched).
    fn mutate(&mut self) {
        mutate(&mut self.rng, &self.s.src().join("tree"), 6);
        if !self.rng.chance(60) {
            return;
        }
        let bigs = self.big_files();
        let f = bigs[self.rng.below(bigs.len() as u64) as usize].clone();
        let mut data = fs::read(&f).unwrap();
        match self.rng.below(5) {
            0 => {
                let at = self.rng.below(data.len() as u64 - 65536) as usize;
                let patch = self.rng.noise(65536);
                data[at..at + 65536].copy_from_slice(&patch);
                write_file(&f, &data, 0o644, self.rng.mtime());
            }
            1 if data.len() < (5 << 20) => {
                data.extend(self.rng.noise(512 << 10));
                write_file(&f, &data, 0o644, self.rng.mtime());
            }
            2 => {
                let to = f.with_file_name(format!("r{}.bin", self.rng.below(1_000_000)));
                if !to.exists() {
                    fs::rename(&f, to).unwrap();
                }
            }
            3 => set_mtime(&f, self.rng.mtime()),
            _ => {
                let n = (2 << 20) + self.rng.below(2 << 20) as usize;
                noise_file(&mut self.rng, &f, n);
            }
        }
    }

    /// The command line of one run (not started).
    fn command(&mut self, work: Work, how: How, keep: u32) -> Command {
        let now = self.now();
        let keep = keep.to_string();
        let mut cmd = match how {
            How::HostPrune => {
                let mut c = Command::new(remote_bin());
                c.env("OFFSNAP_NOW", &now)
                    .args(["prune", "--set", "t", "--keep-last", &keep, "--root"])
                    .arg(self.s.dest());
                c
            }
            How::InProcess | How::Child => {
                let mut c = self.s.command(Some(&now));
                c.arg(match work {
                    Work::Backup => "backup",
                    Work::Prune => "prune",
                })
                .args(["--set", "t", "--keep-last", &keep]);
                if how == How::Child {
                    c.arg("--remote-cmd").arg(&self.wrapper);
                }
                if work == Work::Backup {
                    c.arg(self.s.src());
                }
                c.arg(self.s.dest());
                c
            }
        };
        let _ = fs::remove_file(&self.pidfile);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&self.errfile).unwrap())
            .process_group(0);
        cmd
    }

    /// A backup let run to its end; returns the new snapshot.
    fn complete_backup(&mut self, how: How, prune: bool) -> String {
        let mut cmd = self.command(Work::Backup, how, 6);
        if !prune {
            cmd.arg("--no-prune");
        }
        let t0 = Instant::now();
        let out = cmd.stdout(Stdio::piped()).output().unwrap();
        self.learn((Work::Backup, how), t0.elapsed().as_secs_f64());
        let err = fs::read_to_string(&self.errfile).unwrap_or_default();
        assert!(
            out.status.success(),
            "an uninterrupted backup failed ({}): {err}",
            out.status
        );
        let snap = stdout(&out).trim().to_string();
        assert!(
            dated_snapshots(&self.s.set_dir()).contains(&snap),
            "{snap} is not there"
        );
        snap
    }

    fn learn(&mut self, kind: (Work, How), secs: f64) {
        let e = self.est.entry(kind).or_insert(secs);
        *e = 0.7 * *e + 0.3 * secs;
    }

    /// Every `CHECK_EVERY` kills: a backup that completes, restored and
    /// compared with the source, leaving no leftovers.
    fn complete_and_compare(&mut self) {
        self.mutate();
        let how = if self.rng.chance(50) {
            How::InProcess
        } else {
            How::Child
        };
        self.step = format!("an uninterrupted backup ({how:?}) and its restore");
        let snap = self.complete_backup(how, true);
        let set = self.s.set_dir();
        assert_eq!(fs::read_link(set.join("latest")).unwrap(), Path::new(&snap));
        for leftovers in ["incomplete", "trash"] {
            let n = fs::read_dir(set.join(".offsnap").join(leftovers))
                .unwrap()
                .count();
            assert_eq!(n, 0, ".offsnap/{leftovers} not cleared by a complete run");
        }
        let restored = self.s.restore(&snap);
        assert_same_tree(&self.s.src(), &restored.join("src"));
        fs::remove_dir_all(&restored).unwrap();
        self.check_store(&dated_snapshots(&set), Work::Backup);
        self.tally.checked_restores += 1;
    }

    /// After a kill: nothing locked, every dated snapshot complete and
    /// intact, nothing but what the run may do changed.
    fn check_store(&mut self, before: &[String], work: Work) {
        let set = self.s.set_dir();
        // A helper whose client was killed before it wrote its pid file
        // may still be starting: it must notice it is alone and go.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !lock_is_free(&set) {
            assert!(Instant::now() < deadline, "the set's lock is still held");
            std::thread::sleep(Duration::from_millis(5));
        }
        let after = dated_snapshots(&set);
        for n in &after {
            assert!(
                set.join(".offsnap/manifests").join(n).is_file(),
                "{n} is under a dated name but has no manifest: half-made"
            );
        }
        let newest = before.last().unwrap();
        assert!(
            after.contains(newest),
            "the newest snapshot {newest} is gone: {after:?}"
        );
        let new: Vec<&String> = after.iter().filter(|n| !before.contains(n)).collect();
        match work {
            Work::Prune => assert!(new.is_empty(), "a prune made {new:?}"),
            Work::Backup => assert!(
                new.len() <= 1 && new.iter().all(|n| *n > newest),
                "a backup made {new:?} after {before:?}"
            ),
        }
        let out = self
            .s
            .offsnap(None, &[&"verify", &"--set", &"t", &"--all", &self.s.dest()]);
        assert!(
            out.status.success(),
            "verify --all after a kill found problems ({}):\n{}{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
    }

    /// Enough snapshots for a prune to have work.
    fn ensure_snapshots(&mut self, n: usize) {
        while dated_snapshots(&self.s.set_dir()).len() < n {
            self.step = "a backup to have something to prune".into();
            mutate(&mut self.rng, &self.s.src().join("tree"), 2);
            self.complete_backup(How::InProcess, false);
        }
    }

    /// One run killed at a random point.
    fn kill_one(&mut self) {
        let work = if self.rng.chance(55) {
            Work::Backup
        } else {
            Work::Prune
        };
        let how = match (work, self.rng.below(100)) {
            (Work::Backup, 0..40) | (Work::Prune, 0..25) => How::InProcess,
            (Work::Backup, _) | (Work::Prune, 25..60) => How::Child,
            (Work::Prune, _) => How::HostPrune,
        };
        let target = match (how, self.rng.below(100)) {
            (How::HostPrune, _) => Target::Client,
            (How::InProcess, p) => {
                if p < 50 {
                    Target::Client
                } else {
                    Target::Group
                }
            }
            (How::Child, 0..35) => Target::Client,
            (How::Child, 35..70) => Target::Helper,
            (How::Child, _) => Target::Group,
        };
        // A prune removes at least one snapshot; a backup's own prune
        // (after it commits) keeps a few.
        let keep = match work {
            Work::Backup => {
                self.mutate();
                4 + self.rng.below(5) as u32
            }
            Work::Prune => {
                self.ensure_snapshots(2);
                let n = dated_snapshots(&self.s.set_dir()).len() as u64;
                1 + self.rng.below(n - 1) as u32
            }
        };

        let est = *self.est.entry((work, how)).or_insert(0.03);
        let delay = Duration::from_secs_f64(est * 1.25 * self.rng.below(10_000) as f64 / 10_000.0);
        self.step = format!(
            "kill {}: {work:?} {how:?} keep-last {keep}, SIGKILL to {target:?} after {delay:?}",
            self.tally.kills + 1
        );
        let before = dated_snapshots(&self.s.set_dir());

        let t0 = Instant::now();
        let mut child = self.command(work, how, keep).spawn().unwrap();
        let mut finished = None;
        while t0.elapsed() < delay {
            if let Some(st) = child.try_wait().unwrap() {
                finished = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        if finished.is_some() {
            self.learn((work, how), t0.elapsed().as_secs_f64());
        }
        // Whether the SIGKILL caught the process it was meant for running.
        let mid = match (target, finished) {
            (_, Some(_)) => false,
            (Target::Client, None) => {
                let _ = child.kill();
                true
            }
            (Target::Group, None) => {
                kill_group(&child);
                true
            }
            (Target::Helper, None) => match self.helper_pid(&mut child) {
                Some(pid)
                    if proc_state(pid)
                        .is_some_and(|(s, p)| s != 'Z' && s != 'X' && p == child.id() as i32) =>
                {
                    rustix::process::kill_process(
                        rustix::process::Pid::from_raw(pid).unwrap(),
                        rustix::process::Signal::KILL,
                    )
                    .unwrap();
                    true
                }
                _ => false,
            },
        };
        let status = match finished {
            Some(st) => st,
            None => wait_limited(&mut child, Duration::from_secs(60), "a client"),
        };
        if mid && est < t0.elapsed().as_secs_f64() {
            // It ran longer than thought: aim later next time.
            self.learn((work, how), t0.elapsed().as_secs_f64());
        }
        // A helper left without its client must notice and go.
        if how == How::Child
            && let Some(pid) = read_pid(&self.pidfile)
        {
            wait_gone(pid, Duration::from_secs(30), "the helper");
        }
        let err = fs::read_to_string(&self.errfile).unwrap_or_default();
        // A process that ended by itself between our look and the signal
        // was not interrupted: the client then exits with a status (and a
        // client whose helper dies fails, and says so).
        let mid = mid
            && match target {
                Target::Client | Target::Group => status.signal() == Some(libc::SIGKILL),
                Target::Helper => !status.success(),
            };
        if mid && target == Target::Helper {
            assert_eq!(
                status.code(),
                Some(1),
                "the client of a killed helper must fail with status 1: {err}"
            );
            assert!(err.contains("offsnap: "), "{err}");
        }
        if !mid {
            assert!(
                status.success(),
                "an uninterrupted {work:?} failed ({status}): {err}"
            );
        }
        self.tally.kills += 1;
        match (work, mid) {
            (Work::Backup, true) => self.tally.backup_mid += 1,
            (Work::Backup, false) => self.tally.backup_after += 1,
            (Work::Prune, true) => self.tally.prune_mid += 1,
            (Work::Prune, false) => self.tally.prune_after += 1,
        }
        if mid {
            self.tally.mid += 1;
        } else {
            self.tally.after += 1;
        }
        match target {
            Target::Client => self.tally.client += 1,
            Target::Helper => self.tally.helper += 1,
            Target::Group => self.tally.group += 1,
        }
        self.step.push_str(if mid {
            " (landed mid-run); checking"
        } else {
            " (landed after the end); checking"
        });
        self.check_store(&before, work);
    }

    /// The helper's pid once its wrapper wrote it; `None` if the client
    /// ended first.
    fn helper_pid(&self, child: &mut Child) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(pid) = read_pid(&self.pidfile) {
                return Some(pid);
            }
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            assert!(Instant::now() < deadline, "the helper never started");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn read_pid(pidfile: &Path) -> Option<i32> {
    fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

#[test]
fn killed_backups_and_prunes_leave_whole_snapshots_and_the_next_run_works() {
    let kills = env_u64("OFFSNAP_KILLS").unwrap_or(DEFAULT_KILLS);
    let seed = env_u64("OFFSNAP_KILL_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    eprintln!("kill loop: {kills} kills, OFFSNAP_KILL_SEED={seed}");
    let started = Instant::now();
    let mut l = KillLoop::new(seed);
    l.step = "the first backup".into();
    l.complete_backup(How::InProcess, true);
    for i in 0..kills {
        if i > 0 && i % CHECK_EVERY == 0 {
            l.complete_and_compare();
        }
        l.kill_one();
    }
    l.complete_and_compare();
    let t = &l.tally;
    assert_eq!(t.kills, kills);
    eprintln!(
        "kill loop (OFFSNAP_KILL_SEED={seed}): {} kills in {:.1}s: {} landed mid-run, {} after the run ended \
         (backups {} mid / {} after, prunes {} mid / {} after; SIGKILL to the client {}, the helper {}, \
         the process group {}); {} complete runs restored exactly",
        t.kills,
        started.elapsed().as_secs_f64(),
        t.mid,
        t.after,
        t.backup_mid,
        t.backup_after,
        t.prune_mid,
        t.prune_after,
        t.client,
        t.helper,
        t.group,
        t.checked_restores
    );
    // Most kills must really interrupt something, or the loop proves little.
    assert!(
        t.kills < 20 || t.mid * 2 >= t.kills,
        "only {} of {} kills landed mid-run",
        t.mid,
        t.kills
    );
}

// ---------------------------------------------------------------------------
// A full disk on the backup host

/// `offsnap backup` of `src` into `dest` (set `t`), through a helper
/// process when `helper` is given.
fn backup_to(s: &Scratch, now: &str, dest: &Path, helper: Option<&Path>) -> Output {
    let mut cmd = s.command(Some(now));
    cmd.args(["backup", "--set", "t"]);
    if let Some(h) = helper {
        cmd.arg("--remote-cmd").arg(h);
    }
    cmd.arg(s.src()).arg(dest).output().unwrap()
}

#[test]
#[cfg_attr(offsnap_not_root, ignore = "needs root to mount a small tmpfs")]
fn a_full_disk_fails_the_run_cleanly_and_the_next_run_works() {
    let s = Scratch::new();
    let mnt = s.path("small-disk");
    fs::create_dir(&mnt).unwrap();
    let disk = match Tmpfs::mount(&mnt, "8m") {
        Ok(d) => d,
        Err(why) => return privileged::skip(&format!("the full-disk test needs a tmpfs: {why}")),
    };
    let dest = disk.path().join("backups");
    let set = dest.join("t");
    let mut rng = Rng::new(28);
    for d in 0..4 {
        let dir = s.src().join(format!("d{d}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..25 {
            let n = rng.below(3000) as usize;
            let data = rng.bytes(n);
            write_file(&dir.join(format!("f{f}")), &data, 0o644, rng.mtime());
        }
    }
    let out = backup_to(&s, &day(0, 0), &dest, None);
    assert_ok(&out);
    let first = stdout(&out).trim().to_string();
    let first_copy = tree(&set.join(&first));

    // Three files of 4 MiB cannot fit in 8 MiB: through the in-process
    // helper, then through a helper process.
    fs::create_dir(s.src().join("big")).unwrap();
    for i in 0..3 {
        noise_file(&mut rng, &s.src().join(format!("big/{i}.bin")), 4 << 20);
    }
    let helper = remote_bin();
    for (i, helper) in [None, Some(helper.as_path())].into_iter().enumerate() {
        let out = backup_to(&s, &day(1, i as u32), &dest, helper);
        let err = stderr(&out);
        eprintln!(
            "disk full ({}): {}",
            if helper.is_some() {
                "helper process"
            } else {
                "in-process helper"
            },
            err.trim()
        );
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("no space left on the disk holding the backups"),
            "{err}"
        );
        assert!(
            stdout(&out).trim().is_empty(),
            "a snapshot name was printed"
        );
        assert_eq!(dated_snapshots(&set), vec![first.clone()]);
        assert!(lock_is_free(&set), "a failed run left its lock");
        assert_eq!(
            fs::read_dir(set.join(".offsnap/incomplete"))
                .unwrap()
                .count(),
            0,
            "a failed run left its partial snapshot (and the space it holds)"
        );
        assert_eq!(
            tree(&set.join(&first)),
            first_copy,
            "the earlier snapshot changed"
        );
        let out = s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &dest]);
        assert_ok(&out);
    }

    // With the big files gone, the next run fits and restores exactly.
    fs::remove_dir_all(s.src().join("big")).unwrap();
    let out = backup_to(&s, &day(2, 0), &dest, None);
    assert_ok(&out);
    let next = stdout(&out).trim().to_string();
    assert_eq!(dated_snapshots(&set), vec![first, next.clone()]);
    let to = s.path("restored");
    let out = s.offsnap(
        None,
        &[
            &"restore",
            &"--set",
            &"t",
            &"--snapshot",
            &next,
            &dest,
            &"--to",
            &to,
        ],
    );
    assert_ok(&out);
    assert_same_tree(&s.src(), &to.join("src"));
    let out = s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &dest]);
    assert_ok(&out);
}

/// Bytes free for files on the filesystem holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let st = rustix::fs::statvfs(path).unwrap();
    st.f_bavail * st.f_frsize
}

#[test]
#[cfg_attr(offsnap_not_root, ignore = "needs root to mount a small tmpfs")]
fn a_disk_that_fills_as_the_snapshot_is_committed_gets_its_space_back() {
    let s = Scratch::new();
    let mnt = s.path("small-disk");
    fs::create_dir(&mnt).unwrap();
    let disk = match Tmpfs::mount(&mnt, "1m") {
        Ok(d) => d,
        Err(why) => return privileged::skip(&format!("the full-disk test needs a tmpfs: {why}")),
    };
    let dest = disk.path().join("backups");
    let set = dest.join("t");
    write_file(&s.src().join("first"), b"first", 0o644, (1_700_000_000, 0));
    let out = backup_to(&s, &day(0, 0), &dest, None);
    assert_ok(&out);
    let first = stdout(&out).trim().to_string();
    // A new file exactly as large as the space left: its data fits, the
    // new snapshot's manifest, written last, does not.
    let free = free_bytes(disk.path());
    let mut rng = Rng::new(29);
    noise_file(&mut rng, &s.src().join("fills-the-disk"), free as usize);
    let out = backup_to(&s, &day(1, 0), &dest, None);
    let err = stderr(&out);
    eprintln!("disk full at the commit: {}", err.trim());
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("committing snapshot"),
        "not full at the commit: {err}"
    );
    assert!(
        err.contains("no space left on the disk holding the backups"),
        "{err}"
    );
    assert_eq!(dated_snapshots(&set), vec![first.clone()]);
    assert!(lock_is_free(&set), "a failed run left its lock");
    // What the run wrote is gone at once, not at the next run.
    assert_eq!(
        fs::read_dir(set.join(".offsnap/incomplete"))
            .unwrap()
            .count(),
        0,
        "the failed run left its partial snapshot"
    );
    assert_eq!(free_bytes(disk.path()), free, "the failed run kept space");
    let out = s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &dest]);
    assert_ok(&out);

    fs::remove_file(s.src().join("fills-the-disk")).unwrap();
    let out = backup_to(&s, &day(2, 0), &dest, None);
    assert_ok(&out);
    let next = stdout(&out).trim().to_string();
    let to = s.path("restored");
    let out = s.offsnap(
        None,
        &[
            &"restore",
            &"--set",
            &"t",
            &"--snapshot",
            &next,
            &dest,
            &"--to",
            &to,
        ],
    );
    assert_ok(&out);
    assert_same_tree(&s.src(), &to.join("src"));
}

// ---------------------------------------------------------------------------
// Sources that change, cannot be read, or vanish during a backup

/// Appends to `files` in turn until told to stop: each file's size grows
/// with every write, so a read of it never sees it still.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Writer {
    fn start(files: Vec<PathBuf>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            use std::io::Write;
            let mut handles: Vec<fs::File> = files
                .iter()
                .map(|f| fs::OpenOptions::new().append(true).open(f).unwrap())
                .collect();
            let mut writes = 0u64;
            while !flag.load(Ordering::Relaxed) {
                for h in &mut handles {
                    h.write_all(b"still being written\n").unwrap();
                    writes += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            writes
        });
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops writing; returns how many writes were made.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_file_that_keeps_changing_is_reported_and_the_rest_is_stored() {
    let s = Scratch::new();
    let mut rng = Rng::new(12);
    make_tree(&mut rng, &s.src(), 60);
    fs::create_dir(s.src().join("hot")).unwrap();
    // In the base snapshot and large: it will travel as a delta.
    noise_file(&mut rng, &s.src().join("hot/growing.log"), 6 << 20);
    let first = s.backup(&day(0, 0));
    assert_same_tree(&s.src(), &s.restore(&first).join("src"));

    // New and large: it will be sent whole.
    noise_file(&mut rng, &s.src().join("hot/new.bin"), 12 << 20);
    mutate(&mut rng, &s.src(), 5);
    let hot = [s.src().join("hot/growing.log"), s.src().join("hot/new.bin")];
    let writer = Writer::start(hot.to_vec());
    let out = s.offsnap(
        Some(&day(1, 0)),
        &[&"backup", &"--set", &"t", &s.src(), &s.dest()],
    );
    let writes = writer.stop();
    let err = stderr(&out);
    eprintln!("changing files ({writes} writes meanwhile): {}", err.trim());
    assert_eq!(out.status.code(), Some(3), "{err}");
    for f in &hot {
        assert!(
            err.contains(&format!(
                "offsnap: {}: kept changing while being read; not backed up",
                f.display()
            )),
            "{err}"
        );
    }
    assert!(err.contains("is partial: 2 item(s)"), "{err}");
    // The snapshot holds everything else, exactly.
    let second = stdout(&out).trim().to_string();
    let restored = s.restore(&second);
    let is_hot = |k: &[u8]| k == b"hot/growing.log" || k == b"hot/new.bin";
    assert_same_except(&s.src(), &restored.join("src"), &is_hot);
    let out = s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &s.dest()]);
    assert_ok(&out);

    // Quiet again, both files are stored.
    let third = s.backup(&day(2, 0));
    assert_same_tree(&s.src(), &s.restore(&third).join("src"));
}

#[test]
fn unreadable_files_and_directories_are_reported_and_the_rest_is_stored() {
    // Root reads everything: the client then runs as nobody, on a source
    // nobody owns.
    let root = privileged::is_root();
    if root && !privileged::have_setpriv() {
        return privileged::skip("reading as an unprivileged user needs setpriv (util-linux)");
    }
    let s = Scratch::new();
    let src = s.src();
    let mut rng = Rng::new(21);
    make_tree(&mut rng, &src, 80);
    fs::create_dir(src.join("locked")).unwrap();
    write_file(
        &src.join("locked/inside"),
        b"behind 000",
        0o644,
        (1_700_000_000, 0),
    );
    fs::create_dir(src.join("no-search")).unwrap();
    write_file(
        &src.join("no-search/listed"),
        b"listed, not reachable",
        0o644,
        (1_700_000_001, 0),
    );
    write_file(
        &src.join("secret.bin"),
        b"mode 0000",
        0o000,
        (1_700_000_002, 0),
    );
    write_file(
        &src.join("zz-after"),
        b"after them all",
        0o644,
        (1_700_000_003, 0),
    );
    let lock_down = |locked: bool| {
        let modes = if locked {
            (0o000, 0o600)
        } else {
            (0o755, 0o755)
        };
        fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(modes.0)).unwrap();
        fs::set_permissions(src.join("no-search"), fs::Permissions::from_mode(modes.1)).unwrap();
        set_mtime(&src.join("locked"), (1_600_000_000, 1));
        set_mtime(&src.join("no-search"), (1_600_000_000, 2));
        set_mtime(&src, (1_600_000_000, 3));
    };
    lock_down(true);
    if root {
        fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let chown = Command::new("chown")
            .arg("-hR")
            .arg(format!("{0}:{0}", privileged::NOBODY))
            .arg(&src)
            .status()
            .unwrap();
        assert!(chown.success());
        for d in ["dest", "cache", "config", "state"] {
            fs::create_dir(s.path(d)).unwrap();
            privileged::give_to_nobody(&s.path(d));
        }
    }
    let run = |now: &str| {
        let mut cmd = if root {
            privileged::as_nobody(&offsnap_bin())
        } else {
            Command::new(offsnap_bin())
        };
        s.setup(&mut cmd, Some(now));
        cmd.args(["backup", "--set", "t"])
            .arg(&src)
            .arg(s.dest())
            .output()
            .unwrap()
    };
    let out = run(&day(0, 0));
    let err = stderr(&out);
    eprintln!("unreadable: {}", err.trim());
    assert_eq!(out.status.code(), Some(3), "{err}");
    let unreadable = [
        src.join("locked"),
        src.join("no-search/listed"),
        src.join("secret.bin"),
    ];
    for p in &unreadable {
        assert!(
            err.contains(&format!("offsnap: {}: ", p.display())),
            "{} not reported:\n{err}",
            p.display()
        );
    }
    assert!(
        err.contains(&format!("is partial: {} item(s)", unreadable.len())),
        "{err}"
    );
    // Everything else is stored exactly; the unreadable directories as
    // what could be seen of them (empty).
    let snap = stdout(&out).trim().to_string();
    let restored = s.restore(&snap);
    let left_out =
        |k: &[u8]| k == b"secret.bin" || k.starts_with(b"locked/") || k.starts_with(b"no-search/");
    let locked = ["locked", "no-search", "secret.bin"];
    let want: BTreeMap<_, _> = tree_opening(&src, &locked)
        .into_iter()
        .filter(|(k, _)| !left_out(k))
        .collect();
    assert_same_entries(&want, &tree_opening(&restored.join("src"), &locked));
    for d in ["locked", "no-search"] {
        // So that the scratch area can be removed when not root.
        let p = restored.join("src").join(d);
        fs::set_permissions(p, fs::Permissions::from_mode(0o700)).unwrap();
    }

    // Readable again, everything is stored.
    lock_down(false);
    fs::set_permissions(src.join("secret.bin"), fs::Permissions::from_mode(0o400)).unwrap();
    let out = run(&day(1, 0));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let snap = stdout(&out).trim().to_string();
    assert_same_tree(&src, &s.restore(&snap).join("src"));
}

/// Runs `offsnap backup` of `src/` (set `t`), pauses it (client and its
/// in-process helper) as soon as the helper starts writing the source's
/// first file in walk order, calls `meanwhile`, and lets it finish.
fn backup_paused_at_first_file(s: &Scratch, now: &str, meanwhile: impl FnOnce()) -> Output {
    let mut child = s
        .command(Some(now))
        .args(["backup", "--set", "t"])
        .arg(s.src())
        .arg(s.dest())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let incomplete = s.set_dir().join(".offsnap/incomplete");
    let deadline = Instant::now() + Duration::from_secs(60);
    let writing = || {
        fs::read_dir(&incomplete).ok().is_some_and(|rd| {
            rd.flatten().any(|run| {
                fs::read_dir(run.path().join("tree/src")).is_ok_and(|mut d| d.next().is_some())
            })
        })
    };
    while !writing() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it wrote anything"
        );
        assert!(Instant::now() < deadline, "the backup never started");
        std::thread::sleep(Duration::from_micros(500));
    }
    signal_group(&child, rustix::process::Signal::STOP);
    meanwhile();
    signal_group(&child, rustix::process::Signal::CONT);
    let status = wait_limited(&mut child, Duration::from_secs(120), "the backup");
    let mut out = child.wait_with_output().unwrap();
    out.status = status;
    out
}

#[test]
fn files_that_vanish_during_a_backup_are_reported_and_the_run_goes_on() {
    let s = Scratch::new();
    let src = s.src();
    let mut rng = Rng::new(33);
    fs::create_dir(src.join("z-rest")).unwrap();
    make_tree(&mut rng, &src.join("z-rest"), 40);
    // The first run has no base: a file and a directory are listed with
    // their parent, and gone before they are read. The second has one, so
    // a first pass scans everything before the second reads: they are
    // scanned, then gone.
    for run in 0..2u32 {
        // Walk order: a big new file first, then what will vanish, then the rest.
        if run > 0 {
            fs::remove_file(src.join(format!("a-big{}.bin", run - 1))).unwrap();
        }
        noise_file(&mut rng, &src.join(format!("a-big{run}.bin")), 32 << 20);
        let file = src.join(format!("b-gone{run}.txt"));
        let dir = src.join(format!("c-gone{run}"));
        write_file(&file, b"here at the scan", 0o644, (1_700_000_000, 0));
        fs::create_dir(&dir).unwrap();
        write_file(&dir.join("inside"), b"also gone", 0o644, (1_700_000_001, 0));
        mutate(&mut rng, &src.join("z-rest"), 5);
        let out = backup_paused_at_first_file(&s, &day(run, 0), || {
            fs::remove_file(&file).unwrap();
            fs::remove_dir_all(&dir).unwrap();
        });
        let err = stderr(&out);
        eprintln!("vanished (run {run}): {}", err.trim());
        assert_eq!(out.status.code(), Some(3), "{err}");
        for p in [&file, &dir] {
            assert!(
                err.contains(&format!(
                    "offsnap: {}: no such file or directory",
                    p.display()
                )),
                "{} not reported:\n{err}",
                p.display()
            );
        }
        // The rest is stored: the snapshot is the source as it is now.
        let snap = stdout(&out).trim().to_string();
        assert_same_tree(&src, &s.restore(&snap).join("src"));
    }
    let snap = s.backup(&day(2, 0));
    assert_same_tree(&src, &s.restore(&snap).join("src"));
}

#[test]
fn a_directory_swapped_for_a_symlink_mid_run_never_leads_outside() {
    let s = Scratch::new();
    let src = s.src();
    let outside = s.path("outside");
    fs::create_dir(&outside).unwrap();
    write_file(
        &outside.join("z-small"),
        b"secret",
        0o644,
        (1_700_000_000, 0),
    );
    let mut rng = Rng::new(44);
    fs::create_dir(src.join("m")).unwrap();
    noise_file(&mut rng, &src.join("m/a-big"), 32 << 20);
    write_file(
        &src.join("m/z-small"),
        b"original",
        0o644,
        (1_700_000_000, 0),
    );
    // While the run reads m/a-big, m becomes a symlink to outside: the
    // walk, already inside m through its handle, goes on in the real m.
    let out = backup_paused_at_first_file(&s, &day(0, 0), || {
        fs::rename(src.join("m"), s.path("m.moved")).unwrap();
        std::os::unix::fs::symlink(&outside, src.join("m")).unwrap();
    });
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    let snap = stdout(&out).trim().to_string();
    let stored = s.set_dir().join(&snap).join("src/m");
    assert_eq!(fs::read(stored.join("z-small")).unwrap(), b"original");
    for e in walk_all(&s.set_dir().join(&snap)) {
        if e.is_file() {
            assert_ne!(
                fs::read(&e).unwrap(),
                b"secret",
                "{} came from outside",
                e.display()
            );
        }
    }
    // Swapped back: the next run stores the source as it is.
    fs::remove_file(src.join("m")).unwrap();
    fs::rename(s.path("m.moved"), src.join("m")).unwrap();
    let next = s.backup(&day(1, 0));
    assert_same_tree(&src, &s.restore(&next).join("src"));
    // And a symlink where a directory was is stored as a symlink.
    fs::rename(src.join("m"), s.path("m.moved")).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("m")).unwrap();
    let last = s.backup(&day(2, 0));
    let stored = s.set_dir().join(&last).join("src/m");
    assert!(
        fs::symlink_metadata(&stored)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_same_tree(&src, &s.restore(&last).join("src"));
}

/// Every path under `root`, not following symlinks.
fn walk_all(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(root).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_all(&p));
        }
        out.push(p);
    }
    out
}

#[test]
#[cfg_attr(offsnap_not_root, ignore = "needs root to mount a small tmpfs")]
fn a_full_cache_disk_on_the_client_fails_the_run_cleanly() {
    // The client keeps per-file state of a big run (the contents it has
    // listed, files it may have to send again) in scratch files in its
    // cache directory: a full one must stop the run with an error naming
    // it, leave the backups as they were, and cost nothing once it has room.
    let s = Scratch::in_memory();
    let mnt = s.path("small-cache");
    fs::create_dir(&mnt).unwrap();
    let disk = match Tmpfs::mount(&mnt, "64k") {
        Ok(d) => d,
        Err(why) => return privileged::skip(&format!("the full-cache test needs a tmpfs: {why}")),
    };
    // 10,000 files: 160 KB of listed contents alone, in a cache of 64 KiB.
    let mut rng = Rng::new(31);
    for d in 0..10 {
        let dir = s.src().join(format!("d{d}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..1000 {
            let data = rng.bytes(40);
            write_file(&dir.join(format!("f{f}")), &data, 0o644, rng.mtime());
        }
    }
    let dest = s.dest();
    let set = dest.join("t");
    let helper = remote_bin();
    for (i, helper) in [None, Some(helper.as_path())].into_iter().enumerate() {
        let mut cmd = s.command(Some(&day(0, i as u32)));
        cmd.env("XDG_CACHE_HOME", disk.path());
        cmd.args(["backup", "--set", "t"]);
        if let Some(h) = helper {
            cmd.arg("--remote-cmd").arg(h);
        }
        let out = cmd.arg(s.src()).arg(&dest).output().unwrap();
        let err = stderr(&out);
        eprintln!(
            "cache full (helper {helper:?}): {} {}",
            out.status,
            err.trim()
        );
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&*disk.path().to_string_lossy()), "{err}");
        assert!(err.contains("No space left on device"), "{err}");
        assert!(
            stdout(&out).trim().is_empty(),
            "a snapshot name was printed"
        );
        assert!(dated_snapshots(&set).is_empty());
        assert!(lock_is_free(&set), "a failed run left its lock");
    }
    // With room in the cache the same backup goes through and restores.
    let name = s.backup(&day(1, 0));
    assert_same_tree(&s.src(), &s.restore(&name).join("src"));
}
