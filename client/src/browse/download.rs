//! Content out of a snapshot: one file as it is stored, a folder as a
//! `.tar` (GNU headers, so long names fit) streamed entry by entry while
//! the helper sends it, and the short previews on a file's versions page.
//!
//! Each content is checked against the manifest's size and hash as it
//! passes; a mismatch ends the download with an error instead of handing
//! over a damaged copy.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use offsnap_protocol::{Entry, EntryKind, Hash, RelPath, Request, SnapshotInfo};
use tokio::sync::mpsc;

use super::index::Index;
use super::pages::{self, Preview};
use super::server::{State, blocking, error_page, param, path_param, snapshot};
use crate::error::{Error, Result};
use crate::session::{Receiver, Session};

/// Largest text shown in a preview.
const PREVIEW_MAX: u64 = 256 * 1024;

/// A stored file's content, read from the helper's answer to one
/// `GetFile`, checked against the recorded size and hash at its end.
struct Content<'a> {
    rx: &'a mut Receiver,
    buf: Vec<u8>,
    pos: usize,
    hasher: blake3::Hasher,
    got: u64,
    size: u64,
    hash: Hash,
    /// The whole answer has been read.
    done: bool,
}

impl<'a> Content<'a> {
    /// Asks for `path` of `snap` and returns its content as it comes.
    fn request(
        s: &'a mut Session,
        state: &State,
        snap: &SnapshotInfo,
        path: &RelPath,
        size: u64,
        hash: Hash,
    ) -> Result<Content<'a>> {
        s.tx.send(&Request::GetFile {
            set: state.opts.set.clone(),
            snapshot: snap.name,
            path: path.clone(),
        })?;
        s.tx.flush()?;
        Ok(Content::expect(&mut s.rx, size, hash))
    }

    /// The next answer on `rx`, for a content already asked for.
    fn expect(rx: &'a mut Receiver, size: u64, hash: Hash) -> Content<'a> {
        Content {
            rx,
            buf: Vec::new(),
            pos: 0,
            hasher: blake3::Hasher::new(),
            got: 0,
            size,
            hash,
            done: false,
        }
    }

    /// Reads what is left of the answer, so the session stays in step.
    fn drain(&mut self) -> Result<()> {
        while !self.done {
            match self.rx.recv() {
                Ok(offsnap_protocol::Response::FileData(_)) => {}
                Ok(offsnap_protocol::Response::FileEnd) | Err(Error::Remote(_)) => self.done = true,
                Ok(other) => return Err(Error::Unexpected(format!("{other:?}"))),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Read for Content<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(offsnap_protocol::Response::FileData(data)) => {
                    self.got += data.len() as u64;
                    if self.got > self.size {
                        return Err(io::Error::other("the stored copy is larger than recorded"));
                    }
                    self.hasher.update(&data);
                    self.buf = data;
                    self.pos = 0;
                }
                Ok(offsnap_protocol::Response::FileEnd) => {
                    self.done = true;
                    if self.got != self.size
                        || Hash(*self.hasher.finalize().as_bytes()) != self.hash
                    {
                        return Err(io::Error::other(
                            "the stored copy does not match its recorded hash (run `offsnap verify`)",
                        ));
                    }
                }
                Err(Error::Remote(r)) => {
                    self.done = true;
                    return Err(io::Error::other(r.message));
                }
                Ok(other) => return Err(io::Error::other(format!("unexpected answer: {other:?}"))),
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes into the response body, in chunks of a few hundred KiB; a
/// closed download makes it fail with `BrokenPipe`.
struct BodyWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// A response body fed by `produce` on a blocking thread; an error from
/// it cuts the download short, so the browser reports it as failed.
fn streamed(
    state: State,
    produce: impl FnOnce(&State, &mut BodyWriter) -> Result<()> + Send + 'static,
) -> Body {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut w = BodyWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let result =
            produce(&state, &mut w).and_then(|()| w.flush().map_err(|e| Error::io("download", e)));
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// The entry at `path` of `snap`, and the path its content is stored
/// under: its own, or a hard link's first name (whose entry is given,
/// under the link's path).
fn find_entry(
    state: &State,
    s: &mut Session,
    snap: &SnapshotInfo,
    path: &RelPath,
) -> Result<(Entry, RelPath)> {
    let found = state
        .manifests
        .index(s, &state.opts.set, snap)?
        .find(path)
        .cloned()
        .ok_or_else(|| Error::Usage(format!("{path} is not in snapshot {}", snap.name)))?;
    match &found.kind {
        EntryKind::HardLink { target } => {
            let (mut first, stored) = find_entry(state, s, snap, target)?;
            first.path = found.path;
            Ok((first, stored))
        }
        _ => Ok((found, path.clone())),
    }
}

/// A content type for a file name: images and plain text by extension,
/// anything else as bytes.
fn content_type(name: &[u8]) -> &'static str {
    let ext = name
        .rsplit(|&b| b == b'.')
        .next()
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_slice() {
        b"png" => "image/png",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// `Content-Disposition` naming `name` (RFC 6266, with a plain fallback).
fn disposition(kind: &str, name: &[u8]) -> HeaderValue {
    let plain: String = String::from_utf8_lossy(name)
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let value = format!(
        "{kind}; filename=\"{plain}\"; filename*=UTF-8''{}",
        pages::enc(name)
    );
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("attachment"))
}

/// `GET /TOKEN/file/SNAPSHOT?path=P[&download=1]`: one file's content.
pub async fn file(
    AxState(state): AxState<State>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let download = param(&query, "download").is_some();
    let found = blocking(state.clone(), move |state| {
        let path =
            path_param(&query)?.ok_or_else(|| Error::Usage("name a file: ?path=…".into()))?;
        let (snap, entry, stored) = state.with_session(|s| {
            let snap = snapshot(state, s, &name)?;
            let (entry, stored) = find_entry(state, s, &snap, &path)?;
            Ok((snap, entry, stored))
        })?;
        let EntryKind::File { size, hash } = entry.kind else {
            return Err(Error::Usage(format!(
                "{path} is a {}, not a file (download a folder as .tar)",
                entry.kind.word()
            )));
        };
        // Handed on in a response extension to the streaming part below.
        let mut r = StatusCode::OK.into_response();
        r.extensions_mut().insert(Found {
            snap,
            path,
            stored,
            size,
            hash,
        });
        Ok(r)
    })
    .await;
    let Some(Found {
        snap,
        path,
        stored,
        size,
        hash,
    }) = found.extensions().get::<Found>().cloned()
    else {
        return found;
    };
    let name = path.file_name().to_vec();
    let body = streamed(state, move |state, w| {
        state.with_session(|s| {
            // The session is locked while the file streams.
            let mut content = Content::request(s, state, &snap, &stored, size, hash)?;
            let copied = io::copy(&mut content, w);
            content.drain()?;
            copied
                .map(|_| ())
                .map_err(|e| Error::io(path.as_os_str(), e))
        })
    });
    let mut r = Response::new(body);
    let h = r.headers_mut();
    let ty = if download {
        "application/octet-stream"
    } else {
        content_type(&name)
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ty));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition(if download { "attachment" } else { "inline" }, &name),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
    );
    r
}

/// A file found by the first half of [`file`].
#[derive(Clone)]
struct Found {
    snap: SnapshotInfo,
    path: RelPath,
    stored: RelPath,
    size: u64,
    hash: Hash,
}

/// `GET /TOKEN/tar/SNAPSHOT?path=P`: a folder (the whole snapshot
/// without `path`) as a tar archive, streamed.
pub async fn tar(
    AxState(state): AxState<State>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let dir = match path_param(&query) {
        Ok(d) => d,
        Err(e) => return error_page(&state, e, StatusCode::BAD_REQUEST),
    };
    let checked = {
        let dir = dir.clone();
        blocking(state.clone(), move |state| {
            let snap = state.with_session(|s| {
                let snap = snapshot(state, s, &name)?;
                if let Some(d) = &dir {
                    let (e, _) = find_entry(state, s, &snap, d)?;
                    if e.kind != EntryKind::Dir {
                        return Err(Error::Usage(format!("{d} is not a folder")));
                    }
                }
                Ok(snap)
            })?;
            let mut r = StatusCode::OK.into_response();
            r.extensions_mut().insert(snap);
            Ok(r)
        })
        .await
    };
    let Some(snap) = checked.extensions().get::<SnapshotInfo>().cloned() else {
        return checked;
    };
    let base: Vec<u8> = match &dir {
        Some(d) => d.file_name().to_vec(),
        None => snap.name.to_string().into_bytes(),
    };
    let mut file_name = base.clone();
    file_name.extend_from_slice(b".tar");
    let body = streamed(state, move |state, w| {
        state.with_session(|s| write_tar(state, s, &snap, dir.as_ref(), &base, w))
    });
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition("attachment", &file_name),
    );
    r
}

/// The name in the archive of `path` (inside `dir`, or anywhere for the
/// whole snapshot): `base/` and its path below `dir`.
fn tar_name(base: &[u8], dir: Option<&RelPath>, path: &RelPath) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let below: &[u8] = match dir {
        Some(d) => &path.as_bytes()[d.as_bytes().len()..],
        None => {
            let mut v = b"/".to_vec();
            v.extend_from_slice(path.as_bytes());
            return PathBuf::from(std::ffi::OsStr::from_bytes(&[base, &v[..]].concat()));
        }
    };
    PathBuf::from(std::ffi::OsStr::from_bytes(&[base, below].concat()))
}

/// Writes the archive of `dir` of `snap` into `w`: the manifest gives
/// every entry and its metadata in walk order, the helper each content.
fn write_tar(
    state: &State,
    s: &mut Session,
    snap: &SnapshotInfo,
    dir: Option<&RelPath>,
    base: &[u8],
    w: &mut BodyWriter,
) -> Result<()> {
    let index = state.manifests.index(s, &state.opts.set, snap)?;
    let inside = |p: &RelPath| dir.is_none_or(|d| p.starts_with(d));
    let entries = index.subtree(dir);
    let outside = outside_links(&index, entries, &inside);
    let content_of = |e: &Entry| match &e.kind {
        EntryKind::File { size, hash } => Some((e.path.clone(), *size, *hash)),
        EntryKind::HardLink { target } if !inside(target) => outside
            .get(target)
            .map(|(size, hash)| (target.clone(), *size, *hash)),
        _ => None,
    };
    let contents: Vec<RelPath> = entries
        .iter()
        .filter_map(|e| content_of(e).map(|c| c.0))
        .collect();
    let mut ahead = Ahead {
        set: &state.opts.set,
        snap,
        contents: &contents,
        sent: 0,
        taken: 0,
    };
    let written = archive(s, entries, &mut ahead, &content_of, base, dir, w);
    if written.is_err() {
        // Read the answers already asked for, so the session stays in step.
        ahead.drain(s)?;
    }
    written
}

/// The contents an archive needs, asked for ahead of the one being
/// written ([`AHEAD`] at most), so each file does not wait for a round
/// trip to the helper.
struct Ahead<'a> {
    set: &'a offsnap_protocol::SetName,
    snap: &'a SnapshotInfo,
    contents: &'a [RelPath],
    /// How many were asked for.
    sent: usize,
    /// How many answers were read.
    taken: usize,
}

