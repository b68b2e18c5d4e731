//! Walking the sources in walk order: depth first, siblings sorted by name
//! bytes, each source under its own final name at the snapshot's root. The
//! manifest is in the same order, so the two merge as streams.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use offsnap_fs::fsx;
use rustix::fs::FileType;

use offsnap_protocol::{EntryKind, Meta, RelPath, Xattr};

use crate::error::{Error, Result};

/// A source to back up and the name it gets in the snapshot.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where it is on this machine.
    pub path: PathBuf,
    /// Its name at the snapshot's root.
    pub name: RelPath,
}

/// Checks the sources exist, names them, refuses two with the same name,
/// and sorts them in walk order.
pub fn resolve_sources(paths: &[PathBuf]) -> Result<Vec<Source>> {
    if paths.is_empty() {
        return Err(Error::Usage(
            "nothing to back up: name at least one source".into(),
        ));
    }
    let mut out: Vec<Source> = Vec::new();
    for path in paths {
        std::fs::metadata(path)
            .map_err(|e| Error::Usage(format!("source {}: {}", path.display(), describe(&e))))?;
        // `.` and `..` have no name of their own: use the directory's.
        let name = match path.file_name() {
            Some(n) => n.to_os_string(),
            None => std::fs::canonicalize(path)
                .ok()
                .and_then(|p| p.file_name().map(OsStr::to_os_string))
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "source {} has no name to store it under; name a directory below it",
                        path.display()
                    ))
                })?,
        };
        let name = RelPath::name(name.as_bytes().to_vec())
            .map_err(|e| Error::Usage(format!("source {}: {e}", path.display())))?;
        if let Some(other) = out.iter().find(|s| s.name == name) {
            return Err(Error::Usage(format!(
                "sources {} and {} would both be stored as {name:?}; back up their parent, or one of them alone",
                other.path.display(),
                path.display()
            )));
        }
        out.push(Source {
            path: path.clone(),
            name,
        });
    }
    out.sort_by(|a, b| a.name.walk_cmp(&b.name));
    Ok(out)
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// What kind of thing a scanned entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanKind {
    /// A directory.
    Dir,
    /// A regular file of this size.
    File(u64),
    /// A symlink with this target.
    Symlink(Vec<u8>),
    /// A FIFO, socket or device node, as recorded.
    Special(EntryKind),
    /// A cache directory (one holding a `CACHEDIR.TAG`), left out: it is
    /// yielded so that a run can say so, and nothing below it is walked.
    SkippedCache,
}

/// One entry found by the scan.
#[derive(Debug, Clone)]
pub struct ScanItem {
    /// Its path in the snapshot.
    pub path: RelPath,
    /// Its path on this machine.
    pub local: PathBuf,
    /// Its kind.
    pub kind: ScanKind,
    /// Its metadata as seen by the scan.
    pub meta: Meta,
    /// Its `user.` extended attributes (files and directories).
    pub xattrs: Vec<Xattr>,
    /// Whether `xattrs` (and a symlink's target) were read: always, but
    /// in a [`Detail::Survey`].
    pub xattrs_read: bool,
    /// Device and inode of a file with more than one name, to find its
    /// other names.
    pub inode: Option<(u64, u64)>,
    /// The directory holding it, open.
    pub parent: Arc<OwnedFd>,
    /// Its name in that directory.
    pub name: Vec<u8>,
}

/// Something the scan could not read; the rest goes on.
#[derive(Debug)]
pub struct ScanProblem {
    /// Where.
    pub local: PathBuf,
    /// What.
    pub message: String,
}

/// What to leave out, and where to stop.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// gitignore-style patterns, anchored at each source's root.
    pub excludes: Vec<String>,
    /// Files of such patterns, one per line.
    pub exclude_from: Vec<PathBuf>,
    /// Do not cross into other filesystems.
    pub one_file_system: bool,
    /// Back up directories holding a valid `CACHEDIR.TAG` too.
    pub keep_cachedir: bool,
}

/// The file that marks a cache directory, and how it must start
/// (<https://bford.info/cachedir/>).
const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Builds the command-line exclude matcher for one source; bad patterns
/// and unreadable pattern files are errors.
pub fn excludes_for(root: &Path, opts: &ScanOptions) -> Result<ignore::gitignore::Gitignore> {
    let mut b = ignore::gitignore::GitignoreBuilder::new(root);
    for p in &opts.excludes {
        b.add_line(None, p)
            .map_err(|e| Error::Usage(format!("--exclude {p:?}: {e}")))?;
    }
    for f in &opts.exclude_from {
        std::fs::metadata(f).map_err(|e| {
            Error::Usage(format!("--exclude-from {}: {}", f.display(), describe(&e)))
        })?;
        if let Some(e) = b.add(f) {
            return Err(Error::Usage(format!("--exclude-from {}: {e}", f.display())));
        }
    }
    b.build()
        .map_err(|e| Error::Usage(format!("exclude patterns: {e}")))
}

