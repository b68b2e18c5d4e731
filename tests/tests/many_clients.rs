//! Many laptops, one host: eight clients, each with its own home
//! (known_hosts, cache, state) and its own source tree, back up at once
//! through one real loopback sshd into one destination, each to its own
//! set. Every run completes, every snapshot passes `offsnap verify` (run
//! at once too), and each restores equal to its source. Correctness under
//! concurrency only: how fast is for `bench/`.
//!
//! Skipped (with a message) where OpenSSH's sshd is not installed;
//! `OFFSNAP_REQUIRE_SSHD=1` (CI) makes that a failure.

#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use offsnap_tests::random::{Rng, make_tree};
use offsnap_tests::sshd::Sshd;
use offsnap_tests::*;

const CLIENTS: usize = 8;

/// One laptop: its home and its source tree.
struct Laptop {
    home: PathBuf,
    src: PathBuf,
    set: String,
}

impl Laptop {
    fn new(s: &Scratch, sshd: &Sshd, i: usize) -> Laptop {
        let home = s.path(&format!("home-{i}"));
        fs::create_dir_all(home.join(".ssh")).unwrap();
        fs::write(
            home.join(".ssh/known_hosts"),
            sshd.known_hosts_line() + "\n",
        )
        .unwrap();
        let src = s.path(&format!("laptop-{i}"));
        fs::create_dir(&src).unwrap();
        let mut rng = Rng::new(1000 + i as u64);
        make_tree(&mut rng, &src, 120);
        // A file of a few MiB, so that the runs overlap in their transfers.
        write_file(
            &src.join("big.bin"),
            &rng.noise((2 + i) << 20),
            0o644,
            (1_750_000_000, 0),
        );
        Laptop {
            home,
            src,
            set: format!("laptop-{i}"),
        }
    }

    /// Starts `offsnap ARGS` as this laptop, over SSH to `sshd`.
    fn spawn(&self, sshd: &Sshd, args: &[&dyn AsRef<OsStr>]) -> Child {
        let mut cmd = Command::new("setsid");
        cmd.arg("-w").arg(offsnap_bin()).arg(args[0].as_ref());
        cmd.args(["--set", &self.set, "-p", &sshd.port.to_string(), "-i"])
            .arg(&sshd.client_key)
            .args([
                "--remote-cmd",
                &format!("env OFFSNAP_NOW={} {}", day(0, 0), remote_bin().display()),
            ]);
        for a in &args[1..] {
            cmd.arg(a.as_ref());
        }
        cmd.env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_STATE_HOME", self.home.join("state"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("OFFSNAP_NOW")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Waits for every child; asserts each succeeded and returns their
/// standard outputs.
fn all_succeed(what: &str, children: Vec<Child>) -> Vec<String> {
    children
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{what} of laptop {i}: {:?}\n{}",
                out.status,
                stderr(&out)
            );
            stdout(&out)
        })
        .collect()
}

#[test]
#[cfg_attr(
    offsnap_no_sshd,
    ignore = "needs OpenSSH sshd and ssh-keygen (apt-get install openssh-server)"
)]
fn eight_laptops_back_up_to_one_host_at_once() {
    let Some(sshd) = Sshd::start() else { return };
    let s = Scratch::new();
    let laptops: Vec<Laptop> = (0..CLIENTS).map(|i| Laptop::new(&s, &sshd, i)).collect();
    let dest = format!("{}@127.0.0.1:{}", sshd.user, s.dest().display());

    let runs = laptops
        .iter()
        .map(|l| l.spawn(&sshd, &[&"backup", &l.src, &dest]))
        .collect();
    let names: Vec<String> = all_succeed("backup", runs)
        .into_iter()
        .map(|o| o.trim().to_string())
        .collect();
    for (l, name) in laptops.iter().zip(&names) {
        let set = s.dest().join(&l.set);
        assert_eq!(dated_snapshots(&set), vec![name.clone()], "{}", l.set);
        assert!(lock_is_free(&set), "{} is still locked", l.set);
    }

    let checks = laptops
        .iter()
        .map(|l| l.spawn(&sshd, &[&"verify", &dest]))
        .collect();
    all_succeed("verify", checks);

    let tos: Vec<PathBuf> = (0..CLIENTS)
        .map(|i| s.path(&format!("restored-{i}")))
        .collect();
    let restores = laptops
        .iter()
        .zip(&tos)
        .map(|(l, to)| l.spawn(&sshd, &[&"restore", &dest, &"--to", to]))
        .collect();
    all_succeed("restore", restores);
    for (i, (l, to)) in laptops.iter().zip(&tos).enumerate() {
        assert_same_tree(&l.src, &to.join(format!("laptop-{i}")));
    }
    assert!(
        sshd.logins() >= 3 * CLIENTS,
        "only {} logins",
        sshd.logins()
    );
}