/// Contents asked for ahead of the one being read.
const AHEAD: usize = 64;

impl Ahead<'_> {
    /// Asks for the next contents, up to [`AHEAD`] past the one about to
    /// be read, and counts that one as taken.
    fn take(&mut self, s: &mut Session) -> Result<()> {
        let upto = (self.taken + AHEAD).min(self.contents.len());
        // Half the window read: ask for the next half, so the helper
        // never runs out of requests while this side writes.
        if self.sent <= self.taken + AHEAD / 2 {
            while self.sent < upto {
                s.tx.send(&Request::GetFile {
                    set: self.set.clone(),
                    snapshot: self.snap.name,
                    path: self.contents[self.sent].clone(),
                })?;
                self.sent += 1;
            }
            s.tx.flush()?;
        }
        self.taken += 1;
        Ok(())
    }

    /// Reads and drops the answers asked for and not read.
    fn drain(&mut self, s: &mut Session) -> Result<()> {
        while self.taken < self.sent {
            self.taken += 1;
            Content::expect(&mut s.rx, 0, Hash([0; 32])).drain()?;
        }
        Ok(())
    }
}

/// Where an archived entry's content is stored, its size and hash (none
/// for an entry without content).
type ContentOf<'a> = dyn Fn(&Entry) -> Option<(RelPath, u64, Hash)> + 'a;

