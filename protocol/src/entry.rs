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

impl Meta {
    /// Permission bits `mode`, owned by root, modified at the epoch (what
    /// a record made by hand starts from).
    pub const fn with_mode(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
        }
    }
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
    /// Another name of a file recorded earlier in the same snapshot (a hard
    /// link in the source): same inode, content and metadata as `target`.
    HardLink {
        /// The first name of the file, earlier in walk order.
        target: RelPath,
    },
    /// A named pipe.
    Fifo,
    /// A Unix domain socket (recorded so a restore can recreate the name).
    Socket,
    /// A character or block device node.
    Device {
        /// Block device (else character device).
        block: bool,
        /// Its device number, as `st_rdev`.
        rdev: u64,
    },
}

impl EntryKind {
    /// A short word for messages: `dir`, `file`, `symlink`, ...
    pub fn word(&self) -> &'static str {
        match self {
            EntryKind::Dir => "dir",
            EntryKind::File { .. } => "file",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::HardLink { .. } => "hard link",
            EntryKind::Fifo => "fifo",
            EntryKind::Socket => "socket",
            EntryKind::Device { block: true, .. } => "block device",
            EntryKind::Device { block: false, .. } => "char device",
        }
    }

    /// Whether it is a FIFO, socket or device: recorded in the manifest,
    /// never made on the backup host (a device node there would open the
    /// host's own devices), made again by a restore.
    pub fn is_special(&self) -> bool {
        matches!(
            self,
            EntryKind::Fifo | EntryKind::Socket | EntryKind::Device { .. }
        )
    }
}

/// Most extended attributes one entry may carry.
pub const MAX_XATTRS: usize = 128;
/// Longest extended attribute value accepted (Linux's own limit).
pub const MAX_XATTR_VALUE: usize = 64 * 1024;
/// Most bytes of names and values one entry's extended attributes may
/// hold, so that every entry fits a manifest record.
pub const MAX_XATTR_TOTAL: usize = 256 * 1024;
/// Longest symlink target accepted (Linux's is 4 KiB).
pub const MAX_LINK_TARGET: usize = 64 * 1024;
/// The namespace of the extended attributes recorded: the user's own. The
/// others belong to the system (ACLs, capabilities, security labels) and
/// are neither readable nor settable by every user.
pub const XATTR_NAMESPACE: &[u8] = b"user.";

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Xattr {
    /// Its full name, e.g. `user.comment`.
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// Its value, raw bytes.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// Why a list of extended attributes is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XattrError {
    /// More than [`MAX_XATTRS`].
    #[error("more than {MAX_XATTRS} extended attributes")]
    TooMany,
    /// Outside the `user.` namespace, empty, too long or holding a NUL.
    #[error("extended attribute name {0:?} is not a user attribute name")]
    Name(String),
    /// A value over [`MAX_XATTR_VALUE`] bytes.
    #[error("extended attribute {0:?} has a value over {MAX_XATTR_VALUE} bytes")]
    Value(String),
    /// Not sorted by name, or a name twice.
    #[error("extended attributes not sorted by name, or one named twice")]
    Order,
    /// More than [`MAX_XATTR_TOTAL`] bytes in all.
    #[error("extended attributes of more than {MAX_XATTR_TOTAL} bytes in all")]
    Total,
}

/// Checks a list of extended attributes as recorded: user names only, of
/// at most 255 bytes without NUL, values within Linux's limit, sorted by
/// name without repeats.
pub fn check_xattrs(xattrs: &[Xattr]) -> Result<(), XattrError> {
    if xattrs.len() > MAX_XATTRS {
        return Err(XattrError::TooMany);
    }
    if xattrs
        .iter()
        .map(|x| x.name.len() + x.value.len())
        .sum::<usize>()
        > MAX_XATTR_TOTAL
    {
        return Err(XattrError::Total);
    }
    for (i, x) in xattrs.iter().enumerate() {
        let show = || String::from_utf8_lossy(&x.name).into_owned();
        if !x.name.starts_with(XATTR_NAMESPACE)
            || x.name.len() == XATTR_NAMESPACE.len()
            || x.name.len() > 255
            || x.name.contains(&0)
        {
            return Err(XattrError::Name(show()));
        }
        if x.value.len() > MAX_XATTR_VALUE {
            return Err(XattrError::Value(show()));
        }
        if i > 0 && xattrs[i - 1].name >= x.name {
            return Err(XattrError::Order);
        }
    }
    Ok(())
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
    /// Extended attributes in the `user.` namespace, sorted by name.
    pub xattrs: Vec<Xattr>,
}

impl Entry {
    /// An entry without extended attributes.
    pub fn new(path: RelPath, kind: EntryKind, meta: Meta) -> Entry {
        Entry {
            path,
            kind,
            meta,
            xattrs: Vec::new(),
        }
    }

    /// Checks what a peer cannot be trusted with: a hard link's target
    /// must come earlier in walk order, a symlink's target must be at most
    /// [`MAX_LINK_TARGET`] bytes, and the extended attributes must pass
    /// [`check_xattrs`] (so that every entry fits a manifest record).
    pub fn check(&self) -> Result<(), String> {
        if let EntryKind::Symlink { target } = &self.kind
            && target.len() > MAX_LINK_TARGET
        {
            return Err(format!(
                "{}: a symlink target of {} bytes",
                self.path,
                target.len()
            ));
        }
        if let EntryKind::HardLink { target } = &self.kind
            && target.walk_cmp(&self.path) != std::cmp::Ordering::Less
        {
            return Err(format!(
                "{}: a hard link to {target}, which does not come before it",
                self.path
            ));
        }
        check_xattrs(&self.xattrs).map_err(|e| format!("{}: {e}", self.path))
    }

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
