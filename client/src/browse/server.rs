//! The web server: 127.0.0.1 only, every request under `/TOKEN/` (any
//! other is refused with 403), routes that gather what a page needs over
//! the shared helper session and hand it to [`super::pages`].

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, Request, State as AxState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use offsnap_protocol::compare::Change;
use offsnap_protocol::{RelPath, SnapshotInfo, SnapshotName, SnapshotStats};

use super::BrowseOptions;
use super::index::Manifests;
use super::pages::{self, TimelineRow};
use crate::error::{Error, Result};
use crate::restore::Which;
use crate::session::Session;

/// A fresh secret for the URL: 128 random bits, in hex.
pub fn new_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("/dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What every request shares.
pub struct Inner {
    pub(super) opts: BrowseOptions,
    session: Mutex<Option<Session>>,
    pub(super) token: String,
    /// Bytes added by a snapshot over the one before it, once computed.
    added: Mutex<HashMap<(Option<SnapshotName>, SnapshotName), u64>>,
    /// The manifests read so far: open, and the recent ones decoded.
    pub(super) manifests: Manifests,
    /// The helper's summaries, for the list of snapshots they were made
    /// of (they change only with it).
    stats: Mutex<Option<(Vec<SnapshotInfo>, Vec<SnapshotStats>)>>,
}

/// The server's state, shared by every request.
pub type State = Arc<Inner>;

impl Inner {
    /// State around an open session.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(opts: BrowseOptions, session: Session, token: String) -> State {
        Arc::new(Inner {
            opts,
            session: Mutex::new(Some(session)),
            token,
            added: Mutex::new(HashMap::new()),
            manifests: Manifests::default(),
            stats: Mutex::new(None),
        })
    }

    /// Runs `f` on the shared session (reconnecting first if an earlier
    /// request broke it); a broken connection is dropped for the next one.
    pub(super) fn with_session<T>(&self, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
        let mut guard = self
            .session
            .lock()
            .map_err(|_| Error::Unexpected("a request failed while using the session".into()))?;
        if guard.is_none() {
            *guard = Some((self.opts.connect)()?);
        }
        let session = guard
            .as_mut()
            .ok_or_else(|| Error::Unexpected("no session".into()))?;
        let result = f(session);
        if matches!(
            result,
            Err(Error::Frame(_) | Error::Ssh(_) | Error::Transport(_) | Error::Unexpected(_))
        ) && let Some(s) = guard.take()
        {
            let _ = s.close();
        }
        result
    }
}

/// The routes, all under `/TOKEN/`, behind the token check.
pub fn router(state: State) -> Router {
    let t = state.token.clone();
    Router::new()
        .route(&format!("/{t}/"), get(timeline))
        .route(&format!("/{t}/snap/{{name}}"), get(tree))
        .route(&format!("/{t}/versions"), get(versions))
        .route(&format!("/{t}/diff"), get(diff))
        .route(&format!("/{t}/file/{{name}}"), get(super::download::file))
        .route(&format!("/{t}/tar/{{name}}"), get(super::download::tar))
        .route(
            &format!("/{t}/restore/{{name}}"),
            get(super::restore::form).post(super::restore::submit),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), check_token))
        .with_state(state)
}

/// Refuses (403) any request whose path does not start with `/TOKEN/`,
/// and marks every answer as private to this page.
async fn check_token(AxState(state): AxState<State>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let given = path
        .strip_prefix('/')
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    if !same(given.as_bytes(), state.token.as_bytes()) || path.len() == given.len() + 1 {
        let mut r = (
            StatusCode::FORBIDDEN,
            "403 Forbidden: this address needs its secret token\n",
        )
            .into_response();
        harden(&mut r);
        return r;
    }
    let mut r = next.run(req).await;
    harden(&mut r);
    r
}

/// Headers on every answer: nothing is cached, the token is never sent
/// on as a referrer, nothing is fetched from elsewhere, no framing.
fn harden(r: &mut Response) {
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    );
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(AxState(state): AxState<State>) -> Response {
    error_page(
        &state,
        Error::Usage("no such page".into()),
        StatusCode::NOT_FOUND,
    )
}

