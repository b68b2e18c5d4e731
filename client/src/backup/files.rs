//! Storing one new or changed file: read while nothing else changes it
//! (retried when it does), then linked by content when its content is on
//! the host, else sent whole or as a delta (through the send stage), and
//! ended with the hash of what was read.

use std::fs::File;
use std::io::Read;

use offsnap_fs::fsx;
use offsnap_protocol::{DATA_CHUNK, Entry, EntryKind, Hash, Meta, Op};

use super::pipeline::Run;
use super::plan;
use super::stored::IN_MEMORY;
use crate::error::Result;
use crate::scan::{self, ScanItem};

/// How often a file that keeps changing while read is tried.
const READ_ATTEMPTS: usize = 3;

/// One attempt's outcome.
enum Read1 {
    Done,
    Changed,
    Failed(String),
}

/// A file open for one attempt, as it was when opened.
struct Open<'i> {
    item: &'i ScanItem,
    file: File,
    size: u64,
    meta: Meta,
}

impl Open<'_> {
    /// Whether the file still is as it was when opened.
    fn still(&self) -> bool {
        matches!(self.file.metadata(), Ok(md) if md.len() == self.size && fsx::meta_of_metadata(&md) == self.meta)
    }

    fn entry(&self, hash: Hash) -> Entry {
        Entry {
            path: self.item.path.clone(),
            kind: EntryKind::File {
                size: self.size,
                hash,
            },
            meta: self.meta,
            xattrs: self.item.xattrs.clone(),
        }
    }
}

/// How a file's content travels.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Whole,
    Delta,
}

