//! A key confined in `authorized_keys` exactly as the README gives it
//! (`command="offsnap-remote serve --root DIR --append-only",restrict`),
//! over a real OpenSSH server on 127.0.0.1, with a client asking for
//! everything else: other roots, pruning, restoring and listing
//! elsewhere, and other programs through OpenSSH's own client. Each is
//! refused and nothing is written anywhere but DIR.
//!
//! Skipped (with a message) where OpenSSH's sshd is not installed;
//! `OFFSNAP_REQUIRE_SSHD=1` (CI) makes that a failure.

#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use offsnap_tests::sshd::Sshd;
use offsnap_tests::*;

struct Env {
    s: Scratch,
    sshd: Sshd,
    home: PathBuf,
}

impl Env {
    /// `offsnap ARGS` with our HOME, the test key, no agent, no terminal.
    fn run(&self, args: &[&dyn AsRef<OsStr>]) -> Output {
        let mut cmd = Command::new("setsid");
        cmd.arg("-w").arg(offsnap_bin());
        for a in args {
            cmd.arg(a.as_ref());
        }
        cmd.args(["-p", &self.sshd.port.to_string(), "-i"])
            .arg(&self.sshd.client_key)
            .env("HOME", &self.home)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("OFFSNAP_NOW")
            .current_dir(self.s.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn dest(&self, path: &Path) -> String {
        format!("{}@127.0.0.1:{}", self.sshd.user, path.display())
    }

    /// OpenSSH's own client running `command` with the confined key.
    fn ssh(&self, command: &str) -> Output {
        Command::new("ssh")
            .args(["-p", &self.sshd.port.to_string(), "-i"])
            .arg(&self.sshd.client_key)
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o"])
            .arg(format!(
                "UserKnownHostsFile={}",
                self.home.join(".ssh/known_hosts").display()
            ))
            .arg(format!("{}@127.0.0.1", self.sshd.user))
            .arg(command)
            .env("HOME", &self.home)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// Every path under `root` with its length and mtime, to see that nothing
/// changed.
fn listing(root: &Path) -> Vec<(PathBuf, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let e = e.unwrap();
            let md = fs::symlink_metadata(e.path()).unwrap();
            out.push((e.path(), md.len(), md.mtime()));
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_confined_key_refuses_everything_but_adding_snapshots_to_its_root() {
    let Some(sshd) = Sshd::start() else { return };
    let s = Scratch::new();
    let home = s.path("home");
    fs::create_dir_all(home.join(".ssh")).unwrap();
    fs::write(
        home.join(".ssh/known_hosts"),
        sshd.known_hosts_line() + "\n",
    )
    .unwrap();
    let e = Env { s, sshd, home };
    let root = e.s.path("confined");
    // Another root, with a set of its own, that the key must not reach.
    let other = e.s.path("other");
    write_file(&e.s.src().join("f"), b"f", 0o644, (1_700_000_000, 0));
    let out = e.s.offsnap(
        Some(&day(0, 0)),
        &[&"backup", &"--set", &"t", &e.s.src(), &other],
    );
    assert_ok(&out);
    let before = listing(&other);
    // The README's line, the helper found on the PATH as it would be.
    let bin = remote_bin();
    e.sshd.authorize(&[format!(
        "command=\"PATH={}:$PATH offsnap-remote serve --root {} --append-only\",restrict {}",
        bin.parent().unwrap().display(),
        root.display(),
        e.sshd.client_pub()
    )]);

    // Adding snapshots to its root works, and restores exactly.
    let out = e.run(&[&"backup", &"--set", &"t", &e.s.src(), &e.dest(&root)]);
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    let to = e.s.path("restored");
    let out = e.run(&[&"restore", &"--set", &"t", &e.dest(&root), &"--to", &to]);
    assert_ok(&out);
    assert_same_tree(&e.s.src(), &to.join("src"));
    let ours = listing(&root);

    // Everything else through offsnap: refused.
    let elsewhere = e.s.path("elsewhere");
    let escape = format!("{}/../other", root.display());
    let (d_other, d_else, d_escape) = (
        e.dest(&other),
        e.dest(&elsewhere),
        e.dest(Path::new(&escape)),
    );
    let restored_elsewhere = e.s.path("restored-elsewhere");
    let (src, d_root) = (e.s.src(), e.dest(&root));
    let cases: Vec<(Vec<&dyn AsRef<OsStr>>, &str)> = vec![
        (
            vec![&"backup", &"--set", &"t", &src, &d_other],
            "may only use",
        ),
        (
            vec![&"backup", &"--set", &"t", &src, &d_else],
            "may only use",
        ),
        (
            vec![&"backup", &"--set", &"t", &src, &d_escape],
            "may only use",
        ),
        (
            vec![
                &"restore",
                &"--set",
                &"t",
                &d_other,
                &"--to",
                &restored_elsewhere,
            ],
            "may only use",
        ),
        (vec![&"snapshots", &"--set", &"t", &d_other], "may only use"),
        (vec![&"verify", &"--set", &"t", &d_other], "may only use"),
        (vec![&"ls", &"--set", &"t", &d_other], "may only use"),
        (
            vec![&"prune", &"--set", &"t", &"--keep-last", &"1", &d_other],
            "may only use",
        ),
        (
            vec![&"prune", &"--set", &"t", &"--keep-within", &"1h", &d_root],
            "append-only",
        ),
    ];
    for (args, want) in cases {
        let out = e.run(&args);
        let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        assert_ne!(out.status.code(), Some(0), "{shown:?}: {}", stdout(&out));
        assert!(stderr(&out).contains(want), "{want}: {}", stderr(&out));
    }
    // Other programs and verbs, asked for with OpenSSH's client: the forced
    // command runs instead (and, its stdin empty, does nothing).
    for cmd in [
        format!(
            "offsnap-remote prune --root {} --keep-last 1",
            root.display()
        ),
        format!(
            "offsnap-remote prune --root {} --keep-last 1",
            other.display()
        ),
        format!("rm -rf {}", root.display()),
        format!("touch {}", elsewhere.display()),
        "sh -c 'echo pwned > /tmp/offsnap-confined-pwned'".to_string(),
    ] {
        let out = e.ssh(&cmd);
        assert!(!stdout(&out).contains("removed"), "{cmd}: {}", stdout(&out));
    }
    assert!(!Path::new("/tmp/offsnap-confined-pwned").exists());
    assert!(!elsewhere.exists() && !restored_elsewhere.exists());
    assert_eq!(listing(&other), before, "the other root changed");
    assert_eq!(listing(&root), ours, "the confined root changed");
    assert_eq!(dated_snapshots(&root.join("t")), vec![snap]);
}
