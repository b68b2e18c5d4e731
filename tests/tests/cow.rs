//! History that costs only what changed: on filesystems that clone (XFS,
//! btrfs) a changed file shares its unchanged blocks with the snapshot
//! before, a file whose metadata alone changed costs no data at all; on
//! ext4 the plain hard-link behaviour holds. Space is measured, not
//! inferred: the backup filesystem's used blocks (statvfs after syncfs)
//! before and after each backup, on real loop-mounted images (root only;
//! skipped with the reason otherwise, a failure under
//! `OFFSNAP_REQUIRE_ROOT_TESTS=1`). Every run is checked by a byte-exact
//! restore, and the earlier snapshots' files by their hashes.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use offsnap_tests::loopfs::{Kind, LoopFs};
use offsnap_tests::{Scratch, assert_ok, assert_same_tree, day, remote_bin, stdout};
use offsnap_tests::{measure, privileged};

const MIB: u64 = 1 << 20;

/// Random bytes from the kernel (fast, incompressible).
fn noise(len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    buf
}

fn write_noise(path: &Path, len: u64) {
    let mut f = fs::File::create(path).unwrap();
    for _ in 0..len / (16 * MIB) {
        f.write_all(&noise(16 * MIB)).unwrap();
    }
    f.write_all(&noise(len % (16 * MIB))).unwrap();
}

fn hash(path: &Path) -> blake3::Hash {
    blake3::hash(&fs::read(path).unwrap())
}

/// A backup world: the source in a scratch directory, the backups on a
/// loop-mounted filesystem of `kind`, through the in-process local
/// destination or (`helper`) a separate helper process.
struct World {
    s: Scratch,
    disk: LoopFs,
    helper: bool,
    /// Files sent as deltas so far.
    deltas: std::cell::Cell<u64>,
}

impl World {
    fn new(kind: Kind, helper: bool) -> Option<World> {
        let s = Scratch::new();
        let disk = match LoopFs::make(kind, s.dir.path(), 1024) {
            Ok(d) => d,
            Err(why) => {
                privileged::skip(&format!(
                    "the {kind:?} space test needs a loop mount: {why}"
                ));
                return None;
            }
        };
        Some(World {
            s,
            disk,
            helper,
            deltas: Default::default(),
        })
    }

    fn dest(&self) -> PathBuf {
        self.disk.path().join("backups")
    }

    fn stored(&self, snap: &str, name: &str) -> PathBuf {
        self.dest().join("t").join(snap).join("src").join(name)
    }

    /// Runs a backup at `now`; returns the snapshot and the bytes it cost.
    /// Changed files travel as deltas through a helper process, whole to
    /// the in-process local destination (no rolling checksum).
    fn backup(&self, now: &str) -> (String, u64) {
        let (snap, cost, _) = self.backup_reading(now);
        (snap, cost)
    }

    /// [`World::backup`], and the bytes the run read from disk (the
    /// source is in the page cache, just written).
    fn backup_reading(&self, now: &str) -> (String, u64, u64) {
        let before = self.disk.used();
        let mut cmd = self.s.command(Some(now));
        cmd.args(["backup", "--json", "--set", "t"]);
        if self.helper {
            cmd.arg("--remote-cmd").arg(remote_bin());
        }
        cmd.arg(self.s.src()).arg(self.dest());
        let reads = self.s.path(&format!("reads-{now}"));
        let out = measure::under_gnu_time(&cmd, "%I", &reads)
            .output()
            .unwrap();
        assert_ok(&out);
        let read = measure::gnu_time_figure(&reads) * 512;
        let after = self.disk.used();
        let cost = after.saturating_sub(before);
        eprintln!("backup at {now}: {cost} bytes more in use, {read} bytes read from disk");
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let deltas = report["sent_delta"].as_u64().unwrap();
        if !self.helper {
            assert_eq!(deltas, 0, "a local run sent a delta: {report}");
        }
        self.deltas.set(self.deltas.get() + deltas);
        (report["snapshot"].as_str().unwrap().to_string(), cost, read)
    }

