//! Walking the sources in walk order: depth first, siblings sorted by name
//! bytes, each source under its own final name at the snapshot's root. The
//! manifest is in the same order, so the two merge as streams.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use offsnap_protocol::{Meta, RelPath};

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
    /// Something not backed up yet (socket, FIFO, device), with its word.
    Other(&'static str),
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
}

/// Something the scan could not read; the rest goes on.
#[derive(Debug)]
pub struct ScanProblem {
    /// Where.
    pub local: PathBuf,
    /// What.
    pub message: String,
}

/// Metadata in the form the protocol records.
pub fn meta_of(md: &Metadata) -> Meta {
    Meta {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime_sec: md.mtime(),
        mtime_nsec: md.mtime_nsec().clamp(0, 999_999_999) as u32,
    }
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

fn is_tagged_cache(dir: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 43];
    std::fs::File::open(dir.join(CACHEDIR_TAG))
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == CACHEDIR_SIGNATURE
}

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

/// Walks all sources in order, yielding entries and problems. Leaves out
/// what `--exclude`/`--exclude-from` and per-directory `.offsnapignore`
/// files (gitignore syntax) exclude, and cache directories. Hidden files
/// and `.gitignore`d files are backed up like any other.
pub fn scan<'a>(
    sources: &'a [Source],
    opts: &'a ScanOptions,
) -> Result<impl Iterator<Item = Result<ScanItem, ScanProblem>> + 'a> {
    let mut walks = Vec::with_capacity(sources.len());
    for src in sources {
        let cli = excludes_for(&src.path, opts)?;
        let keep_cachedir = opts.keep_cachedir;
        let walk = ignore::WalkBuilder::new(&src.path)
            .standard_filters(false)
            .follow_links(false)
            .same_file_system(opts.one_file_system)
            .add_custom_ignore_filename(".offsnapignore")
            .sort_by_file_name(|a, b| a.as_bytes().cmp(b.as_bytes()))
            .filter_entry(move |e| {
                if e.depth() == 0 {
                    return true;
                }
                let is_dir = e.file_type().is_some_and(|t| t.is_dir());
                if cli.matched(e.path(), is_dir).is_ignore() {
                    return false;
                }
                !(is_dir && !keep_cachedir && is_tagged_cache(e.path()))
            })
            .build();
        walks.push(walk.map(move |res| item(src, res)));
    }
    Ok(walks.into_iter().flatten())
}

/// The path a walk error is about (a directory that cannot be read), if
/// it names one.
fn error_path(e: &ignore::Error) -> Option<&Path> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        _ => None,
    }
}

fn item(
    src: &Source,
    res: Result<ignore::DirEntry, ignore::Error>,
) -> Result<ScanItem, ScanProblem> {
    let ent = res.map_err(|e| ScanProblem {
        local: error_path(&e).unwrap_or(&src.path).to_path_buf(),
        message: e.io_error().map(describe).unwrap_or_else(|| e.to_string()),
    })?;
    let local = ent.path().to_path_buf();
    let problem = |message: String| ScanProblem {
        local: local.clone(),
        message,
    };
    let rel = ent
        .path()
        .strip_prefix(&src.path)
        .map_err(|_| problem("outside its source".into()))?;
    let mut bytes = src.name.as_bytes().to_vec();
    if !rel.as_os_str().is_empty() {
        bytes.push(b'/');
        bytes.extend_from_slice(rel.as_os_str().as_bytes());
    }
    let path = RelPath::new(bytes).map_err(|e| problem(e.to_string()))?;
    let md = ent
        .metadata()
        .map_err(|e| problem(e.io_error().map(describe).unwrap_or_else(|| e.to_string())))?;
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        ScanKind::Dir
    } else if ft.is_file() {
        ScanKind::File(md.len())
    } else if ft.is_symlink() {
        let target = std::fs::read_link(ent.path()).map_err(|e| problem(describe(&e)))?;
        ScanKind::Symlink(target.as_os_str().as_bytes().to_vec())
    } else {
        use std::os::unix::fs::FileTypeExt;
        ScanKind::Other(if ft.is_fifo() {
            "FIFO"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_block_device() {
            "block device"
        } else {
            "character device"
        })
    };
    Ok(ScanItem {
        path,
        local,
        kind,
        meta: meta_of(&md),
    })
}
