//! The second pass over the sources: each scanned entry planned against
//! the base cursor and handed to the stage that does it (a base op, an
//! entry, a file to store), then the base's remaining entries counted as
//! gone, then the repair stage.

use std::collections::{HashMap, HashSet};
use std::fs::File;

use offsnap_protocol::{Entry, Hash, Op, RelPath};

use super::plan::{self, Base, Change, Plan};
use super::repair::Kept;
use super::report::Tally;
use super::send::Wire;
use super::signatures::Signatures;
use super::stored::ContentIndex;
use crate::error::Result;
use crate::interrupt;
use crate::manifests;
use crate::progress::Progress;
use crate::scan::{self, ScanItem, ScanKind, Source};

/// The state of the sending side of a run, by stage.
pub struct Run<'a> {
    /// The send stage.
    pub wire: Wire<'a>,
    /// The contents on the host.
    pub index: ContentIndex,
    /// Contents an interrupted run finished (also in `index`).
    pub resumed: HashSet<Hash>,
    /// Files an interrupted run had begun, with the length that arrived.
    pub partials: HashMap<RelPath, u64>,
    /// The signature queue.
    pub sigs: Signatures,
    /// Files kept for the repair stage.
    pub resend: Kept,
    /// The first name stored in this run of each file with several names.
    pub links: HashMap<(u64, u64), RelPath>,
    /// The display.
    pub progress: &'a Progress,
    /// The counts.
    pub tally: Tally,
    /// The file being read, while it is.
    pub current: Option<std::path::PathBuf>,
}

