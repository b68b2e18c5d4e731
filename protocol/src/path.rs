//! Validated relative paths of raw bytes, and the walk order they sort in.
//!
//! Every path that crosses the wire or sits in a manifest is a [`RelPath`]:
//! relative, made of non-empty components separated by single `/`, with no
//! `.` or `..` component and no NUL byte. Unix names need not be UTF-8, so a
//! path is bytes, not a `String`.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest path accepted, in bytes. Deep trees exceed `PATH_MAX` (4096) on
/// purpose: every file operation is relative to a directory handle.
pub const MAX_PATH_LEN: usize = 64 * 1024;

/// Why a byte string is not a valid [`RelPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("empty path")]
    Empty,
    /// The path starts with `/`.
    #[error("absolute path {0:?}")]
    Absolute(String),
    /// A component is empty (`a//b` or a trailing `/`).
    #[error("empty component in {0:?}")]
    EmptyComponent(String),
    /// A component is `.` or `..`.
    #[error("`.` or `..` component in {0:?}")]
    DotComponent(String),
    /// The path holds a NUL byte.
    #[error("NUL byte in {0:?}")]
    Nul(String),
    /// The path is longer than [`MAX_PATH_LEN`].
    #[error("path of {0} bytes is too long")]
    TooLong(usize),
    /// A single component is longer than 255 bytes.
    #[error("name of {0} bytes is too long")]
    NameTooLong(usize),
}

/// A validated relative path: see the module documentation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RelPath(Vec<u8>);

impl RelPath {
    /// Validates `bytes` as a relative path.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, PathError> {
        let bytes = bytes.into();
        validate(&bytes)?;
        Ok(RelPath(bytes))
    }

    /// Validates a single file name (one component, no `/`).
    pub fn name(bytes: impl Into<Vec<u8>>) -> Result<Self, PathError> {
        let bytes = bytes.into();
        if bytes.contains(&b'/') {
            return Err(if bytes.first() == Some(&b'/') {
                PathError::Absolute(show(&bytes))
            } else {
                PathError::EmptyComponent(show(&bytes))
            });
        }
        Self::new(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path as an `OsStr`, for joining onto a local directory.
    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    /// Its components, first to last.
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/')
    }

    /// The last component.
    pub fn file_name(&self) -> &[u8] {
        self.components().next_back().unwrap_or(&self.0)
    }

    /// The parent path, `None` for a single component.
    pub fn parent(&self) -> Option<RelPath> {
        let cut = self.0.iter().rposition(|&b| b == b'/')?;
        Some(RelPath(self.0[..cut].to_vec()))
    }

    /// `self/name`, validating `name` as a single component.
    pub fn join(&self, name: &[u8]) -> Result<RelPath, PathError> {
        let name = RelPath::name(name.to_vec())?;
        let mut bytes = Vec::with_capacity(self.0.len() + 1 + name.0.len());
        bytes.extend_from_slice(&self.0);
        bytes.push(b'/');
        bytes.extend_from_slice(&name.0);
        RelPath::new(bytes)
    }

    /// Whether `self` is `other` or lies inside it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        self.0.starts_with(&other.0)
            && (self.0.len() == other.0.len() || self.0[other.0.len()] == b'/')
    }

    /// Number of components.
    pub fn depth(&self) -> usize {
        self.0.iter().filter(|&&b| b == b'/').count() + 1
    }

    /// Compares in walk order: see [`walk_order`].
    pub fn walk_cmp(&self, other: &RelPath) -> Ordering {
        walk_order(&self.0, &other.0)
    }
}

/// The order of a depth-first walk whose siblings are sorted by name bytes:
/// component by component, so that `a/b` sorts before `a.txt`. Because no
/// name holds NUL, this is a byte comparison with `/` ranked lowest.
pub fn walk_order(a: &[u8], b: &[u8]) -> Ordering {
    let key = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.iter().map(key).cmp(b.iter().map(key))
}

/// A path as text for messages (controls escaped: see [`crate::text`]).
fn show(bytes: &[u8]) -> String {
    crate::text::shown(bytes)
}

fn validate(bytes: &[u8]) -> Result<(), PathError> {
    if bytes.is_empty() {
        return Err(PathError::Empty);
    }
    if bytes.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong(bytes.len()));
    }
    if bytes[0] == b'/' {
        return Err(PathError::Absolute(show(bytes)));
    }
    if bytes.contains(&0) {
        return Err(PathError::Nul(show(bytes)));
    }
    for comp in bytes.split(|&b| b == b'/') {
        match comp {
            b"" => return Err(PathError::EmptyComponent(show(bytes))),
            b"." | b".." => return Err(PathError::DotComponent(show(bytes))),
            c if c.len() > 255 => return Err(PathError::NameTooLong(c.len())),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&show(&self.0))
    }
}

impl Serialize for RelPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        RelPath::new(bytes.into_vec()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_could_escape() {
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"..",
            b"../x",
            b"a/../b",
            b"a/./b",
            b".",
            b"a//b",
            b"a/",
            b"a\0b",
        ] {
            assert!(RelPath::new(bad.to_vec()).is_err(), "{bad:?} accepted");
        }
        assert!(RelPath::new(vec![b'x'; 256]).is_err());
    }

    #[test]
    fn accepts_odd_but_valid_names() {
        for good in [
            &b"a"[..],
            b"a/b",
            b"-rf",
            b"with space/new\nline",
            b"\xff\xfe",
            b"...",
            b".hidden/..x",
        ] {
            assert!(RelPath::new(good.to_vec()).is_ok(), "{good:?} rejected");
        }
    }

    #[test]
    fn walk_order_is_component_wise() {
        assert_eq!(walk_order(b"a/b", b"a.txt"), Ordering::Less);
        assert_eq!(walk_order(b"a", b"a/b"), Ordering::Less);
        assert_eq!(walk_order(b"a/z", b"ab"), Ordering::Less);
        assert_eq!(walk_order(b"b", b"a/z"), Ordering::Greater);
    }

    #[test]
    fn parent_join_and_prefix() -> Result<(), PathError> {
        let p = RelPath::new(b"a/b/c".to_vec())?;
        assert_eq!(p.parent(), Some(RelPath::new(b"a/b".to_vec())?));
        assert_eq!(p.file_name(), b"c");
        assert_eq!(p.depth(), 3);
        let a = RelPath::new(b"a".to_vec())?;
        assert!(p.starts_with(&a));
        assert!(!RelPath::new(b"ab".to_vec())?.starts_with(&a));
        assert_eq!(a.join(b"x")?, RelPath::new(b"a/x".to_vec())?);
        assert!(a.join(b"..").is_err());
        assert!(a.join(b"x/y").is_err());
        Ok(())
    }
}