    /// Restores `snap` and checks it against the source as it is now.
    fn check_restore(&self, snap: &str) {
        let to = self.s.path(&format!("restore-{snap}"));
        let out = self.s.offsnap(
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
        assert_same_tree(&self.s.src(), &to.join("src"));
        fs::remove_dir_all(&to).unwrap();
    }

    /// `unique_bytes` of each snapshot, as `offsnap snapshots --json` says.
    fn unique(&self) -> Vec<u64> {
        let out = self.s.offsnap(
            None,
            &[&"snapshots", &"--set", &"t", &"--json", &self.dest()],
        );
        assert_ok(&out);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
        rows.iter()
            .map(|r| r["unique_bytes"].as_u64().unwrap())
            .collect()
    }
}

/// The three days of the issue: 1 MiB rewritten in place in a 256 MiB
/// image, 1 MiB appended to a 64 MiB log, a chmod of the image. With
/// `clones`, each costs at most 2 MiB, 2 MiB, 64 KiB; without, the changed
/// files cost whole copies and the unchanged ones hard links.
fn history(kind: Kind, helper: bool, clones: bool) {
    if !measure::have_gnu_time() {
        return;
    }
    let Some(w) = World::new(kind, helper) else {
        return;
    };
    let (img, log) = (w.s.src().join("disk.img"), w.s.src().join("mail.log"));
    write_noise(&img, 256 * MIB);
    write_noise(&log, 64 * MIB);
    let (first, initial) = w.backup(&day(0, 0));
    assert!(
        initial >= 320 * MIB,
        "the first backup stored {initial} bytes"
    );
    let img0 = hash(&w.stored(&first, "disk.img"));
    let log0 = hash(&w.stored(&first, "mail.log"));

    // Day 1: 1 MiB rewritten in place, at a 4 KiB-aligned offset.
    let mut f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(100 * MIB + 64 * 1024)).unwrap();
    f.write_all(&noise(MIB)).unwrap();
    drop(f);
    let (edited, cost, read) = w.backup_reading(&day(1, 0));
    w.check_restore(&edited);
    // Sent whole over a clone of the base, the image is compared with it
    // by the block hashes kept at the last run: only the changed blocks
    // of the clone (whose page cache is cold, its own) are read.
    if clones && !helper {
        assert!(
            read <= 8 * MIB,
            "{kind:?}: a 1 MiB edit of a 256 MiB file read {read} bytes from disk"
        );
    }
    // Through a helper process the image travelled as a delta; to the
    // in-process destination whole (checked in `backup`).
    assert_eq!(w.deltas.get(), u64::from(helper), "files sent as deltas");
    let log_ino = fs::metadata(w.stored(&first, "mail.log")).unwrap().ino();
    assert_eq!(
        fs::metadata(w.stored(&edited, "mail.log")).unwrap().ino(),
        log_ino,
        "an unchanged file is a hard link into the snapshot before"
    );
    if clones {
        assert!(
            cost <= 2 * MIB,
            "{kind:?}: 1 MiB changed in place cost {cost} bytes"
        );
        let unique = w.unique();
        eprintln!("unique bytes per snapshot: {unique:?}");
        assert!(
            (MIB..=MIB + MIB / 2).contains(&unique[1]),
            "{kind:?}: the edited snapshot holds {} unique bytes, not about 1 MiB",
            unique[1]
        );
    } else {
        assert!(
            cost >= 255 * MIB,
            "{kind:?}: a changed file cost only {cost} bytes"
        );
        assert_eq!(w.unique()[1], 256 * MIB);
    }

    // Day 2: 1 MiB appended to the log.
    fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(&noise(MIB))
        .unwrap();
    let (appended, cost, read) = w.backup_reading(&day(2, 0));
    w.check_restore(&appended);
    if clones && !helper {
        assert!(
            read <= 8 * MIB,
            "{kind:?}: 1 MiB appended to a 64 MiB file read {read} bytes from disk"
        );
    }
    if clones {
        assert!(
            cost <= 2 * MIB,
            "{kind:?}: 1 MiB appended cost {cost} bytes"
        );
    } else {
        assert!(
            cost >= 64 * MIB,
            "{kind:?}: an appended file cost only {cost} bytes"
        );
    }

