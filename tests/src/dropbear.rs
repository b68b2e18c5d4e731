//! A throwaway dropbear server on 127.0.0.1, so that a second SSH server
//! implementation stays supported.
//!
//! dropbear reads `~/.ssh/authorized_keys` of the login and has no option
//! to look elsewhere, so the server runs in a mount namespace where a
//! temporary directory is bind-mounted over the login's home: the real
//! home is never touched. That needs root (and `unshare`); without
//! dropbear the test is a failure under `OFFSNAP_REQUIRE_SSHD=1`, without
//! root under `OFFSNAP_REQUIRE_ROOT_TESTS=1`.

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::privileged;
use crate::sshd::{find, keygen};

/// A running dropbear; stopped when dropped.
pub struct Dropbear {
    /// Its directory: keys, the home it sees, its log.
    pub dir: tempfile::TempDir,
    /// The port it listens on.
    pub port: u16,
    /// The user tests log in as (root).
    pub user: String,
    /// A client private key it accepts (ed25519, OpenSSH format).
    pub client_key: PathBuf,
    /// The server's public host key line.
    pub host_key_pub: String,
    child: Child,
}

impl Dropbear {
    /// Starts a server, or says why it cannot (and returns `None`).
    pub fn start() -> Option<Dropbear> {
        let (Some(dropbear), Some(dropbearkey)) = (find("dropbear"), find("dropbearkey")) else {
            crate::skip::skip(
                Some(crate::skip::SSHD),
                "dropbear (Debian: dropbear-bin) is not installed",
            );
            return None;
        };
        if !privileged::is_root() || find("unshare").is_none() {
            privileged::skip("the dropbear test needs root and unshare (a home of its own)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("offsnap-dropbear.")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let host_key = d.join("host_key");
        let st = Command::new(&dropbearkey)
            .args(["-t", "ed25519", "-f"])
            .arg(&host_key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("dropbearkey");
        assert!(st.success(), "dropbearkey failed");
        let out = Command::new(&dropbearkey)
            .args(["-y", "-f"])
            .arg(&host_key)
            .output()
            .expect("dropbearkey -y");
        let host_key_pub = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("ssh-ed25519 "))
            .expect("dropbear's public host key")
            .to_string();
        keygen(&d.join("client_key"), "", "offsnap-dropbear-client");
        let home = d.join("home");
        fs::create_dir_all(home.join(".ssh")).expect("home");
        fs::copy(d.join("client_key.pub"), home.join(".ssh/authorized_keys"))
            .expect("authorized_keys");
        let real_home = fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|p| {
                p.lines()
                    .find(|l| l.starts_with("root:"))
                    .and_then(|l| l.split(':').nth(5).map(str::to_string))
            })
            .unwrap_or_else(|| "/root".into());
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let log = fs::File::create(d.join("dropbear.log")).expect("log");
            let mut child = Command::new("unshare")
                .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
                .arg("mount --bind \"$0\" \"$1\" && shift && exec \"$@\"")
                .arg(&home)
                .arg(&real_home)
                .arg(&dropbear)
                .args(["-F", "-E", "-s", "-p"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("-r")
                .arg(&host_key)
                .arg("-P")
                .arg(d.join("dropbear.pid"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start dropbear");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Dropbear {
                        port,
                        user: "root".into(),
                        client_key: d.join("client_key"),
                        host_key_pub,
                        child,
                        dir,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dropbear did not start:\n{}", {
            fs::read_to_string(d.join("dropbear.log")).unwrap_or_default()
        });
    }

    /// The `known_hosts` line for this server.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key_pub)
    }

    /// Its log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dropbear.log")).unwrap_or_default()
    }
}

impl Drop for Dropbear {
    fn drop(&mut self) {
        let mut doomed = vec![self.child.id() as i32];
        let mut i = 0;
        while i < doomed.len() {
            doomed.extend(crate::sshd::children(doomed[i]));
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
