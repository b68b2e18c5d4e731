//! The config file: `offsnap init`, profiles, what the command line
//! overrides, and errors that name the file, line and key.

#![allow(clippy::unwrap_used)]

use std::fs;

use offsnap_tests::*;

fn config_path(s: &Scratch) -> std::path::PathBuf {
    s.path("config/offsnap/config.toml")
}

#[test]
fn init_then_backup_with_no_arguments() {
    let s = Scratch::new();
    write_file(&s.src().join("a.txt"), b"a", 0o644, (1_700_000_000, 0));
    write_file(&s.src().join("junk.tmp"), b"tmp", 0o644, (1_700_000_000, 0));
    let out = s.offsnap(
        None,
        &[&"init", &"--profile", &"laptop", &s.dest(), &s.src()],
    );
    assert_ok(&out);
    assert_eq!(stdout(&out).trim(), config_path(&s).to_str().unwrap());
    let text = fs::read_to_string(config_path(&s)).unwrap();
    assert!(text.contains("[profiles.laptop]") && text.contains("keep_within = \"30d\""));
    // A second init does not clobber it.
    let again = s.offsnap(None, &[&"init", &s.dest()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("exists already"),
        "{}",
        stderr(&again)
    );

    // `offsnap backup` alone uses the default profile: sources, destination,
    // excludes (the starter leaves out *.tmp).
    let out = s.offsnap(Some(&day(0, 0)), &[&"backup", &"--set", &"t"]);
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    let root = s.set_dir().join(&snap);
    assert!(root.join("src/a.txt").exists());
    assert!(!root.join("src/junk.tmp").exists());
    // And `snapshots` needs no destination either.
    let out = s.offsnap(None, &[&"snapshots", &"--set", &"t"]);
    assert_ok(&out);
    assert!(stdout(&out).starts_with(&snap));
}

#[test]
fn the_command_line_overrides_the_profile() {
    let s = Scratch::new();
    write_file(&s.src().join("a.txt"), b"a", 0o644, (1_700_000_000, 0));
    write_file(&s.src().join("b.log"), b"b", 0o644, (1_700_000_000, 0));
    fs::create_dir_all(s.path("other")).unwrap();
    write_file(&s.path("other/c.txt"), b"c", 0o644, (1_700_000_000, 0));
    fs::create_dir_all(config_path(&s).parent().unwrap()).unwrap();
    fs::write(
        config_path(&s),
        format!(
            "default = \"main\"\n\n[profiles.main]\nsources = [{:?}]\ndestination = {:?}\nset = \"fromprofile\"\nexclude = [\"*.log\"]\n\n[profiles.main.retention]\nkeep_last = 1\n\n[profiles.other]\nsources = [{:?}]\ndestination = {:?}\nset = \"other\"\n",
            s.src().display().to_string(),
            s.dest().display().to_string(),
            s.path("other").display().to_string(),
            s.dest().display().to_string(),
        ),
    )
    .unwrap();
    // The profile's set, excludes and retention (keep the last one).
    for d in 0..2 {
        let out = s.offsnap(Some(&day(d, 0)), &[&"backup"]);
        assert_ok(&out);
    }
    let sets = s.dest().join("fromprofile");
    let snaps = dated_snapshots(&sets);
    assert_eq!(snaps.len(), 1, "the profile keeps the last one");
    assert!(!sets.join(&snaps[0]).join("src/b.log").exists());

    // --set and retention flags on the command line win; --exclude adds.
    let out = s.offsnap(
        Some(&day(2, 0)),
        &[
            &"backup",
            &"--set",
            &"cli",
            &"--keep-last",
            &"5",
            &"--exclude",
            &"a.txt",
        ],
    );
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    let root = s.dest().join("cli").join(&snap);
    assert!(!root.join("src/a.txt").exists() && !root.join("src/b.log").exists());

    // --profile picks another one.
    let out = s.offsnap(Some(&day(3, 0)), &[&"backup", &"--profile", &"other"]);
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    assert!(
        s.dest()
            .join("other")
            .join(&snap)
            .join("other/c.txt")
            .exists()
    );

    // Explicit sources and destination replace the profile's.
    let out = s.offsnap(
        Some(&day(4, 0)),
        &[
            &"backup",
            &"--set",
            &"x",
            &s.path("other"),
            &s.path("elsewhere"),
        ],
    );
    assert_ok(&out);
    assert_eq!(dated_snapshots(&s.path("elsewhere/x")).len(), 1);

    // An unknown profile is an error.
    let out = s.offsnap(Some(&day(5, 0)), &[&"backup", &"--profile", &"nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no profile \"nope\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_errors_name_the_file_line_and_key() {
    let s = Scratch::new();
    fs::create_dir_all(config_path(&s).parent().unwrap()).unwrap();
    for (text, line, key) in [
        (
            "[profiles.a]\nsources = []\nsorces = [\"x\"]\n",
            "line 3",
            "sorces",
        ),
        ("[profiles.a]\nport = \"twenty-two\"\n", "line 2", "port"),
        (
            "[profiles.a]\n[profiles.a.retention]\nkeep_within = \"a month\"\n",
            "line 3",
            "a month",
        ),
        ("default = \"b\"\n[profiles.a]\n", "", "profiles.b"),
        ("[profiles.a\n", "line 1", ""),
    ] {
        fs::write(config_path(&s), text).unwrap();
        let out = s.offsnap(None, &[&"snapshots", &s.dest()]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = stderr(&out);
        assert!(
            err.contains("config.toml") && err.contains(line) && err.contains(key),
            "{text}: {err}"
        );
    }
    // --config names another file; a missing one is an error.
    let out = s.offsnap(
        None,
        &[&"snapshots", &"--config", &s.path("none.toml"), &s.dest()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("none.toml"), "{}", stderr(&out));
}

#[test]
fn ls_versions_diff_and_restore_take_the_profiles_destination() {
    let s = Scratch::new();
    fs::create_dir_all(s.src().join("Documents")).unwrap();
    write_file(
        &s.src().join("Documents/notes.txt"),
        b"v1",
        0o644,
        (1_700_000_000, 0),
    );
    let out = s.offsnap(None, &[&"init", &s.dest(), &s.src()]);
    assert_ok(&out);
    let first = s.offsnap(Some(&day(0, 0)), &[&"backup", &"--set", &"t"]);
    assert_ok(&first);
    write_file(
        &s.src().join("Documents/notes.txt"),
        b"v2!",
        0o644,
        (1_700_000_100, 0),
    );
    let second = s.offsnap(Some(&day(1, 0)), &[&"backup", &"--set", &"t"]);
    assert_ok(&second);
    let (first, second) = (
        stdout(&first).trim().to_string(),
        stdout(&second).trim().to_string(),
    );

    // A path alone is a path inside the snapshot, not a destination.
    let out = s.offsnap(None, &[&"ls", &"--set", &"t", &"src/Documents"]);
    assert_ok(&out);
    assert!(stdout(&out).contains("notes.txt"), "{}", stdout(&out));
    let out = s.offsnap(None, &[&"ls", &"--set", &"t"]);
    assert_ok(&out);
    assert!(stdout(&out).contains("src"), "{}", stdout(&out));
    let out = s.offsnap(
        None,
        &[&"versions", &"--set", &"t", &"src/Documents/notes.txt"],
    );
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains(&first) && text.contains(&second), "{text}");
    let out = s.offsnap(None, &[&"diff", &"--set", &"t", &"latest~1", &"latest"]);
    assert_ok(&out);
    assert_eq!(stdout(&out).trim(), "M src/Documents/notes.txt");
    let to = s.path("restored");
    let out = s.offsnap(
        None,
        &[
            &"restore",
            &"--set",
            &"t",
            &"--snapshot",
            &first,
            &"--to",
            &to,
            &"src/Documents",
        ],
    );
    assert_ok(&out);
    assert_eq!(fs::read(to.join("src/Documents/notes.txt")).unwrap(), b"v1");

    // A destination named first still wins over the profile's: this one
    // holds the set's backups, so it reads as a destination.
    let out = s.offsnap(None, &[&"ls", &"--set", &"t", &s.dest(), &"src/Documents"]);
    assert_ok(&out);
    assert!(stdout(&out).contains("notes.txt"));
    let other = s.path("elsewhere");
    fs::create_dir(&other).unwrap();
    let out = s.offsnap(
        None,
        &[&"diff", &"--set", &"t", &other, &"latest~1", &"latest"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).is_empty());

    // Without a profile, a path alone is not taken for a destination.
    let bare = Scratch::new();
    let out = bare.offsnap(
        None,
        &[&"versions", &"--set", &"t", &"src/Documents/notes.txt"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no destination"), "{}", stderr(&out));
}
