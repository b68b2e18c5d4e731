//! Decides, when the suites are built, which tests this machine cannot run,
//! so that `cargo test` lists them as `ignored` with the reason instead of
//! counting them as passed.
//!
//! Each missing requirement sets a `cfg` that the tests concerned turn into
//! `#[ignore = "reason"]`. Where CI asks for a kind of test with an
//! `OFFSNAP_REQUIRE_*` variable, nothing is ignored: the test runs and its
//! own check fails loudly, so a broken CI machine cannot skip silently.

use std::path::{Path, PathBuf};

/// A requirement: the `cfg` set when it is missing, and the variable that
/// forbids ignoring it.
struct Need {
    cfg: &'static str,
    required_by: &'static str,
    met: bool,
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for var in ["PATH", "OFFSNAP_REQUIRE_SSHD", "OFFSNAP_REQUIRE_ROOT_TESTS"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    // Installing a package adds a program here: watch the directories.
    for dir in program_dirs() {
        if dir.is_dir() {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
    let needs = [
        Need {
            cfg: "offsnap_no_sshd",
            required_by: "OFFSNAP_REQUIRE_SSHD",
            met: find("sshd").is_some() && find("ssh-keygen").is_some(),
        },
        Need {
            cfg: "offsnap_not_root",
            required_by: "OFFSNAP_REQUIRE_ROOT_TESTS",
            met: is_root(),
        },
    ];
    for need in needs {
        println!("cargo::rustc-check-cfg=cfg({})", need.cfg);
        let required = std::env::var_os(need.required_by).is_some_and(|v| v == "1");
        if !need.met && !required {
            println!("cargo::rustc-cfg={}", need.cfg);
        }
    }
}

fn program_dirs() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")]);
    dirs
}

fn find(program: &str) -> Option<PathBuf> {
    program_dirs()
        .into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Whether the build runs as root (tests run as the same user); read from
/// `/proc` so the build script needs no dependency.
fn is_root() -> bool {
    let status = std::fs::read_to_string(Path::new("/proc/self/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}
