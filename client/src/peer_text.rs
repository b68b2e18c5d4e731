//! The helper's text, made safe to print before anything else sees it:
//! every message, warning, finding and prune reason a helper sends has its
//! control characters escaped (see [`offsnap_protocol::text`]), so a
//! hostile or broken helper cannot drive the user's terminal.

use offsnap_protocol::text::escaped;
use offsnap_protocol::{FindingKind, Response};

fn clean_string(s: &mut String) {
    if let std::borrow::Cow::Owned(e) = escaped(s) {
        *s = e;
    }
}

/// `r` with its text escaped.
pub fn clean(mut r: Response) -> Response {
    match &mut r {
        Response::Error(e) => clean_string(&mut e.message),
        Response::Warning(w) => clean_string(w),
        Response::Finding(f) => match &mut f.kind {
            FindingKind::Changed(why) | FindingKind::Manifest(why) => clean_string(why),
            FindingKind::Missing | FindingKind::Unexpected => {}
        },
        Response::Pruned(decisions) => {
            for d in decisions {
                d.kept_by.iter_mut().for_each(clean_string);
            }
        }
        _ => {}
    }
    r
}