/// How much of each entry a walk reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Everything a snapshot records.
    Full,
    /// What decides whether a file is unchanged and how it travels: the
    /// `lstat` of every entry, and the extended attributes of regular
    /// files of at least this many bytes only (none of directories and
    /// smaller files, no symlink targets: their items say so with
    /// [`ScanItem::xattrs_read`] and an empty target).
    Survey(u64),
}

/// Walks all sources in order, yielding entries and problems. Leaves out
/// what `--exclude`/`--exclude-from` and per-directory `.offsnapignore`
/// files (gitignore syntax) exclude, and cache directories. Hidden files
/// and `.gitignore`d files are backed up like any other.
///
/// The walk goes through directory handles (`openat`), never through
/// whole paths, so it reaches paths longer than `PATH_MAX` and is not
/// turned aside by a directory replaced with a symlink meanwhile.
pub fn scan<'a>(
    sources: &'a [Source],
    opts: &'a ScanOptions,
) -> Result<impl Iterator<Item = Result<ScanItem, ScanProblem>> + 'a> {
    scan_with(sources, opts, Detail::Full)
}

/// [`scan`], reading `detail` of each entry.
pub fn scan_with<'a>(
    sources: &'a [Source],
    opts: &'a ScanOptions,
    detail: Detail,
) -> Result<impl Iterator<Item = Result<ScanItem, ScanProblem>> + 'a> {
    let mut walks = Vec::with_capacity(sources.len());
    for src in sources {
        let cli = excludes_for(&src.path, opts)?;
        walks.push(Walk {
            src,
            opts,
            detail,
            cli,
            started: false,
            root_dev: None,
            stack: Vec::new(),
            problems: Vec::new(),
        });
    }
    Ok(walks.into_iter().flatten())
}

/// The name of per-directory exclude files.
const IGNORE_FILE: &[u8] = b".offsnapignore";

/// One directory being walked.
struct Level {
    fd: Arc<OwnedFd>,
    local: PathBuf,
    rel: Vec<u8>,
    names: std::vec::IntoIter<(Vec<u8>, FileType)>,
    ignore: Option<ignore::gitignore::Gitignore>,
}

/// The walk of one source, depth first, siblings sorted by name bytes.
struct Walk<'a> {
    src: &'a Source,
    opts: &'a ScanOptions,
    detail: Detail,
    cli: ignore::gitignore::Gitignore,
    started: bool,
    root_dev: Option<u64>,
    stack: Vec<Level>,
    /// Problems found while opening a directory, yielded after it.
    problems: Vec<ScanProblem>,
}

impl Iterator for Walk<'_> {
    type Item = Result<ScanItem, ScanProblem>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.started {
            self.started = true;
            return Some(self.root());
        }
        if let Some(p) = self.problems.pop() {
            return Some(Err(p));
        }
        loop {
            let level = self.stack.last_mut()?;
            let Some((name, listed)) = level.names.next() else {
                self.stack.pop();
                continue;
            };
            if let Some(item) = self.child(name, listed) {
                return Some(item);
            }
        }
    }
}

