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
    let text = std::fs::read_to_string(rss).unwrap_or_else(|e| panic!("{}: {e}", rss.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", rss.display()))
}
