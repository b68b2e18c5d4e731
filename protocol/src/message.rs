//! The messages of a session, client to helper ([`Request`], [`Op`]) and
//! helper to client ([`Response`]).
//!
//! A session starts with one [`Hello`] each way, then the client sends
//! requests. Responses come back in request order, so the client can send
//! many requests (or backup ops) without waiting for each answer.

use serde::{Deserialize, Serialize};

use crate::entry::{Entry, Hash, Meta, Xattr};
use crate::path::RelPath;
use crate::snapshot::{SetName, SnapshotName};

/// Eight bytes that open every session, each way.
pub const MAGIC: [u8; 8] = *b"OFFSNAP\x01";

/// The version of this wire contract. Both sides must speak the same one.
pub const PROTOCOL_VERSION: u32 = 4;

/// Largest content chunk the sender puts into one [`Op::Data`] or
/// [`Response::FileData`] frame.
pub const DATA_CHUNK: usize = 256 * 1024;

/// Largest delta piece, uncompressed.
pub const DELTA_PIECE_MAX: usize = 7 * 1024 * 1024;

/// The first frame each way. Its layout never changes between versions, so
/// a mismatch is always reported as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 8],
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The sender's software and version, e.g. `offsnap 0.1.0`, for messages.
    pub software: String,
    /// Optional features and restrictions of the sender; a helper confined
    /// with `--append-only` or `--read-only` says so here.
    pub features: Vec<String>,
}

impl Hello {
    /// Our hello, naming our software.
    pub fn ours(software: &str) -> Hello {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            software: software.to_string(),
            features: Vec::new(),
        }
    }
}

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// List the complete snapshots of a set. Answer: [`Response::Snapshots`].
    ListSnapshots {
        /// The set.
        set: SetName,
    },
    /// Send a snapshot's manifest. Answer: [`Response::ManifestChunk`]s then
    /// [`Response::ManifestEnd`].
    GetManifest {
        /// The set.
        set: SetName,
        /// The snapshot.
        snapshot: SnapshotName,
    },
    /// Send a stored file's content. Answer: [`Response::FileData`]s then
    /// [`Response::FileEnd`].
    GetFile {
        /// The set.
        set: SetName,
        /// The snapshot.
        snapshot: SnapshotName,
        /// The file inside it.
        path: RelPath,
    },
    /// Start a backup of a set: take its lock and begin a new snapshot.
    /// Answer: [`Response::BackupStarted`]. Then the client sends [`Op`]s
    /// and finally [`Request::Commit`].
    BeginBackup {
        /// The set, created when missing.
        set: SetName,
    },
    /// During a backup: the rsync signature of the base snapshot's file at
    /// `path`, to send that file as a delta. Answer: [`Response::Signature`].
    Signature {
        /// The file, in the base snapshot.
        path: RelPath,
    },
    /// One step of the backup in progress.
    Op(Op),
    /// During a backup: answer [`Response::Synced`] once every op sent
    /// before is applied, after any [`Response::Resend`] they caused. Sent
    /// before [`Request::Commit`] by a client that sent deltas.
    Sync,
    /// Finish the backup in progress. Answer: [`Response::Committed`].
    Commit,
    /// Summarize every snapshot of a set. Answer: [`Response::Stats`].
    Stats {
        /// The set.
        set: SetName,
    },
    /// Re-hash stored files against their manifests. Answer: any number of
    /// [`Response::Finding`]s and [`Response::VerifyProgress`]es, then
    /// [`Response::Verified`].
    Verify {
        /// The set.
        set: SetName,
        /// One snapshot, or `None` for all of them.
        snapshot: Option<SnapshotName>,
        /// Read stored files at most this many bytes per second
        /// (`verify --read-limit`); `None`: as fast as the disk goes.
        read_limit: Option<u64>,
    },
    /// Apply a retention policy to a set (or, with `dry_run`, only say what
    /// it would do). Answer: [`Response::Pruned`].
    Prune {
        /// The set.
        set: SetName,
        /// What to keep.
        policy: crate::Policy,
        /// Decide but remove nothing.
        dry_run: bool,
    },
}