    // Day 3: the image's mode changes, not its content.
    fs::set_permissions(&img, fs::Permissions::from_mode(0o600)).unwrap();
    let (chmodded, cost) = w.backup(&day(3, 0));
    w.check_restore(&chmodded);
    let (a, b) = (
        w.stored(&appended, "disk.img"),
        w.stored(&chmodded, "disk.img"),
    );
    assert_ne!(
        fs::metadata(&a).unwrap().ino(),
        fs::metadata(&b).unwrap().ino(),
        "a file whose mode changed gets its own inode"
    );
    if clones {
        assert!(cost <= 64 * 1024, "{kind:?}: a chmod cost {cost} bytes");
    } else {
        assert!(
            cost >= 255 * MIB,
            "{kind:?}: a chmod copy cost only {cost} bytes"
        );
    }

    // The earlier snapshots are as they were.
    assert_eq!(hash(&w.stored(&first, "disk.img")), img0);
    assert_eq!(hash(&w.stored(&first, "mail.log")), log0);
    let out =
        w.s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &w.dest()]);
    assert_ok(&out);
}

/// The block hashes a local run keeps for a large file are a cache: ones
/// damaged on the host (other bytes, another length) make the next run
/// compare with the clone by reading it, and the snapshot is still what
/// the source holds.
#[test]
fn xfs_damaged_block_hashes_cost_only_a_read() {
    if !measure::have_gnu_time() {
        return;
    }
    let Some(w) = World::new(Kind::Xfs, false) else {
        return;
    };
    let img = w.s.src().join("disk.img");
    write_noise(&img, 32 * MIB);
    w.backup(&day(0, 0));
    let dir = w.dest().join("t/.offsnap/blocks");
    let kept: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "one large file, one list of block hashes: {kept:?}"
    );
    let kept = &kept[0];
    let len = fs::metadata(kept).unwrap().len();
    assert_eq!(
        len,
        40 + 32 * MIB / (64 * 1024) * 16,
        "header and 16 bytes a block"
    );

    let edit = |at: u64, n: usize, k: u32| {
        let mut f = fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&noise(n as u64)).unwrap();
        drop(f);
        let (snap, _, read) = w.backup_reading(&day(k, 0));
        w.check_restore(&snap);
        read
    };
    // Other bytes, the same length: no block is taken as there unread.
    let mut body = fs::read(kept).unwrap();
    for b in &mut body[40..] {
        *b = !*b;
    }
    fs::write(kept, &body).unwrap();
    let read = edit(5 * MIB + 100, 10_000, 1);
    assert!(
        read >= 24 * MIB,
        "damaged hashes, yet only {read} bytes were read"
    );
    // The run kept good ones again: the next edit reads little.
    let read = edit(9 * MIB, 4096, 2);
    assert!(read <= 4 * MIB, "{read} bytes read with good hashes kept");
    // Another length: not taken at all.
    let body = fs::read(kept).unwrap();
    fs::write(kept, &body[..body.len() - 16]).unwrap();
    edit(20 * MIB, 1, 3);
    let out =
        w.s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &w.dest()]);
    assert_ok(&out);
}

#[test]
fn xfs_history_costs_what_changed_in_process() {
    history(Kind::Xfs, false, true);
}

#[test]
fn xfs_history_costs_what_changed_through_a_helper_process() {
    history(Kind::Xfs, true, true);
}

#[test]
fn btrfs_history_costs_what_changed_in_process() {
    history(Kind::Btrfs, false, true);
}

#[test]
fn btrfs_history_costs_what_changed_through_a_helper_process() {
    history(Kind::Btrfs, true, true);
}

#[test]
fn ext4_history_keeps_hard_links_and_copies_in_process() {
    history(Kind::Ext4, false, false);
}

#[test]
fn ext4_history_keeps_hard_links_and_copies_through_a_helper_process() {
    history(Kind::Ext4, true, false);
}

/// Fills the filesystem under `dir` with one preallocated file, as far as
/// it takes; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let f = fs::File::create(&path).unwrap();
    let st = rustix::fs::fstatvfs(&f).unwrap();
    let mut len = st.f_bavail * st.f_frsize;
    while len > 0 {
        match rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => break,
            Err(_) => len = len.saturating_sub(MIB / 4),
        }
    }
    // What is left is smaller than a quarter MiB: take it in small pieces.
    let mut g = fs::File::create(dir.join("filler-tail")).unwrap();
    while g.write_all(&[1u8; 4096]).is_ok() && g.sync_all().is_ok() {}
    path
}