/// An error as a page: 400 for what the request got wrong, 500 else.
pub(super) fn error_page(state: &State, e: Error, status: StatusCode) -> Response {
    let status = match (&e, status) {
        (_, StatusCode::NOT_FOUND) => StatusCode::NOT_FOUND,
        (Error::Usage(_), _) => StatusCode::BAD_REQUEST,
        (Error::Remote(r), _) if r.kind == offsnap_protocol::ErrorKind::NotFound => {
            StatusCode::NOT_FOUND
        }
        _ => status,
    };
    (status, Html(pages::error(&state.token, &e.to_string()))).into_response()
}

/// Runs blocking work (the session is synchronous) off the async threads,
/// turning its error into a page.
pub(super) async fn blocking(
    state: State,
    f: impl FnOnce(&State) -> Result<Response> + Send + 'static,
) -> Response {
    let s = state.clone();
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => error_page(&state, e, StatusCode::INTERNAL_SERVER_ERROR),
        Err(e) => error_page(
            &state,
            Error::Unexpected(format!("the request failed: {e}")),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    }
}

/// The raw bytes of query parameter `key`, percent-decoded.
pub(super) fn param(query: &Option<String>, key: &str) -> Option<Vec<u8>> {
    let q = query.as_deref()?;
    q.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| {
            let v = v.replace('+', " ");
            percent_encoding::percent_decode_str(&v).collect()
        })
    })
}

/// A path inside the snapshot from raw bytes: empty (or `/`) is the root;
/// `..`, absolute paths and empty components are refused.
pub(super) fn rel_path(raw: Option<Vec<u8>>) -> Result<Option<RelPath>> {
    match raw {
        None => Ok(None),
        Some(b) if b.is_empty() => Ok(None),
        Some(b) => RelPath::new(b)
            .map(Some)
            .map_err(|e| Error::Usage(format!("not a path inside a snapshot: {e}"))),
    }
}

/// The `path` parameter as a path inside the snapshot.
pub(super) fn path_param(query: &Option<String>) -> Result<Option<RelPath>> {
    rel_path(param(query, "path"))
}

/// A snapshot named in the URL (or `latest`), looked up in the set.
pub(super) fn snapshot(state: &State, s: &mut Session, name: &str) -> Result<SnapshotInfo> {
    let which = Which::parse(name)?;
    crate::restore::find_snapshot(s, &state.opts.set, &which)
}

async fn timeline(AxState(state): AxState<State>) -> Response {
    blocking(state, |state| {
        let rows = state.with_session(|s| {
            let set = &state.opts.set;
            let snaps = crate::requests::snapshots(s, set)?;
            let stats = stats_of(state, s, &snaps)?;
            let decisions = crate::requests::prune(s, set, &state.opts.policy, true)?;
            let mut rows = Vec::new();
            let mut prev: Option<&SnapshotInfo> = None;
            for st in stats {
                let info = snaps.iter().find(|i| i.name == st.name);
                let added = match info {
                    Some(i) => added_bytes(state, s, prev, i)?,
                    None => 0,
                };
                prev = info.or(prev);
                let kept_by = decisions
                    .iter()
                    .find(|d| d.name == st.name)
                    .map(|d| d.kept_by.clone())
                    .unwrap_or_default();
                rows.push(TimelineRow {
                    stats: st,
                    kept_by,
                    added_bytes: added,
                });
            }
            Ok(rows)
        })?;
        Ok(Html(pages::timeline(
            &state.token,
            state.opts.set.as_str(),
            &state.opts.dest_label,
            &rows,
        ))
        .into_response())
    })
    .await
}

/// The helper's summaries of `snaps`: asked for once per list of
/// snapshots (their unique sizes cost a `stat` of every file).
fn stats_of(state: &State, s: &mut Session, snaps: &[SnapshotInfo]) -> Result<Vec<SnapshotStats>> {
    if let Ok(kept) = state.stats.lock()
        && let Some((list, stats)) = kept.as_ref()
        && list == snaps
    {
        return Ok(stats.clone());
    }
    let stats = crate::requests::stats(s, &state.opts.set)?;
    if let Ok(mut kept) = state.stats.lock() {
        *kept = Some((snaps.to_vec(), stats.clone()));
    }
    Ok(stats)
}

