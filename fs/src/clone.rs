//! Sharing data between files instead of copying it, on filesystems that
//! can (XFS with reflink, btrfs, bcachefs, ZFS ≥ 2.2 with block cloning).
//!
//! A snapshot's changed file is built from its base: the ranges a delta
//! copies are *cloned* (the new file points at the base's extents; a later
//! write to either gets its own blocks), only literal data and the unaligned
//! edges of copies are written. A whole-file copy (a file whose metadata
//! changed, a copy past the hard-link limit) is one `FICLONE`.
//!
//! Whether a filesystem clones is probed once per tree written ([`probe`]:
//! one `FICLONE` between two unnamed `O_TMPFILE`s in the tree's first
//! directory); a filesystem that cannot clone, or a clone refused later
//! with an error meaning "not here" (`EOPNOTSUPP`, `EXDEV`, `EINVAL`),
//! falls back to reading and writing, silently. Real failures (`ENOSPC`,
//! `EIO`) are returned like any write's.
//!
//! A file sent whole that has an older version at the same path (a local
//! destination sends changed files whole: there is no network to save)
//! begins as a clone of that version, and [`overlay`] then writes only the
//! blocks whose content differs from what the clone holds at the same
//! offset: the rest stays shared.
//!
//! Range clones go through `copy_file_range(2)`: on a filesystem that can
//! clone, Linux remaps the range (the same operation as `FICLONERANGE`)
//! when both offsets and the length are block-aligned, which is the only
//! case this module asks for. Without clones, ranges are read and written
//! in user space, which keeps holes as holes (`copy_file_range` on ext4
//! writes a hole's zeros as data) and measured no slower.

use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;

use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::io::Errno;

/// How a tree's filesystem shares data, once probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// It cannot clone: copies are written.
    No,
    /// It clones ranges whose offsets and length are multiples of this
    /// many bytes (its block size).
    Clones {
        /// The filesystem's block size.
        align: u64,
    },
}

impl Sharing {
    /// Whether ranges can be cloned.
    pub fn clones(self) -> bool {
        matches!(self, Sharing::Clones { .. })
    }
}

/// Whether the filesystem holding `dir` clones, found by cloning one block
/// between two unnamed temporary files there (nothing is left behind,
/// even if the process dies). Any failure means [`Sharing::No`].
pub fn probe(dir: BorrowedFd<'_>) -> Sharing {
    try_probe(dir).unwrap_or(Sharing::No)
}

fn try_probe(dir: BorrowedFd<'_>) -> io::Result<Sharing> {
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    let align = rfs::fstatvfs(dir)?.f_bsize.clamp(512, 1 << 20);
    let src = File::from(rfs::openat(dir, ".", flags, Mode::from_raw_mode(0o600))?);
    let dst = File::from(rfs::openat(dir, ".", flags, Mode::from_raw_mode(0o600))?);
    let block = vec![0x5a_u8; align as usize];
    io::Write::write_all(&mut &src, &block)?;
    rfs::ioctl_ficlone(&dst, &src)?;
    Ok(Sharing::Clones { align })
}

/// Whether an error from a clone means only "cannot clone this here" (the
/// caller copies instead), not a failure of the write.
pub fn refused(e: &io::Error) -> bool {
    [
        Errno::OPNOTSUPP,
        Errno::XDEV,
        Errno::INVAL,
        Errno::NOSYS,
        Errno::NOTTY,
    ]
    .iter()
    .any(|n| e.raw_os_error() == Some(n.raw_os_error()))
}

/// Makes `dst` (an empty file) a clone of the whole of `src`.
pub fn clone_whole(dst: &File, src: &File) -> io::Result<()> {
    Ok(rfs::ioctl_ficlone(dst, src)?)
}

/// Clones `len` bytes of `src` at `offset` into `dst` at `at`: all three
/// must be multiples of the filesystem's block size. Returns the number of
/// bytes placed, which is `len` unless the kernel stops early (then the
/// rest is for the caller to place).
pub fn clone_range(src: &File, offset: u64, dst: &File, at: u64, len: u64) -> io::Result<u64> {
    let (mut from, mut to) = (offset, at);
    while to - at < len {
        let want = usize::try_from(len - (to - at)).unwrap_or(usize::MAX);
        let n = rfs::copy_file_range(src, Some(&mut from), dst, Some(&mut to), want)?;
        if n == 0 {
            break;
        }
    }
    Ok(to - at)
}

