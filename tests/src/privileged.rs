//! What tests that need root use: mounting a small tmpfs, running a
//! command as an unprivileged user.
//!
//! Where a test cannot run (not root, no `setpriv`, mounting refused) it
//! prints `SKIPPED <test>: <reason>` and passes; with
//! `OFFSNAP_REQUIRE_ROOT_TESTS=1` (set by CI, which runs as root) that is a
//! failure instead, so a broken setup cannot silently skip them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The unprivileged user (and group) tests run things as: `nobody`.
pub const NOBODY: u32 = 65534;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether `OFFSNAP_REQUIRE_ROOT_TESTS=1` asks that tests needing root run.
pub fn required() -> bool {
    crate::skip::required(crate::skip::ROOT)
}

/// Reports a test that cannot run here ([`crate::skip`]), or a
/// panic under `OFFSNAP_REQUIRE_ROOT_TESTS=1`. The caller returns after.
pub fn skip(reason: &str) {
    crate::skip::skip(Some(crate::skip::ROOT), reason);
}

/// Whether `setpriv` (util-linux) is installed.
pub fn have_setpriv() -> bool {
    Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `program` run as [`NOBODY`] through `setpriv` (root only): no
/// supplementary groups, so only the "other" permission bits apply.
pub fn as_nobody(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(program);
    cmd
}

/// Gives `path` to [`NOBODY`].
pub fn give_to_nobody(path: &Path) {
    rustix::fs::chown(
        path,
        Some(rustix::fs::Uid::from_raw(NOBODY)),
        Some(rustix::fs::Gid::from_raw(NOBODY)),
    )
    .expect("chown to nobody");
}

/// A tmpfs mounted on a directory; unmounted when dropped (also when the
/// test panics). Drop it before the directory's own `TempDir`.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it, e.g. `8m`)
    /// on the existing directory `path`; `Err` says why it could not.
    pub fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        if !is_root() {
            return Err("mounting a tmpfs needs root".into());
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("offsnap-test")
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let plain = Command::new("umount").arg(&self.path).status();
        if !plain.is_ok_and(|s| s.success()) {
            // Something still has it open: detach it now, freed when let go.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}
