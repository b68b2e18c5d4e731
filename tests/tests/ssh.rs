//! offsnap over SSH against a real OpenSSH server on 127.0.0.1 with
//! throwaway keys: backups and restores, strict host keys, login failures,
//! a confined key, a server killed mid-run, `~/.ssh/config` aliases,
//! three passphrase tries on a terminal (tmux).
//!
//! Skipped (with a message) where OpenSSH's sshd is not installed;
//! `OFFSNAP_REQUIRE_SSHD=1` (CI) makes that a failure.

#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use offsnap_tests::random::{Rng, make_tree};
use offsnap_tests::sshd::{Sshd, keygen};
use offsnap_tests::*;

/// A scratch area, a server, and a HOME of our own (known_hosts, config).
struct Env {
    s: Scratch,
    sshd: Sshd,
    home: PathBuf,
}

impl Env {
    fn new() -> Option<Env> {
        let sshd = Sshd::start()?;
        let s = Scratch::new();
        let home = s.path("home");
        fs::create_dir_all(home.join(".ssh")).unwrap();
        Some(Env { s, sshd, home })
    }

    fn trust_host(&self) {
        fs::write(self.known_hosts(), self.sshd.known_hosts_line() + "\n").unwrap();
    }

    fn known_hosts(&self) -> PathBuf {
        self.home.join(".ssh/known_hosts")
    }

    /// `user@127.0.0.1:PATH`.
    fn dest(&self, path: &Path) -> String {
        format!("{}@127.0.0.1:{}", self.sshd.user, path.display())
    }

    fn remote_cmd(now: &str) -> String {
        format!("env OFFSNAP_NOW={now} {}", remote_bin().display())
    }

    /// `offsnap ARGS` with our HOME, no agent, no terminal.
    fn run(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
        let mut cmd = Command::new("setsid");
        cmd.arg("-w").arg(offsnap_bin());
        for a in args {
            cmd.arg(a.as_ref());
        }
        cmd.env("HOME", &self.home)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("OFFSNAP_NOW")
            .current_dir(self.s.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A backup of `src/` to `dest` over SSH with the test key.
    fn backup(&self, now: &str, dest: &Path, extra: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
        let port = self.sshd.port.to_string();
        let cmd = Self::remote_cmd(now);
        let d = self.dest(dest);
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"backup",
            &"--set",
            &"t",
            &"-p",
            &port,
            &"-i",
            &self.sshd.client_key,
            &"--remote-cmd",
            &cmd,
        ];
        args.extend_from_slice(extra);
        let src = self.s.src();
        args.push(&src);
        args.push(&d);
        self.run(&args)
    }

    fn restore(&self, dest: &Path, snap: &str) -> PathBuf {
        let to = self.s.path(&format!("restored-{snap}"));
        let port = self.sshd.port.to_string();
        let cmd = Self::remote_cmd(&day(0, 0));
        let url = format!(
            "ssh://{}@127.0.0.1:{port}{}",
            self.sshd.user,
            dest.display()
        );
        let out = self.run(&[
            &"restore",
            &"--set",
            &"t",
            &"--snapshot",
            &snap,
            &"-i",
            &self.sshd.client_key,
            &"--remote-cmd",
            &cmd,
            &url,
            &"--to",
            &to,
        ]);
        assert_ok(&out);
        to
    }
}

#[test]
#[cfg_attr(
    offsnap_no_sshd,
    ignore = "needs OpenSSH sshd and ssh-keygen (apt-get install openssh-server)"
)]
fn backup_list_and_restore_over_ssh() {
    let Some(e) = Env::new() else { return };
    e.trust_host();
    let mut rng = Rng::new(11);
    make_tree(&mut rng, &e.s.src(), 80);
    let dest = e.s.dest();
    let out = e.backup(&day(0, 0), &dest, &[]);
    assert_ok(&out);
    let first = stdout(&out).trim().to_string();
    write_file(
        &e.s.src().join("changed.txt"),
        b"new content",
        0o644,
        (1_750_000_000, 1),
    );
    let out = e.backup(&day(1, 0), &dest, &[]);
    assert_ok(&out);
    let second = stdout(&out).trim().to_string();

    // Hard links on the host between the two snapshots.
    let set = dest.join("t");
    let (a, b) = (set.join(&first), set.join(&second));
    let ta = tree(&a);
    let mut linked = 0;
    for (rel, node) in tree(&b) {
        if matches!(node, Node::File { .. }) && ta.get(&rel) == Some(&node) {
            let rel = os(&rel);
            assert_eq!(inode(&a.join(&rel)), inode(&b.join(&rel)));
            linked += 1;
        }
    }
    assert!(linked > 10, "only {linked} files linked");

    // `snapshots` over SSH, and restores equal to the source.
    let port = e.sshd.port.to_string();
    let cmd = Env::remote_cmd(&day(2, 0));
    let d = e.dest(&dest);
    let out = e.run(&[
        &"snapshots",
        &"--set",
        &"t",
        &"-p",
        &port,
        &"-i",
        &e.sshd.client_key,
        &"--remote-cmd",
        &cmd,
        &d,
    ]);
    assert_ok(&out);
    let names: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(names, vec![first.clone(), second.clone()]);
    assert_same_tree(&e.s.src(), &e.restore(&dest, &second).join("src"));
    assert_same_tree(&a.join("src"), &e.restore(&dest, &first).join("src"));

    // --if-older over SSH: one session lists the set, then backs up (the
    // newest snapshot is months old), or ends (it is an hour old).
    let hour_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string();
    let out = e.backup(&hour_ago, &dest, &[&"--if-older", &"1d"]);
    assert_ok(&out);
    let third = stdout(&out).trim().to_string();
    let before = dated_snapshots(&set);
    assert_eq!(before.last(), Some(&third));
    let out = e.backup(&hour_ago, &dest, &[&"--if-older", &"1d"]);
    assert_ok(&out);
    assert_eq!(stdout(&out), "", "a recent set is not backed up again");
    assert_eq!(dated_snapshots(&set), before);
    assert_same_tree(&e.s.src(), &e.restore(&dest, &third).join("src"));
}