/// Writes `data` at offset `at` of `file`, a clone of `len` bytes of an
/// older version: block by block (`align` bytes, at offsets that are
/// multiples of it), only the blocks whose bytes differ from what `file`
/// holds there, so the others stay shared. What lies past `len` is written
/// too, except whole blocks of zeros, left as holes (the caller sets the
/// final length). The comparison is against the file itself, not its
/// source, so what it ends up holding is `data` whatever happened to the
/// source. `old` is a buffer reused between calls.
pub fn overlay(
    file: &File,
    at: u64,
    data: &[u8],
    (len, align): (u64, u64),
    old: &mut Vec<u8>,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let align = align.max(1);
    // How many of `data`'s bytes fall inside the clone.
    let inside = usize::try_from(len.saturating_sub(at)).map_or(data.len(), |n| n.min(data.len()));
    old.resize(inside, 0);
    file.read_exact_at(old, at)?;
    let mut run: Option<usize> = None;
    let mut i = 0;
    while i < data.len() {
        let pos = at + i as u64;
        let end = (i + (align - pos % align) as usize).min(data.len());
        let keep = if end <= inside {
            data[i..end] == old[i..end]
        } else {
            i >= inside && end - i == align as usize && data[i..end].iter().all(|&b| b == 0)
        };
        match (keep, run) {
            (true, Some(start)) => {
                file.write_all_at(&data[start..i], at + start as u64)?;
                run = None;
            }
            (false, None) => run = Some(i),
            _ => {}
        }
        i = end;
    }
    if let Some(start) = run {
        file.write_all_at(&data[start..], at + start as u64)?;
    }
    Ok(())
}

/// Splits a copy of `len` bytes from source offset `offset` to destination
/// offset `at` into a head to write, a middle to clone and a tail to write
/// (their lengths), for a filesystem cloning `align`-byte blocks. Offsets
/// that do not agree modulo `align` cannot be cloned at all.
pub fn split(offset: u64, at: u64, len: u64, align: u64) -> (u64, u64, u64) {
    if align == 0 || offset % align != at % align {
        return (len, 0, 0);
    }
    let head = ((align - at % align) % align).min(len);
    let middle = (len - head) / align * align;
    (head, middle, len - head - middle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_splits_at_block_boundaries() {
        assert_eq!(split(0, 0, 10_000, 4096), (0, 8192, 1808));
        assert_eq!(split(4096, 8192, 8192, 4096), (0, 8192, 0));
        assert_eq!(split(100, 100, 10_000, 4096), (3996, 4096, 1908));
        assert_eq!(split(100, 200, 10_000, 4096), (10_000, 0, 0));
        assert_eq!(split(100, 100, 50, 4096), (50, 0, 0));
        assert_eq!(split(0, 0, 0, 4096), (0, 0, 0));
    }

    #[test]
    fn an_overlay_writes_only_the_blocks_that_differ() -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let file = tempfile::tempfile()?;
        let old: Vec<u8> = (0..5 * 4096u32).map(|i| (i % 253) as u8).collect();
        file.write_all_at(&old, 0)?;
        let mut new = old.clone();
        new[4096 + 10] ^= 1; // block 1 differs
        new.extend(vec![0u8; 8192]); // two blocks of zeros past the end
        new.extend(b"tail");
        // Written in pieces that do not fall on block boundaries.
        let mut buf = Vec::new();
        for (k, piece) in new.chunks(3000).enumerate() {
            overlay(
                &file,
                k as u64 * 3000,
                piece,
                (old.len() as u64, 4096),
                &mut buf,
            )?;
        }
        file.set_len(new.len() as u64)?;
        let mut back = Vec::new();
        io::Read::read_to_end(&mut &file, &mut back)?;
        assert_eq!(back, new);

        // A shorter version: the caller truncates.
        let file = tempfile::tempfile()?;
        file.write_all_at(&old, 0)?;
        overlay(&file, 0, &old[..5000], (old.len() as u64, 4096), &mut buf)?;
        file.set_len(5000)?;
        let mut back = Vec::new();
        io::Read::read_to_end(&mut &file, &mut back)?;
        assert_eq!(back, &old[..5000]);
        Ok(())
    }

    #[test]
    fn a_probe_never_fails_and_clones_what_it_says_it_can() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let fd = crate::fsx::open_root(dir.path())?;
        use std::os::fd::AsFd;
        let sharing = probe(fd.as_fd());
        if let Sharing::Clones { align } = sharing {
            let src = tempfile::tempfile_in(dir.path())?;
            let data: Vec<u8> = (0..3 * align).map(|i| (i % 251) as u8).collect();
            io::Write::write_all(&mut &src, &data)?;
            let dst = tempfile::tempfile_in(dir.path())?;
            dst.set_len(align)?;
            assert_eq!(clone_range(&src, align, &dst, align, 2 * align)?, 2 * align);
            let mut back = Vec::new();
            io::Read::read_to_end(&mut &dst, &mut back)?;
            assert_eq!(&back[align as usize..], &data[align as usize..]);
        }
        Ok(())
    }
}