impl Walk<'_> {
    fn problem(local: &Path, e: &std::io::Error) -> ScanProblem {
        ScanProblem {
            local: local.to_path_buf(),
            message: describe(e),
        }
    }

    /// The source itself: a directory (followed if the source is a symlink
    /// to one, as named on the command line), else whatever it is.
    fn root(&mut self) -> Result<ScanItem, ScanProblem> {
        let local = self.src.path.clone();
        let rel = self.src.name.as_bytes().to_vec();
        let not_found = || Self::problem(&local, &std::io::ErrorKind::NotFound.into());
        // A directory is taken as `.` inside itself, anything else by its
        // name inside its parent.
        let (dir, name, st) = match fsx::open_root(&local) {
            Ok(fd) => {
                let st = rustix::fs::fstat(&fd).map_err(|e| Self::problem(&local, &e.into()))?;
                (fd, b".".to_vec(), st)
            }
            Err(_) => {
                let parent = match local.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let name = local.file_name().ok_or_else(not_found)?.as_bytes().to_vec();
                let dir = fsx::open_root(&parent).map_err(|e| Self::problem(&local, &e))?;
                let st = fsx::lstat(dir.as_fd(), &name)
                    .map_err(|e| Self::problem(&local, &e))?
                    .ok_or_else(not_found)?;
                (dir, name, st)
            }
        };
        let mut found = self.item(&Arc::new(dir), name, &st, local, rel)?;
        self.root_dev = Some(found.dev);
        self.descend(&mut found);
        Ok(found.item)
    }

    /// The next entry of the directory on top of the stack, unless left out.
    fn child(&mut self, name: Vec<u8>, listed: FileType) -> Option<Result<ScanItem, ScanProblem>> {
        let level = self.stack.last()?;
        let local = level.local.join(OsStr::from_bytes(&name));
        let mut rel = level.rel.clone();
        rel.push(b'/');
        rel.extend_from_slice(&name);
        let fd = level.fd.clone();
        let st = match fsx::lstat(fd.as_fd(), &name) {
            Ok(Some(st)) => st,
            // Gone since the directory was read, or not to be looked at.
            Ok(None) if self.excluded(&local, listed == FileType::Directory) => return None,
            Ok(None) => {
                return Some(Err(Self::problem(
                    &local,
                    &std::io::ErrorKind::NotFound.into(),
                )));
            }
            Err(_) if self.excluded(&local, listed == FileType::Directory) => return None,
            Err(e) => return Some(Err(Self::problem(&local, &e))),
        };
        let is_dir = fsx::file_type(&st) == FileType::Directory;
        if self.excluded(&local, is_dir) {
            return None;
        }
        if is_dir && !self.opts.keep_cachedir && is_tagged_cache(fd.as_fd(), &name) {
            // Told, not walked: a run lists what it left out as cache.
            return self.item(&fd, name, &st, local, rel).ok().map(|mut f| {
                f.item.kind = ScanKind::SkippedCache;
                Ok(f.item)
            });
        }
        let mut found = match self.item(&fd, name, &st, local, rel) {
            Ok(f) => f,
            Err(p) => return Some(Err(p)),
        };
        let same_fs = !self.opts.one_file_system || Some(found.dev) == self.root_dev;
        if same_fs {
            self.descend(&mut found);
        }
        Some(Ok(found.item))
    }

    /// Whether `.offsnapignore` files (the nearest one that has a say) or
    /// the command line leave `local` out.
    fn excluded(&self, local: &Path, is_dir: bool) -> bool {
        for level in self.stack.iter().rev() {
            if let Some(gi) = &level.ignore {
                let m = gi.matched(local, is_dir);
                if m.is_ignore() {
                    return true;
                }
                if m.is_whitelist() {
                    break;
                }
            }
        }
        self.cli.matched(local, is_dir).is_ignore()
    }

    /// Opens a directory just yielded and puts its sorted names on the
    /// stack (a directory that cannot be read is reported by `item`).
    fn descend(&mut self, found: &mut Found) {
        if let Some(p) = found.unreadable.take() {
            self.problems.push(p);
        }
        let Some(fd) = &found.dir else { return };
        let mut names = match list(fd) {
            Ok(n) => n,
            Err(e) => {
                self.problems.push(Self::problem(&found.item.local, &e));
                return;
            }
        };
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let ignore = names
            .iter()
            .any(|(n, _)| n == IGNORE_FILE)
            .then(|| read_ignore_file(fd.as_fd(), &found.item.local))
            .flatten();
        self.stack.push(Level {
            fd: fd.clone(),
            local: found.item.local.clone(),
            rel: found.item.path.as_bytes().to_vec(),
            names: names.into_iter(),
            ignore,
        });
    }

    /// Reads what the walk records about `name` inside `dir`, whose
    /// `lstat` is `st`.
    fn item(
        &self,
        dir: &Arc<OwnedFd>,
        name: Vec<u8>,
        st: &rustix::fs::Stat,
        local: PathBuf,
        rel: Vec<u8>,
    ) -> Result<Found, ScanProblem> {
        let problem = |message: String| ScanProblem {
            local: local.clone(),
            message,
        };
        let path = RelPath::new(rel).map_err(|e| problem(e.to_string()))?;
        let ft = fsx::file_type(st);
        let mut opened = None;
        let mut unreadable = None;
        let kind = match ft {
            FileType::Directory => {
                // Opened now: one that cannot be read is stored as seen
                // (empty), and reported.
                match fsx::open_dir(dir.as_fd(), &name) {
                    Ok(fd) => opened = Some(Arc::new(fd)),
                    Err(e) => unreadable = Some(problem(describe(&e))),
                }
                ScanKind::Dir
            }
            FileType::RegularFile => ScanKind::File(st.st_size as u64),
            FileType::Symlink if self.detail != Detail::Full => ScanKind::Symlink(Vec::new()),
            FileType::Symlink => {
                let target =
                    fsx::read_link(dir.as_fd(), &name).map_err(|e| problem(describe(&e)))?;
                ScanKind::Symlink(target)
            }
            FileType::Fifo => ScanKind::Special(EntryKind::Fifo),
            FileType::Socket => ScanKind::Special(EntryKind::Socket),
            other => ScanKind::Special(EntryKind::Device {
                block: other == FileType::BlockDevice,
                rdev: st.st_rdev,
            }),
        };
        let xattrs_read = match (self.detail, &kind) {
            (Detail::Full, _) => true,
            (Detail::Survey(min), ScanKind::File(size)) => *size >= min,
            (Detail::Survey(_), _) => false,
        };
        // Only files and directories can carry user attributes.
        let xattrs = match kind {
            ScanKind::Dir | ScanKind::File(_) if xattrs_read => {
                fsx::read_xattrs(&short_path(dir, &name, &local)).map_err(|e| {
                    problem(format!("reading its extended attributes: {}", describe(&e)))
                })?
            }
            _ => Vec::new(),
        };
        let (xattrs, xattr_problem) = recordable(xattrs, &local);
        let inode =
            (ft == FileType::RegularFile && st.st_nlink > 1).then_some((st.st_dev, st.st_ino));
        Ok(Found {
            dev: st.st_dev,
            dir: opened,
            unreadable: unreadable.or(xattr_problem),
            item: ScanItem {
                path,
                local,
                kind,
                meta: fsx::meta_of(st),
                xattrs,
                xattrs_read,
                inode,
                parent: dir.clone(),
                name,
            },
        })
    }
}

