//! `offsnap browse`: a web page on this machine's loopback to see a set's
//! history and restore from it.
//!
//! - [`server`]: the listener, the secret token every request must carry,
//!   the routes, and the one helper session they share;
//! - [`index`]: the manifests read, kept open and (the recent ones)
//!   decoded, so a folder of a large snapshot lists at once;
//! - [`pages`]: the HTML of the timeline, a snapshot's folders, a file's
//!   versions and a diff, rendered on the server;
//! - [`download`]: a file's content, or a folder as a `.tar` streamed entry
//!   by entry;
//! - [`restore`]: restoring into a local directory, through
//!   [`crate::restore::restore`].
//!
//! Every path in a request is parsed as a [`offsnap_protocol::RelPath`]
//! (no `..`, nothing absolute) and looked up in the snapshot's manifest
//! before anything is asked of the helper, which itself never leaves the
//! set's directory.

pub mod download;
pub mod index;
pub mod pages;
pub mod restore;
pub mod server;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use offsnap_protocol::{Policy, SetName};

use crate::error::{Error, Result};
use crate::session::Session;

/// Opens a new session with the destination's helper.
pub type Connector = Arc<dyn Fn() -> Result<Session> + Send + Sync>;

/// What `offsnap browse` serves, and how.
pub struct BrowseOptions {
    /// The set shown.
    pub set: SetName,
    /// The retention policy whose decisions colour the timeline.
    pub policy: Policy,
    /// How to reach the helper (once for browsing, once per restore).
    pub connect: Connector,
    /// The port on 127.0.0.1, or 0 for any free one.
    pub port: u16,
    /// Open the page in the user's browser.
    pub open: bool,
    /// What the page calls the destination.
    pub dest_label: String,
}

/// Serves the page until the process is stopped. The URL, with its
/// token, is printed on stdout as soon as the server listens.
pub fn run(opts: BrowseOptions) -> Result<()> {
    let session = (opts.connect)()?;
    let token = server::new_token()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::Local(format!("starting the web server: {e}")))?;
    runtime.block_on(async move {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, opts.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Usage(format!("cannot listen on {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::Local(format!("listening: {e}")))?;
        let url = format!("http://{bound}/{token}/");
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{url}");
            let _ = out.flush();
        }
        eprintln!(
            "offsnap: serving set {} of {} at {url} (Ctrl-C to stop)",
            opts.set, opts.dest_label
        );
        if opts.open {
            open_browser(&url);
        }
        let state = server::Inner::new(opts, session, token);
        axum::serve(listener, server::router(state))
            .await
            .map_err(|e| Error::Local(format!("web server: {e}")))
    })
}

/// Starts the user's browser on `url` where there is one: `$BROWSER`,
/// else `open` on macOS, else `xdg-open` under a graphical session.
fn open_browser(url: &str) {
    let cmd = match std::env::var("BROWSER") {
        Ok(b) if !b.is_empty() => b,
        _ if cfg!(target_os = "macos") => "open".into(),
        _ if std::env::var_os("DISPLAY").is_some()
            || std::env::var_os("WAYLAND_DISPLAY").is_some() =>
        {
            "xdg-open".into()
        }
        _ => {
            eprintln!("offsnap: no browser found here; open the address above in one");
            return;
        }
    };
    let spawned = std::process::Command::new(&cmd)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!("offsnap: could not start {cmd}: {e}; open the address above yourself");
    }
}
