//! A throwaway OpenSSH server on 127.0.0.1 (or another loopback address)
//! for the SSH suites: a free port, fresh host and client keys, only the
//! test's keys authorized, logs in the server's own temporary directory.
//! As root, a server can also be given names only it resolves (an
//! `/etc/hosts` of its own, bind-mounted in a mount namespace), to stand
//! for a bastion that knows the names of the hosts behind it.
//!
//! When `sshd` or `ssh-keygen` is missing, [`Sshd::start`] returns `None`
//! and says so, so the suite passes on a machine with only Rust; with
//! `OFFSNAP_REQUIRE_SSHD=1` (set by CI) a missing server is a failure.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running sshd; stopped when dropped.
pub struct Sshd {
    /// Its directory: config, keys, log.
    pub dir: tempfile::TempDir,
    /// The port it listens on.
    pub port: u16,
    /// The address it listens on.
    pub addr: String,
    /// The user tests log in as (the current one).
    pub user: String,
    /// A client private key that the server accepts (ed25519, no passphrase).
    pub client_key: PathBuf,
    /// The server's public host key line (`ssh-ed25519 AAAA… comment`).
    pub host_key_pub: String,
    child: Child,
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct SshdOptions {
    /// `sshd_config` lines put first (the first value of an option wins).
    pub extra: String,
    /// The loopback address to listen on [default: 127.0.0.1].
    pub addr: Option<String>,
    /// `/etc/hosts` lines that only this server (and its sessions) sees;
    /// needs root and `unshare`.
    pub hosts: Option<String>,
}

/// `program` found on the PATH or in the sbin directories.
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Makes an ed25519 key pair at `path` (and `path.pub`), with an optional
/// passphrase.
pub fn keygen(path: &Path, passphrase: &str, comment: &str) {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(path.with_extension("pub"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f"])
        .arg(path)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
}

impl Sshd {
    /// Starts a server, or returns `None` when this machine has none (a
    /// failure instead under `OFFSNAP_REQUIRE_SSHD=1`).
    pub fn start() -> Option<Sshd> {
        Self::start_with("")
    }

    /// Like [`Sshd::start`], with extra `sshd_config` lines first (the
    /// first value of an option wins).
    pub fn start_with(extra: &str) -> Option<Sshd> {
        Self::start_opts(&SshdOptions {
            extra: extra.to_string(),
            ..SshdOptions::default()
        })
    }

    /// A server as `opts` says.
    pub fn start_opts(opts: &SshdOptions) -> Option<Sshd> {
        let extra = opts.extra.as_str();
        let addr = opts.addr.clone().unwrap_or_else(|| "127.0.0.1".into());
        let (Some(sshd), Some(_)) = (find("sshd"), find("ssh-keygen")) else {
            crate::skip::skip(
                Some(crate::skip::SSHD),
                "OpenSSH's sshd or ssh-keygen is not installed",
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("offsnap-sshd.")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        keygen(&d.join("host_key"), "", "offsnap-test-host");
        keygen(&d.join("client_key"), "", "offsnap-test-client");
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
        fs::set_permissions(d.join("authorized_keys"), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let user = String::from_utf8(
            Command::new("id")
                .arg("-un")
                .output()
                .expect("id -un")
                .stdout,
        )
        .expect("user name")
        .trim()
        .to_string();
        let root = rustix::process::geteuid().is_root();
        if root {
            let _ = fs::create_dir_all("/run/sshd");
        }
        // Without PAM, sshd refuses accounts whose password is locked ("!");
        // root's often is.
        let locked = fs::read_to_string("/etc/shadow")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.split(':').next() == Some(&user))
                    .map(|l| l.split(':').nth(1).unwrap_or("").starts_with('!'))
            })
            .unwrap_or(false);
        let use_pam = if root && locked { "yes" } else { "no" };
        for _ in 0..5 {
            let port = TcpListener::bind((addr.as_str(), 0))
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            fs::write(
                d.join("sshd_config"),
                format!(
                    "{extra}Port {port}\nListenAddress {addr}\nHostKey {dir}/host_key\n\
                     AuthorizedKeysFile {dir}/authorized_keys\nPubkeyAuthentication yes\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\nAllowUsers {user}\nUsePAM {use_pam}\n\
                     StrictModes no\nUseDNS no\nPrintMotd no\nPrintLastLog no\n\
                     MaxStartups 200:30:400\nMaxSessions 100\nLoginGraceTime 30\n\
                     PidFile {dir}/sshd.pid\nLogLevel VERBOSE\n",
                    dir = d.display()
                ),
            )
            .expect("sshd_config");
            let mut command = match &opts.hosts {
                None => Command::new(&sshd),
                Some(lines) => {
                    let system = fs::read_to_string("/etc/hosts").unwrap_or_default();
                    fs::write(d.join("hosts"), format!("{system}\n{lines}\n")).expect("hosts");
                    let mut c = Command::new("unshare");
                    c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
                        .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
                        .arg(d.join("hosts"))
                        .arg(&sshd);
                    c
                }
            };
            let mut child = command
                .arg("-D")
                .arg("-f")
                .arg(d.join("sshd_config"))
                .arg("-E")
                .arg(d.join("sshd.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start sshd");
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut up = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect((addr.as_str(), port)).is_ok() {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if up {
                let host_key_pub = fs::read_to_string(d.join("host_key.pub"))
                    .expect("host key")
                    .trim()
                    .to_string();
                return Some(Sshd {
                    port,
                    addr,
                    user,
                    client_key: d.join("client_key"),
                    host_key_pub,
                    child,
                    dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
        panic!("sshd did not start:\n{log}");
    }

    /// The `known_hosts` line for this server.
    pub fn known_hosts_line(&self) -> String {
        self.known_hosts_line_for(&self.addr)
    }

    /// The `known_hosts` line for this server under the name `name`.
    pub fn known_hosts_line_for(&self, name: &str) -> String {
        format!("[{name}]:{} {}", self.port, self.host_key_pub)
    }

    /// How many logins the log shows so far.
    pub fn logins(&self) -> usize {
        self.log().matches("Accepted publickey for").count()
    }

    /// Replaces `authorized_keys` with these lines.
    pub fn authorize(&self, lines: &[String]) {
        fs::write(
            self.dir.path().join("authorized_keys"),
            lines.join("\n") + "\n",
        )
        .expect("authorized_keys");
    }

    /// The client public key line.
    pub fn client_pub(&self) -> String {
        fs::read_to_string(self.client_key.with_extension("pub"))
            .expect("client key")
            .trim()
            .to_string()
    }

    /// The server's log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Stops the server and every process under it (the sessions and the
    /// commands they run) with SIGKILL: connections in progress are cut.
    pub fn kill(&mut self) {
        let mut doomed = vec![self.child.id() as i32];
        let mut i = 0;
        while i < doomed.len() {
            doomed.extend(children(doomed[i]));
            i += 1;
        }
        for pid in doomed.iter().rev() {
            if let Some(pid) = rustix::process::Pid::from_raw(*pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Direct children of a process, from /proc.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}