#[test]
#[cfg_attr(
    offsnap_no_sshd,
    ignore = "needs OpenSSH sshd and ssh-keygen (apt-get install openssh-server)"
)]
fn host_keys_are_checked_strictly() {
    let Some(e) = Env::new() else { return };
    write_file(&e.s.src().join("f"), b"f", 0o644, (1_700_000_000, 0));
    let dest = e.s.dest();

    // Unknown host: refused, with the fingerprint and the way to accept it.
    let out = e.backup(&day(0, 0), &dest, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("not a known host")
            && err.contains("SHA256:")
            && err.contains("--accept-new-host-key"),
        "{err}"
    );
    assert!(!dest.exists(), "something was written for an unknown host");

    // --accept-new-host-key learns it.
    let out = e.backup(&day(0, 0), &dest, &[&"--accept-new-host-key"]);
    assert_ok(&out);
    let kh = fs::read_to_string(e.known_hosts()).unwrap();
    let key_b64 = e.sshd.host_key_pub.split_whitespace().nth(1).unwrap();
    assert!(kh.contains(key_b64), "{kh}");
    assert_eq!(dated_snapshots(&dest.join("t")).len(), 1);
    // Known now: plain runs work, also once known_hosts is hashed.
    assert_ok(&e.backup(&day(1, 0), &dest, &[]));
    let st = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(e.known_hosts())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let hashed = fs::read_to_string(e.known_hosts()).unwrap();
    let mut lines = hashed.lines().filter(|l| !l.trim().is_empty());
    assert!(lines.all(|l| l.starts_with("|1|")), "{hashed}");
    let out = e.backup(&day(1, 600), &dest, &[]);
    assert_ok(&out);
    let _ = fs::remove_file(e.known_hosts().with_extension("old"));

    // A changed key: refused, even with --accept-new-host-key; nothing written.
    let other = e.s.path("other_host_key");
    keygen(&other, "", "impostor");
    let impostor = fs::read_to_string(other.with_extension("pub")).unwrap();
    fs::write(
        e.known_hosts(),
        format!("[127.0.0.1]:{} {}", e.sshd.port, impostor),
    )
    .unwrap();
    for extra in [
        &[][..],
        &[&"--accept-new-host-key" as &dyn AsRef<std::ffi::OsStr>][..],
    ] {
        let out = e.backup(&day(2, 0), &dest, extra);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("HAS CHANGED"), "{}", stderr(&out));
        assert_eq!(dated_snapshots(&dest.join("t")).len(), 3);
    }
}

