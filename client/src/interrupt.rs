//! Stopping cleanly on SIGINT or SIGTERM. While a run watches, the first
//! signal only raises a flag that the run checks between entries and
//! between chunks: it stops sending, lets the helper keep what arrived for
//! the next run, and says so. A second signal ends the process at once.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static ASKED: AtomicBool = AtomicBool::new(false);
static WATCH: Once = Once::new();

/// The exit status of a run stopped by a signal (as shells report one).
pub const EXIT_STATUS: u8 = 130;

/// Starts watching for SIGINT and SIGTERM (once per process); without it
/// they end the process as usual.
pub fn watch() {
    WATCH.call_once(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        else {
            return;
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || rt.block_on(wait(ready_tx)));
        if spawned.is_ok() {
            // Installed before the run starts, or not at all.
            let _ = ready_rx.recv();
        }
    });
}

async fn wait(ready: std::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        let _ = ready.send(());
        return;
    };
    let _ = ready.send(());
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if ASKED.swap(true, Ordering::SeqCst) {
            eprintln!("offsnap: stopped at once");
            std::process::exit(i32::from(EXIT_STATUS));
        }
    }
}

/// Whether a stop was asked for.
pub fn asked() -> bool {
    ASKED.load(Ordering::SeqCst)
}

/// Fails with [`Error::Interrupted`] once a stop was asked for.
pub fn check() -> Result<()> {
    if asked() {
        Err(Error::Interrupted("stopped".into()))
    } else {
        Ok(())
    }
}