/// One step of a backup. Entries arrive in walk order (see
/// [`crate::path::walk_order`]), each path strictly after the one before,
/// and every parent before its children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A directory or symlink, recorded as given.
    Entry(Entry),
    /// The next `n` entries of the base snapshot's manifest (after those
    /// already taken or skipped) are unchanged: keep them as they are
    /// (files as hard links). The helper reads the same manifest, so an
    /// unchanged tree costs a few bytes however many files it holds.
    Unchanged(u64),
    /// Skip the next `n` entries of the base manifest (gone or replaced).
    Skip(u64),
    /// A new or changed file whose content (by its BLAKE3) is already
    /// stored, in the base snapshot or earlier in this run (moved, renamed,
    /// copied, touched): link it from there, or copy it when its metadata
    /// differs. No content travels.
    LinkFrom(Entry),
    /// A file whose content follows in [`Op::Data`] chunks, then [`Op::End`].
    File {
        /// Where it goes.
        path: RelPath,
        /// Its metadata.
        meta: Meta,
        /// Its length in bytes; the data must add up to exactly this.
        size: u64,
        /// Its extended attributes (see [`Entry::xattrs`]).
        xattrs: Vec<Xattr>,
    },
    /// A chunk of the current file's content.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A chunk of the current file's content, zstd-compressed; it
    /// decompresses to at most [`DATA_CHUNK`] bytes.
    DataZstd(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A file rebuilt from the base snapshot's file at the same path and
    /// [`Op::DeltaPiece`]s, then [`Op::End`].
    Delta {
        /// Where it goes (and where its base is).
        path: RelPath,
        /// Its metadata.
        meta: Meta,
        /// Its length; the pieces must rebuild exactly this many bytes.
        size: u64,
        /// Its extended attributes (see [`Entry::xattrs`]).
        xattrs: Vec<Xattr>,
    },
    /// The next part of the current file as a standalone rsync delta
    /// against the whole base file, zstd-compressed when `zstd` is set (it
    /// then decompresses to at most [`DELTA_PIECE_MAX`] bytes).
    DeltaPiece {
        /// Whether the bytes are zstd-compressed.
        zstd: bool,
        /// The delta.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The current file is complete; its BLAKE3 as the client read it.
    End {
        /// Hash of everything sent in the `Data` chunks.
        hash: Hash,
    },
    /// Drop the current file: it changed or failed while the client read
    /// it. Nothing is recorded for its path.
    Cancel,
}

/// Most finished files a [`Resume`] lists (the largest ones): the list
/// must fit in one frame.
pub const MAX_RESUME_FILES: usize = 100_000;

/// What an interrupted run of the same set left on the host, offered to
/// the next run: files it finished, reusable by content (checked against
/// their hash before use, like [`Op::LinkFrom`] from the base), and files
/// it had begun, which the client can send as deltas against the part
/// that arrived ([`Request::Signature`] then answers for that part).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Contents of finished files: hash and size, largest first.
    pub finished: Vec<(Hash, u64)>,
    /// Files begun: path and the length that arrived.
    pub partial: Vec<(RelPath, u64)>,
}

/// Summary of a snapshot, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Its name.
    pub name: SnapshotName,
    /// Its manifest's hash (identifies the manifest for caching).
    pub manifest_hash: Hash,
    /// Its manifest's length in bytes.
    pub manifest_len: u64,
}

/// Counters a backup run reports when it commits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitStats {
    /// Entries recorded in the manifest.
    pub entries: u64,
    /// Regular files recorded.
    pub files: u64,
    /// Files hard-linked from the base snapshot.
    pub linked: u64,
    /// Files stored from content already on the host, found by hash.
    pub linked_by_hash: u64,
    /// Files written from data sent by the client.
    pub written: u64,
    /// Of which rebuilt from deltas.
    pub delta_files: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// The new snapshot's manifest hash (a client that built the same
    /// manifest can cache it without downloading it).
    pub manifest_hash: Option<Hash>,
    /// Links that hit the filesystem's hard-link limit and were copied.
    pub link_limit_copies: u64,
}