#[test]
#[cfg_attr(
    offsnap_no_sshd,
    ignore = "needs OpenSSH sshd and ssh-keygen (apt-get install openssh-server)"
)]
fn login_failures_are_clear() {
    let Some(e) = Env::new() else { return };
    e.trust_host();
    write_file(&e.s.src().join("f"), b"f", 0o644, (1_700_000_000, 0));
    let dest = e.s.dest();

    // A key the server does not know.
    let stranger = e.s.path("stranger");
    keygen(&stranger, "", "stranger");
    let port = e.sshd.port.to_string();
    let d = e.dest(&dest);
    let out = e.run(&[
        &"backup",
        &"--set",
        &"t",
        &"-p",
        &port,
        &"-i",
        &stranger,
        &e.s.src(),
        &d,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refused every key"),
        "{}",
        stderr(&out)
    );

    // An encrypted key, authorized, but no terminal to ask for its passphrase.
    let locked = e.s.path("locked");
    keygen(&locked, "correct horse", "locked");
    e.sshd
        .authorize(&[fs::read_to_string(locked.with_extension("pub")).unwrap()]);
    let out = e.run(&[
        &"backup",
        &"--set",
        &"t",
        &"-p",
        &port,
        &"-i",
        &locked,
        &e.s.src(),
        &d,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("encrypted") && err.contains("no terminal") && err.contains("ssh-add"),
        "{err}"
    );
    assert!(!dest.exists());
}

#[test]
#[cfg_attr(
    offsnap_no_sshd,
    ignore = "needs OpenSSH sshd and ssh-keygen (apt-get install openssh-server)"
)]
fn a_confined_key_backs_up_only_into_its_root() {
    let Some(e) = Env::new() else { return };
    e.trust_host();
    write_file(&e.s.src().join("f"), b"f", 0o644, (1_700_000_000, 0));
    let root = e.s.path("confined");
    e.sshd.authorize(&[format!(
        "command=\"env OFFSNAP_NOW={} {} serve --root {} --append-only\",restrict {}",
        day(0, 0),
        remote_bin().display(),
        root.display(),
        e.sshd.client_pub()
    )]);
    // The client's own --remote-cmd is ignored by sshd: the forced command runs.
    let out = e.backup(&day(5, 0), &root, &[]);
    assert_ok(&out);
    let snaps = dated_snapshots(&root.join("t"));
    assert_eq!(
        snaps,
        vec!["2026-01-01T000000Z".to_string()],
        "the forced command's clock names it"
    );

    // Pruning through the confined key is refused; the snapshot stays.
    let port = e.sshd.port.to_string();
    let d = e.dest(&root);
    let out = e.run(&[
        &"prune",
        &"--set",
        &"t",
        &"--keep-last",
        &"1",
        &"-p",
        &port,
        &"-i",
        &e.sshd.client_key,
        &d,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("append-only"), "{}", stderr(&out));
    assert_eq!(dated_snapshots(&root.join("t")).len(), 1);

    // Asking for another root: refused, nothing touched there.
    for other in [PathBuf::from("/"), e.s.path("elsewhere")] {
        let out = e.backup(&day(6, 0), &other, &[]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("may only use"), "{}", stderr(&out));
    }
    assert!(!e.s.path("elsewhere").exists());
    assert!(!Path::new("/t").exists());
    assert_eq!(dated_snapshots(&root.join("t")).len(), 1);
}

#[test]
#[cfg_attr(
    offsnap_no_sshd,
    ignore = "needs OpenSSH sshd and ssh-keygen (apt-get install openssh-server)"
)]
fn a_server_killed_mid_run_leaves_no_partial_snapshot() {
    let Some(mut e) = Env::new() else { return };
    e.trust_host();
    let mut rng = Rng::new(12);
    make_tree(&mut rng, &e.s.src(), 30);
    let dest = e.s.dest();
    assert_ok(&e.backup(&day(0, 0), &dest, &[]));
    let set = dest.join("t");
    let good = dated_snapshots(&set);
    let big = rng.bytes(96 << 20);
    write_file(&e.s.src().join("zz-big"), &big, 0o644, (1_700_000_000, 0));

    // Start a backup, wait until the helper writes, then kill sshd and all under it.
    let port = e.sshd.port.to_string();
    let cmd = Env::remote_cmd(&day(1, 0));
    let child = Command::new(offsnap_bin())
        .args(["backup", "--set", "t", "-p", &port, "-i"])
        .arg(&e.sshd.client_key)
        .args(["--remote-cmd", &cmd])
        .arg(e.s.src())
        .arg(e.dest(&dest))
        .env("HOME", &e.home)
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let incomplete = set.join(".offsnap/incomplete");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fs::read_dir(&incomplete)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "the backup never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    e.sshd.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("connection to 127.0.0.1 was lost")
            || err.contains("helper on 127.0.0.1 was killed by signal"),
        "{err}"
    );
    assert_eq!(dated_snapshots(&set), good, "a partial snapshot is visible");
    // The killed helper may take a moment to be gone; then its lock is too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lock_is_free(&set) {
        assert!(
            Instant::now() < deadline,
            "the lock outlived the killed helper"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A new server: the next run succeeds and restores exactly.
    let Some(sshd2) = Sshd::start() else { return };
    e.sshd = sshd2;
    e.trust_host();
    let out = e.backup(&day(2, 0), &dest, &[]);
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    assert_eq!(dated_snapshots(&set).len(), 2);
    assert_same_tree(&e.s.src(), &e.restore(&dest, &snap).join("src"));
}