impl Run<'_> {
    /// Stores a new or changed file: by hash when its content is already
    /// on the host, else by sending it; retried when it changes meanwhile.
    /// Returns whether it was stored.
    pub fn file(&mut self, item: &ScanItem, old: Option<&Entry>) -> Result<bool> {
        let sig = self.sigs.for_path(&item.path)?;
        self.progress.current(&item.local);
        for _ in 0..READ_ATTEMPTS {
            self.current = Some(item.local.clone());
            // Left set when the attempt fails: the run is then stopping,
            // and says which file it was in.
            let attempt = self.file_once(item, old, sig.as_deref())?;
            self.current = None;
            match attempt {
                Read1::Done => return Ok(true),
                Read1::Changed => continue,
                Read1::Failed(why) => {
                    self.tally
                        .problems
                        .push(format!("{}: {why}", item.local.display()));
                    return Ok(false);
                }
            }
        }
        self.tally.problems.push(format!(
            "{}: kept changing while being read; not backed up",
            item.local.display()
        ));
        Ok(false)
    }

    fn open<'i>(item: &'i ScanItem) -> std::result::Result<Open<'i>, Read1> {
        let file = match scan::open_item(item) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Read1::Failed("vanished before it could be read".into()));
            }
            Err(e) => return Err(Read1::Failed(e.to_string())),
        };
        match file.metadata() {
            Ok(md) if md.is_file() => Ok(Open {
                item,
                size: md.len(),
                meta: fsx::meta_of_metadata(&md),
                file,
            }),
            Ok(_) => Err(Read1::Failed("is no longer a regular file".into())),
            Err(e) => Err(Read1::Failed(e.to_string())),
        }
    }

    fn file_once(
        &mut self,
        item: &ScanItem,
        old: Option<&Entry>,
        sig: Option<&[u8]>,
    ) -> Result<Read1> {
        let mut open = match Self::open(item) {
            Ok(o) => o,
            Err(r) => return Ok(r),
        };
        let size = open.size;
        // A big changed file with a signature waiting travels as a delta;
        // a large file no stored file matches in size is sent right away.
        // Both are hashed as they are read: one pass instead of two (a
        // large file matching stored content elsewhere is rare enough not
        // to pay a second read for it).
        let partial = self.partials.get(&item.path).copied();
        if let Some(sig) = sig
            && let Some(base) = plan::delta_base(old, partial, size)
        {
            let resumed = partial.is_some();
            return self.one_pass(&mut open, old, Some((sig, base, resumed)));
        }
        if !self.index.may_match(size) {
            return self.one_pass(&mut open, old, None);
        }
        // First: the content's hash (and, for small files, the content).
        let (hash, whole) = match hash_first(&mut open) {
            Ok(v) => v,
            Err(r) => return Ok(r),
        };
        if self.index.contains(&hash)? {
            return self.link_by_content(&open, old, hash);
        }
        // Then the content itself.
        self.wire.op(Op::File {
            path: item.path.clone(),
            meta: open.meta,
            size,
            xattrs: item.xattrs.clone(),
        })?;
        let sent = match whole {
            Some(whole) => {
                for chunk in whole.chunks(DATA_CHUNK) {
                    self.wire.data(chunk)?;
                }
                self.progress.read(size);
                Ok(hash)
            }
            None => self.wire.stream(&mut open.file, size, self.progress)?,
        };
        self.finish(&open, old, sent, (hash, Way::Whole))
    }

    /// Stores a file whose content is on the host by linking to it.
    fn link_by_content(
        &mut self,
        open: &Open<'_>,
        old: Option<&Entry>,
        hash: Hash,
    ) -> Result<Read1> {
        let entry = open.entry(hash);
        self.tally.linked_by_hash += 1;
        if self.resumed.contains(&hash) {
            self.tally.resumed_files += 1;
            self.tally.resumed_bytes += open.size;
        }
        self.wire.record(&entry);
        self.wire.op(Op::LinkFrom(entry.clone()))?;
        self.progress.read(open.size);
        // Its stored copy may be found altered on the host.
        self.resend.keep(open.item, open.meta, open.size, hash)?;
        self.item(plan::file_change(old, &hash, true), &entry);
        Ok(Read1::Done)
    }

    /// Announces a file (as a delta against `delta`'s signature and base
    /// size, or whole), sends it while hashing it, and ends it.
    fn one_pass(
        &mut self,
        open: &mut Open<'_>,
        old: Option<&Entry>,
        delta: Option<(&[u8], u64, bool)>,
    ) -> Result<Read1> {
        let (path, meta, size) = (open.item.path.clone(), open.meta, open.size);
        let xattrs = open.item.xattrs.clone();
        let matched = self.wire.sent.matched_bytes;
        let sent = match delta {
            Some((sig, base_size, _)) => {
                self.wire.op(Op::Delta {
                    path,
                    meta,
                    size,
                    xattrs,
                })?;
                self.wire
                    .delta(&mut open.file, size, sig, base_size, self.progress)?
            }
            None => {
                self.wire.op(Op::File {
                    path,
                    meta,
                    size,
                    xattrs,
                })?;
                self.wire.stream(&mut open.file, size, self.progress)?
            }
        };
        let hash = *sent.as_ref().unwrap_or(&Hash([0; 32]));
        let way = if delta.is_some() {
            Way::Delta
        } else {
            Way::Whole
        };
        let done = self.finish(open, old, sent, (hash, way))?;
        if let (Some((_, _, resumed)), Read1::Done) = (delta, &done) {
            self.resend.keep(open.item, meta, size, hash)?;
            if resumed {
                self.tally.resumed_files += 1;
                self.tally.resumed_bytes += self.wire.sent.matched_bytes - matched;
            }
        }
        Ok(done)
    }

    /// Ends a file whose content was sent: `End` when what was sent is what
    /// was hashed first and the file did not change meanwhile, else `Cancel`.
    fn finish(
        &mut self,
        open: &Open<'_>,
        old: Option<&Entry>,
        sent: std::result::Result<Hash, String>,
        (hash, way): (Hash, Way),
    ) -> Result<Read1> {
        match sent {
            Ok(h) if h == hash && open.still() => {}
            Ok(_) => {
                self.wire.op(Op::Cancel)?;
                return Ok(Read1::Changed);
            }
            Err(why) => {
                self.wire.op(Op::Cancel)?;
                return Ok(Read1::Failed(why));
            }
        }
        self.wire.op(Op::End { hash })?;
        let entry = open.entry(hash);
        self.wire.record(&entry);
        let size = open.size;
        // A delta's content is on the host only once the helper found it
        // rebuilt right, which it says at the end (see `repair`): until
        // then nothing links to it.
        match way {
            Way::Whole => {
                self.index.insert(&hash, size)?;
                self.tally.files_sent += 1;
                self.tally.whole_bytes += size;
                self.wire.sent.literal_bytes += size;
            }
            Way::Delta => {
                self.tally.delta_files += 1;
                self.tally.delta_bytes += size;
            }
        }
        self.tally.content_bytes += size;
        self.item(plan::file_change(old, &hash, false), &entry);
        Ok(Read1::Done)
    }
}

/// Reads a file to hash it; a small one is kept in memory as read, to be
/// sent from there.
fn hash_first(open: &mut Open<'_>) -> std::result::Result<(Hash, Option<Vec<u8>>), Read1> {
    let size = open.size;
    let mut hasher = blake3::Hasher::new();
    let mut whole = Vec::new();
    let res = if size <= IN_MEMORY {
        whole.reserve(size as usize);
        (&mut open.file)
            .take(size)
            .read_to_end(&mut whole)
            .map(|n| {
                hasher.update(&whole);
                n as u64
            })
    } else {
        std::io::copy(&mut (&mut open.file).take(size), &mut hasher)
    };
    match res {
        Ok(n) if n == size && open.still() => {}
        Ok(_) => return Err(Read1::Changed),
        Err(e) => return Err(Read1::Failed(e.to_string())),
    }
    let hash = Hash::from(hasher.finalize());
    Ok((hash, (size <= IN_MEMORY).then_some(whole)))
}

#[cfg(test)]
mod tests {
    use super::super::plan::{Change, DELTA_MIN};
    use super::super::signatures::Answer;
    use super::super::testing::{Tree, with_run};
    use super::*;

    fn hash(content: &[u8]) -> Hash {
        Hash::from(blake3::hash(content))
    }