/// Writes the archive's entries, reading each content in turn.
fn archive(
    s: &mut Session,
    entries: &[Entry],
    ahead: &mut Ahead<'_>,
    content_of: &ContentOf<'_>,
    base: &[u8],
    dir: Option<&RelPath>,
    w: &mut BodyWriter,
) -> Result<()> {
    let mut ar = tar::Builder::new(w);
    let fail = |e: io::Error| Error::io("tar", e);
    for e in entries {
        let name = tar_name(base, dir, &e.path);
        pax_header(&mut ar, e).map_err(fail)?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.meta.mode & 0o7777);
        h.set_uid(e.meta.uid.into());
        h.set_gid(e.meta.gid.into());
        h.set_mtime(e.meta.mtime_sec.max(0) as u64);
        h.set_size(0);
        if let Some((_, size, hash)) = content_of(e) {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(size);
            ahead.take(s)?;
            let mut c = Content::expect(&mut s.rx, size, hash);
            let added = ar.append_data(&mut h, &name, &mut c);
            c.drain()?;
            added.map_err(|e| Error::io(name.clone(), e))?;
            continue;
        }
        match &e.kind {
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                ar.append_data(&mut h, &name, io::empty()).map_err(fail)?;
            }
            EntryKind::Symlink { target } => {
                use std::os::unix::ffi::OsStrExt;
                h.set_entry_type(tar::EntryType::Symlink);
                ar.append_link(&mut h, &name, std::ffi::OsStr::from_bytes(target))
                    .map_err(fail)?;
            }
            EntryKind::HardLink { target } => {
                h.set_entry_type(tar::EntryType::Link);
                ar.append_link(&mut h, &name, tar_name(base, dir, target))
                    .map_err(fail)?;
            }
            EntryKind::Fifo | EntryKind::Device { .. } => {
                if let EntryKind::Device { block, rdev } = e.kind {
                    h.set_entry_type(if block {
                        tar::EntryType::Block
                    } else {
                        tar::EntryType::Char
                    });
                    h.set_device_major(libc::major(rdev)).map_err(fail)?;
                    h.set_device_minor(libc::minor(rdev)).map_err(fail)?;
                } else {
                    h.set_entry_type(tar::EntryType::Fifo);
                }
                ar.append_data(&mut h, &name, io::empty()).map_err(fail)?;
            }
            // A socket cannot be archived (tar has no such entry); a hard
            // link whose first name has no content is left out too.
            _ => {}
        }
    }
    ar.finish().map_err(fail)?;
    Ok(())
}

