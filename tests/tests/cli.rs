//! The command line teaches itself: completion scripts a real shell
//! loads, and a man page that `man` renders, both generated from the
//! parser's own definitions.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use offsnap_tests::*;

fn offsnap_out(args: &[&str]) -> String {
    let out = Command::new(offsnap_bin()).args(args).output().unwrap();
    assert_ok(&out);
    stdout(&out)
}

#[test]
fn bash_loads_the_completions_and_they_know_the_commands() {
    let script = offsnap_out(&["completions", "bash"]);
    assert!(script.contains("restore") && script.contains("--as-of"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("offsnap.bash");
    std::fs::write(&file, script).unwrap();
    let out = Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(format!("source {:?} && complete -p offsnap", file))
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(stdout(&out).contains("offsnap"), "{}", stdout(&out));
    for shell in ["zsh", "fish"] {
        assert!(offsnap_out(&["completions", shell]).contains("backup"));
    }
}

#[test]
fn the_man_page_renders_and_documents_every_command() {
    let page = offsnap_out(&["man"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("offsnap.1");
    std::fs::write(&file, page).unwrap();
    let Ok(out) = Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
    else {
        panic!("`man` is not installed (apt-get install man-db)");
    };
    assert_ok(&out);
    let text = stdout(&out);
    for section in [
        "OFFSNAP BACKUP",
        "OFFSNAP RESTORE",
        "OFFSNAP VERIFY",
        "--as-of",
        "--exclude",
    ] {
        assert!(text.contains(section), "the man page lacks {section}");
    }
}

#[test]
fn help_lists_only_the_options_a_command_has() {
    let help = offsnap_out(&["status", "--help"]);
    assert!(
        !help.contains("--bwlimit") && !help.contains("--identity"),
        "{help}"
    );
    let help = offsnap_out(&["restore", "--help"]);
    assert!(
        help.contains("--bwlimit") && help.contains("--as-of"),
        "{help}"
    );
}