/// The names in an open directory, with their types as listed. Reads
/// through a duplicate of the handle itself, so a directory that may be
/// read but not searched is still listed (its entries are then reported
/// one by one, as they cannot be looked at).
fn list(dir: &Arc<OwnedFd>) -> std::io::Result<Vec<(Vec<u8>, FileType)>> {
    let dup = rustix::io::fcntl_dupfd_cloexec(dir.as_fd(), 0)?;
    let mut d = rustix::fs::Dir::new(dup)?;
    d.rewind();
    let mut out = Vec::new();
    for ent in d {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push((name.to_vec(), ent.file_type()));
        }
    }
    Ok(out)
}

/// An item, with what the walk needs to go on from it.
struct Found {
    item: ScanItem,
    dev: u64,
    /// The directory, opened, when it is one.
    dir: Option<Arc<OwnedFd>>,
    /// Why a directory could not be opened.
    unreadable: Option<ScanProblem>,
}

/// The extended attributes as they can be recorded: all of them, or none
/// (with a problem to report) when they are more than a snapshot takes.
fn recordable(xattrs: Vec<Xattr>, local: &Path) -> (Vec<Xattr>, Option<ScanProblem>) {
    match offsnap_protocol::entry::check_xattrs(&xattrs) {
        Ok(()) => (xattrs, None),
        Err(e) => (
            Vec::new(),
            Some(ScanProblem {
                local: local.to_path_buf(),
                message: format!("{e}; stored without them"),
            }),
        ),
    }
}

/// A path to `name` inside `dir` for the calls that only take paths: one
/// through the directory's handle (no parent can be swapped for a symlink
/// meanwhile, and it stays short however deep `dir` is), or `local` where
/// `/proc` is not mounted.
fn short_path(dir: &Arc<OwnedFd>, name: &[u8], local: &Path) -> PathBuf {
    use std::os::fd::AsRawFd;
    static PROC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir()) {
        return local.to_path_buf();
    }
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(OsStr::from_bytes(name));
    p
}

fn is_tagged_cache(dir: BorrowedFd<'_>, name: &[u8]) -> bool {
    use std::io::Read;
    let mut head = [0u8; 43];
    fsx::open_dir(dir, name)
        .and_then(|d| fsx::open_file(d.as_fd(), CACHEDIR_TAG.as_bytes()))
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == CACHEDIR_SIGNATURE
}

/// The exclude patterns of a directory's `.offsnapignore`, anchored there;
/// `None` when it cannot be read or holds none.
fn read_ignore_file(dir: BorrowedFd<'_>, local: &Path) -> Option<ignore::gitignore::Gitignore> {
    use std::io::Read;
    let mut text = String::new();
    fsx::open_file(dir, IGNORE_FILE)
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    let mut b = ignore::gitignore::GitignoreBuilder::new(local);
    for line in text.lines() {
        let _ = b.add_line(Some(local.join(".offsnapignore")), line);
    }
    b.build().ok().filter(|g| !g.is_empty())
}

/// Opens a scanned regular file for reading, through its directory's
/// handle, refusing symlinks and anything that would block.
pub fn open_item(item: &ScanItem) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(
        item.parent.as_fd(),
        item.name.as_slice(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(std::fs::File::from(fd))
}
