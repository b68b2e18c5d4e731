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
        cursor.rest(&mut |e| self.item(Change::Deleted, &e))?;
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
