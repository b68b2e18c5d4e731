//! What a run shows while it works: a progress bar on a terminal (files,
//! bytes read of those to send, rate, ETA), the paths sent with
//! `--verbose`, and nothing at all when nobody watches (cron, systemd).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What to show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Show {
    /// Draw a progress bar.
    pub progress: bool,
    /// List each file sent.
    pub verbose: bool,
}

/// A run's progress display; does nothing when not shown.
pub struct Progress {
    bar: Option<ProgressBar>,
    verbose: bool,
}

impl Progress {
    /// A display for `show`.
    pub fn new(show: Show) -> Progress {
        let bar = show.progress.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
            bar.set_style(
                ProgressStyle::with_template("{spinner} scanning: {pos} files {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            verbose: show.verbose,
        }
    }

    /// Counts a scanned file (first phase).
    pub fn scanned(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    /// Switches to the transfer phase: `total` bytes to read.
    pub fn start_sending(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_position(0);
            b.set_length(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}, ETA {eta} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        }
    }

    /// Counts bytes of a file read (and sent or matched).
    pub fn read(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    /// A file was stored: listed with `--verbose`.
    pub fn stored(&self, what: &str, path: &std::path::Path) {
        if !self.verbose {
            return;
        }
        let line = format!("{what} {}", path.display());
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Leaves the bar at its end state.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}
