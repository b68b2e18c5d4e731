//! After a backup: the profile's `on_success` / `on_failure` commands.
//!
//! Each is a shell command (`sh -c`), run once the run has ended, with the
//! run as one JSON object on its stdin (the run log's record, its
//! `status`, and the full report of a run that made a snapshot) and its
//! outcome in the environment: `OFFSNAP_STATUS` (`success`, `partial` or
//! `failure`), `OFFSNAP_PROFILE`, `OFFSNAP_SET`, `OFFSNAP_SNAPSHOT` and
//! `OFFSNAP_ERROR` (the last two empty when there is none). They run for
//! the profile's own runs (`offsnap backup`, or with `--profile`), not for
//! sources and a destination named on the command line alone. A partial run
//! (some files unreadable) or a failed prune counts as a failure. A hook
//! that cannot be started or fails is reported, and never changes the
//! backup's exit status. A hook still running after [`HOOK_TIMEOUT`] is
//! stopped, so a hung `mail` cannot hold the next scheduled run back.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

use crate::backup::BackupReport;
use crate::config::Profile;
use crate::error::Result;
use crate::runlog::Run;

/// How long a hook may run before it is stopped.
pub const HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// How a run ended, as the hooks are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A complete snapshot was made (and pruning, if any, worked).
    Success,
    /// A snapshot was made, but some files could not be backed up.
    Partial,
    /// No snapshot was made, or pruning after it failed.
    Failure,
}

impl Status {
    /// The word hooks see in `OFFSNAP_STATUS`.
    pub fn word(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Partial => "partial",
            Status::Failure => "failure",
        }
    }

    /// How the run `result` ended.
    pub fn of(result: &Result<(ExitCode, BackupReport)>) -> Status {
        match result {
            Err(_) => Status::Failure,
            Ok((_, r)) if r.prune_error.is_some() => Status::Failure,
            Ok((_, r)) if r.is_partial() => Status::Partial,
            Ok(_) => Status::Success,
        }
    }
}

/// The JSON a hook reads on its stdin.
pub fn payload(run: &Run, status: Status, report: Option<&BackupReport>) -> serde_json::Value {
    let mut value = serde_json::to_value(run).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(map) = value.as_object_mut() {
        map.insert("status".into(), status.word().into());
        if let Some(r) = report {
            map.insert("report".into(), crate::output::backup_json(r));
        }
    }
    value
}

/// Runs the profile's hook for how `result` ended, if it has one.
pub fn after_backup(profile: &Profile, run: &Run, result: &Result<(ExitCode, BackupReport)>) {
    // A run of sources and a destination named on the command line is not
    // the profile's (the run log says the same): its hooks stay quiet.
    if run.profile.is_none() {
        return;
    }
    let status = Status::of(result);
    let (key, command) = match status {
        Status::Success => ("on_success", &profile.on_success),
        Status::Partial | Status::Failure => ("on_failure", &profile.on_failure),
    };
    let Some(command) = command.as_deref().filter(|c| !c.trim().is_empty()) else {
        return;
    };
    let json = payload(run, status, result.as_ref().ok().map(|(_, r)| r));
    if let Err(e) = run_hook(command, run, status, &json) {
        eprintln!("offsnap: the profile's {key} command ({command}): {e}");
    }
}

/// Runs one hook and waits for it; an error says why it did not work.
fn run_hook(
    command: &str,
    run: &Run,
    status: Status,
    json: &serde_json::Value,
) -> std::io::Result<()> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("OFFSNAP_STATUS", status.word())
        .env("OFFSNAP_PROFILE", run.profile.as_deref().unwrap_or(""))
        .env("OFFSNAP_SET", &run.set)
        .env("OFFSNAP_SNAPSHOT", run.snapshot.as_deref().unwrap_or(""))
        .env("OFFSNAP_ERROR", run.error.as_deref().unwrap_or(""))
        .stdin(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        let mut text = json.to_string();
        text.push('\n');
        // A hook that ignores its stdin may close it early: not an error.
        match stdin.write_all(text.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
            _ => {}
        }
    }
    let exit = wait_bounded(&mut child, HOOK_TIMEOUT)?;
    if exit.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("it ended with {exit}")))
    }
}

/// Waits for `child`, stopping it once `limit` has passed.
fn wait_bounded(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::io::Result<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(exit) = child.try_wait()? {
            return Ok(exit);
        }
        if std::time::Instant::now() >= deadline {
            // It may have ended just now: then the kill finds nothing.
            let _ = child.kill();
            child.wait()?;
            return Err(std::io::Error::other(format!(
                "stopped after {}s",
                limit.as_secs()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_that_hangs_is_stopped() -> std::io::Result<()> {
        let mut child = Command::new("sh").args(["-c", "sleep 30"]).spawn()?;
        let started = std::time::Instant::now();
        let e = wait_bounded(&mut child, std::time::Duration::from_millis(200))
            .expect_err("must be stopped");
        assert!(e.to_string().contains("stopped after"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        let mut quick = Command::new("sh").args(["-c", "exit 3"]).spawn()?;
        let exit = wait_bounded(&mut quick, std::time::Duration::from_secs(20))?;
        assert_eq!(exit.code(), Some(3));
        Ok(())
    }
}
