//! The dry run (`backup --dry-run`): the plan of a run against the newest
//! snapshot's manifest, with nothing sent and nothing made. New and
//! changed files are read and hashed so that each entry is told as the
//! real run would tell it (linked by content, metadata only); the
//! destination is only listed and its manifest fetched.

use std::collections::HashMap;
use std::fs::File;
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
use crate::scan::{self, ScanItem, ScanKind, Source};
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
    let tally = plan_all(
        &sources,
        &opts.scan,
        base.as_ref(),
        (opts.deltas, &progress),
    )?;
    progress.finish();
    Ok(BackupReport {
        snapshot: newest.map(|i| i.name),
        dry_run: true,
        stats: CommitStats::default(),
        tally,
        sent: Default::default(),
        offered: (0, 0),
        wire_sent: 0,
        wire_received: 0,
        elapsed: started.elapsed().as_secs_f64(),
        pruned: Vec::new(),
        prune_error: None,
    })
}

/// Plans every scanned entry against the `base` manifest, and counts.
fn plan_all(
    sources: &[Source],
    opts: &scan::ScanOptions,
    base: Option<&File>,
    (deltas, progress): (bool, &Progress),
) -> Result<Tally> {
    let mut dry = Dry {
        deltas,
        index: ContentIndex::default(),
        links: HashMap::new(),
        progress,
        tally: Tally::default(),
    };
    if let Some(f) = base {
        for e in manifests::entries(f)? {
            let e = e.map_err(|e| Error::Corrupt(format!("base manifest: {e}")))?;
            if let EntryKind::File { hash, size } = e.kind {
                dry.index.insert(&hash, size)?;
            }
        }
    }
    let mut cursor = Base::new(base.map(manifests::entries).transpose()?)?;
    for res in scan::scan(sources, opts)? {
        interrupt::check()?;
        match res {
            Ok(item) => dry.one(&item, &mut cursor)?,
            Err(p) => dry
                .tally
                .problems
                .push(format!("{}: {}", p.local.display(), p.message)),
        }
    }
    cursor.rest(&mut |e| {
        dry.item(Change::Deleted, &e);
        Ok(())
    })?;
    Ok(dry.tally)
}

/// A dry run's state.
struct Dry<'a> {
    /// Whether changed files would travel as deltas (not to a destination
    /// served in-process).
    deltas: bool,
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
        let old = cursor.find(&item.path, &mut |e| {
            self.item(Change::Deleted, &e);
            Ok(())
        })?;
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
        let delta = self.deltas && plan::delta_base(old, None, size).is_some();
        let by_content = !delta && self.index.may_match(size) && self.index.contains(&hash)?;
        if by_content {
            self.tally.linked_by_hash += 1;
        } else if delta {
            self.tally.delta_files += 1;
            self.tally.delta_bytes += size;
        } else {
            self.index.insert(&hash, size)?;
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

#[cfg(test)]
mod tests {
    use super::super::plan::DELTA_MIN;
    use super::super::testing::{Tree, hidden, manifest, other, path};
    use super::*;

    #[test]
    fn each_entry_is_told_as_the_real_run_would_tell_it() {
        let tree = Tree::new();
        tree.write("s/a", b"unchanged");
        tree.write("s/copy", b"stored content");
        tree.write("s/stored", b"stored content");
        tree.write("s/touched", b"same bytes");
        tree.write("s/zz", b"new and nowhere");
        let big: Vec<u8> = (0..DELTA_MIN as usize + 100).map(|i| i as u8).collect();
        tree.write("s/big", &big);
        let touched = tree.entry("s/touched");
        let mut earlier = touched.clone();
        earlier.meta.mtime_sec -= 60;
        let mut gone = tree.entry("s/a");
        gone.path = path("s/gone");
        let base = manifest(&[
            tree.entry("s"),
            tree.entry("s/a"),
            other(tree.entry("s/big"), DELTA_MIN, 1),
            other(tree.entry("s/copy"), 2, 2),
            gone,
            tree.entry("s/stored"),
            earlier,
        ]);
        let tally = plan_all(
            &tree.sources(),
            &Default::default(),
            Some(&base),
            (true, &hidden()),
        )
        .expect("dry run");
        assert_eq!((tally.scanned, tally.files, tally.linked), (7, 6, 2));
        // `s/copy` takes the content of `s/stored`, `s/touched` its own
        // old content; `s/big` is a delta; `s/zz` would be sent whole.
        assert_eq!(tally.linked_by_hash, 2);
        assert_eq!((tally.delta_files, tally.delta_bytes), (1, DELTA_MIN + 100));
        assert_eq!((tally.files_sent, tally.whole_bytes), (1, 15));
        for (change, n) in [
            (Change::New, 1),
            (Change::Content, 1),
            (Change::Metadata, 1),
            (Change::Deleted, 1),
            (Change::Linked, 1),
            (Change::Cache, 0),
        ] {
            assert_eq!(tally.of(change).entries, n, "{change:?}");
        }
        assert!(tally.problems.is_empty(), "{:?}", tally.problems);
    }

    #[test]
    fn without_a_base_everything_is_new_and_copies_link_to_the_first() {
        let tree = Tree::new();
        tree.write("s/a", b"twice");
        tree.write("s/b", b"twice");
        std::fs::hard_link(tree.local("s/a"), tree.local("s/c")).expect("link");
        let tally = plan_all(
            &tree.sources(),
            &Default::default(),
            None,
            (true, &hidden()),
        )
        .expect("dry run");
        assert_eq!(
            (tally.files, tally.files_sent, tally.whole_bytes),
            (3, 1, 5)
        );
        // `s/b` is the same content, `s/c` a further name of `s/a`.
        assert_eq!((tally.linked_by_hash, tally.hard_links), (1, 1));
        assert_eq!(tally.of(Change::New).entries, 3);
        assert_eq!(tally.of(Change::Linked).entries, 1);
        assert_eq!(tally.content_bytes, 5);
    }

    #[test]
    fn an_unreadable_file_is_a_problem_and_the_rest_goes_on() {
        let tree = Tree::new();
        tree.write("s/a", b"fine");
        tree.write("s/b", b"vanishes");
        let progress = hidden();
        let mut dry = Dry {
            deltas: true,
            index: ContentIndex::default(),
            links: HashMap::new(),
            progress: &progress,
            tally: Tally::default(),
        };
        let items = tree.scanned();
        std::fs::remove_file(tree.local("s/b")).expect("remove");
        let mut cursor = Base::<std::fs::File>::new(None).expect("cursor");
        for item in &items {
            dry.one(item, &mut cursor).expect("planned");
        }
        assert_eq!(dry.tally.problems.len(), 1, "{:?}", dry.tally.problems);
        assert!(dry.tally.problems[0].contains("s/b"));
        assert_eq!(dry.tally.files_sent, 1);
    }
}
