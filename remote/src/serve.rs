//! The helper's session loop: hello, then requests until the client hangs
//! up. Knows nothing about how the bytes travel (stdin/stdout under sshd,
//! a pipe to a local client, a socket in tests).

use std::io::{Read, Write};
use std::path::PathBuf;

use offsnap_protocol::{
    DATA_CHUNK, ErrorKind, FrameError, FrameReader, FrameWriter, Hello, RelPath, RemoteError,
    Request, Response, SetName, SnapshotName,
};

use crate::backup::BackupRun;
use crate::error::{Context, Error, protocol};
use crate::set::Root;
use offsnap_fs::cursor::DirCursor;
use offsnap_fs::fsx;

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything.
    Full,
    /// Back up and read; never delete or change history.
    AppendOnly,
    /// List and restore only.
    ReadOnly,
}

/// Where snapshot times come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed time (tests, set by the host's owner through `OFFSNAP_NOW`).
    Fixed(jiff::Timestamp),
}

impl Clock {
    /// The current time by this clock.
    pub fn now(&self) -> jiff::Timestamp {
        match self {
            Clock::System => jiff::Timestamp::now(),
            Clock::Fixed(t) => *t,
        }
    }

    /// `Fixed` from `OFFSNAP_NOW` (RFC 3339) when set, else `System`.
    pub fn from_env() -> Result<Clock, String> {
        match std::env::var("OFFSNAP_NOW") {
            Ok(s) if !s.is_empty() => s.parse().map(Clock::Fixed).map_err(|e| {
                format!(
                    "OFFSNAP_NOW={s:?} is not an RFC 3339 time (e.g. 2026-11-26T01:49:29Z): {e}"
                )
            }),
            _ => Ok(Clock::System),
        }
    }
}

/// A helper's configuration, fixed by its command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory holding the sets; nothing outside it is touched.
    pub root: PathBuf,
    /// What clients may do.
    pub access: Access,
    /// Snapshot times.
    pub clock: Clock,
    /// When set, every request is refused with this message (a confined
    /// key asked for another root).
    pub refuse: Option<String>,
    /// What a backup may write.
    pub limits: crate::limits::Limits,
}

impl Config {
    /// Checks what a client asked for against a forced command: under
    /// `command="offsnap-remote serve --root DIR …"` in `authorized_keys`,
    /// sshd puts the client's own command in `SSH_ORIGINAL_COMMAND`. A
    /// client that asked for another root is refused (it is never given
    /// one): `original` is that command, if any.
    pub fn confine(mut self, original: Option<&str>) -> Config {
        let Some(original) = original else {
            return self;
        };
        // Unparsable: treat as asking for nothing in particular.
        let words = shell_words::split(original).unwrap_or_default();
        let asked = words
            .iter()
            .position(|w| w == "--root")
            .and_then(|i| words.get(i + 1));
        if let Some(asked) = asked {
            let same = |a: &std::path::Path| match (
                std::fs::canonicalize(a),
                std::fs::canonicalize(&self.root),
            ) {
                (Ok(x), Ok(y)) => x == y,
                // Not there yet: compare the paths as written.
                _ => match (std::path::absolute(a), std::path::absolute(&self.root)) {
                    (Ok(x), Ok(y)) => x.components().eq(y.components()),
                    _ => false,
                },
            };
            if asked != "." && !same(std::path::Path::new(asked)) {
                self.refuse = Some(format!(
                    "this key may only use {}; it asked for {asked:?}",
                    self.root.display()
                ));
            }
        }
        self
    }
}

/// How a session ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The connection failed or the client spoke nonsense.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A backup failed; the client was told.
    #[error("{0}")]
    Failed(#[source] Error),
    /// The client hung up in the middle of a backup (what arrived is kept
    /// for the next run to resume from).
    #[error("the client hung up during a backup; nothing was committed")]
    HungUp,
}

/// The name this software gives in its hello.
pub fn software() -> String {
    format!("offsnap-remote {}", env!("CARGO_PKG_VERSION"))
}

struct Session<'c, W: Write> {
    cfg: &'c Config,
    out: FrameWriter<W>,
    backup: Option<BackupRun>,
    reader: Option<(SetName, SnapshotName, DirCursor)>,
}

/// Serves one session on a pair of streams.
pub fn serve(input: impl Read, output: impl Write, cfg: &Config) -> Result<(), ServeError> {
    let software = software();
    // Buffered: a frame is a length then a payload, two reads unbuffered.
    let mut inp = FrameReader::new(std::io::BufReader::with_capacity(64 * 1024, input));
    let mut out = FrameWriter::new(output);
    let mut hello = Hello::ours(&software);
    match cfg.access {
        Access::Full => {}
        Access::AppendOnly => hello.features.push("append-only".into()),
        Access::ReadOnly => hello.features.push("read-only".into()),
    }
    out.write(&hello)?;
    out.flush()?;
    inp.read_hello(&software)?;
    let mut session = Session {
        cfg,
        out,
        backup: None,
        reader: None,
    };
    let res = session.run(&mut inp);
    if let Some(run) = session.backup.take() {
        // A run whose client went away (the connection ended or failed)
        // stays for the next run to resume from; a run the helper gave up
        // on, or whose client sent garbage, goes.
        match &res {
            Ok(())
            | Err(ServeError::HungUp)
            | Err(ServeError::Frame(FrameError::Truncated | FrameError::Io(_))) => run.suspend(),
            Err(_) => run.abort(),
        }
    }
    res
}

