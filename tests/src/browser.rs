//! Headless Chromium for the web page's tests: finds it (a missing one is
//! a visible skip, or a failure under `OFFSNAP_REQUIRE_BROWSER=1`), loads
//! a page and gives back the DOM after its scripts ran, or a screenshot.
//! Each run has a fresh profile directory; nothing but the page's own
//! loopback address is contacted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Chromium executable, or `None` after saying why the test is
/// skipped; panics instead under `OFFSNAP_REQUIRE_BROWSER=1`.
pub fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        });
    if found.is_none() {
        let why = "headless Chromium is not installed (Debian package `chromium`)";
        crate::skip::skip(Some(crate::skip::BROWSER), why);
    }
    found
}

/// A headless browser with a profile of its own.
pub struct Browser {
    exe: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    /// A browser from [`chromium`].
    pub fn new(exe: PathBuf) -> Browser {
        Browser {
            exe,
            profile: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, size: (u32, u32)) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", self.profile.path().display()))
        .arg(format!("--window-size={},{}", size.0, size.1))
        .stdin(Stdio::null());
        cmd
    }

    /// Runs `cmd`, ended after a minute at most; returns its stdout.
    fn run(mut cmd: Command) -> Vec<u8> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut out, &mut v).unwrap();
            v
        });
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within a minute");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        reader.join().unwrap()
    }

    /// The DOM of `url` once loaded, serialized.
    pub fn dom(&self, url: &str) -> String {
        let mut cmd = self.command((1280, 900));
        cmd.arg("--dump-dom").arg(url);
        let out = Self::run(cmd);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A PNG screenshot of `url` at `size`, written to `to`.
    pub fn screenshot(&self, url: &str, size: (u32, u32), to: &Path) {
        let _ = std::fs::remove_file(to);
        let mut cmd = self.command(size);
        cmd.arg(format!("--screenshot={}", to.display())).arg(url);
        Self::run(cmd);
        let png = std::fs::read(to).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "no PNG from chromium"
        );
    }
}

/// The values of attribute `name` in a serialized DOM, in order, with
/// `&amp;` and friends decoded.
pub fn attrs(dom: &str, name: &str) -> Vec<String> {
    let needle = format!(" {name}=\"");
    dom.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &dom[i + needle.len()..];
            let end = rest.find('"').unwrap();
            unescape(&rest[..end])
        })
        .collect()
}

/// HTML character references back to text.
pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
