//! Peak memory of a process, as GNU time (`/usr/bin/time -f %M`) measures
//! it: in KiB, whatever else the machine is doing.

use std::path::Path;
use std::process::Command;

const GNU_TIME: &str = "/usr/bin/time";

/// Whether GNU time is here; without it a memory test is skipped, unless
/// skips are failures (`OFFSNAP_REQUIRE_ROOT_TESTS`).
pub fn have_gnu_time() -> bool {
    if Path::new(GNU_TIME).exists() {
        return true;
    }
    crate::skip::skip(
        Some(crate::skip::ROOT),
        "no GNU time (/usr/bin/time) to measure the helper's memory",
    );
    false
}

/// A command that runs what follows its arguments under GNU time, which
/// writes the peak RSS into `rss`.
pub fn timed(rss: &Path) -> Command {
    let mut c = Command::new(GNU_TIME);
    c.arg("-f").arg("%M").arg("-o").arg(rss);
    c
}

/// A `--remote-cmd` running the helper under GNU time, which writes its
/// peak RSS into `rss`.
pub fn timed_helper(rss: &Path) -> String {
    format!(
        "{GNU_TIME} -f %M -o {} {}",
        rss.display(),
        crate::remote_bin().display()
    )
}

/// The peak RSS in KiB GNU time wrote into `rss`.
pub fn peak_kib(rss: &Path) -> u64 {
    gnu_time_figure(rss)
}

/// `cmd` run under GNU time, which writes into `out` what `format` asks
/// of it (`%M` peak RSS in KiB, `%I` blocks read from disk in 512-byte
/// units: reads the page cache answered are not counted).
pub fn under_gnu_time(cmd: &Command, format: &str, out: &Path) -> Command {
    let mut c = Command::new(GNU_TIME);
    c.arg("-f").arg(format).arg("-o").arg(out);
    c.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        c.current_dir(dir);
    }
    c
}

/// The number GNU time wrote into `out`.
pub fn gnu_time_figure(out: &Path) -> u64 {
    let text = std::fs::read_to_string(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", out.display()))
}
