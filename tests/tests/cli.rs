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

#[test]
fn ls_shows_owner_names_and_human_sizes_unless_asked_for_numbers() {
    let s = Scratch::new();
    write_file(
        &s.src().join("big"),
        &[7u8; 1536],
        0o640,
        (1_700_000_000, 0),
    );
    let snap = s.backup(&day(0, 0));
    assert_same_tree(&s.src(), &s.restore(&snap).join("src"));
    let ls = |extra: &[&str]| {
        let mut args = vec!["ls", "--set", "t"];
        args.extend_from_slice(extra);
        let dest = s.dest().display().to_string();
        let out = s
            .command(None)
            .args(&args)
            .arg(&dest)
            .arg("src")
            .output()
            .unwrap();
        assert_ok(&out);
        stdout(&out)
    };
    // The files belong to this process's user; this machine names it.
    let uid = rustix::process::getuid().as_raw();
    let name = String::from_utf8(
        Command::new("id")
            .args(["-un", &uid.to_string()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let text = ls(&[]);
    assert!(
        text.starts_with(&format!("-rw-r-----  {name:<8} ")),
        "{text}"
    );
    assert!(
        text.contains(" 1.5 KiB  2023-11-14 22:13:20  big"),
        "{text}"
    );
    let text = ls(&["-n", "--bytes"]);
    assert!(
        text.starts_with(&format!("-rw-r-----  {uid:<8} ")),
        "{text}"
    );
    assert!(text.contains(" 1536  2023-11-14 22:13:20  big"), "{text}");
}

#[test]
fn versions_has_a_header_and_status_reads_for_people() {
    let s = Scratch::new();
    write_file(&s.src().join("f"), b"one", 0o644, (1_700_000_000, 0));
    let first = s.backup(&day(0, 0));
    write_file(&s.src().join("f"), b"two!", 0o644, (1_700_000_100, 0));
    let second = s.backup(&day(1, 0));
    assert_same_tree(&s.src(), &s.restore(&second).join("src"));
    let out = s.offsnap(None, &[&"versions", &"--set", &"t", &s.dest(), &"src/f"]);
    assert_ok(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("SNAPSHOT")
            && lines[0].contains("SIZE")
            && lines[0].contains("MODIFIED"),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&first) && lines[1].contains(" 3 B  "),
        "{text}"
    );
    assert!(
        lines[2].starts_with(&second) && lines[2].contains(" 4 B  "),
        "{text}"
    );

    // status: times to the second, durations in human units.
    let out = s.offsnap(None, &[&"status"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains(&second) && text.contains(", took "), "{text}");
    let nanos = text
        .split(|c: char| !c.is_ascii_digit())
        .any(|run| run.len() >= 9);
    assert!(!nanos, "status shows sub-second digits: {text}");

    // With no profile and no success, the message reads as a sentence.
    let fresh = Scratch::new();
    let out = fresh.offsnap(None, &[&"status"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "offsnap: no backup has succeeded\n");
}

#[test]
fn a_local_backup_speaks_as_offsnap_when_the_clock_has_not_moved() {
    let s = Scratch::new();
    write_file(&s.src().join("f"), b"one", 0o644, (1_700_000_000, 0));
    let first = s.backup(&day(0, 0));
    let out = s.offsnap(
        Some(&day(0, 0)),
        &[&"backup", &"--set", &"t", &s.src(), &s.dest()],
    );
    assert_ok(&out);
    let second = stdout(&out).trim().to_string();
    assert!(second > first);
    let err = stderr(&out);
    assert!(
        err.starts_with("offsnap: note: set t: the newest snapshot, ")
            && !err.contains("offsnap-remote"),
        "{err}"
    );
    assert_same_tree(&s.src(), &s.restore(&second).join("src"));
}

/// The subcommands a `--help` text lists (not `help` itself).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

#[test]
fn every_command_teaches_itself_with_examples_and_only_its_options() {
    let top = subcommands(&offsnap_out(&["--help"]));
    assert!(top.len() >= 15, "{top:?}");
    let mut commands: Vec<Vec<String>> = Vec::new();
    for c in &top {
        commands.push(vec![c.clone()]);
        for sub in subcommands(&offsnap_out(&[c, "--help"])) {
            commands.push(vec![c.clone(), sub]);
        }
    }
    assert!(commands.iter().any(|c| c.join(" ") == "schedule install"));
    for words in &commands {
        let mut args: Vec<&str> = words.iter().map(String::as_str).collect();
        args.push("--help");
        let help = offsnap_out(&args);
        let name = words.join(" ");
        let examples: Vec<&str> = help
            .lines()
            .skip_while(|l| *l != "Examples:")
            .filter(|l| l.starts_with(&format!("  offsnap {name}")))
            .collect();
        assert!(
            examples.len() >= 2,
            "{name} --help has no examples:\n{help}"
        );
        // -h stays short: no examples.
        args.pop();
        args.push("-h");
        assert!(!offsnap_out(&args).contains("Examples:"), "{name} -h");
    }
    // Commands that never reach a destination list no connection options;
    // those that work on a profile but not on a set, no --set.
    for name in ["status", "init", "schedule install", "completions", "man"] {
        let mut args: Vec<&str> = name.split(' ').collect();
        args.push("--help");
        let help = offsnap_out(&args);
        assert!(
            !help.contains("--bwlimit") && !help.contains("--identity"),
            "{name}: {help}"
        );
        assert!(!help.contains("--set"), "{name} lists --set: {help}");
    }
    // Shared options are grouped under their own headings.
    let help = offsnap_out(&["ls", "-h"]);
    let own = help.find("--numeric-uid-gid").unwrap();
    let connection = help.find("Connection options:").unwrap();
    assert!(
        own < help.find("Profile options:").unwrap() && own < connection,
        "{help}"
    );
    assert!(help[connection..].contains("--bwlimit"), "{help}");
}
