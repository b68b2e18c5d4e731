//! Real filesystems for tests that measure space: an image file formatted
//! XFS, btrfs or ext4 and loop-mounted (root only), unmounted and deleted
//! when dropped.
//!
//! Where one cannot be made (not root, no `mkfs.xfs`/`mkfs.btrfs`, loop
//! devices refused) [`LoopFs::make`] says why, for
//! [`crate::privileged::skip`].

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::privileged::is_root;

/// A filesystem kind to format an image with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// XFS with reflink (clones).
    Xfs,
    /// btrfs (clones).
    Btrfs,
    /// ext4 (no clones: hard links only).
    Ext4,
}

impl Kind {
    /// The `mkfs` program and its arguments before the image's path.
    fn mkfs(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Kind::Xfs => ("mkfs.xfs", &["-q", "-f", "-m", "reflink=1"]),
            Kind::Btrfs => ("mkfs.btrfs", &["-q", "-f"]),
            Kind::Ext4 => ("mkfs.ext4", &["-q", "-F"]),
        }
    }
}

/// A mounted loop image; see the module documentation.
pub struct LoopFs {
    mnt: PathBuf,
    image: PathBuf,
}

impl LoopFs {
    /// Formats a sparse image of `mib` MiB under `dir` as `kind` and mounts
    /// it on `dir/mnt`; `Err` says why it could not.
    pub fn make(kind: Kind, dir: &Path, mib: u64) -> Result<LoopFs, String> {
        if !is_root() {
            return Err(format!("mounting a {kind:?} image needs root"));
        }
        let (mkfs, args) = kind.mkfs();
        let image = dir.join(format!("{kind:?}.img"));
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).map_err(|e| format!("{}: {e}", mnt.display()))?;
        let f = std::fs::File::create(&image).map_err(|e| format!("image: {e}"))?;
        f.set_len(mib << 20).map_err(|e| format!("image: {e}"))?;
        drop(f);
        run(Command::new(mkfs).args(args).arg(&image), mkfs)?;
        run(
            Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&image)
                .arg(&mnt),
            "mount -o loop",
        )?;
        Ok(LoopFs { mnt, image })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mnt
    }

    /// Bytes in use, as `statvfs` counts them after the filesystem is
    /// flushed and its deferred work done: XFS frees an unlinked inode's
    /// blocks in the background (inodegc), so a file replaced just before
    /// would still count for a moment; freezing the filesystem waits for
    /// that, as it does for btrfs's transaction.
    pub fn used(&self) -> u64 {
        let dir = std::fs::File::open(&self.mnt).expect("open the mount point");
        rustix::fs::syncfs(&dir).expect("syncfs");
        for how in ["--freeze", "--unfreeze"] {
            run(Command::new("fsfreeze").arg(how).arg(&self.mnt), "fsfreeze")
                .expect("freeze the filesystem to settle its counts");
        }
        let st = rustix::fs::fstatvfs(&dir).expect("statvfs");
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let plain = Command::new("umount").arg(&self.mnt).status();
        if !plain.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        let _ = std::fs::remove_file(&self.image);
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}
