//! The offsnap client: back up to dated, hard-linked snapshots on another
//! machine (or disk), list them, restore from them.
//!
//! - [`dest`]: destinations and connecting to their helper;
//! - [`transport`]: the byte streams to a helper (child process, in-process);
//! - [`ssh`]: the SSH transport (russh, or an external client), host keys,
//!   login, `~/.ssh/config`, jump hosts;
//! - [`remote_cmd`]: the helper's command line on SSH hosts;
//! - [`session`]: the hello exchange and framed requests;
//! - [`scan`]: walking the sources in walk order;
//! - [`backup`]: a backup run as named stages (plan, signatures, send,
//!   repair, report) and its dry run;
//! - [`interrupt`]: SIGINT/SIGTERM as a clean stop;
//! - [`hashing`]: BLAKE3 on a second core;
//! - [`peer_text`]: the helper's text, escaped for the terminal;
//! - [`restore`]: writing a snapshot back out;
//! - [`select`]: choosing a snapshot (`latest~2`, a prefix, `--as-of 3d`);
//! - [`requests`]: typed requests to the helper (list, prune, sizes, verify);
//! - [`manifests`]: fetching manifests;
//! - [`browse`]: the local web page of a set's history.
//!
//! The command line on top of them:
//! - [`cli`]: the parser and the option groups commands share;
//! - [`settings`]: the command line and the profile merged, once;
//! - [`commands`]: one module per command;
//! - [`output`]: what commands print, for people and for scripts;
//! - [`freshness`]: `backup --if-older`, from the set's own snapshots;
//! - [`hooks`]: the profile's `on_success` / `on_failure` commands;
//! - [`schedule`]: the timer, crontab line or launchd agent.

pub mod backup;
pub mod browse;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dest;
pub mod error;
pub mod freshness;
pub mod hashing;
pub mod hooks;
pub mod inspect;
pub mod install;
pub mod interrupt;
pub mod manifests;
pub mod output;
pub mod peer_text;
pub mod progress;
pub mod remote_cmd;
pub mod requests;
pub mod restore;
pub mod runlog;
pub mod scan;
pub mod schedule;
pub mod select;
pub mod session;
pub mod settings;
pub mod ssh;
pub mod stderr_relay;
pub mod transport;
pub mod unchanged;

pub use error::{Error, Result};
