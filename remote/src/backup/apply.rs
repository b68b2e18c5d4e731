//! The op state machine: between files, an op is an entry, a run of base
//! entries kept or skipped, a link by content or the start of a file;
//! inside a file, only its data (or delta pieces), its end or its cancel
//! may come. Each op goes to the stage that does its work.

use offsnap_protocol::Op;

use super::BackupRun;
use crate::error::{Error, protocol};

impl BackupRun {
    /// Applies one op.
    pub fn apply(&mut self, op: Op) -> Result<(), Error> {
        match &self.file {
            Some(open) => match op {
                Op::Data(d) => self.data(d, false),
                Op::DataZstd(z) => self.data(z, true),
                Op::DeltaPiece { zstd, bytes } => self.piece(bytes, zstd),
                Op::End { hash } => self.end_file(hash),
                Op::Cancel => self.cancel(),
                other => Err(protocol(format!(
                    "{}: expected file data, got {}",
                    open.sink.path(),
                    op_word(&other)
                ))),
            },
            None => self.between_files(op),
        }
    }

    /// Applies an op that comes between files.
    fn between_files(&mut self, op: Op) -> Result<(), Error> {
        match op {
            Op::Entry(entry) => {
                entry.check().map_err(protocol)?;
                self.place(entry)
            }
            Op::Unchanged(n) => (0..n).try_for_each(|_| {
                let entry = self.next_base()?;
                self.keep(entry)
            }),
            Op::Skip(n) => (0..n).try_for_each(|_| self.next_base().map(drop)),
            Op::LinkFrom(entry) => {
                entry.check().map_err(protocol)?;
                self.link_by_content(entry)
            }
            Op::File {
                path,
                meta,
                size,
                xattrs,
            } => self.begin(path, meta, xattrs, size, false),
            Op::Delta {
                path,
                meta,
                size,
                xattrs,
            } => self.begin(path, meta, xattrs, size, true),
            Op::Data(_) | Op::DataZstd(_) | Op::DeltaPiece { .. } | Op::End { .. } | Op::Cancel => {
                Err(protocol("file data outside a file"))
            }
        }
    }

    /// The next entry of the base manifest.
    fn next_base(&mut self) -> Result<offsnap_protocol::Entry, Error> {
        match &mut self.base {
            Some(base) => base.next(),
            None => Err(protocol("no base snapshot")),
        }
    }
}

/// How an op is named in an error.
fn op_word(op: &Op) -> &'static str {
    match op {
        Op::Entry(_) => "an entry",
        Op::Unchanged(_) => "unchanged entries",
        Op::Skip(_) => "skipped entries",
        Op::File { .. } => "a new file",
        Op::LinkFrom(_) => "a link by content",
        Op::Data(_) | Op::DataZstd(_) => "data",
        Op::Delta { .. } => "a delta",
        Op::DeltaPiece { .. } => "a delta piece",
        Op::End { .. } => "a file end",
        Op::Cancel => "a cancel",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{Fixture, file_ops, meta, path};
    use super::*;
    use offsnap_protocol::{Entry, EntryKind, Hash};

    #[test]
    fn inside_a_file_only_its_data_may_come() {
        let fx = Fixture::new();
        let mut run = fx.start();
        let [begin, _, _] = <[Op; 3]>::try_from(file_ops("f", b"abc")).unwrap();
        run.apply(begin).unwrap();
        let e = run.apply(Op::Skip(1)).unwrap_err();
        assert_eq!(e.to_string(), "f: expected file data, got skipped entries");
        run.abort();
    }

    #[test]
    fn between_files_no_data_may_come_and_the_base_bounds_unchanged_runs() {
        let fx = Fixture::new();
        let mut run = fx.start();
        for op in [
            Op::Cancel,
            Op::End {
                hash: Hash::of(b""),
            },
        ] {
            let e = run.apply(op).unwrap_err();
            assert_eq!(e.to_string(), "file data outside a file");
        }
        let e = run.apply(Op::Unchanged(1)).unwrap_err();
        assert_eq!(e.to_string(), "no base snapshot");
        run.abort();
        fx.commit_files(&[("a", b"1"), ("b", b"2")]);
        let mut run = fx.start();
        run.apply(Op::Skip(1)).unwrap();
        run.apply(Op::Unchanged(1)).unwrap();
        let e = run.apply(Op::Unchanged(1)).unwrap_err();
        assert!(e.to_string().contains("more unchanged entries"), "{e}");
        run.abort();
    }

    #[test]
    fn an_invalid_entry_is_refused_before_it_is_placed() {
        let fx = Fixture::new();
        let mut run = fx.start();
        let bad = Entry {
            path: path("s"),
            kind: EntryKind::Symlink {
                target: vec![b'x'; offsnap_protocol::entry::MAX_LINK_TARGET + 1],
            },
            meta: meta(),
            xattrs: Vec::new(),
        };
        let e = run.apply(Op::Entry(bad)).unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e}");
        run.abort();
    }
}
