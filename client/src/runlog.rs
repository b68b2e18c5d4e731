//! The local record of backup runs, one JSON object per line in
//! `$XDG_STATE_HOME/offsnap/runs.jsonl` (`~/.local/state/...`): what
//! `offsnap status` reads to say when the last good backup was, and what
//! went wrong last.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One backup run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// When it ended (RFC 3339, UTC).
    pub time: String,
    /// The profile it ran, if any.
    pub profile: Option<String>,
    /// Where to.
    pub dest: String,
    /// The set.
    pub set: String,
    /// Whether a snapshot was made.
    pub ok: bool,
    /// Whether some files were left out.
    pub partial: bool,
    /// The snapshot made.
    pub snapshot: Option<String>,
    /// Files in it.
    pub files: u64,
    /// Bytes of content read and sent.
    pub bytes: u64,
    /// How long it took.
    pub seconds: f64,
    /// Why it failed.
    pub error: Option<String>,
}

/// Where runs are recorded.
pub fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("offsnap"))
}

/// Appends a run (one line, one write). Failing to record is not fatal.
pub fn append(run: &Run) -> std::io::Result<()> {
    let Some(dir) = path() else { return Ok(()) };
    std::fs::create_dir_all(&dir)?;
    let mut line = serde_json::to_vec(run).map_err(std::io::Error::other)?;
    line.push(b'\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("runs.jsonl"))?
        .write_all(&line)
}

/// Every recorded run, oldest first (unreadable lines are skipped).
pub fn read() -> Vec<Run> {
    let Some(dir) = path() else { return Vec::new() };
    std::fs::read_to_string(dir.join("runs.jsonl"))
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}