#[test]
#[cfg_attr(
    offsnap_no_sshd,
    ignore = "needs OpenSSH sshd and ssh-keygen (apt-get install openssh-server)"
)]
fn an_alias_from_ssh_config_works() {
    let Some(e) = Env::new() else { return };
    fs::write(
        e.home.join(".ssh/known_hosts"),
        e.sshd.known_hosts_line() + "\n",
    )
    .unwrap();
    fs::write(
        e.home.join(".ssh/config"),
        format!(
            "Host backupbox\n    HostName 127.0.0.1\n    Port {}\n    User {}\n    IdentityFile {}\n",
            e.sshd.port,
            e.sshd.user,
            e.sshd.client_key.display()
        ),
    )
    .unwrap();
    write_file(
        &e.s.src().join("f"),
        b"via alias",
        0o644,
        (1_700_000_000, 0),
    );
    let dest = e.s.dest();
    let cmd = Env::remote_cmd(&day(0, 0));
    let target = OsString::from(format!("backupbox:{}", dest.display()));
    let out = e.run(&[
        &"backup",
        &"--set",
        &"t",
        &"--remote-cmd",
        &cmd,
        &e.s.src(),
        &target,
    ]);
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    assert_eq!(
        fs::read(dest.join("t").join(&snap).join("src/f")).unwrap(),
        b"via alias"
    );
}

#[test]
#[cfg_attr(
    offsnap_no_sshd,
    ignore = "needs OpenSSH sshd and ssh-keygen (apt-get install openssh-server)"
)]
fn remote_install_puts_a_working_helper_on_the_host() {
    let scratch = Scratch::new();
    let remote_home = scratch.path("remote-home");
    fs::create_dir(&remote_home).unwrap();
    let Some(sshd) = Sshd::start_with(&format!("SetEnv HOME={}\n", remote_home.display())) else {
        return;
    };
    let home = scratch.path("home");
    let e = Env {
        s: scratch,
        sshd,
        home,
    };
    fs::create_dir_all(e.home.join(".ssh")).unwrap();
    e.trust_host();
    let port = e.sshd.port.to_string();
    let host = format!("{}@127.0.0.1", e.sshd.user);
    let out = e.run(&[
        &"remote",
        &"install",
        &"-p",
        &port,
        &"-i",
        &e.sshd.client_key,
        &host,
    ]);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("offsnap-remote "),
        "{}",
        stdout(&out)
    );
    let installed = remote_home.join(".local/bin/offsnap-remote");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs::read(&installed).unwrap(),
        fs::read(remote_bin()).unwrap()
    );

    // A backup now finds it with no --remote-cmd.
    write_file(&e.s.src().join("f"), b"found it", 0o644, (1_700_000_000, 0));
    let dest = e.s.dest();
    let d = e.dest(&dest);
    let out = e.run(&[
        &"backup",
        &"--set",
        &"t",
        &"-p",
        &port,
        &"-i",
        &e.sshd.client_key,
        &e.s.src(),
        &d,
    ]);
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    assert_eq!(
        fs::read(dest.join("t").join(&snap).join("src/f")).unwrap(),
        b"found it"
    );
}

