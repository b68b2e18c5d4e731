//! The filesystem layer that the helper (building snapshots) and the client
//! (scanning sources, restoring) both stand on:
//!
//! - [`fsx`]: `*at` file operations relative to directory handles that
//!   never follow symlinks, and the one place inode metadata becomes a
//!   [`offsnap_protocol::Meta`];
//! - [`clone`]: sharing blocks between files where the filesystem can;
//! - [`cursor`]: the chain of open directory handles along a walk;
//! - [`remove`]: deleting trees of any depth or width with bounded stack,
//!   open files and memory;
//! - [`table`]: hash tables of hash-prefix keys kept in files, so indexes
//!   of a million contents cost no memory;
//! - [`tree`]: writing a tree of entries under a directory handle (a
//!   snapshot on the host, a restore target on the client).

pub mod blocks;
pub mod clone;
pub mod cursor;
pub mod fsx;
pub mod remove;
pub mod sink;
pub mod table;
pub mod tree;
