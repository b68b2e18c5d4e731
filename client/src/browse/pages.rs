//! The HTML of each page, rendered on the server from what the helper
//! answered: a shared frame (header, style, a few lines of script), the
//! timeline, a snapshot's folder, a file's versions, a diff, and forms.
//! Everything that comes from a manifest is escaped.

use std::fmt::Write;

use offsnap_protocol::compare::Change;
use offsnap_protocol::{Entry, EntryKind, Meta, RelPath, SnapshotInfo, SnapshotStats};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::inspect::Version;

/// One bar of the timeline.
pub struct TimelineRow {
    /// The snapshot's sizes and changes.
    pub stats: SnapshotStats,
    /// The retention rules that keep it (none: the next prune removes it).
    pub kept_by: Vec<String>,
    /// Bytes of the files it added or changed over the one before.
    pub added_bytes: u64,
}

/// What the versions page shows of the chosen version.
pub enum Preview {
    /// Nothing (not a file).
    None,
    /// A text file.
    Text(String),
    /// An image, at this address.
    Image(String),
    /// Bytes that are not text.
    Binary,
    /// Too large to show here.
    TooLarge,
    /// The stored copy could not be read.
    Unreadable(String),
}

/// What a URL keeps as it is: letters, digits, `-._~` and `/`.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Raw bytes (a path, a name) percent-encoded for a URL.
pub fn enc(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, KEEP).to_string()
}

/// Text escaped for HTML (text and attribute values alike).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path or name for people (invalid UTF-8 shown as �).
fn show(bytes: &[u8]) -> String {
    esc(&String::from_utf8_lossy(bytes))
}

/// Bytes for people: 1.5 MiB (as every command prints them).
pub use crate::output::human_bytes as human;

/// `drwxr-xr-x`, from the kind and permission bits.
pub fn mode_text(kind: &EntryKind, mode: u32) -> String {
    let t = match kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink { .. } => 'l',
        EntryKind::Fifo => 'p',
        EntryKind::Socket => 's',
        EntryKind::Device { block: true, .. } => 'b',
        EntryKind::Device { block: false, .. } => 'c',
        _ => '-',
    };
    let bits = ["---", "--x", "-w-", "-wx", "r--", "r-x", "rw-", "rwx"];
    format!(
        "{t}{}{}{}",
        bits[((mode >> 6) & 7) as usize],
        bits[((mode >> 3) & 7) as usize],
        bits[(mode & 7) as usize]
    )
}

/// An mtime as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn mtime(meta: &Meta) -> String {
    jiff::Timestamp::from_second(meta.mtime_sec)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| meta.mtime_sec.to_string())
}