impl<W: Write> Session<'_, W> {
    fn run(&mut self, inp: &mut FrameReader<impl Read>) -> Result<(), ServeError> {
        loop {
            let req: Request = match inp.read() {
                Ok(r) => r,
                Err(FrameError::Closed) if self.backup.is_none() => return Ok(()),
                Err(FrameError::Closed) => return Err(ServeError::HungUp),
                Err(e) => {
                    let _ = self.send_error(protocol(e.to_string()).to_wire());
                    return Err(e.into());
                }
            };
            let in_backup = matches!(
                req,
                Request::Op(_) | Request::Commit | Request::Signature { .. } | Request::Sync
            );
            if let Err(e) = self.handle(req) {
                // The one place a helper error becomes what the client reads.
                let wire = e.to_wire();
                self.send_error(wire.clone())?;
                // A failed backup ends the session: the client's pipelined
                // ops that follow belong to a run that no longer exists.
                if in_backup || matches!(wire.kind, ErrorKind::Protocol | ErrorKind::Refused) {
                    return Err(ServeError::Failed(e));
                }
            }
        }
    }

    fn send_error(&mut self, e: RemoteError) -> Result<(), FrameError> {
        self.out.write(&Response::Error(e))?;
        self.out.flush()
    }

    fn handle(&mut self, req: Request) -> Result<(), Error> {
        if let Some(why) = &self.cfg.refuse {
            return Err(Error::Refused(why.clone()));
        }
        match req {
            Request::ListSnapshots { set } => {
                let root = Root::open(&self.cfg.root, false)?;
                let snaps = root.open_set(&set)?.snapshots()?;
                self.send(&Response::Snapshots(snaps))?;
                self.flush()
            }
            Request::GetManifest { set, snapshot } => {
                let root = Root::open(&self.cfg.root, false)?;
                let file = root.open_set(&set)?.open_manifest(&snapshot)?;
                self.stream(file, Response::ManifestChunk, Response::ManifestEnd)
            }
            Request::GetFile {
                set,
                snapshot,
                path,
            } => {
                let file = self.open_stored(set, snapshot, &path)?;
                self.stream(file, Response::FileData, Response::FileEnd)
            }
            Request::Stats { set } => {
                let root = Root::open(&self.cfg.root, false)?;
                let stats = crate::stats::stats(&root.open_set(&set)?)?;
                self.send(&Response::Stats(stats))?;
                self.flush()
            }
            Request::Verify {
                set,
                snapshot,
                read_limit,
            } => self.verify(set, snapshot, read_limit),
            Request::Prune {
                set,
                policy,
                dry_run,
            } => self.prune(set, &policy, dry_run),
            Request::BeginBackup { set } => self.begin_backup(set),
            req
            @ (Request::Signature { .. } | Request::Op(_) | Request::Sync | Request::Commit) => {
                self.backup(req)
            }
        }
    }

    /// Starts a backup of `set`.
    fn begin_backup(&mut self, set: SetName) -> Result<(), Error> {
        if self.cfg.access == Access::ReadOnly {
            return Err(Error::Refused(
                "this helper is read-only (--read-only): backups are refused".into(),
            ));
        }
        if self.backup.is_some() {
            return Err(protocol("a backup is already in progress"));
        }
        let root = Root::open(&self.cfg.root, true)?;
        let (mut run, snapshot, base) = BackupRun::start(&root, &set, self.cfg.clock.now())?;
        run.limit(self.cfg.limits);
        let resume = run.resume_offer();
        self.backup = Some(run);
        self.send(&Response::BackupStarted {
            snapshot,
            base,
            resume,
        })?;
        self.flush()
    }

    /// A request inside a backup: a signature, an op, a sync, the commit.
    fn backup(&mut self, req: Request) -> Result<(), Error> {
        let Some(run) = &mut self.backup else {
            return Err(protocol(match req {
                Request::Signature { .. } => "signature request outside a backup",
                Request::Op(_) => "backup op outside a backup",
                Request::Sync => "sync outside a backup",
                _ => "commit outside a backup",
            }));
        };
        match req {
            Request::Signature { path } => {
                let sig = run.signature(&path)?;
                self.send(&Response::Signature(sig))?;
                self.flush()
            }
            Request::Op(op) => {
                run.apply(op)?;
                let warnings = run.take_warnings();
                let resends = run.take_resends();
                for w in warnings {
                    self.send(&Response::Warning(w))?;
                }
                for path in resends {
                    self.send(&Response::Resend { path })?;
                }
                Ok(())
            }
            Request::Sync => {
                self.send(&Response::Synced)?;
                self.flush()
            }
            Request::Commit => {
                let Some(run) = self.backup.take() else {
                    return Err(protocol("commit outside a backup"));
                };
                let (snapshot, stats) = run.commit()?;
                self.send(&Response::Committed { snapshot, stats })?;
                self.flush()
            }
            _ => Err(protocol("not a backup request")),
        }
    }

    /// Verifies `snapshot` of `set`, or all its snapshots.
    fn verify(
        &mut self,
        set: SetName,
        snapshot: Option<SnapshotName>,
        read_limit: Option<u64>,
    ) -> Result<(), Error> {
        let root = Root::open(&self.cfg.root, false)?;
        let set = root.open_set(&set)?;
        let all: Vec<SnapshotName> = set.snapshots()?.into_iter().map(|s| s.name).collect();
        let chosen = match snapshot {
            None => all,
            Some(s) if all.contains(&s) => vec![s],
            Some(s) => {
                return Err(Error::NotFound(format!(
                    "set {}: no snapshot {s}",
                    set.name()
                )));
            }
        };
        let summary = crate::verify::verify(&set, &chosen, read_limit, |note| {
            self.send(&match note {
                crate::verify::Note::Finding(f) => Response::Finding(f),
                crate::verify::Note::Progress(p) => Response::VerifyProgress(p),
            })?;
            self.flush()
        })?;
        self.send(&Response::Verified(summary))?;
        self.flush()
    }

    /// Prunes `set` by `policy` (or says what it would remove).
    fn prune(
        &mut self,
        set: SetName,
        policy: &offsnap_protocol::Policy,
        dry_run: bool,
    ) -> Result<(), Error> {
        if self.cfg.access != Access::Full && !dry_run {
            return Err(Error::Refused(format!(
                "this helper is {}: pruning is refused; the host's owner prunes with `offsnap-remote prune` (e.g. from cron)",
                if self.cfg.access == Access::ReadOnly {
                    "read-only (--read-only)"
                } else {
                    "append-only (--append-only)"
                }
            )));
        }
        if self.backup.is_some() {
            return Err(protocol("prune during a backup"));
        }
        let root = Root::open(&self.cfg.root, false)?;
        let decisions = crate::prune::prune(&root, &set, policy, self.cfg.clock.now(), dry_run)?;
        self.send(&Response::Pruned(decisions))?;
        self.flush()
    }

    fn open_stored(
        &mut self,
        set: SetName,
        snapshot: SnapshotName,
        path: &RelPath,
    ) -> Result<std::fs::File, Error> {
        let same = matches!(&self.reader, Some((s, n, _)) if *s == set && *n == snapshot);
        if !same {
            let root = Root::open(&self.cfg.root, false)?;
            let fd = root.open_set(&set)?.open_snapshot(&snapshot)?;
            self.reader = Some((set, snapshot, DirCursor::new(fd)));
        }
        let Some((_, _, cursor)) = &mut self.reader else {
            return Err(protocol("no snapshot open"));
        };
        let (dir, name) = cursor.parent_of(path).ctx(path)?;
        fsx::open_file(dir, name).ctx(format!("snapshot {snapshot}: {path}"))
    }

    fn stream(
        &mut self,
        mut file: std::fs::File,
        chunk: fn(Vec<u8>) -> Response,
        end: Response,
    ) -> Result<(), Error> {
        let mut buf = vec![0u8; DATA_CHUNK];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(crate::error::io("reading a stored file", e)),
            };
            self.send(&chunk(buf[..n].to_vec()))?;
        }
        self.send(&end)?;
        self.flush()
    }

    fn send(&mut self, r: &Response) -> Result<(), Error> {
        self.out.write(r).map_err(Error::Send)
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.out.flush().map_err(Error::Send)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confined_key_keeps_its_root() {
        let dir = std::env::temp_dir();
        let cfg = |asked: &str| {
            Config {
                root: dir.clone(),
                access: Access::AppendOnly,
                clock: Clock::System,
                refuse: None,
                limits: Default::default(),
            }
            .confine(Some(asked))
            .refuse
        };
        assert_eq!(
            cfg(&format!(
                "exec offsnap-remote serve --root {}",
                dir.display()
            )),
            None
        );
        assert_eq!(cfg("exec offsnap-remote serve --root ."), None);
        assert!(cfg("exec offsnap-remote serve --root /").is_some());
        assert!(cfg("offsnap-remote serve --root /nonexistent").is_some());
        assert_eq!(cfg("offsnap-remote --version"), None);
    }
}
