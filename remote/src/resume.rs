//! Resuming: what an interrupted backup run left, offered to the next run
//! of the same set.
//!
//! A run that is cut short (client killed, connection lost, helper killed)
//! leaves its directory in `incomplete/` with its [`journal`]. The next run
//! keeps the most useful such directory as `.offsnap/resume/NAME` and
//! clears the others. From it, files the journal records as finished are
//! offered by content and re-hashed when first used (one found altered is
//! asked for whole instead); the file that was being
//! written is offered as a delta base, so a large file cut at half-way
//! costs about the other half. Nothing there is ever linked unchecked or
//! used as the base for unchanged files, and it goes when a run commits.
//!
//! [`journal`]: crate::journal

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use offsnap_protocol::{Hash, RelPath, Resume};

use crate::error::{Context, Error};
use crate::journal::{self, Record};
use crate::set::SetDir;
use offsnap_fs::cursor::DirCursor;
use offsnap_fs::fsx;

/// An interrupted run's directory, ready to be reused.
pub struct ResumeSource {
    tree: DirCursor,
    /// Finished files: path, size, hash (the last record of each path).
    finished: Vec<(RelPath, u64, Hash)>,
    /// The file begun: its path, temporary name and length that arrived.
    partial: HashMap<RelPath, (Vec<u8>, u64)>,
}

/// What a candidate directory holds.
struct Candidate {
    name: Vec<u8>,
    in_resume: bool,
    source: Option<ResumeSource>,
    worth: u64,
}

