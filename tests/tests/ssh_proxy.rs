//! Every SSH setup a user may already have, against real servers on
//! loopback: a backup host reachable only through a jump host (ProxyJump
//! in `~/.ssh/config`, `-J`, a two-hop chain, a ProxyCommand), the system
//! `ssh` as the transport (`--ssh`, `OFFSNAP_RSH`) with a key only its
//! agent holds and with ControlMaster, dropbear as the server, and a
//! helper missing on the server. Every backup restores equal to the
//! source.
//!
//! The backup host listens on 127.0.0.2 under a name that only the jump
//! host resolves (it has an `/etc/hosts` of its own, in a mount
//! namespace): the client cannot reach it directly, so a backup that
//! works went through the jump host. That needs root; like the missing
//! servers, it is a failure under `OFFSNAP_REQUIRE_ROOT_TESTS=1` /
//! `OFFSNAP_REQUIRE_SSHD=1` (CI) and a visible skip elsewhere.

#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use offsnap_tests::dropbear::Dropbear;
use offsnap_tests::privileged;
use offsnap_tests::random::{Rng, make_tree};
use offsnap_tests::sshd::{Sshd, SshdOptions, find, keygen};
use offsnap_tests::*;

/// The backup host's name: only the second jump host resolves it.
const NAS: &str = "nas.offsnap.test";

fn remote_cmd(now: &str) -> String {
    format!("env OFFSNAP_NOW={now} {}", remote_bin().display())
}

