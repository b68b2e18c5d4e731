//! Metadata fidelity: hard links inside the source, `user.` extended
//! attributes, FIFOs, sockets and device nodes, sparse files, set-id bits,
//! long names and deep paths, and the hard-link limit. Every test restores
//! and compares with the source (`assert_same_tree` compares content,
//! mode, mtime, extended attributes and which names share an inode).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use offsnap_tests::*;

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    match rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()) {
        Ok(()) => true,
        Err(rustix::io::Errno::NOTSUP) => false,
        Err(e) => panic!("setxattr {}: {e}", path.display()),
    }
}

fn verify_all(s: &Scratch) {
    let out = s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &s.dest()]);
    assert_ok(&out);
}

#[test]
fn hard_links_in_the_source_stay_hard_links() {
    let s = Scratch::new();
    let src = s.src();
    fs::create_dir(src.join("d")).unwrap();
    write_file(&src.join("a"), b"shared content", 0o640, (1_700_000_000, 7));
    fs::hard_link(src.join("a"), src.join("b")).unwrap();
    fs::hard_link(src.join("a"), src.join("d/c")).unwrap();
    write_file(&src.join("x"), b"pair", 0o644, (1_700_000_000, 0));
    fs::hard_link(src.join("x"), src.join("y")).unwrap();
    // A link to a file outside the source: one name inside, stored once.
    write_file(&s.path("outside"), b"out", 0o644, (1_700_000_000, 0));
    fs::hard_link(s.path("outside"), src.join("lonely")).unwrap();

    let first = s.backup(&day(0, 0));
    let snap = s.set_dir().join(&first).join("src");
    assert_eq!(inode(&snap.join("a")), inode(&snap.join("b")));
    assert_eq!(inode(&snap.join("a")), inode(&snap.join("d/c")));
    assert_eq!(inode(&snap.join("x")), inode(&snap.join("y")));
    assert_ne!(inode(&snap.join("a")), inode(&snap.join("x")));
    let out = s.offsnap(None, &[&"ls", &"--set", &"t", &s.dest(), &"src/d"]);
    assert_ok(&out);
    assert!(stdout(&out).contains("=> src/a"), "{}", stdout(&out));
    assert_same_tree(&src, &s.restore(&first).join("src"));

    // Unchanged: the links are kept from the previous snapshot's inodes.
    let second = s.backup(&day(1, 0));
    let snap2 = s.set_dir().join(&second).join("src");
    assert_eq!(inode(&snap2.join("a")), inode(&snap.join("a")));
    assert_eq!(inode(&snap2.join("d/c")), inode(&snap.join("a")));

    // Changed in place through one name: every name sees it.
    fs::write(src.join("b"), b"shared content, edited").unwrap();
    set_mtime(&src.join("b"), (1_700_000_500, 1));
    // The first name goes: the next one becomes the file.
    fs::remove_file(src.join("x")).unwrap();
    let third = s.backup(&day(2, 0));
    let snap3 = s.set_dir().join(&third).join("src");
    assert_eq!(inode(&snap3.join("a")), inode(&snap3.join("d/c")));
    assert_ne!(inode(&snap3.join("a")), inode(&snap.join("a")));
    assert_eq!(fs::read(snap3.join("y")).unwrap(), b"pair");
    assert_same_tree(&src, &s.restore(&third).join("src"));
    // The older snapshot still holds the old content under all names.
    assert_eq!(fs::read(snap.join("d/c")).unwrap(), b"shared content");
    verify_all(&s);

    // Restoring over a restore replaces every name, links included.
    let to = s.path("twice");
    for _ in 0..2 {
        let out = s.offsnap(
            None,
            &[
                &"restore",
                &"--set",
                &"t",
                &"--overwrite",
                &s.dest(),
                &"--to",
                &to,
            ],
        );
        assert_ok(&out);
    }
    assert_same_tree(&src, &to.join("src"));

    // Restoring one of the names alone gives it its content.
    let to = s.path("one");
    let out = s.offsnap(
        None,
        &[
            &"restore",
            &"--set",
            &"t",
            &s.dest(),
            &"--to",
            &to,
            &"src/d/c",
        ],
    );
    assert_ok(&out);
    assert_eq!(
        fs::read(to.join("src/d/c")).unwrap(),
        b"shared content, edited"
    );
}

