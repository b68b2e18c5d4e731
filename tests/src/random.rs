//! Seeded random trees and mutations for property tests: odd names (spaces,
//! newlines, leading dashes, invalid UTF-8), nested and empty directories,
//! files of many sizes and modes, symlinks, nanosecond mtimes.

use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::{set_mtime, write_file};

/// A small deterministic generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p` percent.
    pub fn chance(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// `n` random bytes, compressible or not.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        if self.chance(50) {
            let word = b"offsnap backup snapshot ";
            (0..n).map(|i| word[i % word.len()]).collect()
        } else {
            let mut v = Vec::with_capacity(n + 8);
            while v.len() < n {
                v.extend_from_slice(&self.next_u64().to_le_bytes());
            }
            v.truncate(n);
            v
        }
    }

    /// `n` random bytes that do not compress.
    pub fn noise(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// A file size: mostly small, sometimes empty, sometimes several chunks.
    pub fn size(&mut self) -> usize {
        match self.below(10) {
            0 => 0,
            1..=6 => self.below(4096) as usize,
            7 | 8 => self.below(300_000) as usize,
            _ => 256 * 1024 + self.below(3) as usize, // around the chunk size
        }
    }

    /// A name, sometimes a hard one.
    pub fn name(&mut self) -> Vec<u8> {
        let base = format!("n{}", self.below(1_000_000)).into_bytes();
        match self.below(12) {
            0 => [b"with space ".as_slice(), &base].concat(),
            1 => [b"new\nline-".as_slice(), &base].concat(),
            2 => [b"-".as_slice(), &base].concat(),
            3 => [b"\xff\xfe-".as_slice(), &base].concat(),
            4 => [b".hidden-".as_slice(), &base].concat(),
            5 => [b"caf\xc3\xa9-".as_slice(), &base].concat(),
            _ => base,
        }
    }

    /// A file mode.
    pub fn mode(&mut self) -> u32 {
        [0o644, 0o600, 0o755, 0o444, 0o640, 0o700][self.below(6) as usize]
    }

    /// An mtime with nanoseconds.
    pub fn mtime(&mut self) -> (i64, u32) {
        (
            1_600_000_000 + self.below(100_000_000) as i64,
            self.below(1_000_000_000) as u32,
        )
    }
}

fn p(dir: &Path, name: Vec<u8>) -> PathBuf {
    dir.join(std::ffi::OsString::from_vec(name))
}

/// Fills `dir` with a random tree of about `files` entries.
pub fn make_tree(rng: &mut Rng, dir: &Path, files: usize) {
    let mut dirs = vec![dir.to_path_buf()];
    for _ in 0..files {
        let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
        let path = p(&parent, rng.name());
        if path.symlink_metadata().is_ok() {
            continue;
        }
        match rng.below(10) {
            0 | 1 => {
                fs::create_dir(&path).unwrap();
                dirs.push(path);
            }
            2 => {
                let target = if rng.chance(50) {
                    b"../somewhere/else".to_vec()
                } else {
                    b"/etc/passwd".to_vec()
                };
                std::os::unix::fs::symlink(std::ffi::OsString::from_vec(target), &path).unwrap();
                set_mtime(&path, rng.mtime());
            }
            _ => {
                let size = rng.size();
                let data = rng.bytes(size);
                let (mode, mtime) = (rng.mode(), rng.mtime());
                write_file(&path, &data, mode, mtime);
            }
        }
    }
    // Directory mtimes last, deepest first, so children do not disturb them.
    for d in dirs.iter().skip(1).rev() {
        set_mtime(d, rng.mtime());
    }
}

/// Files under `dir` (not following symlinks).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Applies random changes: rewrites, appends, chmods, touches, deletes,
/// adds files; returns how many files changed in some way.
pub fn mutate(rng: &mut Rng, dir: &Path, changes: usize) -> usize {
    let mut n = 0;
    for _ in 0..changes {
        let all = files(dir);
        if all.is_empty() {
            break;
        }
        let f = &all[rng.below(all.len() as u64) as usize];
        let old_mode = f.symlink_metadata().unwrap().permissions();
        match rng.below(6) {
            0 => {
                let size = rng.size();
                let data = rng.bytes(size);
                write_file(f, &data, rng.mode(), rng.mtime());
            }
            1 => {
                let mut data = fs::read(f).unwrap();
                let size = rng.size().min(5000);
                data.extend(rng.bytes(size));
                write_file(f, &data, 0o644, rng.mtime());
            }
            2 => {
                fs::set_permissions(f, old_mode).unwrap();
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(f, fs::Permissions::from_mode(rng.mode())).unwrap();
            }
            3 => set_mtime(f, rng.mtime()),
            4 => fs::remove_file(f).unwrap(),
            _ => {
                let parent = f.parent().unwrap();
                let path = p(parent, rng.name());
                if path.symlink_metadata().is_err() {
                    let size = rng.size();
                    let data = rng.bytes(size);
                    write_file(&path, &data, rng.mode(), rng.mtime());
                }
            }
        }
        n += 1;
    }
    n
}
