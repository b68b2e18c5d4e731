//! What commands print, for people and for scripts: sizes and times in
//! human units, `ls -l`-style lines, prune decisions, and the backup
//! report as text, `--stats` or JSON. Rendering returns strings so that it
//! can be tested; the commands decide where they go.

use offsnap_protocol::{Entry, EntryKind, Meta, PruneDecision};

use crate::backup::BackupReport;
use crate::restore::RestoreReport;

/// Bytes in binary units: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A duration in seconds, roughly, for people: `45s`, `12m`, `5h`, `3d`.
pub fn ago(secs: i64) -> String {
    match secs {
        s if s < 0 || s == i64::MAX => "unknown time".into(),
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// An mtime as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn mtime_text(meta: &Meta) -> String {
    jiff::Timestamp::from_second(meta.mtime_sec)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| meta.mtime_sec.to_string())
}

/// `ls -l`-like line for an entry; `name_only` shows its last component.
pub fn long_line(e: &Entry, name_only: bool) -> String {
    let (t, extra) = match &e.kind {
        EntryKind::Dir => ('d', String::new()),
        EntryKind::File { .. } => ('-', String::new()),
        EntryKind::Symlink { target } => (
            'l',
            format!(" -> {}", offsnap_protocol::text::shown(target)),
        ),
        EntryKind::HardLink { target } => ('-', format!(" => {target}")),
        EntryKind::Fifo => ('p', String::new()),
        EntryKind::Socket => ('s', String::new()),
        EntryKind::Device { block, rdev } => (
            if *block { 'b' } else { 'c' },
            format!(" ({}, {})", libc::major(*rdev), libc::minor(*rdev)),
        ),
    };
    let bits = ["---", "--x", "-w-", "-wx", "r--", "r-x", "rw-", "rwx"];
    let m = e.meta.mode;
    let name = if name_only {
        offsnap_protocol::text::shown(e.path.file_name())
    } else {
        e.path.to_string()
    };
    format!(
        "{t}{}{}{}  {:>5} {:>5}  {:>10}  {}  {name}{extra}",
        bits[((m >> 6) & 7) as usize],
        bits[((m >> 3) & 7) as usize],
        bits[(m & 7) as usize],
        e.meta.uid,
        e.meta.gid,
        e.size(),
        mtime_text(&e.meta)
    )
}

/// One line per snapshot: kept (and by which rules) or removed.
pub fn decisions(decisions: &[PruneDecision], dry_run: bool) -> String {
    let mut out = String::new();
    for d in decisions {
        if d.kept_by.is_empty() {
            let verb = if dry_run { "would remove" } else { "removed" };
            out.push_str(&format!("{}  {verb}\n", d.name));
        } else {
            out.push_str(&format!("{}  keep ({})\n", d.name, d.kept_by.join(", ")));
        }
    }
    out
}

/// The names of the snapshots a prune removed.
pub fn removed(decisions: &[PruneDecision]) -> Vec<String> {
    decisions
        .iter()
        .filter(|d| d.kept_by.is_empty())
        .map(|d| d.name.to_string())
        .collect()
}

/// A backup's result as one JSON object (`backup --json`).
pub fn backup_json(report: &BackupReport) -> serde_json::Value {
    serde_json::json!({
        "snapshot": report.snapshot.to_string(),
        "files_scanned": report.files,
        "entries_scanned": report.scanned,
        "linked_unchanged": report.linked,
        "linked_by_hash": report.linked_by_hash,
        "hard_links": report.hard_links,
        "copied_at_link_limit": report.stats.link_limit_copies,
        "sent_delta": report.delta_files,
        "sent_whole": report.sent,
        "resent_whole": report.resent,
        "content_bytes": report.content_bytes,
        "literal_bytes": report.literal_bytes,
        "matched_bytes": report.matched_bytes,
        "wire_bytes_sent": report.wire_sent,
        "wire_bytes_received": report.wire_received,
        "elapsed_seconds": report.elapsed,
        "problems": report.problems,
        "pruned": removed(&report.pruned),
    })
}

/// `1 entry`, `2 entries`.
pub fn entries(n: u64) -> String {
    format!("{n} {}", if n == 1 { "entry" } else { "entries" })
}

/// What `offsnap restore --json` prints.
pub fn restore_json(report: &RestoreReport) -> serde_json::Value {
    serde_json::json!({
        "snapshot": report.snapshot.to_string(),
        "entries": report.entries,
        "bytes": report.bytes,
        "problems": report.problems,
    })
}

/// A backup's figures, like rsync's `--stats`.
pub fn backup_stats(report: &BackupReport) -> String {
    format!(
        "Number of files: {} ({} entries scanned)\n\
         Unchanged, hard-linked: {}\n\
         Already on the host, linked by content: {}\n\
         Sent whole: {} ({} of content, {} chunks compressed)\n\
         Sent as deltas: {} ({} literal, {} matched on the host)\n\
         Bytes sent: {}\n\
         Bytes received: {}\n\
         Elapsed: {:.2} s",
        report.files,
        report.scanned,
        report.linked,
        report.linked_by_hash,
        report.sent,
        human_bytes(report.content_bytes),
        report.compressed_chunks,
        report.delta_files,
        human_bytes(report.literal_bytes),
        human_bytes(report.matched_bytes),
        report.wire_sent,
        report.wire_received,
        report.elapsed
    )
}

/// A backup's one-line summary, for a terminal or `-v`.
pub fn backup_summary(report: &BackupReport) -> String {
    format!(
        "{} files: {} unchanged, {} found on the host, {} sent ({}), in {:.1}s",
        report.files,
        report.linked,
        report.linked_by_hash,
        report.sent,
        human_bytes(report.content_bytes),
        report.elapsed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use offsnap_protocol::{RelPath, SnapshotName};

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn ages_are_rounded_for_people() {
        assert_eq!(ago(45), "45s");
        assert_eq!(ago(600), "10m");
        assert_eq!(ago(5 * 3600), "5h");
        assert_eq!(ago(3 * 86_400), "3d");
        assert_eq!(ago(-1), "unknown time");
    }

    #[test]
    fn an_ls_line_shows_mode_size_time_and_link_target() {
        let e = Entry {
            path: RelPath::new(b"docs/link".to_vec()).expect("path"),
            kind: EntryKind::Symlink {
                target: b"../x".to_vec(),
            },
            meta: Meta {
                mode: 0o755,
                uid: 1000,
                gid: 100,
                mtime_sec: 0,
                mtime_nsec: 0,
            },
            xattrs: Vec::new(),
        };
        let line = long_line(&e, true);
        assert!(line.starts_with("lrwxr-xr-x   1000   100"), "{line}");
        assert!(
            line.ends_with("1970-01-01 00:00:00  link -> ../x"),
            "{line}"
        );
    }

    #[test]
    fn prune_decisions_say_what_happened_or_would() {
        let name = SnapshotName::from_timestamp(jiff::Timestamp::UNIX_EPOCH);
        let d = vec![
            PruneDecision {
                name,
                kept_by: vec![],
            },
            PruneDecision {
                name,
                kept_by: vec!["newest".into(), "last #1".into()],
            },
        ];
        let text = decisions(&d, true);
        assert!(text.contains("would remove"));
        assert!(text.contains("keep (newest, last #1)"));
        assert!(decisions(&d, false).contains("  removed\n"));
        assert_eq!(removed(&d).len(), 1);
    }
}
