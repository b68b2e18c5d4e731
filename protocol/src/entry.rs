//! What a snapshot records about each file, directory and link.

use serde::{Deserialize, Serialize};

use crate::path::RelPath;

/// A BLAKE3 digest of a file's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Hash {
        Hash(*blake3::hash(data).as_bytes())
    }

    /// Lowercase hex, all 64 digits.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl From<blake3::Hash> for Hash {
    fn from(h: blake3::Hash) -> Hash {
        Hash(*h.as_bytes())
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex()[..16])
    }
}

/// Metadata common to every kind of entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Permission bits, including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime_sec: i64,
    /// Modification time, nanoseconds within the second.
    pub mtime_nsec: u32,
}

/// The kind of an entry, with what that kind carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes whose content hashes to `hash`.
    File {
        /// Length in bytes.
        size: u64,
        /// BLAKE3 of the content.
        hash: Hash,
    },
    /// A symbolic link; its target is data, never followed.
    Symlink {
        /// The link's target, raw bytes.
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
}

impl EntryKind {
    /// A short word for messages: `dir`, `file`, `symlink`.
    pub fn word(&self) -> &'static str {
        match self {
            EntryKind::Dir => "dir",
            EntryKind::File { .. } => "file",
            EntryKind::Symlink { .. } => "symlink",
        }
    }
}

/// One entry of a snapshot: where it is, what it is, and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the snapshot's root.
    pub path: RelPath,
    /// Kind and kind-specific data.
    pub kind: EntryKind,
    /// Mode, owner and mtime.
    pub meta: Meta,
}

impl Entry {
    /// Whether the entry is a regular file.
    pub fn is_file(&self) -> bool {
        matches!(self.kind, EntryKind::File { .. })
    }

    /// Its size for a file, 0 otherwise.
    pub fn size(&self) -> u64 {
        match self.kind {
            EntryKind::File { size, .. } => size,
            _ => 0,
        }
    }
}
