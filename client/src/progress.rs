//! What a run shows while it works: a progress bar on a terminal (bytes
//! read as they are read, files done of those to read, the current file,
//! rate, ETA), one line per entry with `--itemize` (or JSON lines), and
//! nothing at all when nobody watches (cron, systemd). A restore shows
//! the same bar for the bytes it writes, and `verify` for the bytes the
//! helper has checked, as it reports them (a spinner until its first
//! report).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use offsnap_protocol::{RelPath, VerifyProgress};

use crate::backup::Change;

/// How entries are itemized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Itemize {
    /// Not at all.
    #[default]
    No,
    /// One line each: a change code, a type, the path.
    Text,
    /// One JSON object each, one per line.
    Json,
}

/// What to show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Show {
    /// Draw a progress bar.
    pub progress: bool,
    /// List each entry a run changes, on stdout.
    pub itemize: Itemize,
}

/// A run's progress display; does nothing when not shown.
pub struct Progress {
    bar: Option<ProgressBar>,
    itemize: Itemize,
    files_done: AtomicU64,
    files_total: AtomicU64,
}

impl Progress {
    /// A display for `show`.
    pub fn new(show: Show) -> Progress {
        let bar = show.progress.then(|| {
            let bar = ProgressBar::with_draw_target(None, draw_target());
            bar.set_style(
                ProgressStyle::with_template("{spinner} scanning: {pos} files {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            itemize: show.itemize,
            files_done: AtomicU64::new(0),
            files_total: AtomicU64::new(0),
        }
    }

    /// Counts a scanned entry (first phase).
    pub fn scanned(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    /// A display for a restore, shown when `show`: `files` files of
    /// `total` bytes to write, counted with [`Progress::read`] and
    /// [`Progress::file_done`].
    pub fn writing(show: bool, files: u64, total: u64) -> Progress {
        let p = Progress::new(Show {
            progress: show,
            itemize: Itemize::No,
        });
        p.start_sending(files, total);
        p
    }

    /// Counts a file done (restore); after the last one the count alone
    /// is shown.
    pub fn file_done(&self) {
        let done = self.files_done.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.files_total.load(Ordering::Relaxed);
        if let Some(b) = &self.bar
            && done == total
        {
            b.set_message(format!("{done}/{total} files"));
        }
    }

    /// Switches to the transfer phase: `files` files of `total` bytes to read.
    pub fn start_sending(&self, files: u64, total: u64) {
        self.files_total.store(files, Ordering::Relaxed);
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

    /// Names the file being read.
    pub fn current(&self, path: &std::path::Path) {
        if let Some(b) = &self.bar {
            let done = self.files_done.load(Ordering::Relaxed);
            let total = self.files_total.load(Ordering::Relaxed);
            b.set_message(format!("{done}/{total} files, {}", path.display()));
        }
    }

    /// An entry's change, itemized when asked; `kind` is its type
    /// character, `bytes` a file's size.
    pub fn item(&self, change: Change, kind: char, path: &RelPath, bytes: u64) {
        if kind == 'f' && change != Change::Deleted {
            self.files_done.fetch_add(1, Ordering::Relaxed);
        }
        let line = match self.itemize {
            Itemize::No => return,
            Itemize::Text => item_line(change, kind, path),
            Itemize::Json => item_json(change, kind, path, bytes).to_string(),
        };
        let print = || {
            // A closed stdout must not stop the run.
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        };
        match &self.bar {
            Some(b) => b.suspend(print),
            None => print(),
        }
    }

    /// A display for `verify`, shown when `show`: a spinner saying `what`
    /// until the helper's first report, then the bar
    /// ([`Progress::checked`]).
    pub fn verifying(show: bool, what: String) -> Progress {
        // Styled before its first tick, so nothing else is ever drawn.
        let bar = show.then(|| {
            let bar = ProgressBar::with_draw_target(None, draw_target());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(what);
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            itemize: Itemize::No,
            files_done: AtomicU64::new(0),
            files_total: AtomicU64::new(0),
        }
    }

    /// The helper's report of how far `verify` has got, and the problems
    /// found so far: the bar's bytes, its files and the file being read.
    pub fn checked(&self, at: &VerifyProgress, problems: u64) {
        let Some(b) = &self.bar else { return };
        if b.length().is_none() {
            self.start_sending(at.files_total, at.bytes_total);
        }
        // A peer's figures: never past the end it announced.
        b.set_position(at.bytes.min(at.bytes_total));
        let problems = match problems {
            0 => String::new(),
            n => format!(", {n} problem(s)"),
        };
        b.set_message(format!(
            "{}/{} files{problems}, {}",
            at.files.min(at.files_total),
            at.files_total,
            offsnap_protocol::text::shown(&at.path)
        ));
    }

    /// Prints `line` on stdout, above the bar if there is one.
    pub fn above(&self, line: &str) {
        let print = || {
            // A closed stdout must not stop the run.
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        };
        match &self.bar {
            Some(b) => b.suspend(print),
            None => print(),
        }
    }

    /// Leaves the bar where the last count put it (`verify`: the helper's
    /// last report, which need not be the total).
    pub fn stop(&self) {
        if let Some(b) = &self.bar {
            b.abandon();
            end_line();
        }
    }

    /// Leaves the bar at its end state.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
            end_line();
        }
    }
}

/// Ends the bar's last frame with a newline where stderr is not a
/// terminal (a bar forced with `--progress` into a pipe or a file), so
/// what is printed next starts a line of its own; on a terminal the bar
/// is left where it is drawn.
fn end_line() {
    if !std::io::stderr().is_terminal() {
        eprintln!();
    }
}

/// Where bars are drawn: stderr, five times a second at most. It is
/// drawn whether or not stderr is a terminal (indicatif's own stderr
/// target hides itself on a pipe), since a bar exists only when it is to
/// be shown: on a terminal, or forced with `--progress`.
fn draw_target() -> ProgressDrawTarget {
    ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::buffered_stderr()), 5)
}

/// An itemized line: the change's code, the type, the path (`>f docs/a`).
pub fn item_line(change: Change, kind: char, path: &RelPath) -> String {
    format!("{}{kind} {path}", change.code())
}

/// An itemized entry as JSON.
pub fn item_json(change: Change, kind: char, path: &RelPath, bytes: u64) -> serde_json::Value {
    serde_json::json!({
        "change": change.name(),
        "type": kind.to_string(),
        "path": path.to_string(),
        "size": bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_reads_like_rsync_itemize() {
        let p = RelPath::new(b"src/a b".to_vec()).expect("path");
        assert_eq!(item_line(Change::Content, 'f', &p), ">f src/a b");
        assert_eq!(item_line(Change::Deleted, 'd', &p), "-d src/a b");
        let j = item_json(Change::Linked, 'f', &p, 7);
        assert_eq!(j["change"], "linked");
        assert_eq!(j["size"], 7);
    }
}