/// One pax record: `LEN key=value\n`, its length counting itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// A pax extended header before each entry, for what the GNU header
/// cannot hold: the mtime's nanoseconds and the extended attributes.
fn pax_header<W: Write>(ar: &mut tar::Builder<W>, e: &Entry) -> io::Result<()> {
    let mut data = pax_record(
        b"mtime",
        format!("{}.{:09}", e.meta.mtime_sec, e.meta.mtime_nsec).as_bytes(),
    );
    for x in &e.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(&x.name);
        data.extend(pax_record(&key, &x.value));
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeader")?;
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    ar.append(&h, data.as_slice())
}

/// Size and hash of the first names outside the archive whose other
/// names are inside it: those are archived as files of their own.
fn outside_links(
    index: &Index,
    entries: &[Entry],
    inside: &impl Fn(&RelPath) -> bool,
) -> HashMap<RelPath, (u64, Hash)> {
    let mut out = HashMap::new();
    for e in entries {
        if let EntryKind::HardLink { target } = &e.kind
            && !inside(target)
            && let Some(first) = index.find(target)
            && let EntryKind::File { size, hash } = first.kind
        {
            out.insert(target.clone(), (size, hash));
        }
    }
    out
}

/// What the versions page shows of one version of a file: an image by
/// its address, a short text as text.
pub fn preview(state: &State, s: &mut Session, snap: &SnapshotInfo, e: &Entry) -> Result<Preview> {
    let (size, hash) = match &e.kind {
        EntryKind::File { size, hash } => (*size, *hash),
        _ => return Ok(Preview::None),
    };
    if content_type(e.path.file_name()).starts_with("image/") {
        return Ok(Preview::Image(format!(
            "/{}/file/{}?path={}",
            state.token,
            snap.name,
            pages::enc(e.path.as_bytes())
        )));
    }
    if size > PREVIEW_MAX {
        return Ok(Preview::TooLarge);
    }
    let mut c = Content::request(s, state, snap, &e.path, size, hash)?;
    let mut data = Vec::new();
    let read = c.read_to_end(&mut data);
    c.drain()?;
    if let Err(err) = read {
        return Ok(Preview::Unreadable(err.to_string()));
    }
    Ok(match String::from_utf8(data) {
        Ok(text) if !text.contains('\0') => Preview::Text(text),
        _ => Preview::Binary,
    })
}