impl Run<'_> {
    /// Counts and shows an entry's change.
    pub fn item(&mut self, change: Change, entry: &Entry) {
        let bytes = match entry.kind {
            offsnap_protocol::EntryKind::File { size, .. } => size,
            _ => 0,
        };
        self.tally.change(change, bytes);
        self.progress
            .item(change, plan::kind_char(&entry.kind), &entry.path, bytes);
    }

    /// The second pass: the walk, the base's rest, the repair.
    pub fn walk(
        &mut self,
        sources: &[Source],
        opts: &scan::ScanOptions,
        base: Option<&File>,
    ) -> Result<()> {
        let mut cursor = Base::new(base.map(manifests::entries).transpose()?)?;
        for res in scan::scan(sources, opts)? {
            interrupt::check()?;
            match res {
                Ok(item) => self.one(&item, &mut cursor)?,
                Err(p) => self
                    .tally
                    .problems
                    .push(format!("{}: {}", p.local.display(), p.message)),
            }
        }
        cursor.rest(&mut |e| {
            self.item(Change::Deleted, &e);
            Ok(())
        })?;
        self.wire.flush_base()?;
        self.repair(base, sources)
    }

    /// Plans one scanned entry and does it.
    fn one<R: std::io::Read>(&mut self, item: &ScanItem, cursor: &mut Base<R>) -> Result<()> {
        if item.kind == ScanKind::SkippedCache {
            let shown = Entry {
                path: item.path.clone(),
                kind: offsnap_protocol::EntryKind::Dir,
                meta: item.meta,
                xattrs: Vec::new(),
            };
            self.item(Change::Cache, &shown);
            return Ok(());
        }
        self.tally.scanned += 1;
        let mut skipped = 0;
        let old = cursor.find(&item.path, &mut |e| {
            skipped += 1;
            self.item(Change::Deleted, &e);
            Ok(())
        })?;
        self.wire.base(Op::Skip(skipped))?;
        let is_file = matches!(item.kind, ScanKind::File(_));
        let first_name = item.inode.and_then(|id| self.links.get(&id)).cloned();
        match plan::decide(item, old, first_name.as_ref()) {
            Plan::Unchanged(o) => {
                if is_file {
                    self.tally.files += 1;
                    self.tally.linked += 1;
                    if first_name.is_none() {
                        self.note_inode(item);
                    }
                }
                self.wire.record(&o);
                self.wire.base(Op::Unchanged(1))
            }
            Plan::Record { entry, old } => {
                if old.is_some() {
                    self.wire.base(Op::Skip(1))?;
                }
                if is_file {
                    self.tally.files += 1;
                    self.tally.hard_links += 1;
                }
                self.item(plan::recorded_change(&entry, old.as_ref()), &entry);
                self.wire.entry(entry)
            }
            Plan::Read { old } => {
                if old.is_some() {
                    self.wire.base(Op::Skip(1))?;
                }
                self.tally.files += 1;
                self.wire.flush_base()?;
                if self.file(item, old.as_ref())? {
                    self.note_inode(item);
                }
                Ok(())
            }
            Plan::SkippedCache => Ok(()),
        }
    }

    /// What an interrupted run leaves on the host for the next one.
    pub fn kept(&self) -> String {
        let t = &self.tally;
        let mut text = format!(
            "{} file(s) ({}) sent so far are kept for the next run",
            t.files_sent + t.delta_files,
            crate::output::human_bytes(t.content_bytes)
        );
        if let Some(p) = &self.current {
            text.push_str(&format!(
                ", and what arrived of {}",
                offsnap_protocol::text::shown(p.as_os_str().as_encoded_bytes())
            ));
        }
        text
    }

    /// Remembers a file's first name, for its other names.
    fn note_inode(&mut self, item: &ScanItem) {
        if let Some(id) = item.inode {
            self.links.entry(id).or_insert_with(|| item.path.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::signatures::Answer;
    use super::super::testing::{Tree, manifest, other, path, with_run};
    use super::*;
    use offsnap_protocol::Request;

    #[test]
    fn each_entry_goes_to_its_stage_against_the_base() {
        let tree = Tree::new();
        tree.write("s/a", b"unchanged");
        tree.write("s/b", b"changed content");
        tree.write("s/d", b"new");
        let mut gone = other(tree.entry("s/a"), 5, 8);
        gone.path = path("s/c");
        let base = manifest(&[
            tree.entry("s"),
            tree.entry("s/a"),
            other(tree.entry("s/b"), 3, 7),
            gone,
        ]);
        let sources = tree.sources();
        let (tally, out) = with_run(&[], vec![Answer::Synced], |run| {
            run.walk(&sources, &Default::default(), Some(&base))
                .expect("walk");
            run.tally.clone()
        });
        let ops: Vec<String> = out
            .ops()
            .iter()
            .map(|op| match op {
                Op::File { path, .. } => format!("file {path}"),
                Op::End { .. } => "end".into(),
                other => format!("{other:?}"),
            })
            .collect();
        // `s` and `s/a` linked; `s/b` replaced; `s/c` gone (the helper
        // passes the rest of the base by); `s/d` new.
        assert_eq!(
            ops,
            [
                "Unchanged(2)",
                "Skip(1)",
                "file s/b",
                "end",
                "Skip(1)",
                "file s/d",
                "end"
            ]
        );
        assert!(matches!(out.requests().last(), Some(Request::Sync)));
        assert_eq!((tally.scanned, tally.files, tally.linked), (4, 3, 1));
        assert_eq!(tally.files_sent, 2);
        for (change, n) in [
            (Change::New, 1),
            (Change::Content, 1),
            (Change::Deleted, 1),
            (Change::Metadata, 0),
        ] {
            assert_eq!(tally.of(change).entries, n, "{change:?}");
        }
    }

    #[test]
    fn a_second_name_of_a_file_is_a_hard_link_to_its_first() {
        let tree = Tree::new();
        tree.write("s/a", b"one file");
        std::fs::hard_link(tree.local("s/a"), tree.local("s/b")).expect("link");
        std::fs::create_dir(tree.local("s/e")).expect("mkdir");
        let sources = tree.sources();
        // Without a base nothing waits for the helper at the end.
        let (tally, out) = with_run(&[], Vec::new(), |run| {
            run.walk(&sources, &Default::default(), None).expect("walk");
            run.tally.clone()
        });
        let ops = out.ops();
        assert!(
            matches!(&ops[0], Op::Entry(e) if e.path == path("s")),
            "{ops:?}"
        );
        assert!(matches!(&ops[1], Op::File { path: p, .. } if *p == path("s/a")));
        assert!(matches!(&ops[2], Op::End { .. }));
        let Op::Entry(link) = &ops[3] else {
            panic!("not an entry: {ops:?}");
        };
        assert_eq!(
            link.kind,
            offsnap_protocol::EntryKind::HardLink {
                target: path("s/a")
            }
        );
        assert!(matches!(&ops[4], Op::Entry(e) if e.path == path("s/e")));
        assert_eq!(ops.len(), 5);
        assert!(!out.requests().iter().any(|r| matches!(r, Request::Sync)));
        assert_eq!((tally.files, tally.hard_links, tally.files_sent), (2, 1, 1));
        assert_eq!(tally.of(Change::New).entries, 4);
    }

    #[test]
    fn a_cache_directory_is_shown_but_not_sent() {
        let tree = Tree::new();
        std::fs::create_dir(tree.local("s/cache")).expect("mkdir");
        tree.write(
            "s/cache/CACHEDIR.TAG",
            b"Signature: 8a477f597d28d172789f06886806bc55\n",
        );
        tree.write("s/cache/big", b"left out");
        let sources = tree.sources();
        let (tally, out) = with_run(&[], Vec::new(), |run| {
            run.walk(&sources, &Default::default(), None).expect("walk");
            run.tally.clone()
        });
        assert_eq!(out.ops().len(), 1, "only the source directory");
        assert_eq!(tally.of(Change::Cache).entries, 1);
        assert_eq!(tally.scanned, 1);
    }

    #[test]
    fn an_interruption_says_what_is_kept() {
        let tree = Tree::new();
        let (kept, _) = with_run(&[], Vec::new(), |run| {
            run.tally.files_sent = 2;
            run.tally.content_bytes = 2048;
            run.current = Some(tree.local("s/half"));
            run.kept()
        });
        assert!(
            kept.starts_with("2 file(s) (2.0 KiB) sent so far"),
            "{kept}"
        );
        assert!(kept.ends_with("s/half"), "{kept}");
    }
}
