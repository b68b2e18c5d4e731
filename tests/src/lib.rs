//! Test harness for offsnap's end-to-end suites: finds (and if needed
//! builds) the real `offsnap` and `offsnap-remote` binaries, runs them in
//! temporary directories, builds random trees, and compares trees entry by
//! entry (names as bytes, kinds, contents, modes, mtimes to the
//! nanosecond, symlink targets).
//!
//! Cargo gives integration tests the paths of their own package's binaries
//! only, so the harness runs `cargo build --bins -p offsnap -p
//! offsnap-remote` once per test process, with the same profile, into the
//! same target directory as the tests. `OFFSNAP_BIN_DIR` names a directory
//! holding prebuilt binaries instead.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod browser;
pub mod dropbear;
pub mod loopfs;
pub mod measure;
pub mod privileged;
pub mod random;
pub mod raw;
pub mod skip;
pub mod sshd;
pub mod terminal;

/// Directory of the built binaries.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("OFFSNAP_BIN_DIR") {
            return PathBuf::from(dir);
        }
        // target/<profile>/deps/<test-binary>
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary under target/<profile>/deps")
            .to_path_buf();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_string(),
            Some(other) => other.to_string(),
            None => "dev".to_string(),
        };
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--bins",
                "-p",
                "offsnap",
                "-p",
                "offsnap-remote",
            ])
            .arg("--profile")
            .arg(&profile)
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for the binaries");
        assert!(status.success(), "building the binaries failed");
        profile_dir
    })
}

/// Path of the `offsnap` binary.
pub fn offsnap_bin() -> PathBuf {
    bin_dir().join("offsnap")
}

/// Path of the `offsnap-remote` binary.
pub fn remote_bin() -> PathBuf {
    bin_dir().join("offsnap-remote")
}

