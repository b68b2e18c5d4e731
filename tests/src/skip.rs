//! Tests that cannot run here say so where it is seen: the line goes to
//! the process's stderr itself, past the test harness's capture, so plain
//! `cargo test` shows `SKIPPED <test>: <reason>` beside the passing
//! results. Under the requirement variable a suite names (set to `1` by
//! CI) a skip is a failure instead, so a broken setup cannot pass as a
//! green run.

use std::io::Write;

/// The variable that makes a root-only test's skip a failure.
pub const ROOT: &str = "OFFSNAP_REQUIRE_ROOT_TESTS";
/// The variable that makes an SSH test's skip a failure.
pub const SSHD: &str = "OFFSNAP_REQUIRE_SSHD";
/// The variable that makes a browser test's skip a failure.
pub const BROWSER: &str = "OFFSNAP_REQUIRE_BROWSER";

/// Whether `variable` is set to `1`.
pub fn required(variable: &str) -> bool {
    std::env::var_os(variable).is_some_and(|v| v == "1")
}

/// Reports that the calling test cannot run here, for `reason`; panics
/// instead when `variable` requires it to run. `None` reports a part of a
/// test that is left out wherever it is (a filesystem without holes, say).
/// The caller returns (or leaves that part out) after.
pub fn skip(variable: Option<&str>, reason: &str) {
    if let Some(v) = variable {
        assert!(!required(v), "{v}=1, but this test cannot run: {reason}");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    // Straight to the stderr stream: `eprintln!` is captured by the
    // harness and shown only for failing tests.
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
}