/// The screen of a tmux session on server `sock`.
fn screen(sock: &str, session: &str) -> String {
    let pane = Command::new("tmux")
        .args(["-L", sock, "capture-pane", "-p", "-t", session])
        .output()
        .unwrap();
    String::from_utf8_lossy(&pane.stdout).into_owned()
}

/// Waits until the screen shows `text` `times` times.
fn wait_for(sock: &str, session: &str, text: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while screen(sock, session).matches(text).count() < times {
        assert!(
            Instant::now() < deadline,
            "{text:?} x{times} never appeared:\n{}",
            screen(sock, session)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_passphrase_gets_three_tries_on_the_terminal() {
    let Some(e) = Env::new() else { return };
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("OFFSNAP_REQUIRE_SSHD").is_none_or(|v| v != "1"),
            "OFFSNAP_REQUIRE_SSHD=1 but tmux is not installed"
        );
        offsnap_tests::skip::skip(
            None,
            "tmux is not installed; passphrase prompts were not checked",
        );
        return;
    }
    e.trust_host();
    write_file(&e.s.src().join("f"), b"typed in", 0o644, (1_700_000_000, 0));
    let locked = e.s.path("locked");
    keygen(&locked, "correct horse", "locked");
    e.sshd.authorize(&[
        fs::read_to_string(locked.with_extension("pub")).unwrap(),
        e.sshd.client_pub(),
    ]);
    // One tmux server per run: a server whose last session was killed exits,
    // and a new session asked of it meanwhile fails ("server exited
    // unexpectedly").
    let run = |name: &str, answers: &[&str]| -> (i32, String) {
        let sock = format!("offsnap-pass-{}-{name}", std::process::id());
        let sock = sock.as_str();
        let status = e.s.path(&format!("{name}.status"));
        let script = format!(
            "env -u SSH_AUTH_SOCK HOME={home} {bin} backup --set t -p {port} -i {key} \
             --remote-cmd '{cmd}' {src} {dest}; echo $? > {status}; sleep 30",
            home = e.home.display(),
            bin = offsnap_bin().display(),
            port = e.sshd.port,
            key = locked.display(),
            cmd = Env::remote_cmd(&day(0, 0)),
            src = e.s.src().display(),
            dest = e.dest(&e.s.dest()),
            status = status.display(),
        );
        let st = Command::new("tmux")
            .args(["-L", sock, "new-session", "-d", "-x", "200", "-y", "30"])
            .args(["-s", name, &script])
            .env_remove("TMUX")
            .status()
            .unwrap();
        assert!(st.success());
        for (i, answer) in answers.iter().enumerate() {
            wait_for(sock, name, "Enter passphrase for key", i + 1);
            let st = Command::new("tmux")
                .args(["-L", sock, "send-keys", "-t", name, answer, "Enter"])
                .status()
                .unwrap();
            assert!(st.success());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !status.exists() {
            assert!(Instant::now() < deadline, "the run never ended");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        let shown = screen(sock, name);
        let _ = Command::new("tmux")
            .args(["-L", sock, "kill-server"])
            .stderr(Stdio::null())
            .status();
        let code = fs::read_to_string(&status).unwrap().trim().parse().unwrap();
        (code, shown)
    };
    // Two wrong answers, then the right one: the backup is made.
    let (code, shown) = run("right", &["wrong", "still wrong", "correct horse"]);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(
        shown.matches("wrong passphrase, try again").count(),
        2,
        "{shown}"
    );
    assert_eq!(dated_snapshots(&e.s.dest().join("t")).len(), 1);
    // Three wrong answers: refused, saying so.
    let (code, shown) = run("wrong", &["a", "b", "c"]);
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("wrong passphrase for key"), "{shown}");
    let restored = e.restore(&e.s.dest(), "latest");
    assert_same_tree(&e.s.src(), &restored.join("src"));
}
