//! How much of a stored file shares its blocks with other files, from its
//! extent map (`FS_IOC_FIEMAP`, the `FIEMAP_EXTENT_SHARED` flag), for the
//! unique sizes of `offsnap snapshots` on filesystems that clone: a
//! snapshot's copy of a 1 GiB image with 1 MiB changed is its own inode,
//! but only about 1 MiB of it is its own.
//!
//! rustix has no wrapper for this ioctl, so this module makes the one call
//! itself (the only `unsafe` in the helper).

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

/// Filesystems whose files can share extents (`statfs` magic numbers):
/// XFS, btrfs, bcachefs, ZFS, OCFS2.
const SHARING_FILESYSTEMS: [u64; 5] = [
    0x5846_5342,
    0x9123_683e,
    0xca45_1a4e,
    0x2fc1_2fc1,
    0x7461_636f,
];

/// Whether the filesystem holding `fd` can share extents between files
/// (elsewhere every extent is a file's own, and nothing needs mapping).
pub fn may_share(fd: impl AsFd) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|st| {
        #[allow(clippy::unnecessary_cast)]
        let magic = st.f_type as u64;
        SHARING_FILESYSTEMS.contains(&magic)
    })
}

/// `struct fiemap` without its trailing extents.
#[repr(C)]
#[derive(Default)]
struct FiemapHead {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
}

/// `struct fiemap_extent`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct FiemapExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

/// Extents asked for per call.
const BATCH: usize = 128;

/// A `struct fiemap` with room for [`BATCH`] extents.
#[repr(C)]
struct Fiemap {
    head: FiemapHead,
    extents: [FiemapExtent; BATCH],
}

const FS_IOC_FIEMAP: rustix::ioctl::Opcode =
    rustix::ioctl::opcode::read_write::<FiemapHead>(b'f', 11);
const FIEMAP_FLAG_SYNC: u32 = 0x1;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
const FIEMAP_EXTENT_SHARED: u32 = 0x2000;

/// Files mapped by [`shared_bytes`] in this process (what a listing's
/// cache saves is counted here).
static MAPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many files this process has mapped.
pub fn files_mapped() -> u64 {
    MAPPED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Bytes of the first `size` bytes of `file` that lie in extents shared
/// with another file (holes and the file's own extents are not counted).
pub fn shared_bytes(file: &File, size: u64) -> io::Result<u64> {
    MAPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut shared = 0u64;
    let mut next = 0u64;
    while next < size {
        let asked = next;
        let mut map = Fiemap {
            head: FiemapHead {
                start: next,
                length: size - next,
                flags: FIEMAP_FLAG_SYNC,
                extent_count: BATCH as u32,
                ..FiemapHead::default()
            },
            extents: [FiemapExtent::default(); BATCH],
        };
        // SAFETY: FS_IOC_FIEMAP is `_IOWR('f', 11, struct fiemap)`; `Fiemap`
        // is `struct fiemap` (same `repr(C)` layout) followed by room for
        // `extent_count` extents, the most the kernel writes back.
        unsafe {
            let ctl = rustix::ioctl::Updater::<{ FS_IOC_FIEMAP }, Fiemap>::new(&mut map);
            rustix::ioctl::ioctl(file, ctl)?;
        }
        let mapped = (map.head.mapped_extents as usize).min(BATCH);
        if mapped == 0 {
            break;
        }
        let mut last = false;
        for e in &map.extents[..mapped] {
            let end = e.logical.saturating_add(e.length).min(size);
            if e.flags & FIEMAP_EXTENT_SHARED != 0 && end > e.logical {
                shared += end.saturating_sub(e.logical.max(asked));
            }
            next = next.max(e.logical.saturating_add(e.length));
            last |= e.flags & FIEMAP_EXTENT_LAST != 0;
        }
        if last {
            break;
        }
    }
    Ok(shared.min(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_its_own_shares_nothing() -> io::Result<()> {
        let mut f = tempfile::tempfile()?;
        io::Write::write_all(&mut f, &vec![7u8; 1 << 20])?;
        f.sync_all()?;
        // The map of a file just written names no shared extent, wherever
        // the test runs (filesystems without FIEMAP answer EOPNOTSUPP).
        match shared_bytes(&f, 1 << 20) {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert_eq!(
                e.raw_os_error(),
                Some(rustix::io::Errno::OPNOTSUPP.raw_os_error())
            ),
        }
        Ok(())
    }
}
