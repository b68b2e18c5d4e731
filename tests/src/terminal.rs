//! A terminal for the client, driven through tmux: a session on a tmux
//! server of its own, its screen read back as text, the server ended
//! when the session is dropped.

use std::process::{Command, Stdio};

/// A tmux session running one shell command.
pub struct Tmux {
    sock: String,
    name: String,
}

impl Tmux {
    /// Whether tmux is here; without it a test is skipped, unless skips
    /// are failures (`OFFSNAP_REQUIRE_SSHD=1`).
    pub fn here() -> bool {
        if Command::new("tmux").arg("-V").output().is_ok() {
            return true;
        }
        crate::skip::skip(Some(crate::skip::SSHD), "tmux is not installed");
        false
    }

    /// Starts `script` in a detached session `name` of `width` by `height`.
    pub fn start(name: &str, (width, height): (u16, u16), script: &str) -> Tmux {
        let t = Tmux {
            sock: format!("offsnap-test-{}-{name}", std::process::id()),
            name: name.to_string(),
        };
        let st = Command::new("tmux")
            .args(["-L", &t.sock, "new-session", "-d"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .args(["-s", name, script])
            .env_remove("TMUX")
            .status()
            .expect("tmux");
        assert!(st.success(), "tmux did not start {script}");
        t
    }

    /// What the session's screen shows now.
    pub fn screen(&self) -> String {
        let pane = Command::new("tmux")
            .args(["-L", &self.sock, "capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&pane.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.sock, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}