/// `offsnap ARGS` with `home` as HOME, no agent, no terminal.
fn offsnap(s: &Scratch, home: &Path, args: &[&dyn AsRef<OsStr>]) -> Output {
    let mut cmd = Command::new("setsid");
    cmd.arg("-w").arg(offsnap_bin());
    for a in args {
        cmd.arg(a.as_ref());
    }
    cmd.env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("OFFSNAP_NOW")
        .env_remove("OFFSNAP_RSH")
        .current_dir(s.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A backup of `src/` to `host:dest` with `extra` options; the snapshot.
fn backup(s: &Scratch, home: &Path, host: &str, extra: &[&dyn AsRef<OsStr>]) -> Output {
    let cmd = remote_cmd(&day(0, 0));
    let target = format!("{host}:{}", s.dest().display());
    let src = s.src();
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"backup", &"--set", &"t", &"--remote-cmd", &cmd];
    args.extend_from_slice(extra);
    args.push(&src);
    args.push(&target);
    offsnap(s, home, &args)
}

/// Restores `snap` from `host:dest` and checks it equals `src/`.
fn restore_equals_source(
    s: &Scratch,
    home: &Path,
    host: &str,
    extra: &[&dyn AsRef<OsStr>],
    snap: &str,
) {
    let to = s.path(&format!("restored-{host}-{snap}"));
    let cmd = remote_cmd(&day(0, 0));
    let target = format!("{host}:{}", s.dest().display());
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![
        &"restore",
        &"--set",
        &"t",
        &"--snapshot",
        &snap,
        &"--remote-cmd",
        &cmd,
    ];
    args.extend_from_slice(extra);
    args.push(&target);
    args.push(&"--to");
    args.push(&to);
    assert_ok(&offsnap(s, home, &args));
    assert_same_tree(&s.src(), &to.join("src"));
}

/// A backup host behind two jump hosts, and a client config naming them.
struct Lab {
    s: Scratch,
    home: PathBuf,
    /// The backup host, on 127.0.0.2, known as [`NAS`].
    nas: Sshd,
    /// A plain jump host.
    hop1: Sshd,
    /// The jump host that resolves [`NAS`].
    hop2: Sshd,
    /// A config for the system ssh (used by the ProxyCommand).
    sys_config: PathBuf,
}

impl Lab {
    fn new() -> Option<Lab> {
        if !privileged::is_root() || find("unshare").is_none() {
            privileged::skip("a jump host with names of its own needs root and unshare");
            return None;
        }
        let nas = Sshd::start_opts(&SshdOptions {
            addr: Some("127.0.0.2".into()),
            ..SshdOptions::default()
        })?;
        let hop1 = Sshd::start()?;
        let hop2 = Sshd::start_opts(&SshdOptions {
            hosts: Some(format!("127.0.0.2 {NAS}")),
            ..SshdOptions::default()
        })?;
        let s = Scratch::new();
        let home = s.path("home");
        fs::create_dir_all(home.join(".ssh")).unwrap();
        let kh = home.join(".ssh/known_hosts");
        fs::write(
            &kh,
            format!(
                "{}\n{}\n{}\n",
                nas.known_hosts_line_for(NAS),
                hop1.known_hosts_line(),
                hop2.known_hosts_line()
            ),
        )
        .unwrap();
        let host = |name: &str, host_name: &str, sshd: &Sshd, more: &str| {
            format!(
                "Host {name}\n  HostName {host_name}\n  Port {}\n  User {}\n  IdentityFile {}\n{more}",
                sshd.port,
                sshd.user,
                sshd.client_key.display()
            )
        };
        let sys_config = s.path("ssh_config");
        fs::write(
            &sys_config,
            host(
                "hop2",
                "127.0.0.1",
                &hop2,
                &format!(
                    "  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  \
                     StrictHostKeyChecking yes\n  BatchMode yes\n",
                    kh.display()
                ),
            ),
        )
        .unwrap();
        let config = [
            host("nas", NAS, &nas, "  ProxyJump hop2\n"),
            host("nas-cli", NAS, &nas, ""),
            host("nas-chain", NAS, &nas, "  ProxyJump hop1,hop2\n"),
            host(
                "nas-cmd",
                NAS,
                &nas,
                &format!(
                    "  ProxyCommand ssh -F {} -W %h:%p hop2\n",
                    sys_config.display()
                ),
            ),
            host("hop1", "127.0.0.1", &hop1, ""),
            host("hop2", "127.0.0.1", &hop2, ""),
        ]
        .concat();
        fs::write(home.join(".ssh/config"), config).unwrap();
        make_tree(&mut Rng::new(41), &s.src(), 40);
        Some(Lab {
            s,
            home,
            nas,
            hop1,
            hop2,
            sys_config,
        })
    }

    /// Backs up to `host` with `extra`, then restores and compares.
    fn round_trip(&self, host: &str, extra: &[&dyn AsRef<OsStr>]) {
        let out = backup(&self.s, &self.home, host, extra);
        assert_ok(&out);
        let snap = stdout(&out).trim().to_string();
        restore_equals_source(&self.s, &self.home, host, extra, &snap);
    }
}

#[test]
fn a_jump_host_from_ssh_config_reaches_a_host_only_it_can_resolve() {
    let Some(lab) = Lab::new() else { return };
    // Directly, the client cannot even resolve the name.
    let out = backup(&lab.s, &lab.home, "nas", &[&"-J", &"none"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot connect to nas.offsnap.test"),
        "{}",
        stderr(&out)
    );
    assert!(!lab.s.dest().exists());

    let (hop, nas) = (lab.hop2.logins(), lab.nas.logins());
    lab.round_trip("nas", &[]);
    // Backup and restore: two logins on the jump host and on the target.
    assert_eq!(lab.hop2.logins(), hop + 2, "{}", lab.hop2.log());
    assert_eq!(lab.nas.logins(), nas + 2, "{}", lab.nas.log());
    assert_eq!(lab.hop1.logins(), 0);
}

#[test]
fn dash_j_names_the_jump_host_as_ssh_does() {
    let Some(lab) = Lab::new() else { return };
    lab.round_trip("nas-cli", &[&"-J", &"hop2"]);
    assert_eq!(lab.hop2.logins(), 2, "{}", lab.hop2.log());
    assert_eq!(lab.nas.logins(), 2);
    // An unknown jump host key is refused like any other, naming that host.
    fs::write(
        lab.home.join(".ssh/known_hosts"),
        lab.nas.known_hosts_line_for(NAS) + "\n",
    )
    .unwrap();
    let out = backup(&lab.s, &lab.home, "nas-cli", &[&"-J", &"hop2"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "[127.0.0.1]:{} is not a known host",
            lab.hop2.port
        )),
        "{err}"
    );
}

#[test]
fn a_two_hop_chain_logs_in_on_each_hop() {
    let Some(lab) = Lab::new() else { return };
    lab.round_trip("nas-chain", &[]);
    assert_eq!(lab.hop1.logins(), 2, "{}", lab.hop1.log());
    assert_eq!(lab.hop2.logins(), 2, "{}", lab.hop2.log());
    assert_eq!(lab.nas.logins(), 2);
}

#[test]
fn a_proxy_command_carries_the_connection() {
    let Some(lab) = Lab::new() else { return };
    assert!(lab.sys_config.exists());
    lab.round_trip("nas-cmd", &[]);
    assert_eq!(lab.hop2.logins(), 2, "{}", lab.hop2.log());
    assert_eq!(lab.nas.logins(), 2);
}

/// A real ssh-agent on a socket of its own; killed when dropped.
struct Agent {
    sock: PathBuf,
    child: Child,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !sock.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "ssh-agent did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Agent { sock, child }
    }

    fn add(&self, key: &Path) {
        let st = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "ssh-add failed");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that accepts only a key held by an agent that only the
/// system ssh is told about (its config's IdentityAgent).
struct AgentLab {
    s: Scratch,
    home: PathBuf,
    sshd: Sshd,
    sys_config: PathBuf,
    _agent: Agent,
}

impl AgentLab {
    fn new() -> Option<AgentLab> {
        let sshd = Sshd::start()?;
        let s = Scratch::new();
        let home = s.path("home");
        fs::create_dir_all(home.join(".ssh")).unwrap();
        let kh = home.join(".ssh/known_hosts");
        fs::write(&kh, sshd.known_hosts_line() + "\n").unwrap();
        let agent = Agent::start(s.dir.path());
        let key = s.path("agent_only");
        keygen(&key, "", "agent-only");
        agent.add(&key);
        sshd.authorize(&[fs::read_to_string(key.with_extension("pub")).unwrap()]);
        fs::remove_file(&key).unwrap();
        let sys_config = s.path("ssh_config");
        fs::write(
            &sys_config,
            format!(
                "Host box\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityAgent {}\n  \
                 UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  \
                 StrictHostKeyChecking yes\n  BatchMode yes\n",
                sshd.port,
                sshd.user,
                agent.sock.display(),
                kh.display()
            ),
        )
        .unwrap();
        // The built-in client sees the same alias, but no agent and no key.
        fs::write(
            home.join(".ssh/config"),
            format!(
                "Host box\n  HostName 127.0.0.1\n  Port {}\n  User {}\n",
                sshd.port, sshd.user
            ),
        )
        .unwrap();
        make_tree(&mut Rng::new(42), &s.src(), 40);
        Some(AgentLab {
            s,
            home,
            sshd,
            sys_config,
            _agent: agent,
        })
    }
}

#[test]
fn the_system_ssh_logs_in_with_a_key_only_its_agent_holds() {
    let Some(lab) = AgentLab::new() else { return };
    // The built-in client has no way in.
    let out = backup(&lab.s, &lab.home, "box", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no key to log in"),
        "{}",
        stderr(&out)
    );

    let ssh = format!("ssh -F {}", lab.sys_config.display());
    let out = backup(&lab.s, &lab.home, "box", &[&"--ssh", &ssh]);
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    restore_equals_source(&lab.s, &lab.home, "box", &[&"--ssh", &ssh], &snap);

    // OFFSNAP_RSH does the same, and --ssh '' goes back to the built-in client.
    let to = lab.s.path("restored-env");
    let cmd = remote_cmd(&day(0, 0));
    let target = format!("box:{}", lab.s.dest().display());
    let run = |extra: &[&str]| {
        Command::new("setsid")
            .arg("-w")
            .arg(offsnap_bin())
            .args([
                "restore",
                "--set",
                "t",
                "--snapshot",
                &snap,
                "--remote-cmd",
                &cmd,
            ])
            .args(extra)
            .arg(&target)
            .arg("--to")
            .arg(&to)
            .env("HOME", &lab.home)
            .env("OFFSNAP_RSH", &ssh)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["--ssh", ""]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_ok(&run(&[]));
    assert_same_tree(&lab.s.src(), &to.join("src"));
}

#[test]
fn the_system_ssh_shares_one_connection_with_control_master() {
    let Some(lab) = AgentLab::new() else { return };
    // A short path: a control socket's name must fit in sun_path.
    let cm = tempfile::Builder::new()
        .prefix("cm.")
        .tempdir_in("/tmp")
        .unwrap();
    let master = format!(
        "-o ControlMaster=auto -o ControlPath={}/%C -o ControlPersist=60",
        cm.path().display()
    );
    let ssh = format!("ssh -F {} {master}", lab.sys_config.display());
    let before = lab.sshd.logins();
    let out = backup(&lab.s, &lab.home, "box", &[&"--ssh", &ssh]);
    assert_ok(&out);
    let first = stdout(&out).trim().to_string();
    write_file(
        &lab.s.src().join("new.txt"),
        b"second run",
        0o644,
        (1_700_000_000, 0),
    );
    let out = {
        let cmd = remote_cmd(&day(1, 0));
        let target = format!("box:{}", lab.s.dest().display());
        let src = lab.s.src();
        offsnap(
            &lab.s,
            &lab.home,
            &[
                &"backup",
                &"--set",
                &"t",
                &"--remote-cmd",
                &cmd,
                &"--ssh",
                &ssh,
                &src,
                &target,
            ],
        )
    };
    assert_ok(&out);
    let second = stdout(&out).trim().to_string();
    assert_ne!(first, second);
    restore_equals_source(&lab.s, &lab.home, "box", &[&"--ssh", &ssh], &second);
    // Three runs, one login: the master's.
    assert_eq!(lab.sshd.logins(), before + 1, "{}", lab.sshd.log());
    let st = Command::new("ssh")
        .args(["-F"])
        .arg(&lab.sys_config)
        .args(["-o", &format!("ControlPath={}/%C", cm.path().display())])
        .args(["-O", "exit", "box"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "the control master was not running");
}

#[test]
fn dropbear_serves_backups_too() {
    let Some(db) = Dropbear::start() else { return };
    let s = Scratch::new();
    let home = s.path("home");
    fs::create_dir_all(home.join(".ssh")).unwrap();
    fs::write(home.join(".ssh/known_hosts"), db.known_hosts_line() + "\n").unwrap();
    make_tree(&mut Rng::new(43), &s.src(), 60);
    let port = db.port.to_string();
    let host = format!("{}@127.0.0.1", db.user);
    let extra: [&dyn AsRef<OsStr>; 4] = [&"-p", &port, &"-i", &db.client_key];
    let out = backup(&s, &home, &host, &extra);
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    restore_equals_source(&s, &home, &host, &extra, &snap);
    assert!(db.log().contains("auth succeeded"), "{}", db.log());
}

#[test]
fn a_missing_helper_is_named_with_where_it_was_looked_for() {
    let s = Scratch::new();
    let remote_home = s.path("remote-home");
    fs::create_dir(&remote_home).unwrap();
    let Some(sshd) = Sshd::start_with(&format!("SetEnv HOME={}\n", remote_home.display())) else {
        return;
    };
    let home = s.path("home");
    fs::create_dir_all(home.join(".ssh")).unwrap();
    fs::write(
        home.join(".ssh/known_hosts"),
        sshd.known_hosts_line() + "\n",
    )
    .unwrap();
    let kh = home.join(".ssh/known_hosts");
    write_file(&s.src().join("f"), b"found", 0o644, (1_700_000_000, 0));
    let port = sshd.port.to_string();
    let host = format!("{}@127.0.0.1", sshd.user);
    let target = format!("{host}:{}", s.dest().display());
    let src = s.src();
    let wrapped = format!("env OFFSNAP_NOW={} offsnap-remote", day(0, 0));
    let ssh = format!(
        "ssh -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o BatchMode=yes \
         -o IdentitiesOnly=yes",
        kh.display()
    );
    let run = |extra: &[&dyn AsRef<OsStr>]| {
        let mut args: Vec<&dyn AsRef<OsStr>> = vec![
            &"backup",
            &"--set",
            &"t",
            &"-p",
            &port,
            &"-i",
            &sshd.client_key,
        ];
        args.extend_from_slice(extra);
        args.push(&src);
        args.push(&target);
        offsnap(&s, &home, &args)
    };
    for extra in [
        &[][..],
        &[&"--remote-cmd" as &dyn AsRef<OsStr>, &wrapped][..],
        &[&"--ssh" as &dyn AsRef<OsStr>, &ssh][..],
    ] {
        let out = run(extra);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("\"offsnap-remote\" was not found on 127.0.0.1")
                && err.contains("~/.local/bin")
                && err.contains(&format!("offsnap remote install {host}")),
            "{err}"
        );
        assert!(!s.dest().exists());
    }

    // Installed in ~/.local/bin, the wrapped helper is found there.
    fs::create_dir_all(remote_home.join(".local/bin")).unwrap();
    fs::copy(remote_bin(), remote_home.join(".local/bin/offsnap-remote")).unwrap();
    for extra in [
        &[&"--remote-cmd" as &dyn AsRef<OsStr>, &wrapped][..],
        &[
            &"--remote-cmd" as &dyn AsRef<OsStr>,
            &wrapped,
            &"--ssh",
            &ssh,
        ][..],
    ] {
        let out = run(extra);
        assert_ok(&out);
        let snap = stdout(&out).trim().to_string();
        let to = s.path(&format!("restored-{}", extra.len()));
        let out = offsnap(
            &s,
            &home,
            &[
                &"restore",
                &"--set",
                &"t",
                &"--snapshot",
                &snap,
                &"-p",
                &port,
                &"-i",
                &sshd.client_key,
                &"--remote-cmd",
                &wrapped,
                &target,
                &"--to",
                &to,
            ],
        );
        assert_ok(&out);
        assert_same_tree(&s.src(), &to.join("src"));
        fs::remove_dir_all(s.dest()).unwrap();
    }
}

#[test]
fn the_helpers_stderr_through_the_system_ssh_is_shown_escaped() {
    let Some(lab) = AgentLab::new() else { return };
    let ssh = format!("ssh -F {}", lab.sys_config.display());
    // The helper, after a line on its stderr that would retitle and clear
    // the terminal.
    let noisy = format!(
        "sh -c 'printf \"helper says \\033]0;owned\\007\\033[2J here\\n\" >&2; exec \"$0\" \"$@\"' {}",
        remote_cmd(&day(0, 0))
    );
    let target = format!("box:{}", lab.s.dest().display());
    let src = lab.s.src();
    let out = offsnap(
        &lab.s,
        &lab.home,
        &[
            &"backup",
            &"--set",
            &"t",
            &"--remote-cmd",
            &noisy,
            &"--ssh",
            &ssh,
            &src,
            &target,
        ],
    );
    assert_ok(&out);
    let err = stderr(&out);
    assert!(!out.stderr.contains(&0x1b), "{err:?}");
    assert!(
        err.contains("helper says \\x1b]0;owned\\x07\\x1b[2J here\n"),
        "{err}"
    );
    let snap = stdout(&out).trim().to_string();
    restore_equals_source(&lab.s, &lab.home, "box", &[&"--ssh", &ssh], &snap);
}