/// What kind of failure a [`RemoteError`] reports, for exit codes and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The client broke the protocol or sent an invalid value.
    Protocol,
    /// Another run holds the set's lock.
    Locked,
    /// The set, snapshot or path does not exist.
    NotFound,
    /// The helper is confined and refuses this request.
    Refused,
    /// A file's content did not match its hash.
    Corrupt,
    /// The helper's filesystem failed (no space, permission denied, …).
    Io,
}

/// An error the helper reports; the message is meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    /// Category.
    pub kind: ErrorKind,
    /// Human-readable explanation.
    pub message: String,
}

/// A helper's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The complete snapshots of the set, oldest first.
    Snapshots(Vec<SnapshotInfo>),
    /// A chunk of a manifest file.
    ManifestChunk(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The manifest is complete.
    ManifestEnd,
    /// The signature asked for, or `None` when the base has no such file.
    Signature(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// A chunk of a stored file.
    FileData(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The stored file is complete.
    FileEnd,
    /// A backup has started.
    BackupStarted {
        /// The name the new snapshot will have.
        snapshot: SnapshotName,
        /// The snapshot unchanged files are linked from, if any.
        base: Option<SnapshotInfo>,
        /// What an interrupted earlier run left that this one can reuse.
        resume: Resume,
    },
    /// A delta rebuilt other content than the client read (an MD4
    /// collision, or the base changed meanwhile). The entry is recorded as
    /// the client described it; the client sends the file whole after
    /// the walk, as an [`Op::File`] for the same path, metadata and size,
    /// ending with the same hash (or [`Op::Cancel`], and the entry goes).
    Resend {
        /// The file.
        path: RelPath,
    },
    /// Every op before the [`Request::Sync`] is applied.
    Synced,
    /// The backup is complete and visible under its name.
    Committed {
        /// Its name.
        snapshot: SnapshotName,
        /// What it did.
        stats: CommitStats,
    },
    /// Per-snapshot summaries, oldest first.
    Stats(Vec<SnapshotStats>),
    /// Something `verify` found wrong.
    Finding(Finding),
    /// How far `verify` has got: sent once its totals are counted, then
    /// about every 100 ms while it works (also within a large file), and
    /// once more before [`Response::Verified`].
    VerifyProgress(VerifyProgress),
    /// `verify` is done.
    Verified(VerifySummary),
    /// What a prune kept and removed, oldest first.
    Pruned(Vec<crate::PruneDecision>),
    /// During a backup: something was left out, the run goes on.
    Warning(String),
    /// The request failed. During a backup, the run is over.
    Error(RemoteError),
}

/// A snapshot's size and its changes against the one before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// The snapshot.
    pub name: SnapshotName,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Bytes of all its files.
    pub total_bytes: u64,
    /// Bytes of the files whose inodes no other snapshot shares.
    pub unique_bytes: u64,
    /// Entries added since the previous snapshot.
    pub added: u64,
    /// Entries changed since the previous snapshot.
    pub changed: u64,
    /// Entries removed since the previous snapshot.
    pub removed: u64,
}

/// What `verify` can find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FindingKind {
    /// In the manifest, not on disk.
    Missing,
    /// On disk, but not what the manifest records.
    Changed(String),
    /// On disk, not in the manifest.
    Unexpected,
    /// The manifest itself is damaged or unreadable.
    Manifest(String),
}

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// In which snapshot.
    pub snapshot: SnapshotName,
    /// Where (raw bytes; empty for the snapshot itself).
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// What.
    pub kind: FindingKind,
}

/// How far `verify` has got. The totals are those of the manifests being
/// checked (a damaged manifest counts nothing); a file's bytes count once
/// it is checked, or as they are read while it is read, or at once when
/// its inode was read before (another snapshot's copy, a hard link).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyProgress {
    /// Regular files (and hard links) checked.
    pub files: u64,
    /// Regular files (and hard links) to check.
    pub files_total: u64,
    /// Recorded bytes of the files checked.
    pub bytes: u64,
    /// Recorded bytes of the files to check.
    pub bytes_total: u64,
    /// The file being checked, or the last one (raw bytes).
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
}

/// What `verify` checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySummary {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Entries checked.
    pub entries: u64,
    /// Distinct inodes whose content was hashed.
    pub inodes_hashed: u64,
    /// Bytes hashed.
    pub bytes_hashed: u64,
    /// Problems found.
    pub findings: u64,
}