/// A run that meets a full disk while it clones and writes a changed file
/// fails like any write: no snapshot, the earlier ones intact, and the run
/// after space is freed stores the file exactly.
fn full_disk(kind: Kind) {
    let Some(w) = World::new(kind, false) else {
        return;
    };
    let img = w.s.src().join("disk.img");
    write_noise(&img, 16 * MIB);
    let (first, _) = w.backup(&day(0, 0));
    let before = hash(&w.stored(&first, "disk.img"));
    let mut f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(4 * MIB)).unwrap();
    f.write_all(&noise(MIB)).unwrap();
    drop(f);
    let filler = fill(w.disk.path());
    let out = w.s.offsnap(
        Some(&day(1, 0)),
        &[&"backup", &"--set", &"t", &w.s.src(), &w.dest()],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        offsnap_tests::dated_snapshots(&w.dest().join("t")),
        vec![first.clone()]
    );
    assert_eq!(hash(&w.stored(&first, "disk.img")), before);
    fs::remove_file(filler).unwrap();
    fs::remove_file(w.disk.path().join("filler-tail")).unwrap();
    let (next, _) = w.backup(&day(1, 0));
    w.check_restore(&next);
    assert_eq!(hash(&w.stored(&first, "disk.img")), before);
}

#[test]
fn xfs_a_full_disk_fails_the_run_cleanly() {
    full_disk(Kind::Xfs);
}

#[test]
fn btrfs_a_full_disk_fails_the_run_cleanly() {
    full_disk(Kind::Btrfs);
}

/// The unique sizes of every snapshot, computed by the helper library
/// in this process, and how many files it mapped for them.
fn listing(dest: &Path) -> (Vec<u64>, u64) {
    let root = offsnap_remote::set::Root::open(dest, false).unwrap();
    let set = root
        .open_set(&offsnap_protocol::SetName::new("t").unwrap())
        .unwrap();
    let before = offsnap_remote::extents::files_mapped();
    let stats = offsnap_remote::stats::stats(&set).unwrap();
    let mapped = offsnap_remote::extents::files_mapped() - before;
    (stats.iter().map(|s| s.unique_bytes).collect(), mapped)
}

/// A second listing maps no file again (the set's extent cache answers),
/// and gives the same sizes; a stored file whose inode changed is mapped
/// again; a damaged cache is ignored and rebuilt; a new snapshot (which
/// changes what the older ones share) starts the cache afresh.
#[test]
fn xfs_a_second_listing_reads_the_extent_cache() {
    let Some(w) = World::new(Kind::Xfs, false) else {
        return;
    };
    let img = w.s.src().join("disk.img");
    write_noise(&img, 8 * MIB);
    write_noise(&w.s.src().join("other"), MIB);
    let (first, _) = w.backup(&day(0, 0));
    let mut f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(MIB)).unwrap();
    f.write_all(&noise(MIB)).unwrap();
    drop(f);
    let (second, _) = w.backup(&day(1, 0));
    let cache = w.dest().join("t/.offsnap/extents");

    let (sizes, mapped) = listing(&w.dest());
    assert_eq!(mapped, 2, "the two single-link images are mapped");
    assert!(cache.is_file());
    assert!((MIB..=MIB + MIB / 2).contains(&sizes[1]), "{sizes:?}");
    assert_eq!(listing(&w.dest()), (sizes.clone(), 0), "from the cache");

    // A stored file touched on the host: its ctime changed, it is mapped again.
    let stored = w.stored(&second, "disk.img");
    fs::set_permissions(&stored, fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(listing(&w.dest()), (sizes.clone(), 1));
    assert_eq!(listing(&w.dest()), (sizes.clone(), 0));

    // Garbage instead of the cache: ignored, every file mapped, rebuilt.
    fs::write(&cache, noise(4096)).unwrap();
    assert_eq!(listing(&w.dest()), (sizes.clone(), 2));
    assert_eq!(listing(&w.dest()), (sizes.clone(), 0));

    // A third snapshot: the cache was made for two. Its image is a new
    // inode (the stored one was touched), so every snapshot holds a
    // single-link image, and the new small file is a fourth to map.
    fs::write(w.s.src().join("new"), b"new").unwrap();
    let _ = w.backup(&day(2, 0));
    let (sizes3, mapped) = listing(&w.dest());
    assert_eq!(mapped, 4, "{sizes3:?}");
    assert_eq!(sizes3[0], sizes[0]);
    assert_eq!(
        hash(&w.stored(&first, "other")),
        hash(&w.s.src().join("other"))
    );
}
