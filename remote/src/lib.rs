//! The offsnap helper: keeps the snapshots of a backup root and serves the
//! offsnap protocol over any pair of byte streams.
//!
//! - [`serve`]: the session loop and its configuration;
//! - [`backup`]: building and committing one snapshot;
//! - [`set`]: the on-disk layout of a root and its sets, locking;
//! - [`tree`]: writing a tree of entries under a directory handle (also
//!   used by the client to restore);
//! - [`cursor`]: walking open directory handles along a path;
//! - [`fsx`]: `*at` file operations that never follow symlinks;
//! - [`journal`], [`resume`]: reusing what an interrupted run left.

pub mod backup;
pub mod content_index;
pub mod cursor;
pub mod error;
pub mod fsx;
pub mod journal;
pub mod prune;
pub mod resume;
pub mod retention;
pub mod serve;
pub mod set;
pub mod stats;
pub mod stored;
pub mod tree;
pub mod verify;

pub use serve::{Access, Clock, Config, ServeError, serve};