const STYLE: &str = r#"
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2430;--mute:#6b7380;--line:#e3e6ea;--accent:#2f6fde}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;background:var(--bg);color:var(--ink)}
header{background:#1d2430;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header b{font-size:16px;letter-spacing:.3px}
header a{color:#cfd8e6;text-decoration:none}header a:hover{color:#fff}
main{padding:18px 24px;max-width:1200px}
h1{font-size:20px;margin:4px 0 14px}h1 code{font-size:inherit}h2{font-size:16px;margin:18px 0 8px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin-bottom:14px}
.facts{display:flex;gap:28px;flex-wrap:wrap}.facts div{display:flex;flex-direction:column}
.facts span{color:var(--mute);font-size:12px}.facts strong{font-size:18px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 10px;border-bottom:1px solid var(--line);white-space:nowrap}
th{color:var(--mute);font-weight:600;font-size:12px}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.name{white-space:normal;word-break:break-all;width:60%}
tr:hover td{background:#f0f4fb}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
code,.mono{font-family:"DejaVu Sans Mono",ui-monospace,monospace;font-size:12.5px}
.bars{display:flex;align-items:flex-end;gap:6px;height:180px;padding:8px 4px 0;border-bottom:1px solid var(--line);overflow-x:auto}
.bar{flex:1 0 22px;max-width:56px;display:flex;flex-direction:column;justify-content:flex-end;height:100%;text-decoration:none}
.bar i{display:block;border-radius:4px 4px 0 0;min-height:3px}
.bar:hover i{outline:2px solid var(--ink)}
.labels{display:flex;gap:6px;padding:4px 4px 0;overflow-x:auto}
.labels span{flex:1 0 22px;max-width:56px;font-size:10px;color:var(--mute);text-align:center;overflow:hidden}
.legend{display:flex;gap:16px;flex-wrap:wrap;margin-top:10px;font-size:12px;color:var(--mute)}
.legend i,.dot{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.k-newest{background:#2f6fde}.k-within{background:#3aa675}.k-last{background:#7b61d1}
.k-hourly{background:#16a3b8}.k-daily{background:#e0a020}.k-weekly{background:#d9702b}
.k-monthly{background:#c2477c}.k-yearly{background:#8a5a2b}.k-kept{background:#5b7083}.k-pruned{background:#c9ced6}
.crumbs{margin-bottom:10px;color:var(--mute)}.crumbs a{margin:0 2px}
.add{color:#2a8a57}.del{color:#c0392b}.mod{color:#b07a12}
pre.preview{margin:0;background:#fbfbfc;border:1px solid var(--line);border-radius:6px;padding:10px;max-height:420px;overflow:auto;white-space:pre-wrap}
img.preview{max-width:100%;max-height:420px;border:1px solid var(--line);border-radius:6px;background:repeating-conic-gradient(#eee 0 25%,#fff 0 50%) 0 0/16px 16px}
.btn{display:inline-block;padding:2px 8px;border:1px solid var(--line);border-radius:5px;font-size:12px;background:#fff}
.btn:hover{border-color:var(--accent);text-decoration:none}
form.inline{display:flex;gap:8px;align-items:center;flex-wrap:wrap}
input[type=text]{padding:5px 8px;border:1px solid #c9ced6;border-radius:5px;min-width:360px}
select,button{padding:4px 8px;border:1px solid #c9ced6;border-radius:5px;background:#fff}
button.go{background:var(--accent);color:#fff;border-color:var(--accent)}
.err{border-left:4px solid #c0392b}.ok{border-left:4px solid #3aa675}
.mute{color:var(--mute)}
"#;

/// A line of script: filter the rows of a table by name as one types.
const SCRIPT: &str = r#"
document.querySelectorAll('input[data-filter]').forEach(function(f){
  f.addEventListener('input',function(){
    var q=f.value.toLowerCase();
    document.querySelectorAll(f.dataset.filter+' tbody tr').forEach(function(r){
      r.style.display=r.textContent.toLowerCase().indexOf(q)<0?'none':'';
    });
  });
});
"#;

/// The frame around every page.
fn layout(token: &str, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width,initial-scale=1\">\
<title>{title} · offsnap</title><style>{STYLE}</style></head><body>\
<header><b>offsnap</b><a href=\"/{token}/\">Timeline</a>\
<a href=\"/{token}/snap/latest\">Latest snapshot</a><a href=\"/{token}/diff\">Diff</a></header>\
<main>{body}</main><script>{SCRIPT}</script></body></html>",
        title = esc(title)
    )
}

/// The colour class for a snapshot's retention: its first rule's kind.
fn kept_class(kept_by: &[String]) -> &'static str {
    let Some(first) = kept_by.first() else {
        return "k-pruned";
    };
    let word = first.split([' ', '(']).next().unwrap_or("");
    match word {
        "newest" => "k-newest",
        "within" => "k-within",
        "last" => "k-last",
        "hourly" => "k-hourly",
        "daily" => "k-daily",
        "weekly" => "k-weekly",
        "monthly" => "k-monthly",
        "yearly" => "k-yearly",
        _ => "k-kept",
    }
}

/// The timeline: a bar per snapshot (height: bytes added; colour: why
/// retention keeps it), the set's sizes, and a table of every snapshot.
pub fn timeline(token: &str, set: &str, dest: &str, rows: &[TimelineRow]) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Set <code>{}</code> <span class=mute>at {}</span></h1>",
        esc(set),
        esc(dest)
    );
    facts(&mut b, rows);
    bars(&mut b, token, rows);
    table(&mut b, token, rows);
    layout(token, &format!("set {set}"), &b)
}

/// The set's sizes, in a card.
fn facts(b: &mut String, rows: &[TimelineRow]) {
    let latest = rows.last().map(|r| r.stats.total_bytes).unwrap_or(0);
    let unique: u64 = rows.iter().map(|r| r.stats.unique_bytes).sum();
    let added: u64 = rows.iter().map(|r| r.added_bytes).sum();
    let pruned = rows.iter().filter(|r| r.kept_by.is_empty()).count();
    let _ = write!(
        b,
        "<div class=\"card facts\"><div><span>Snapshots</span><strong id=count>{}</strong></div>\
<div><span>Latest size</span><strong>{}</strong></div>\
<div><span>Unique, all snapshots</span><strong>{}</strong></div>\
<div><span>Added over time</span><strong>{}</strong></div>\
<div><span>Next prune removes</span><strong>{pruned}</strong></div></div>",
        rows.len(),
        human(latest),
        human(unique),
        human(added)
    );
}

/// A bar per snapshot, their labels and the colours' legend.
fn bars(b: &mut String, token: &str, rows: &[TimelineRow]) {
    let max = rows.iter().map(|r| r.added_bytes).max().unwrap_or(0).max(1);
    b.push_str("<div class=card><div class=bars id=timeline>");
    for r in rows {
        let name = r.stats.name.to_string();
        let pct = (r.added_bytes as f64 / max as f64 * 100.0).max(1.5);
        let why = if r.kept_by.is_empty() {
            "removed by the next prune".to_string()
        } else {
            format!("kept: {}", r.kept_by.join(", "))
        };
        let _ = write!(
            b,
            "<a class=bar data-snapshot=\"{name}\" href=\"/{token}/snap/{name}\" title=\"{name}&#10;added {} · total {}&#10;{}\">\
<i class={} style=\"height:{pct:.1}%\"></i></a>",
            human(r.added_bytes),
            human(r.stats.total_bytes),
            esc(&why),
            kept_class(&r.kept_by)
        );
    }
    b.push_str("</div><div class=labels>");
    for r in rows {
        let n = r.stats.name.to_string();
        let _ = write!(
            b,
            "<span title=\"{n}\">{}</span>",
            n.get(5..10).unwrap_or(&n)
        );
    }
    b.push_str("</div><div class=legend>");
    for (class, label) in [
        ("k-newest", "newest"),
        ("k-within", "within the window"),
        ("k-last", "last N"),
        ("k-hourly", "hourly"),
        ("k-daily", "daily"),
        ("k-weekly", "weekly"),
        ("k-monthly", "monthly"),
        ("k-yearly", "yearly"),
        ("k-pruned", "next prune removes it"),
    ] {
        let _ = write!(b, "<span><i class={class}></i>{label}</span>");
    }
    b.push_str("<span>height: bytes added</span></div></div>");
}

/// A row per snapshot, newest first.
fn table(b: &mut String, token: &str, rows: &[TimelineRow]) {
    b.push_str(
        "<div class=card><table id=snapshots><thead><tr><th>Snapshot</th><th class=num>Files</th>\
<th class=num>Size</th><th class=num>Unique</th><th class=num>Added</th><th class=num>+ / ~ / −</th>\
<th>Retention</th><th></th></tr></thead><tbody>",
    );
    for r in rows.iter().rev() {
        let s = &r.stats;
        let name = s.name.to_string();
        let kept = if r.kept_by.is_empty() {
            "<span class=mute>removed by the next prune</span>".to_string()
        } else {
            esc(&r.kept_by.join(", "))
        };
        let _ = write!(
            b,
            "<tr data-snapshot=\"{name}\"><td><span class=\"dot {}\"></span><a href=\"/{token}/snap/{name}\">{name}</a></td>\
<td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>\
<td class=num><span class=add>+{}</span> <span class=mod>~{}</span> <span class=del>−{}</span></td>\
<td>{kept}</td><td><a class=btn href=\"/{token}/tar/{name}\">.tar</a></td></tr>",
            kept_class(&r.kept_by),
            s.files,
            human(s.total_bytes),
            human(s.unique_bytes),
            human(r.added_bytes),
            s.added,
            s.changed,
            s.removed
        );
    }
    b.push_str("</tbody></table></div>");
}

/// Links to each folder above `dir`, from the snapshot's root.
fn crumbs(token: &str, snap: &SnapshotInfo, dir: Option<&RelPath>) -> String {
    let name = snap.name;
    let mut b = format!("<div class=crumbs><a href=\"/{token}/snap/{name}\">{name}</a>");
    if let Some(d) = dir {
        let mut sofar: Vec<u8> = Vec::new();
        for c in d.components() {
            if !sofar.is_empty() {
                sofar.push(b'/');
            }
            sofar.extend_from_slice(c);
            let _ = write!(
                b,
                " / <a href=\"/{token}/snap/{name}?path={}\">{}</a>",
                enc(&sofar),
                show(c)
            );
        }
    }
    b.push_str("</div>");
    b
}

/// A folder of a snapshot: its entries with mode, owner, size, mtime,
/// and links to open, see versions, download and restore.
pub fn tree(token: &str, snap: &SnapshotInfo, dir: Option<&RelPath>, entries: &[Entry]) -> String {
    let name = snap.name;
    let here = dir.map(|d| enc(d.as_bytes())).unwrap_or_default();
    let title = dir.map(|d| d.to_string()).unwrap_or_else(|| "/".into());
    let mut b = format!("<h1>Snapshot <code>{name}</code></h1>");
    b.push_str(&crumbs(token, snap, dir));
    let _ = write!(
        b,
        "<div class=\"card\"><form class=inline onsubmit=\"return false\">\
<input type=text placeholder=\"Filter this folder…\" data-filter=\"#entries\">\
<a class=btn href=\"/{token}/tar/{name}?path={here}\">Download this folder (.tar)</a>\
<a class=btn href=\"/{token}/restore/{name}?path={here}\">Restore this folder…</a>\
<span class=mute>{} entries</span></form></div>",
        entries.len()
    );
    b.push_str(
        "<div class=card><table id=entries><thead><tr><th>Mode</th><th>Owner</th><th>Name</th>\
<th class=num>Size</th><th>Modified (UTC)</th><th></th></tr></thead><tbody>",
    );
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| (e.kind != EntryKind::Dir, e.path.file_name().to_vec()));
    for e in sorted {
        let p = enc(e.path.as_bytes());
        let label = show(e.path.file_name());
        let (link, extra, actions) = match &e.kind {
            EntryKind::Dir => (
                format!("<a href=\"/{token}/snap/{name}?path={p}\">{label}/</a>"),
                String::new(),
                format!(
                    "<a class=btn href=\"/{token}/tar/{name}?path={p}\">.tar</a> <a class=btn href=\"/{token}/restore/{name}?path={p}\">restore</a>"
                ),
            ),
            EntryKind::File { .. } | EntryKind::HardLink { .. } => (
                format!("<a href=\"/{token}/versions?path={p}&amp;snap={name}\">{label}</a>"),
                match &e.kind {
                    EntryKind::HardLink { target } => {
                        format!(" <span class=mute>⇒ {}</span>", esc(&target.to_string()))
                    }
                    _ => String::new(),
                },
                format!(
                    "<a class=btn href=\"/{token}/file/{name}?path={p}&amp;download=1\">download</a> <a class=btn href=\"/{token}/restore/{name}?path={p}\">restore</a>"
                ),
            ),
            EntryKind::Symlink { target } => (
                label.clone(),
                format!(" <span class=mute>→ {}</span>", show(target)),
                format!("<a class=btn href=\"/{token}/restore/{name}?path={p}\">restore</a>"),
            ),
            _ => (
                label.clone(),
                format!(" <span class=mute>({})</span>", e.kind.word()),
                String::new(),
            ),
        };
        let size = if e.kind == EntryKind::Dir {
            String::new()
        } else {
            human(e.size())
        };
        let _ = write!(
            b,
            "<tr data-path=\"{}\"><td class=mono>{}</td><td class=mono>{}:{}</td><td class=name>{link}{extra}</td>\
<td class=num>{size}</td><td class=mono>{}</td><td>{actions}</td></tr>",
            // The path as stored (HTML-escaped), not as shown on a terminal.
            esc(&String::from_utf8_lossy(e.path.as_bytes())),
            mode_text(&e.kind, e.meta.mode),
            e.meta.uid,
            e.meta.gid,
            mtime(&e.meta)
        );
    }
    b.push_str("</tbody></table></div>");
    layout(token, &format!("{name} {title}"), &b)
}

/// A file's versions across snapshots, with a preview of one of them.
pub fn versions(token: &str, path: &RelPath, versions: &[Version], preview: &Preview) -> String {
    let p = enc(path.as_bytes());
    let mut b = format!(
        "<h1>Versions of <code>{}</code></h1>",
        esc(&path.to_string())
    );
    if let Some(v) = versions.last() {
        let parent = path.parent().map(|d| enc(d.as_bytes())).unwrap_or_default();
        let _ = write!(
            b,
            "<div class=crumbs>in <a href=\"/{token}/snap/{}?path={parent}\">its folder of {}</a> · \
{} version(s)</div>",
            v.last.name,
            v.last.name,
            versions.len()
        );
    }
    b.push_str(
        "<div class=card><table id=versions><thead><tr><th>First in</th><th>Through</th>\
<th class=num>Size</th><th>Modified (UTC)</th><th>Mode</th><th>BLAKE3</th><th></th></tr></thead><tbody>",
    );
    for v in versions.iter().rev() {
        let first = v.first.name;
        let hash = match &v.entry.kind {
            EntryKind::File { hash, .. } => {
                let h = hash.to_hex();
                format!("<span class=mono title=\"{h}\">{}</span>", &h[..12])
            }
            other => other.word().to_string(),
        };
        let through = if v.last.name == v.first.name {
            String::new()
        } else {
            v.last.name.to_string()
        };
        let actions = if v.entry.is_file() {
            format!(
                "<a class=btn href=\"/{token}/versions?path={p}&amp;snap={first}\">preview</a> \
<a class=btn href=\"/{token}/file/{first}?path={p}&amp;download=1\">download</a> \
<a class=btn href=\"/{token}/restore/{first}?path={p}\">restore</a>"
            )
        } else {
            String::new()
        };
        let _ = write!(
            b,
            "<tr data-first=\"{first}\"><td><a href=\"/{token}/snap/{first}\">{first}</a></td><td class=mono>{through}</td>\
<td class=num data-size=\"{}\">{}</td><td class=mono>{}</td><td class=mono>{}</td><td>{hash}</td><td>{actions}</td></tr>",
            v.entry.size(),
            human(v.entry.size()),
            mtime(&v.entry.meta),
            mode_text(&v.entry.kind, v.entry.meta.mode)
        );
    }
    b.push_str("</tbody></table></div>");
    let shown = match preview {
        Preview::None => String::new(),
        Preview::Text(t) => format!("<pre class=preview id=preview>{}</pre>", esc(t)),
        Preview::Image(url) => format!(
            "<img class=preview id=preview alt=preview src=\"{}\">",
            esc(url)
        ),
        Preview::Binary => "<p class=mute>Not text: download it to open it.</p>".into(),
        Preview::TooLarge => "<p class=mute>Too large to preview here: download it.</p>".into(),
        Preview::Unreadable(why) => format!(
            "<p class=\"card err\">Could not read the stored copy: {}</p>",
            esc(why)
        ),
    };
    if !shown.is_empty() {
        let _ = write!(b, "<h2>Preview</h2><div class=card>{shown}</div>");
    }
    layout(token, &format!("versions of {path}"), &b)
}

/// Two snapshot pickers, and what changed from the first to the second.
pub fn diff(
    token: &str,
    snaps: &[SnapshotInfo],
    chosen: Option<&(SnapshotInfo, SnapshotInfo, Vec<Change>)>,
) -> String {
    let mut b = String::from("<h1>Differences between two snapshots</h1>");
    let select = |field: &str, pick: Option<&SnapshotInfo>| {
        let mut s = format!("<select name={field}>");
        for i in snaps.iter().rev() {
            let sel = if pick.is_some_and(|p| p.name == i.name) {
                " selected"
            } else {
                ""
            };
            let _ = write!(s, "<option{sel}>{}</option>", i.name);
        }
        s.push_str("</select>");
        s
    };
    let _ = write!(
        b,
        "<div class=card><form class=inline method=get action=\"/{token}/diff\">From {} to {} \
<button class=go>Compare</button></form></div>",
        select("a", chosen.map(|c| &c.0)),
        select("b", chosen.map(|c| &c.1))
    );
    let Some((a, bb, changes)) = chosen else {
        b.push_str("<p class=mute>Two snapshots are needed.</p>");
        return layout(token, "diff", &b);
    };
    let count = |f: fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
    let _ = write!(
        b,
        "<div class=\"card facts\"><div><span>Added</span><strong class=add>{}</strong></div>\
<div><span>Removed</span><strong class=del>{}</strong></div><div><span>Changed</span><strong class=mod>{}</strong></div></div>",
        count(|c| matches!(c, Change::Added(_))),
        count(|c| matches!(c, Change::Removed(_))),
        count(|c| matches!(c, Change::Changed(..)))
    );
    b.push_str("<div class=card><table id=changes><thead><tr><th></th><th>Path</th><th class=num>Before</th><th class=num>After</th></tr></thead><tbody>");
    for c in changes {
        let (mark, class, before, after) = match c {
            Change::Added(e) => ("+", "add", String::new(), human(e.size())),
            Change::Removed(e) => ("−", "del", human(e.size()), String::new()),
            Change::Changed(o, n) => ("M", "mod", human(o.size()), human(n.size())),
        };
        let path = c.path();
        let link = format!(
            "<a href=\"/{token}/versions?path={}\">{}</a>",
            enc(path.as_bytes()),
            esc(&path.to_string())
        );
        let _ = write!(
            b,
            "<tr><td class={class}><b>{mark}</b></td><td class=name>{link}</td><td class=num>{before}</td><td class=num>{after}</td></tr>"
        );
    }
    b.push_str("</tbody></table></div>");
    layout(token, &format!("diff {} {}", a.name, bb.name), &b)
}

/// The restore form for `path` (the whole snapshot for `None`), with a
/// message from an attempt and, after a refusal, the overwrite choice.
pub fn restore_form(
    token: &str,
    snap: &SnapshotInfo,
    path: Option<&RelPath>,
    to: &str,
    message: Option<(bool, &str)>,
    offer_overwrite: bool,
) -> String {
    let name = snap.name;
    let what = path
        .map(|p| p.to_string())
        .unwrap_or_else(|| "the whole snapshot".into());
    let p = path.map(|p| enc(p.as_bytes())).unwrap_or_default();
    let mut b = format!("<h1>Restore <code>{}</code></h1>", esc(&what));
    b.push_str(&crumbs(token, snap, path));
    if let Some((ok, text)) = message {
        let _ = write!(
            b,
            "<div class=\"card {}\" id=result>{}</div>",
            if ok { "ok" } else { "err" },
            esc(text)
        );
    }
    let overwrite = if offer_overwrite {
        "<label><input type=checkbox name=overwrite value=1> Replace what already exists there</label>"
    } else {
        ""
    };
    let _ = write!(
        b,
        "<div class=card><form class=inline method=post action=\"/{token}/restore/{name}\">\
<input type=hidden name=path value=\"{p}\">\
<label>Into the directory on this machine <input type=text name=to value=\"{}\" placeholder=\"/home/me/restored\" required></label>\
{overwrite}<button class=go>Restore</button></form>\
<p class=mute>Like <code>offsnap restore --snapshot {name} --to DIR</code>: existing files are never \
replaced unless you confirm it.</p></div>",
        esc(to)
    );
    layout(token, &format!("restore {what}"), &b)
}

/// An error page.
pub fn error(token: &str, message: &str) -> String {
    layout(
        token,
        "error",
        &format!("<div class=\"card err\" id=error>{}</div>", esc(message)),
    )
}
