//! Restoring from the page into a directory on this machine: the same
//! [`crate::restore::restore`] as `offsnap restore`, over a session of its
//! own, refusing to replace what exists unless the user confirms it.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::Form;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::response::{Html, IntoResponse, Response};

use super::pages;
use super::server::{State, blocking, path_param, rel_path, snapshot};
use crate::error::{Error, Result};
use crate::restore::{RestoreOptions, Which};

/// `GET /TOKEN/restore/SNAPSHOT?path=P`: the form.
pub async fn form(
    AxState(state): AxState<State>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    blocking(state, move |state| {
        let path = path_param(&query)?;
        let snap = state.with_session(|s| snapshot(state, s, &name))?;
        Ok(Html(pages::restore_form(
            &state.token,
            &snap,
            path.as_ref(),
            "",
            None,
            false,
        ))
        .into_response())
    })
    .await
}

/// `POST /TOKEN/restore/SNAPSHOT` with `path`, `to` and `overwrite`:
/// restores, and answers with the form and what happened.
pub async fn submit(
    AxState(state): AxState<State>,
    Path(name): Path<String>,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    blocking(state, move |state| {
        let raw = fields
            .get("path")
            .map(|p| percent_encoding::percent_decode_str(p).collect::<Vec<u8>>());
        let path = rel_path(raw)?;
        let to = fields
            .get("to")
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        let overwrite = fields.get("overwrite").is_some_and(|v| v == "1");
        let snap = state.with_session(|s| snapshot(state, s, &name))?;
        let page = |ok: bool, text: &str, offer: bool| {
            Html(pages::restore_form(
                &state.token,
                &snap,
                path.as_ref(),
                &to,
                Some((ok, text)),
                offer,
            ))
            .into_response()
        };
        if !to.starts_with('/') {
            return Ok(page(
                false,
                "Give the directory as an absolute path (starting with /).",
                false,
            ));
        }
        let opts = RestoreOptions {
            set: state.opts.set.clone(),
            snapshot: Which::Named(snap.name),
            to: PathBuf::from(&to),
            paths: path.iter().cloned().collect(),
            overwrite,
            progress: false,
        };
        Ok(match run(state, &opts) {
            Ok(text) => page(true, &text, false),
            Err(Error::Refused(why)) => page(
                false,
                &format!("{why}. Tick the box to replace them, or choose another directory."),
                true,
            ),
            Err(e) => page(false, &format!("Restore failed: {e}"), false),
        })
    })
    .await
}

/// Restores over a new session; says what was done, problems included.
fn run(state: &State, opts: &RestoreOptions) -> Result<String> {
    let session = (state.opts.connect)()?;
    let report = crate::restore::restore(session, opts)?;
    let mut text = format!(
        "Restored {} ({}) from {} into {}.",
        crate::output::entries(report.entries),
        pages::human(report.bytes),
        report.snapshot,
        opts.to.display()
    );
    for p in &report.problems {
        text.push('\n');
        text.push_str(p);
    }
    Ok(text)
}
