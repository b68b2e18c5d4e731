//! The dry run (`backup --dry-run`): the plan of a run against the newest
//! snapshot's manifest, with nothing sent and nothing made. New and
//! changed files are read and hashed so that each entry is told as the
//! real run would tell it (linked by content, metadata only); the
//! destination is only listed and its manifest fetched.

use std::collections::HashMap;
use std::time::Instant;

use offsnap_protocol::{CommitStats, Entry, EntryKind, Hash, RelPath};

use super::BackupOptions;
use super::plan::{self, Base, Change, Plan};
use super::report::{BackupReport, Tally};
use super::stored::ContentIndex;
use crate::error::{Error, Result};
use crate::interrupt;
use crate::manifests;
use crate::progress::Progress;
use crate::scan::{self, ScanItem, ScanKind};
use crate::session::Session;

/// Plans a run over an open session without sending anything, then
/// closes the session.
pub fn dry_run(mut session: Session, opts: &BackupOptions) -> Result<BackupReport> {
    let started = Instant::now();
    let sources = scan::resolve_sources(&opts.sources)?;
    let newest = match crate::requests::snapshots(&mut session, &opts.set) {
        Ok(list) => list.last().cloned(),
        Err(Error::Remote(e)) if e.kind == offsnap_protocol::ErrorKind::NotFound => None,
        Err(e) => return Err(session.fail(e)),
    };
    let base = match &newest {
        Some(info) => match manifests::fetch_file(&mut session, &opts.set, info) {
            Ok(f) => Some(f),
            Err(e) => return Err(session.fail(e)),
        },
        None => None,
    };
    session.close()?;
    let progress = Progress::new(opts.show);
    let mut dry = Dry {
        index: ContentIndex::default(),
        links: HashMap::new(),
        progress: &progress,
        tally: Tally::default(),
    };
    if let Some(f) = &base {
        for e in manifests::entries(f)? {
            let e = e.map_err(|e| Error::Corrupt(format!("base manifest: {e}")))?;
            if let EntryKind::File { hash, size } = e.kind {
                dry.index.insert(&hash, size);
            }
        }
    }
    let mut cursor = Base::new(base.as_ref().map(manifests::entries).transpose()?)?;
    for res in scan::scan(&sources, &opts.scan)? {
        interrupt::check()?;
        match res {
            Ok(item) => dry.one(&item, &mut cursor)?,
            Err(p) => dry
                .tally
                .problems
                .push(format!("{}: {}", p.local.display(), p.message)),
        }
    }
    cursor.rest(&mut |e| dry.item(Change::Deleted, &e))?;
    progress.finish();
    Ok(BackupReport {
        snapshot: newest.map(|i| i.name),
        dry_run: true,
        stats: CommitStats::default(),
        tally: dry.tally,
        sent: Default::default(),
        offered: (0, 0),
        wire_sent: 0,
        wire_received: 0,
        elapsed: started.elapsed().as_secs_f64(),
        pruned: Vec::new(),
        prune_error: None,
    })
}

/// A dry run's state.
struct Dry<'a> {
    index: ContentIndex,
    links: HashMap<(u64, u64), RelPath>,
    progress: &'a Progress,
    tally: Tally,
}

impl Dry<'_> {
    fn item(&mut self, change: Change, entry: &Entry) {
        let bytes = match entry.kind {
            EntryKind::File { size, .. } => size,
            _ => 0,
        };
        self.tally.change(change, bytes);
        self.progress
            .item(change, plan::kind_char(&entry.kind), &entry.path, bytes);
    }

    /// Plans one entry as the real run would, and counts it.
    fn one<R: std::io::Read>(&mut self, item: &ScanItem, cursor: &mut Base<R>) -> Result<()> {
        if item.kind == ScanKind::SkippedCache {
            let shown = Entry {
                path: item.path.clone(),
                kind: EntryKind::Dir,
                meta: item.meta,
                xattrs: Vec::new(),
            };
            self.item(Change::Cache, &shown);
            return Ok(());
        }
        self.tally.scanned += 1;
        let old = cursor.find(&item.path, &mut |e| self.item(Change::Deleted, &e))?;
        let first_name = item.inode.and_then(|id| self.links.get(&id)).cloned();
        let is_file = matches!(item.kind, ScanKind::File(_));
        if is_file {
            self.tally.files += 1;
        }
        match plan::decide(item, old, first_name.as_ref()) {
            Plan::Unchanged(_) => {
                if is_file {
                    self.tally.linked += 1;
                    self.note_inode(item, first_name.is_none());
                }
            }
            Plan::Record { entry, old } => {
                if is_file {
                    self.tally.hard_links += 1;
                }
                self.item(plan::recorded_change(&entry, old.as_ref()), &entry);
            }
            Plan::Read { old } => self.read(item, old.as_ref())?,
            Plan::SkippedCache => {}
        }
        Ok(())
    }

    fn note_inode(&mut self, item: &ScanItem, first: bool) {
        if let (Some(id), true) = (item.inode, first) {
            self.links.entry(id).or_insert_with(|| item.path.clone());
        }
    }

    /// Reads a new or changed file to tell what the real run would do
    /// with it: link by content, or send it as a delta or whole.
    fn read(&mut self, item: &ScanItem, old: Option<&Entry>) -> Result<()> {
        let ScanKind::File(size) = item.kind else {
            return Ok(());
        };
        self.progress.current(&item.local);
        let hash = match hash_of(item) {
            Ok(h) => h,
            Err(e) => {
                self.tally
                    .problems
                    .push(format!("{}: {e}", item.local.display()));
                return Ok(());
            }
        };
        self.progress.read(size);
        let entry = Entry {
            path: item.path.clone(),
            kind: EntryKind::File { size, hash },
            meta: item.meta,
            xattrs: item.xattrs.clone(),
        };
        let delta = plan::delta_base(old, None, size).is_some();
        let by_content = !delta && self.index.may_match(size) && self.index.contains(&hash);
        if by_content {
            self.tally.linked_by_hash += 1;
        } else if delta {
            self.tally.delta_files += 1;
            self.tally.delta_bytes += size;
        } else {
            self.index.insert(&hash, size);
            self.tally.files_sent += 1;
            self.tally.whole_bytes += size;
        }
        if !by_content {
            self.tally.content_bytes += size;
        }
        self.note_inode(item, true);
        self.item(plan::file_change(old, &hash, by_content), &entry);
        Ok(())
    }
}

/// The hash of a scanned file's content.
fn hash_of(item: &ScanItem) -> std::io::Result<Hash> {
    let mut file = scan::open_item(item)?;
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(Hash::from(hasher.finalize()))
}