/// Bytes of the files `snap` added or changed over `prev` (all of its
/// files for the first snapshot), from the two manifests; remembered.
fn added_bytes(
    state: &State,
    s: &mut Session,
    prev: Option<&SnapshotInfo>,
    snap: &SnapshotInfo,
) -> Result<u64> {
    let key = (prev.map(|p| p.name), snap.name);
    if let Some(n) = state.added.lock().ok().and_then(|m| m.get(&key).copied()) {
        return Ok(n);
    }
    let n = match prev {
        None => state
            .manifests
            .index(s, &state.opts.set, snap)?
            .entries()
            .iter()
            .map(|e| e.size())
            .sum(),
        Some(p) => state
            .manifests
            .diff(s, &state.opts.set, p, snap)?
            .iter()
            .map(|c| match c {
                Change::Added(e) | Change::Changed(_, e) if e.is_file() => e.size(),
                _ => 0,
            })
            .sum(),
    };
    if let Ok(mut m) = state.added.lock() {
        m.insert(key, n);
    }
    Ok(n)
}

async fn tree(
    AxState(state): AxState<State>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    blocking(state, move |state| {
        let dir = path_param(&query)?;
        let (info, entries) = state.with_session(|s| {
            let info = snapshot(state, s, &name)?;
            let index = state.manifests.index(s, &state.opts.set, &info)?;
            let entries = index.ls(&info, dir.as_ref())?;
            Ok((info, entries))
        })?;
        // A file's "folder" is the file itself: show its versions instead.
        if let (Some(d), [only]) = (&dir, entries.as_slice())
            && only.path == *d
            && only.kind != offsnap_protocol::EntryKind::Dir
        {
            let to = format!(
                "/{}/versions?path={}",
                state.token,
                pages::enc(d.as_bytes())
            );
            return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response());
        }
        Ok(Html(pages::tree(&state.token, &info, dir.as_ref(), &entries)).into_response())
    })
    .await
}

async fn versions(AxState(state): AxState<State>, RawQuery(query): RawQuery) -> Response {
    blocking(state, move |state| {
        let path = path_param(&query)?
            .ok_or_else(|| Error::Usage("name a file: versions?path=…".into()))?;
        let chosen = param(&query, "snap").map(|b| String::from_utf8_lossy(&b).into_owned());
        let (versions, preview) = state.with_session(|s| {
            let snaps = crate::requests::snapshots(s, &state.opts.set)?;
            let versions = state
                .manifests
                .versions(s, &state.opts.set, &snaps, &path)?;
            let shown = match &chosen {
                Some(c) => versions.iter().find(|v| v.first.name.to_string() == *c),
                None => versions.last(),
            };
            let preview = match shown {
                Some(v) => super::download::preview(state, s, &v.first, &v.entry)?,
                None => pages::Preview::None,
            };
            Ok((versions, preview))
        })?;
        if versions.is_empty() {
            return Err(Error::Usage(format!(
                "{path} is in no snapshot of set {}",
                state.opts.set
            )));
        }
        Ok(Html(pages::versions(&state.token, &path, &versions, &preview)).into_response())
    })
    .await
}

async fn diff(AxState(state): AxState<State>, RawQuery(query): RawQuery) -> Response {
    blocking(state, move |state| {
        let pick = |k| param(&query, k).map(|b| String::from_utf8_lossy(&b).into_owned());
        let (a, b) = (pick("a"), pick("b"));
        let (snaps, chosen) = state.with_session(|s| {
            let snaps = crate::requests::snapshots(s, &state.opts.set)?;
            let n = snaps.len();
            let a = match &a {
                Some(g) => Some(snapshot(state, s, g)?),
                None => n.checked_sub(2).and_then(|i| snaps.get(i).cloned()),
            };
            let b = match &b {
                Some(g) => Some(snapshot(state, s, g)?),
                None => snaps.last().cloned(),
            };
            let chosen = match (a, b) {
                (Some(a), Some(b)) => {
                    let changes = state.manifests.diff(s, &state.opts.set, &a, &b)?;
                    Some((a, b, changes))
                }
                _ => None,
            };
            Ok((snaps, chosen))
        })?;
        Ok(Html(pages::diff(&state.token, &snaps, chosen.as_ref())).into_response())
    })
    .await
}
