//! The offsnap wire contract: what the client and the helper on the backup
//! host say to each other, and the manifest format both read.
//!
//! - [`path`]: validated relative paths of raw bytes, and walk order;
//! - [`entry`]: entry kinds and metadata;
//! - [`snapshot`]: set and snapshot names;
//! - [`message`]: hello, requests, backup ops, responses;
//! - [`frame`]: length-delimited frames with a size limit;
//! - [`manifest`]: the per-snapshot list of entries;
//! - [`compare`]: differences between two manifests;
//! - [`delta`]: the rsync delta format, and signature checks;
//! - [`diff`]: the delta engine: signatures of base files, deltas of new ones;
//! - [`retention`]: retention policies and prune decisions;
//! - [`text`]: peer text made safe to print.

pub mod compare;
pub mod delta;
pub mod diff;
pub mod entry;
pub mod frame;
pub mod manifest;
pub mod message;
pub mod path;
pub mod retention;
pub mod signer;
pub mod snapshot;
pub mod text;

pub use entry::{Entry, EntryKind, Hash, Meta, Xattr};
pub use frame::{FrameError, FrameReader, FrameWriter, MAX_FRAME};
pub use message::{
    CommitStats, DATA_CHUNK, DELTA_PIECE_MAX, ErrorKind, Finding, FindingKind, Hello, Op,
    PROTOCOL_VERSION, RemoteError, Request, Response, Resume, SnapshotInfo, SnapshotStats,
    VerifyProgress, VerifySummary,
};
pub use path::{PathError, RelPath, walk_order};
pub use retention::{Policy, PruneDecision};
pub use snapshot::{NameError, SetName, SnapshotName};