/// A scratch area: `src/` to back up, `dest/` for backups, `restore/`.
pub struct Scratch {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// A new scratch area with an empty `src/`.
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("offsnap-test.")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("src")).unwrap();
        Scratch { dir }
    }

    /// A scratch area in memory (`/dev/shm`, where there is one), for
    /// tests of tens of thousands of files that measure the processes, not
    /// the disk: on a slow disk creating and syncing them takes minutes.
    pub fn in_memory() -> Scratch {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return Scratch::new();
        }
        let dir = tempfile::Builder::new()
            .prefix("offsnap-test.")
            .tempdir_in(shm)
            .unwrap();
        fs::create_dir(dir.path().join("src")).unwrap();
        Scratch { dir }
    }

    /// A path inside.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `src/`.
    pub fn src(&self) -> PathBuf {
        self.path("src")
    }

    /// `dest/` (not created).
    pub fn dest(&self) -> PathBuf {
        self.path("dest")
    }

    /// `offsnap ARGS` with the helper's clock at `now` (RFC 3339), if given.
    pub fn offsnap(&self, now: Option<&str>, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
        let mut cmd = self.command(now);
        for a in args {
            cmd.arg(a.as_ref());
        }
        cmd.output().unwrap()
    }

    /// An `offsnap` command (arguments still to add) in this scratch area:
    /// its own cache, config and state directories, the helper's clock at
    /// `now` (RFC 3339) if given. For tests that spawn, signal or kill it.
    pub fn command(&self, now: Option<&str>) -> Command {
        let mut cmd = Command::new(offsnap_bin());
        self.setup(&mut cmd, now);
        cmd
    }

    /// Gives `cmd` (which runs `offsnap`, directly or through a wrapper
    /// such as `setpriv`) what [`Scratch::command`] gives it.
    pub fn setup(&self, cmd: &mut Command, now: Option<&str>) {
        cmd.current_dir(self.dir.path())
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            // No user systemd: `schedule` must not touch the real one.
            .env("XDG_RUNTIME_DIR", self.dir.path().join("no-runtime"))
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        match now {
            Some(t) => cmd.env("OFFSNAP_NOW", t),
            None => cmd.env_remove("OFFSNAP_NOW"),
        };
    }

    /// Backs `src/` up to `dest/` as set `t` at `now`; asserts success and
    /// returns the snapshot name.
    pub fn backup(&self, now: &str) -> String {
        let out = self.offsnap(
            Some(now),
            &[&"backup", &"--set", &"t", &self.src(), &self.dest()],
        );
        assert_ok(&out);
        let name = stdout(&out).trim().to_string();
        assert_eq!(name.len(), 18, "snapshot name {name:?}");
        name
    }

    /// The client's manifest cache.
    pub fn cache(&self) -> PathBuf {
        self.path("cache/offsnap/manifests")
    }

    /// Restores snapshot `snap` of set `t` into a fresh directory; returns it.
    pub fn restore(&self, snap: &str) -> PathBuf {
        let to = tempfile::Builder::new()
            .prefix("restore.")
            .tempdir_in(self.dir.path())
            .unwrap()
            .keep();
        let out = self.offsnap(
            None,
            &[
                &"restore",
                &"--set",
                &"t",
                &"--snapshot",
                &snap,
                &self.dest(),
                &"--to",
                &to,
            ],
        );
        assert_ok(&out);
        to
    }

    /// The set directory `dest/t`.
    pub fn set_dir(&self) -> PathBuf {
        self.dest().join("t")
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a command succeeded, showing its output if not.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// One entry of a tree, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory with mode and mtime.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Seconds and nanoseconds.
        mtime: (i64, i64),
        /// `user.` extended attributes.
        xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    },
    /// A file with mode, mtime and BLAKE3-free content digest (the bytes).
    File {
        /// Permission bits.
        mode: u32,
        /// Seconds and nanoseconds.
        mtime: (i64, i64),
        /// The content.
        content: Vec<u8>,
        /// `user.` extended attributes.
        xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
        /// Its other names in the same tree (hard links), sorted.
        links: Vec<Vec<u8>>,
    },
    /// A FIFO (`p`), socket (`s`), or block (`b`) or character (`c`)
    /// device with its number.
    Special {
        /// Which.
        kind: char,
        /// Device number (0 for FIFOs and sockets).
        rdev: u64,
        /// Permission bits.
        mode: u32,
        /// Seconds and nanoseconds.
        mtime: (i64, i64),
    },
    /// A symlink with its target and mtime.
    Symlink {
        /// Target bytes.
        target: Vec<u8>,
        /// Seconds and nanoseconds.
        mtime: (i64, i64),
    },
}

/// Every entry under `root` (not `root` itself), keyed by relative path bytes.
pub fn tree(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let mut inodes = BTreeMap::new();
    collect(root, Path::new(""), &mut out, &mut inodes);
    // Each file's other names: the paths sharing its inode.
    let mut names: BTreeMap<(u64, u64), Vec<Vec<u8>>> = BTreeMap::new();
    for (path, id) in &inodes {
        names.entry(*id).or_default().push(path.clone());
    }
    for (path, id) in &inodes {
        if let Some(Node::File { links, .. }) = out.get_mut(path) {
            *links = names[id].iter().filter(|p| *p != path).cloned().collect();
        }
    }
    out
}

/// The `user.` extended attributes of `path` (not followed).
pub fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 65536];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return out;
    };
    let mut value = vec![0u8; 65536];
    for name in names[..n].split(|&b| b == 0) {
        if name.starts_with(b"user.") {
            let k = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
            out.insert(name.to_vec(), value[..k].to_vec());
        }
    }
    out
}