#[test]
fn user_extended_attributes_are_recorded_and_restored() {
    let s = Scratch::new();
    let src = s.src();
    fs::create_dir(src.join("dir")).unwrap();
    write_file(&src.join("dir/f"), b"content", 0o644, (1_700_000_000, 0));
    if !set_xattr(&src.join("dir/f"), "user.comment", b"first") {
        offsnap_tests::skip::skip(None, "this filesystem has no user extended attributes");
        return;
    }
    set_xattr(&src.join("dir/f"), "user.bin", &[0, 1, 2, 255]);
    set_xattr(&src.join("dir"), "user.dir", b"on a directory");
    set_mtime(&src.join("dir/f"), (1_700_000_000, 0));
    set_mtime(&src.join("dir"), (1_700_000_000, 0));
    let first = s.backup(&day(0, 0));
    let back = s.restore(&first).join("src");
    assert_same_tree(&src, &back);
    assert_eq!(xattrs(&back.join("dir/f")).len(), 2);

    // More attributes than a snapshot takes: the file is stored without
    // them, and the run says so (partial).
    write_file(&src.join("crowded"), b"c", 0o644, (1_700_000_000, 0));
    for i in 0..130 {
        set_xattr(&src.join("crowded"), &format!("user.a{i:03}"), b"x");
    }
    let out = s.offsnap(
        Some(&day(0, 30)),
        &[&"backup", &"--set", &"t", &s.src(), &s.dest()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("more than 128 extended attributes; stored without them"),
        "{}",
        stderr(&out)
    );
    let crowded = s.restore(stdout(&out).trim()).join("src/crowded");
    assert_eq!(fs::read(&crowded).unwrap(), b"c");
    assert!(xattrs(&crowded).is_empty());
    fs::remove_file(src.join("crowded")).unwrap();

    // An attribute changed alone (content and mtime the same) is a change.
    set_xattr(&src.join("dir/f"), "user.comment", b"second");
    let second = s.backup(&day(1, 0));
    assert_same_tree(&src, &s.restore(&second).join("src"));
    let old = s.restore(&first).join("src");
    assert_eq!(
        xattrs(&old.join("dir/f"))[&b"user.comment".to_vec()],
        b"first"
    );
    verify_all(&s);
}

#[test]
fn fifos_sockets_and_device_nodes_are_recorded_not_made_on_the_host() {
    let s = Scratch::new();
    let src = s.src();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let listener = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let root = rustix::process::geteuid().is_root();
    if root {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
    } else {
        println!("not root: the device node part is left out");
    }
    for n in ["pipe", "sock"] {
        set_mtime(&src.join(n), (1_700_000_000, 9));
    }
    let first = s.backup(&day(0, 0));
    drop(listener);
    // Nothing of the kind exists on the backup host.
    let snap = s.set_dir().join(&first).join("src");
    for n in ["pipe", "sock", "null"] {
        assert!(fs::symlink_metadata(snap.join(n)).is_err(), "{n} was made");
    }
    verify_all(&s);
    let out = s.offsnap(None, &[&"ls", &"--set", &"t", &s.dest(), &"src"]);
    assert!(stdout(&out).contains("prw-r-----"), "{}", stdout(&out));
    // A restore makes them again (the device as root only).
    assert_same_tree(&src, &s.restore(&first).join("src"));
    // Unchanged, they are kept.
    let second = s.backup(&day(1, 0));
    assert_same_tree(&src, &s.restore(&second).join("src"));
}

#[test]
fn sparse_files_stay_sparse() {
    let s = Scratch::new();
    let path = s.src().join("disk.img");
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(&path).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"header", 0).unwrap();
        f.write_all_at(&[7u8; 10_000], 32 << 20).unwrap();
    }
    set_mtime(&path, (1_700_000_000, 0));
    let used = |p: &Path| fs::metadata(p).unwrap().blocks() * 512;
    if used(&path) > 1 << 20 {
        offsnap_tests::skip::skip(None, "this filesystem does not keep holes");
        return;
    }
    let first = s.backup(&day(0, 0));
    let stored = s.set_dir().join(&first).join("src/disk.img");
    assert!(used(&stored) < 1 << 20, "stored {} bytes", used(&stored));
    let back = s.restore(&first).join("src/disk.img");
    assert!(used(&back) < 1 << 20, "restored {} bytes", used(&back));
    assert_eq!(fs::read(&back).unwrap(), fs::read(&path).unwrap());
    assert_eq!(fs::metadata(&back).unwrap().len(), 64 << 20);
}

