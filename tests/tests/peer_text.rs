//! A helper whose every text carries terminal escape sequences (error
//! messages, warnings, verify findings, the names in its manifest, its
//! stderr): the client prints each of them escaped, never a raw control
//! character.

#![allow(clippy::unwrap_used)]

use offsnap_tests::*;

fn helper() -> String {
    env!("CARGO_BIN_EXE_ansi-helper").to_string()
}

/// Runs `offsnap ARGS --remote-cmd ansi-helper DEST` (DEST last but for
/// what follows it); returns stdout and stderr after checking that neither
/// holds a control character but line ends.
fn run(s: &Scratch, args: &[&str], after: &[&dyn AsRef<std::ffi::OsStr>]) -> (String, String) {
    let h = helper();
    let dest = s.dest();
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = Vec::new();
    for a in args {
        all.push(a);
    }
    all.extend([&"--remote-cmd" as &dyn AsRef<std::ffi::OsStr>, &h, &dest]);
    all.extend_from_slice(after);
    let out = s.offsnap(None, &all);
    for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !bytes.iter().any(|&b| (b < 0x20 && b != b'\n') || b == 0x7f),
            "{args:?}: a raw control character on {what}: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    (stdout(&out), stderr(&out))
}

const SHOWN: &str = "\\x1b[2J\\x1b]0;owned\\x07";

#[test]
fn escape_sequences_from_a_helper_are_shown_escaped() {
    let s = Scratch::new();
    // An error message.
    let (_, err) = run(&s, &["prune", "--set", "t"], &[]);
    assert!(err.contains(&format!("refused {SHOWN}here")), "{err}");
    // What the helper writes on its stderr.
    assert!(
        err.contains(&format!("ansi-helper starts {SHOWN}here\n")),
        "{err}"
    );
    // A verify finding: its path and its reason.
    let (out, _) = run(&s, &["verify", "--set", "t"], &[]);
    assert!(
        out.contains(&format!("src/{SHOWN}name: changed: {SHOWN}content")),
        "{out}"
    );
    // The file a verify progress report names, on the bar (which draws
    // with control characters of its own: only the helper's must not
    // pass raw).
    let out = s.offsnap(
        None,
        &[
            &"verify",
            &"--progress",
            &"--set",
            &"t",
            &"--remote-cmd",
            &helper(),
            &s.dest(),
        ],
    );
    let err = stderr(&out);
    assert!(!err.contains("\x1b]0;owned"), "{err:?}");
    // (The bar is cut to 80 columns off a terminal.)
    assert!(err.contains("0/1 files, src/\\x1b[2J"), "{err:?}");
    // It ends where the helper's last report left it, not at the total.
    assert!(!err.contains("10 B/10 B"), "{err:?}");
    // A name in the manifest, listed.
    let (out, _) = run(&s, &["ls", "--set", "t"], &[&"src"]);
    assert!(out.contains(&format!("{SHOWN}name")), "{out}");
    // Restoring it: the content is wrong, and the message names it.
    let to = s.path("to");
    let (_, err) = run(&s, &["restore", "--set", "t"], &[&"--to", &to]);
    assert!(err.contains(&format!("src/{SHOWN}name")), "{err}");
    // A warning during a backup.
    write_file(&s.src().join("x"), b"x", 0o644, (1_700_000_000, 0));
    let src = s.src();
    let h = helper();
    let dest = s.dest();
    let out = s.offsnap(
        None,
        &[
            &"backup",
            &"--set",
            &"t",
            &"--no-prune",
            &"--remote-cmd",
            &h,
            &src,
            &dest,
        ],
    );
    let err = stderr(&out);
    assert!(!out.stderr.contains(&0x1b), "{err}");
    assert!(err.contains(&format!("src/x: {SHOWN}left out")), "{err}");
}
