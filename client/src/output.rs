//! What commands print, for people and for scripts: sizes and times in
//! human units, `ls -l`-style lines, prune decisions, and the backup
//! report as text, `--stats` or JSON. Rendering returns strings so that it
//! can be tested; the commands decide where they go.

use offsnap_protocol::{Entry, EntryKind, Meta, PruneDecision};

use crate::backup::{BackupReport, Change};
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

/// A duration for people: `0.4s`, `12.3s`, `2m 05s`, `1h 02m`, `2d 03h`.
pub fn human_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "unknown time".into();
    }
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    match s {
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A recorded time (RFC 3339) in this machine's time zone, to the second:
/// `2026-11-28 14:03:07 CET`. Unreadable text is shown as it is.
pub fn local_time(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => t
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

/// How `ls` shows owners and sizes: names this machine knows for the
/// stored user and group ids (unless numeric), sizes in binary units
/// (unless in bytes).
#[derive(Debug, Clone, Default)]
pub struct LsStyle {
    /// Sizes as exact byte counts.
    pub bytes: bool,
    /// User names by id (an id missing here is shown as its number).
    pub users: std::collections::HashMap<u32, String>,
    /// Group names by id, likewise.
    pub groups: std::collections::HashMap<u32, String>,
}

impl LsStyle {
    /// The style for `entries`: their owners looked up on this machine
    /// unless `numeric`.
    pub fn new(entries: &[Entry], numeric: bool, bytes: bool) -> LsStyle {
        use nix::unistd::{Gid, Group, Uid, User};
        let mut style = LsStyle {
            bytes,
            ..LsStyle::default()
        };
        if numeric {
            return style;
        }
        for e in entries {
            let (uid, gid) = (e.meta.uid, e.meta.gid);
            if !style.users.contains_key(&uid)
                && let Ok(Some(u)) = User::from_uid(Uid::from_raw(uid))
            {
                style.users.insert(uid, u.name);
            }
            if !style.groups.contains_key(&gid)
                && let Ok(Some(g)) = Group::from_gid(Gid::from_raw(gid))
            {
                style.groups.insert(gid, g.name);
            }
        }
        style
    }

    fn user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    fn group(&self, gid: u32) -> String {
        self.groups
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }

    fn size(&self, n: u64) -> String {
        if self.bytes {
            n.to_string()
        } else {
            human_bytes(n)
        }
    }
}

/// `ls -l`-like line for an entry; `name_only` shows its last component.
pub fn long_line(e: &Entry, name_only: bool, style: &LsStyle) -> String {
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
        "{t}{}{}{}  {:<8} {:<8}  {:>10}  {}  {name}{extra}",
        bits[((m >> 6) & 7) as usize],
        bits[((m >> 3) & 7) as usize],
        bits[(m & 7) as usize],
        style.user(e.meta.uid),
        style.group(e.meta.gid),
        style.size(e.size()),
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

/// A backup's result as one JSON object (`backup --json`): raw numbers.
pub fn backup_json(report: &BackupReport) -> serde_json::Value {
    let t = &report.tally;
    let changes: serde_json::Map<String, serde_json::Value> = Change::ALL
        .iter()
        .map(|c| {
            let n = t.of(*c);
            (
                c.name().to_string(),
                serde_json::json!({ "entries": n.entries, "bytes": n.bytes }),
            )
        })
        .collect();
    serde_json::json!({
        // A dry run makes none; it tells the snapshot it compared with.
        "snapshot": report.snapshot.filter(|_| !report.dry_run).map(|s| s.to_string()),
        "compared_with": report.snapshot.filter(|_| report.dry_run).map(|s| s.to_string()),
        "dry_run": report.dry_run,
        "files_scanned": t.files,
        "entries_scanned": t.scanned,
        "linked_unchanged": t.linked,
        "linked_by_hash": t.linked_by_hash,
        "hard_links": t.hard_links,
        "copied_at_link_limit": report.stats.link_limit_copies,
        "sent_delta": t.delta_files,
        "sent_whole": t.files_sent,
        "resent_whole": t.resent,
        "whole_bytes": t.whole_bytes,
        "delta_bytes": t.delta_bytes,
        "content_bytes": t.content_bytes,
        "literal_bytes": report.sent.literal_bytes,
        "matched_bytes": report.sent.matched_bytes,
        "compressed_chunks": report.sent.compressed_chunks,
        "removed_entries": t.of(Change::Deleted).entries,
        "changes": changes,
        "resumed": report.offered != (0, 0),
        "resumed_files": t.resumed_files,
        "resumed_bytes": t.resumed_bytes,
        "wire_bytes_sent": report.wire_sent,
        "wire_bytes_received": report.wire_received,
        "elapsed_seconds": report.elapsed,
        "problems": t.problems,
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

/// `N (size)`, or just `N` when there are no bytes to tell.
fn count_text(n: u64, bytes: u64) -> String {
    if bytes == 0 {
        n.to_string()
    } else {
        format!("{n} ({})", human_bytes(bytes))
    }
}

/// What a change is called in `--stats`.
fn change_title(c: Change) -> &'static str {
    match c {
        Change::New => "New",
        Change::Content => "Content changed",
        Change::Metadata => "Metadata only",
        Change::Deleted => "Deleted",
        Change::Linked => "Linked by content",
        Change::Cache => "Skipped as cache",
    }
}

/// A backup's figures, like rsync's `--stats`, in human units.
pub fn backup_stats(report: &BackupReport) -> String {
    let t = &report.tally;
    let s = &report.sent;
    let mut out = format!(
        "Number of files: {} ({} entries scanned)\n\
         Unchanged, hard-linked: {}\n\
         Already on the host, linked by content: {}\n\
         Sent whole: {}\n\
         Sent as deltas: {}: {} literal, {} matched on the host\n\
         Sent again whole: {}\n\
         Chunks compressed: {}\n",
        t.files,
        t.scanned,
        t.linked,
        t.linked_by_hash,
        count_text(t.files_sent, t.whole_bytes),
        count_text(t.delta_files, t.delta_bytes),
        human_bytes(s.delta_literal_bytes),
        human_bytes(s.matched_bytes),
        t.resent,
        s.compressed_chunks,
    );
    if report.offered != (0, 0) {
        out.push_str(&format!(
            "Reused from an interrupted run: {}\n",
            count_text(t.resumed_files, t.resumed_bytes)
        ));
    }
    for c in Change::ALL {
        let n = t.of(c);
        out.push_str(&format!(
            "{}: {}\n",
            change_title(c),
            count_text(n.entries, n.bytes)
        ));
    }
    out.push_str(&format!(
        "Bytes sent: {}\nBytes received: {}\nElapsed: {:.2} s",
        human_bytes(report.wire_sent),
        human_bytes(report.wire_received),
        report.elapsed
    ));
    out
}

/// A backup's one-line summary, for a terminal or `-v`.
pub fn backup_summary(report: &BackupReport) -> String {
    let t = &report.tally;
    let verb = if report.dry_run { "to send" } else { "sent" };
    let mut line = format!(
        "{} files: {} unchanged, {} found on the host, {} {verb} whole ({}), {} as deltas ({}), {} removed, in {:.1}s",
        t.files,
        t.linked,
        t.linked_by_hash,
        t.files_sent,
        human_bytes(t.whole_bytes),
        t.delta_files,
        human_bytes(t.delta_bytes),
        t.of(Change::Deleted).entries,
        report.elapsed
    );
    if report.dry_run {
        line.insert_str(0, "dry run, nothing sent: ");
    }
    line
}

/// What a run that resumed an interrupted one says about it (`None` when
/// there was nothing to resume).
pub fn backup_resumed(report: &BackupReport) -> Option<String> {
    let (finished, begun) = report.offered;
    if finished == 0 && begun == 0 {
        return None;
    }
    let t = &report.tally;
    Some(format!(
        "resumed an interrupted run ({finished} finished and {begun} begun file(s) left on the host): reused {} file(s), {}",
        t.resumed_files,
        human_bytes(t.resumed_bytes)
    ))
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
    fn durations_read_in_the_largest_units() {
        assert_eq!(human_duration(0.42), "0.4s");
        assert_eq!(human_duration(125.4), "2m 05s");
        assert_eq!(human_duration(3720.0), "1h 02m");
        assert_eq!(human_duration(2.0 * 86_400.0 + 3.0 * 3600.0), "2d 03h");
        assert_eq!(human_duration(f64::NAN), "unknown time");
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
        let mut style = LsStyle::new(std::slice::from_ref(&e), true, true);
        let line = long_line(&e, true, &style);
        assert!(line.starts_with("lrwxr-xr-x  1000     100     "), "{line}");
        assert!(line.contains(" 0  1970"), "{line}");
        style.users.insert(1000, "ann".into());
        style.bytes = false;
        let line = long_line(&e, true, &style);
        assert!(line.starts_with("lrwxr-xr-x  ann      100     "), "{line}");
        assert!(line.contains(" 0 B  1970"), "{line}");
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