#[test]
fn set_id_bits_are_restored_but_never_stored_on_the_host() {
    let s = Scratch::new();
    let f = s.src().join("tool");
    write_file(&f, b"#!/bin/sh\n", 0o755, (1_700_000_000, 0));
    fs::set_permissions(&f, fs::Permissions::from_mode(0o6755)).unwrap();
    fs::create_dir(s.src().join("shared")).unwrap();
    fs::set_permissions(s.src().join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    let mode = fs::metadata(&f).unwrap().mode() & 0o7777;
    if mode != 0o6755 {
        offsnap_tests::skip::skip(
            None,
            &format!("this filesystem drops set-id bits ({mode:o})"),
        );
        return;
    }
    let first = s.backup(&day(0, 0));
    let stored = s.set_dir().join(&first).join("src/tool");
    assert_eq!(fs::metadata(&stored).unwrap().mode() & 0o6000, 0);
    verify_all(&s);
    let back = s.restore(&first).join("src");
    assert_same_tree(&s.src(), &back);
    // Unchanged next time: still linked.
    let second = s.backup(&day(1, 0));
    assert_eq!(
        inode(&s.set_dir().join(&second).join("src/tool")),
        inode(&stored)
    );
}

#[test]
fn long_names_and_deep_paths() {
    let s = Scratch::new();
    let long = "n".repeat(255);
    let mut deep = s.src();
    // 15 levels of 255-byte names: a path of about 3,900 bytes.
    for i in 0..15 {
        deep = deep.join(format!("{i:02}{}", &long[2..]));
    }
    fs::create_dir_all(&deep).unwrap();
    write_file(&deep.join("f"), b"deep", 0o644, (1_700_000_000, 0));
    write_file(&s.src().join(&long), b"long", 0o644, (1_700_000_000, 0));
    let first = s.backup(&day(0, 0));
    assert_same_tree(&s.src(), &s.restore(&first).join("src"));
    let second = s.backup(&day(1, 0));
    assert_same_tree(&s.src(), &s.restore(&second).join("src"));
    verify_all(&s);
}

/// Hard-links `target` under `dir` until the filesystem refuses; returns
/// whether it refused with EMLINK within `max` links.
fn fill_links(target: &Path, dir: &Path, max: u32) -> bool {
    fs::create_dir_all(dir).unwrap();
    for i in 0..max {
        match fs::hard_link(target, dir.join(i.to_string())) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => return true,
            Err(e) => panic!("link: {e}"),
        }
    }
    false
}

#[test]
fn a_stored_inode_at_the_link_limit_is_copied_with_a_warning() {
    let s = Scratch::new();
    write_file(&s.src().join("f"), b"popular", 0o644, (1_700_000_000, 0));
    write_file(&s.src().join("g"), b"other", 0o644, (1_700_000_000, 0));
    let first = s.backup(&day(0, 0));
    let stored = s.set_dir().join(&first).join("src/f");
    // Other names for the stored inode, on the same filesystem.
    if !fill_links(&stored, &s.dest().join("links"), 70_000) {
        offsnap_tests::skip::skip(
            None,
            "no hard-link limit reached within 70,000 links on this filesystem",
        );
        return;
    }
    let out = s.offsnap(
        Some(&day(1, 0)),
        &[&"backup", &"--set", &"t", &s.src(), &s.dest()],
    );
    assert_ok(&out);
    assert!(stderr(&out).contains("hard-link limit"), "{}", stderr(&out));
    let second = stdout(&out).trim().to_string();
    let copy = s.set_dir().join(&second).join("src/f");
    assert_ne!(inode(&copy), inode(&stored));
    assert_same_tree(&s.src(), &s.restore(&second).join("src"));
    // Later runs link to the copy.
    let third = s.backup(&day(2, 0));
    assert_eq!(inode(&s.set_dir().join(&third).join("src/f")), inode(&copy));
    fs::remove_dir_all(s.dest().join("links")).unwrap();
    verify_all(&s);
}

