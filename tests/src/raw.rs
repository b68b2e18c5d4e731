//! Raw sessions with the real helper, for hostile-client suites: frames
//! written as a lying client would, every response read back, the exit
//! status and stderr kept. Writing and reading run on separate threads,
//! so a long stream of ops never deadlocks against the helper's answers.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use offsnap_protocol::{FrameReader, FrameWriter, Hello, Request, Response};

/// `offsnap-remote serve --root ROOT ARGS`, with the helper's clock at
/// `now` if given, run through `sh` with `limits` (e.g. `ulimit -s 256`)
/// applied first when not empty.
pub fn serve(root: &Path, args: &[&str], now: Option<&str>, limits: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{limits}\nexec \"$@\""))
        .arg("helper")
        .arg(crate::remote_bin())
        .args(["serve", "--root"])
        .arg(root)
        .args(args);
    match now {
        Some(t) => cmd.env("OFFSNAP_NOW", t),
        None => cmd.env_remove("OFFSNAP_NOW"),
    };
    cmd
}

/// The frames of `reqs`.
pub fn frames(reqs: &[Request]) -> Vec<u8> {
    let mut w = FrameWriter::new(Vec::new());
    for r in reqs {
        w.write(r).unwrap();
    }
    w.into_inner().unwrap()
}

/// How a session ended.
#[derive(Debug)]
pub struct Outcome {
    /// Every response, in order.
    pub responses: Vec<Response>,
    /// The helper's exit status.
    pub status: ExitStatus,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Outcome {
    /// The messages of its error responses.
    pub fn errors(&self) -> Vec<String> {
        self.responses
            .iter()
            .filter_map(|r| match r {
                Response::Error(e) => Some(e.message.clone()),
                _ => None,
            })
            .collect()
    }

    /// Its warnings.
    pub fn warnings(&self) -> Vec<String> {
        self.responses
            .iter()
            .filter_map(|r| match r {
                Response::Warning(w) => Some(w.clone()),
                _ => None,
            })
            .collect()
    }

    /// The snapshots it committed.
    pub fn committed(&self) -> usize {
        self.responses
            .iter()
            .filter(|r| matches!(r, Response::Committed { .. }))
            .count()
    }
}

/// A session in progress.
pub struct Live {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: FrameReader<std::process::ChildStdout>,
    stderr: Option<JoinHandle<String>>,
}

impl Live {
    /// Starts `cmd` and exchanges hellos.
    pub fn start(mut cmd: Command) -> Live {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut hello = FrameWriter::new(Vec::new());
        hello.write(&Hello::ours("hostile")).unwrap();
        stdin.write_all(&hello.into_inner().unwrap()).unwrap();
        let mut rx = FrameReader::new(child.stdout.take().unwrap());
        rx.read_hello("hostile").unwrap();
        Live {
            child,
            stdin: Some(stdin),
            rx,
            stderr: Some(stderr),
        }
    }

    /// Sends requests (errors ignored: the helper may have hung up).
    pub fn send(&mut self, reqs: &[Request]) {
        if let Some(s) = &mut self.stdin {
            let _ = s.write_all(&frames(reqs));
            let _ = s.flush();
        }
    }

    /// The helper's peak resident set size so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// The next response, if any.
    pub fn recv(&mut self) -> Option<Response> {
        self.rx.read::<Response>().ok()
    }

    /// Writes `raw` (on a thread), closes stdin, reads every response and
    /// waits for the helper.
    pub fn finish(mut self, raw: Vec<u8>) -> Outcome {
        let stdin = self.stdin.take();
        let writer = std::thread::spawn(move || {
            if let Some(mut s) = stdin {
                let _ = s.write_all(&raw);
            }
        });
        let mut responses = Vec::new();
        while let Ok(r) = self.rx.read::<Response>() {
            responses.push(r);
        }
        let _ = writer.join();
        let status = self.child.wait().unwrap();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        Outcome {
            responses,
            status,
            stderr,
        }
    }
}

/// Runs a whole session: hello, then `raw`.
pub fn run(cmd: Command, raw: Vec<u8>) -> Outcome {
    Live::start(cmd).finish(raw)
}