impl ResumeSource {
    /// Keeps the most useful interrupted run of `set` (by bytes it can
    /// give back) in `.offsnap/resume/` and clears the other interrupted
    /// runs. Call with the set's lock held, before a run starts.
    pub fn prepare(set: &SetDir) -> Result<Option<ResumeSource>, Error> {
        let ctx = format!("set {:?}: looking for an interrupted run", set.name());
        let incomplete = set.meta_dir("incomplete")?;
        let resume = set.meta_dir_or_new("resume")?;
        let mut candidates = Vec::new();
        for (dir, in_resume) in [(&resume, true), (&incomplete, false)] {
            for (name, _) in fsx::read_dir(dir.as_fd()).ctx(&ctx)? {
                let source = match fsx::open_dir(dir.as_fd(), &name) {
                    Ok(run) => ResumeSource::open(run).ok().flatten(),
                    Err(_) => None,
                };
                let worth = source.as_ref().map_or(0, ResumeSource::worth);
                candidates.push(Candidate {
                    name,
                    in_resume,
                    source,
                    worth,
                });
            }
        }
        let best = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.worth > 0)
            .max_by_key(|(_, c)| c.worth)
            .map(|(i, _)| i);
        let trash = set.meta_dir("trash")?;
        let mut kept = None;
        for (i, c) in candidates.into_iter().enumerate() {
            let from = if c.in_resume { &resume } else { &incomplete };
            if Some(i) == best {
                if !c.in_resume {
                    fsx::rename_between(from.as_fd(), &c.name, resume.as_fd(), &c.name, false)
                        .ctx(&ctx)?;
                }
                kept = c.source;
            } else if c.in_resume {
                let mut dest = c.name.clone();
                dest.extend_from_slice(format!(".{}", std::process::id()).as_bytes());
                fsx::rename_between(from.as_fd(), &c.name, trash.as_fd(), &dest, false)
                    .ctx(&ctx)?;
            }
        }
        Ok(kept)
    }

    /// Reads a run directory's journal; `None` when it offers nothing.
    fn open(run: OwnedFd) -> io::Result<Option<ResumeSource>> {
        let records = journal::read(run.as_fd())?;
        if records.is_empty() {
            return Ok(None);
        }
        let tree = fsx::open_dir(run.as_fd(), b"tree")?;
        let mut cursor = DirCursor::new(tree);
        let mut finished: HashMap<RelPath, (u64, Hash)> = HashMap::new();
        let mut begun: HashMap<RelPath, Vec<u8>> = HashMap::new();
        for r in records {
            match r {
                Record::Finished { path, size, hash } => {
                    begun.remove(&path);
                    finished.insert(path, (size, hash));
                }
                Record::Begun { path, tmp } => {
                    begun.insert(path, tmp);
                }
            }
        }
        let mut partial = HashMap::new();
        for (path, tmp) in begun {
            // Only a name this code gives temporary files, in the file's
            // directory.
            if !tmp.starts_with(b".offsnap-tmp.") || tmp.contains(&b'/') {
                continue;
            }
            let Ok((dir, _)) = cursor.parent_of(&path) else {
                continue;
            };
            if let Ok(Some(st)) = fsx::lstat(dir, &tmp)
                && fsx::file_type(&st) == rustix::fs::FileType::RegularFile
                && st.st_size > 0
            {
                partial.insert(path, (tmp, st.st_size as u64));
            }
        }
        let mut finished: Vec<(RelPath, u64, Hash)> = finished
            .into_iter()
            .map(|(p, (size, hash))| (p, size, hash))
            .collect();
        finished.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.walk_cmp(&b.0)));
        if finished.is_empty() && partial.is_empty() {
            return Ok(None);
        }
        Ok(Some(ResumeSource {
            tree: cursor,
            finished,
            partial,
        }))
    }

    /// Bytes it may give back.
    fn worth(&self) -> u64 {
        let done: u64 = self.finished.iter().map(|f| f.1).sum();
        let begun: u64 = self.partial.values().map(|p| p.1).sum();
        (done + begun).max(1)
    }

    /// Its finished files: path, size, hash, largest first.
    pub fn finished(&self) -> &[(RelPath, u64, Hash)] {
        &self.finished
    }

    /// What to tell the client.
    pub fn offer(&self) -> Resume {
        Resume {
            finished: self
                .finished
                .iter()
                .take(offsnap_protocol::message::MAX_RESUME_FILES)
                .map(|(_, size, hash)| (*hash, *size))
                .collect(),
            partial: self
                .partial
                .iter()
                .map(|(p, (_, len))| (p.clone(), *len))
                .collect(),
        }
    }

    /// The part that arrived of the file begun at `path`, with its length.
    pub fn open_partial(&mut self, path: &RelPath) -> io::Result<Option<(File, u64)>> {
        let Some((tmp, _)) = self.partial.get(path) else {
            return Ok(None);
        };
        let (dir, _) = self.tree.parent_of(path)?;
        let f = fsx::open_file(dir, tmp)?;
        let len = f.metadata()?.len();
        Ok(Some((f, len)))
    }

    /// Whether the finished file `path` holds `size` bytes hashing to
    /// `hash`: checked before each use (the run that wrote it was cut, and
    /// nothing it left is taken on trust).
    pub fn check(&mut self, path: &RelPath, size: u64, hash: Hash) -> io::Result<bool> {
        let (dir, name) = self.tree.parent_of(path)?;
        let mut f = fsx::open_file(dir, name)?;
        let (n, got) = fsx::hash_all(&mut f, &mut vec![0u8; 1 << 20])?;
        Ok(n == size && got == hash)
    }

    /// The cursor over its tree, to link from.
    pub fn tree(&mut self) -> &mut DirCursor {
        &mut self.tree
    }
}

/// Removes what `.offsnap/resume/` holds: after a commit it is not needed.
pub fn clear(set: &SetDir) -> Result<(), Error> {
    let ctx = format!("set {:?}: clearing the resumed run", set.name());
    let resume = set.meta_dir_or_new("resume")?;
    for (name, _) in fsx::read_dir(resume.as_fd()).ctx(&ctx)? {
        fsx::remove_tree(resume.as_fd(), &name).ctx(&ctx)?;
    }
    Ok(())
}
