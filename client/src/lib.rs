//! The offsnap client: back up to dated, hard-linked snapshots on another
//! machine (or disk), list them, restore from them.
//!
//! - [`dest`]: destinations and connecting to their helper;
//! - [`transport`]: the byte streams to a helper (child process, in-process);
//! - [`ssh`]: the SSH transport (russh), host keys, login, `~/.ssh/config`;
//! - [`session`]: the hello exchange and framed requests;
//! - [`scan`]: walking the sources in walk order;
//! - [`backup`]: a backup run, pipelined;
//! - [`hashing`]: BLAKE3 on a second core;
//! - [`restore`]: writing a snapshot back out;
//! - [`list`]: listing snapshots;
//! - [`manifests`]: fetching manifests.

pub mod backup;
pub mod config;
pub mod dest;
pub mod error;
pub mod hashing;
pub mod inspect;
pub mod install;
pub mod list;
pub mod manifests;
pub mod progress;
pub mod restore;
pub mod runlog;
pub mod scan;
pub mod schedule;
pub mod session;
pub mod ssh;
pub mod transport;
pub mod unchanged;

pub use error::{Error, Result};
