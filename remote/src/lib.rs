//! The offsnap helper: keeps the snapshots of a backup root and serves the
//! offsnap protocol over any pair of byte streams.
//!
//! - [`serve`]: the session loop and its configuration;
//! - [`backup`]: building and committing one snapshot;
//! - [`set`]: the on-disk layout of a root and its sets, locking;
//! - [`error`]: the helper's errors, and their one mapping to the wire;
//! - [`content_index`]: stored contents by hash, on disk, in bounded memory;
//! - [`verify`], [`disk_map`]: checking snapshots against their manifests,
//!   streaming, with what it remembers in a table on disk;
//! - [`stored`]: checking a stored file before it is reused;
//! - [`extents`]: how much of a stored file shares its blocks;
//! - [`journal`], [`resume`]: reusing what an interrupted run left.

pub mod backup;
pub mod content_index;
pub mod disk_map;
pub mod error;
pub mod extent_cache;
pub mod extents;
pub mod journal;
pub mod kept_signatures;
pub mod limits;
pub mod links;
pub mod naming;
pub mod prune;
pub mod resume;
pub mod say;
pub mod serve;
pub mod set;
pub mod stats;
pub mod stored;
pub mod verify;

pub use serve::{Access, Clock, Config, ServeError, serve};