/// Makes `levels` nested directories of 255-byte names under `root` with a
/// file `f` at the bottom, through directory handles (the whole path is
/// longer than `PATH_MAX`); returns the path's length.
fn deep_chain(root: &Path, levels: usize, content: &[u8]) -> usize {
    use rustix::fs::{Mode, OFlags};
    let mut dir =
        rustix::fs::open(root, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    let mut len = root.as_os_str().len();
    for i in 0..levels {
        let name = format!("{i:03}{}", "d".repeat(252));
        rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(
            &dir,
            name.as_str(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap();
        len += 256;
    }
    let f = rustix::fs::openat(
        &dir,
        "f",
        OFlags::WRONLY | OFlags::CREATE,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
    rustix::io::write(&f, content).unwrap();
    len + 2
}

/// The content of the file at the bottom of a [`deep_chain`].
fn read_deep(root: &Path, levels: usize) -> Vec<u8> {
    use rustix::fs::{Mode, OFlags};
    let mut dir =
        rustix::fs::open(root, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    for i in 0..levels {
        let name = format!("{i:03}{}", "d".repeat(252));
        dir = rustix::fs::openat(
            &dir,
            name.as_str(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap();
    }
    let f = rustix::fs::openat(&dir, "f", OFlags::RDONLY, Mode::empty()).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let n = rustix::io::read(&f, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn paths_longer_than_path_max_are_backed_up_and_restored() {
    let s = Scratch::new();
    let levels = 20;
    let len = deep_chain(&s.src(), levels, b"at the bottom");
    assert!(len > 4096, "{len}");
    let first = s.backup(&day(0, 0));
    assert_eq!(
        read_deep(&s.set_dir().join(&first).join("src"), levels),
        b"at the bottom"
    );
    let to = s.path("back");
    let out = s.offsnap(None, &[&"restore", &"--set", &"t", &s.dest(), &"--to", &to]);
    assert_ok(&out);
    assert_eq!(read_deep(&to.join("src"), levels), b"at the bottom");
    // Unchanged next time: linked, and `verify` reaches it.
    let second = s.backup(&day(1, 0));
    assert_eq!(
        read_deep(&s.set_dir().join(&second).join("src"), levels),
        b"at the bottom"
    );
    verify_all(&s);
}

#[test]
fn a_changed_hard_linked_file_sent_as_a_delta_keeps_its_names_linked() {
    let s = Scratch::new();
    let src = s.src();
    let mut rng = offsnap_tests::random::Rng::new(5);
    let mut content = rng.noise(600_000);
    write_file(&src.join("a"), &content, 0o644, (1_700_000_000, 0));
    fs::hard_link(src.join("a"), src.join("b")).unwrap();
    s.backup(&day(0, 0));
    content[300_000..300_100].fill(7);
    fs::write(src.join("a"), &content).unwrap();
    set_mtime(&src.join("a"), (1_700_000_100, 0));
    let out = s.offsnap(
        Some(&day(1, 0)),
        &[
            &"backup",
            &"--set",
            &"t",
            &"--json",
            // Through a helper process: to a plain local path the change
            // would travel whole.
            &"--remote-cmd",
            &remote_bin(),
            &s.src(),
            &s.dest(),
        ],
    );
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["sent_delta"], 1, "{report}");
    let snap = s
        .set_dir()
        .join(report["snapshot"].as_str().unwrap())
        .join("src");
    assert_eq!(inode(&snap.join("a")), inode(&snap.join("b")));
    assert_same_tree(
        &src,
        &s.restore(report["snapshot"].as_str().unwrap()).join("src"),
    );
}
