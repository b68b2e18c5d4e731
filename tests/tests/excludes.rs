//! What is left out: gitignore-style excludes from the command line and
//! from files, per-directory `.offsnapignore`, cache directories, other
//! filesystems. Hidden and `.gitignore`d files are backed up.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use offsnap_tests::*;

fn touch(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    write_file(
        p,
        p.file_name().unwrap().as_encoded_bytes(),
        0o644,
        (1_700_000_000, 0),
    );
}

fn stored(s: &Scratch, snap: &str) -> Vec<String> {
    let root = s.set_dir().join(snap);
    let mut v: Vec<String> = tree(&root)
        .into_keys()
        .map(|k| String::from_utf8(k).unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn excludes_follow_gitignore_rules() {
    let s = Scratch::new();
    let src = s.src();
    for f in [
        "a.log",
        "keep.log",
        "build/out.o",
        "sub/build/kept.o",
        "deep/x/node_modules/m.js",
        "node_modules/top.js",
        ".hidden",
        ".gitignore",
        "ignored-by-git.txt",
        "sub/secret1",
        "sub/inner/secret2",
        "secret3",
        "cache/CACHEDIR.TAG",
        "cache/blob",
        "fake-cache/CACHEDIR.TAG",
        "fake-cache/blob",
        "listed.tmp",
    ] {
        touch(&src.join(f));
    }
    fs::write(src.join(".gitignore"), "ignored-by-git.txt\n").unwrap();
    fs::write(src.join("sub/.offsnapignore"), "secret*\n").unwrap();
    fs::write(
        src.join("cache/CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    )
    .unwrap();
    fs::write(src.join("fake-cache/CACHEDIR.TAG"), "not a real tag\n").unwrap();
    let list = s.path("excludes.txt");
    fs::write(&list, "# comment\n*.tmp\n").unwrap();

    let out = s.offsnap(
        Some(&day(0, 0)),
        &[
            &"backup",
            &"--set",
            &"t",
            &"--exclude",
            &"*.log",
            &"--exclude",
            &"!keep.log",
            &"--exclude",
            &"/build",
            &"--exclude",
            &"**/node_modules",
            &"--exclude-from",
            &list,
            &src,
            &s.dest(),
        ],
    );
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    let got = stored(&s, &snap);
    let has = |p: &str| got.iter().any(|g| g == &format!("src/{p}"));
    for kept in [
        "keep.log",
        "sub/build/kept.o",
        ".hidden",
        ".gitignore",
        "ignored-by-git.txt",
        "secret3",
        "sub/.offsnapignore",
        "fake-cache/blob",
    ] {
        assert!(has(kept), "{kept} missing: {got:?}");
    }
    for gone in [
        "a.log",
        "build",
        "node_modules",
        "deep/x/node_modules",
        "sub/secret1",
        "sub/inner/secret2",
        "cache",
        "listed.tmp",
    ] {
        assert!(!has(gone), "{gone} backed up: {got:?}");
    }

    // --no-cachedir-tag keeps cache directories.
    let out = s.offsnap(
        Some(&day(1, 0)),
        &[
            &"backup",
            &"--set",
            &"t",
            &"--no-cachedir-tag",
            &src,
            &s.dest(),
        ],
    );
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    assert!(stored(&s, &snap).contains(&"src/cache/blob".to_string()));

    // A missing exclude file is a clear error, before anything is written.
    let out = s.offsnap(
        Some(&day(2, 0)),
        &[
            &"backup",
            &"--set",
            &"t",
            &"--exclude-from",
            &s.path("nope.txt"),
            &src,
            &s.dest(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--exclude-from"), "{}", stderr(&out));
    assert_eq!(dated_snapshots(&s.set_dir()).len(), 2);
}

/// A tmpfs mounted at a path, unmounted when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[cfg_attr(offsnap_not_root, ignore = "needs root to mount a second filesystem")]
fn one_file_system_stays_on_the_source_filesystem() {
    let s = Scratch::new();
    touch(&s.src().join("here.txt"));
    let mnt = s.src().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mounted = rustix::process::geteuid().is_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        return offsnap_tests::privileged::skip(
            "--one-file-system needs a second filesystem (root to mount a tmpfs)",
        );
    }
    let _guard = Mount(mnt.clone());
    touch(&mnt.join("elsewhere.txt"));
    let out = s.offsnap(
        Some(&day(0, 0)),
        &[&"backup", &"--set", &"t", &"-x", &s.src(), &s.dest()],
    );
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    let got = stored(&s, &snap);
    assert!(got.contains(&"src/here.txt".to_string()), "{got:?}");
    assert!(
        got.contains(&"src/mnt".to_string()),
        "the mount point itself is kept: {got:?}"
    );
    assert!(
        !got.contains(&"src/mnt/elsewhere.txt".to_string()),
        "{got:?}"
    );
    // Without -x the other filesystem is included.
    let out = s.offsnap(
        Some(&day(1, 0)),
        &[&"backup", &"--set", &"t", &s.src(), &s.dest()],
    );
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    assert!(stored(&s, &snap).contains(&"src/mnt/elsewhere.txt".to_string()));
}