    #[test]
    fn a_new_file_is_sent_whole_and_its_content_listed_as_stored() {
        let tree = Tree::new();
        tree.write("s/a", b"some content");
        let item = tree.item("s/a");
        let (stored, out) = with_run(&[], Vec::new(), |run| {
            let stored = run.file(&item, None).expect("file");
            (
                stored,
                run.index.contains(&hash(b"some content")).expect("index"),
                run.tally.clone(),
            )
        });
        let (stored, listed, tally) = stored;
        assert!(stored);
        assert!(listed, "what was sent whole is linked to by later files");
        assert_eq!((tally.files_sent, tally.whole_bytes), (1, 12));
        assert_eq!(tally.of(Change::New).entries, 1);
        let ops = out.ops();
        assert!(matches!(&ops[0], Op::File { size: 12, .. }), "{ops:?}");
        assert_eq!(
            ops[1..],
            [Op::End {
                hash: hash(b"some content")
            }]
        );
        let sent: Vec<u8> = out
            .requests()
            .into_iter()
            .filter_map(|r| match r {
                offsnap_protocol::Request::Op(Op::Data(d)) => Some(d),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(sent, b"some content");
    }

    #[test]
    fn content_already_on_the_host_is_linked_not_sent() {
        let tree = Tree::new();
        tree.write("s/copy", b"stored elsewhere");
        let old = super::super::testing::other(tree.entry("s/copy"), 3, 9);
        let item = tree.item("s/copy");
        let (tally, out) = with_run(&[], Vec::new(), |run| {
            run.index
                .insert(&hash(b"stored elsewhere"), 16)
                .expect("index");
            assert!(run.file(&item, Some(&old)).expect("file"));
            assert!(!run.resend.is_empty(), "kept in case its copy is altered");
            run.tally.clone()
        });
        assert_eq!(out.ops(), [Op::LinkFrom(tree.entry("s/copy"))]);
        assert_eq!((tally.linked_by_hash, tally.files_sent), (1, 0));
        assert_eq!(tally.of(Change::Linked).entries, 1);
    }

    #[test]
    fn a_large_changed_file_with_a_signature_travels_as_a_delta() {
        let tree = Tree::new();
        let old_content: Vec<u8> = (0..DELTA_MIN as usize * 2)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut new_content = old_content.clone();
        new_content[1000..1010].copy_from_slice(b"0123456789");
        tree.write("s/big", &new_content);
        let old = super::super::testing::other(tree.entry("s/big"), old_content.len() as u64, 3);
        let item = tree.item("s/big");
        let sig = offsnap_protocol::diff::sign_bytes(&old_content);
        let (tally, out) = with_run(&["s/big"], vec![Answer::Signature(Some(sig))], |run| {
            assert!(run.file(&item, Some(&old)).expect("file"));
            run.tally.clone()
        });
        let ops = out.ops();
        assert!(matches!(&ops[0], Op::Delta { .. }), "{ops:?}");
        assert_eq!(
            ops[1..],
            [Op::End {
                hash: hash(&new_content)
            }]
        );
        assert_eq!((tally.delta_files, tally.files_sent), (1, 0));
        assert_eq!(tally.of(Change::Content).entries, 1);
        let pieces: usize = out
            .requests()
            .iter()
            .filter_map(|r| match r {
                offsnap_protocol::Request::Op(Op::DeltaPiece { bytes, .. }) => Some(bytes.len()),
                _ => None,
            })
            .sum();
        assert!(
            pieces < new_content.len() / 4,
            "a delta of {pieces} bytes for a 10-byte change"
        );
    }

    #[test]
    fn a_file_that_vanished_or_became_a_directory_is_a_problem_not_an_error() {
        let tree = Tree::new();
        tree.write("s/gone", b"x");
        tree.write("s/dir", b"x");
        let gone = tree.item("s/gone");
        let dir = tree.item("s/dir");
        std::fs::remove_file(tree.local("s/gone")).expect("remove");
        std::fs::remove_file(tree.local("s/dir")).expect("remove");
        std::fs::create_dir(tree.local("s/dir")).expect("mkdir");
        let (problems, out) = with_run(&[], Vec::new(), |run| {
            assert!(!run.file(&gone, None).expect("file"));
            assert!(!run.file(&dir, None).expect("file"));
            run.tally.problems.clone()
        });
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].ends_with("vanished before it could be read"));
        assert!(problems[1].ends_with("is no longer a regular file"));
        assert!(out.ops().is_empty());
    }

    #[test]
    fn a_file_changed_while_hashed_is_read_again() {
        let tree = Tree::new();
        tree.write("s/a", b"before");
        let item = tree.item("s/a");
        let mut open = Run::open(&item).unwrap_or_else(|_| panic!("open"));
        assert!(
            matches!(hash_first(&mut open), Ok((h, Some(w))) if h == hash(b"before") && w == b"before")
        );
        let mut open = Run::open(&item).unwrap_or_else(|_| panic!("open"));
        tree.write("s/a", b"after, longer");
        assert!(matches!(hash_first(&mut open), Err(Read1::Changed)));
    }
}