fn collect(
    root: &Path,
    rel: &Path,
    out: &mut BTreeMap<Vec<u8>, Node>,
    inodes: &mut BTreeMap<Vec<u8>, (u64, u64)>,
) {
    let dir = root.join(rel);
    for ent in fs::read_dir(&dir).unwrap() {
        let ent = ent.unwrap();
        let rel = rel.join(ent.file_name());
        let path = root.join(&rel);
        let md = fs::symlink_metadata(&path).unwrap();
        let mtime = (md.mtime(), md.mtime_nsec());
        let node = if md.file_type().is_symlink() {
            Node::Symlink {
                target: fs::read_link(&path).unwrap().into_os_string().into_vec(),
                mtime,
            }
        } else if md.is_dir() {
            collect(root, &rel, out, inodes);
            Node::Dir {
                mode: md.mode() & 0o7777,
                mtime,
                xattrs: xattrs(&path),
            }
        } else if md.is_file() {
            inodes.insert(rel.as_os_str().as_bytes().to_vec(), (md.dev(), md.ino()));
            Node::File {
                mode: md.mode() & 0o7777,
                mtime,
                content: fs::read(&path).unwrap(),
                xattrs: xattrs(&path),
                links: Vec::new(),
            }
        } else {
            use std::os::unix::fs::FileTypeExt;
            let t = md.file_type();
            Node::Special {
                kind: if t.is_fifo() {
                    'p'
                } else if t.is_socket() {
                    's'
                } else if t.is_block_device() {
                    'b'
                } else {
                    'c'
                },
                rdev: md.rdev(),
                mode: md.mode() & 0o7777,
                mtime,
            }
        };
        out.insert(rel.as_os_str().as_bytes().to_vec(), node);
    }
}

/// Asserts two trees hold the same entries, contents and metadata.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let a = tree(expected);
    let b = tree(actual);
    for (k, v) in &a {
        match b.get(k) {
            None => panic!(
                "{} missing from {}",
                String::from_utf8_lossy(k),
                actual.display()
            ),
            Some(w) if w != v => panic!(
                "{} differs:\n expected {}\n actual   {}",
                String::from_utf8_lossy(k),
                short(v),
                short(w)
            ),
            _ => {}
        }
    }
    for k in b.keys() {
        assert!(
            a.contains_key(k),
            "unexpected {} in {}",
            String::from_utf8_lossy(k),
            actual.display()
        );
    }
}

fn short(n: &Node) -> String {
    match n {
        Node::File {
            mode,
            mtime,
            content,
            xattrs,
            links,
        } => format!(
            "file mode {mode:o} mtime {mtime:?} {} bytes, xattrs {xattrs:?}, other names {links:?}",
            content.len()
        ),
        other => format!("{other:?}"),
    }
}

/// Writes a file with the given content, mode and mtime (seconds, nanos).
pub fn write_file(path: &Path, content: &[u8], mode: u32, mtime: (i64, u32)) {
    // A new inode each time, as editors write: also works on read-only files.
    let _ = fs::remove_file(path);
    let mut f = fs::File::create(path).unwrap();
    f.write_all(content).unwrap();
    drop(f);
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(path, mtime);
}

/// Sets a path's mtime without following symlinks.
pub fn set_mtime(path: &Path, (sec, nsec): (i64, u32)) {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_OMIT, utimensat};
    utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: sec,
                tv_nsec: nsec.into(),
            },
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Inode number of a path (not following symlinks).
pub fn inode(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

/// Dated snapshot directories in a set, sorted.
pub fn dated_snapshots(set: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(set) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 18 && n.ends_with('Z') && n.as_bytes()[10] == b'T')
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Whether the set's lock is free (tries to take it, then lets go).
pub fn lock_is_free(set: &Path) -> bool {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(set.join(".offsnap/lock"))
        .unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
}

/// The UTC time `days` days and `secs` seconds after 2026-01-01, RFC 3339.
pub fn day(days: u32, secs: u32) -> String {
    let t = 1_767_225_600i64 + i64::from(days) * 86_400 + i64::from(secs);
    jiff::Timestamp::from_second(t).unwrap().to_string()
}

/// Bytes of a path as an `OsString`.
pub fn os(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}
