//! Listing what a destination holds.

use offsnap_protocol::{Request, Response, SetName, SnapshotInfo};

use crate::error::{Error, Result};
use crate::session::Session;

/// The complete snapshots of a set, oldest first.
pub fn snapshots(session: &mut Session, set: &SetName) -> Result<Vec<SnapshotInfo>> {
    match session.call(&Request::ListSnapshots { set: set.clone() })? {
        Response::Snapshots(s) => Ok(s),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}
