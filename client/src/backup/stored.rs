//! The content index: which contents are already on the host, as this run
//! knows them (the base snapshot's files, what an interrupted run
//! finished, and what this run sent whole). A new or changed file whose
//! content is listed travels as a link by content instead of its bytes.
//! The hashes are kept in a scratch file ([`offsnap_fs::table`]), not in
//! memory: the base snapshot may hold millions of files.

use std::collections::HashSet;

use offsnap_fs::table::GrowingTable;
use offsnap_protocol::Hash;

use crate::error::{Error, Result};
use crate::manifests;

/// Files up to this size are read once into memory, hashed, then sent from
/// there; larger ones are hashed in one pass and sent in a second.
pub const IN_MEMORY: u64 = 4 << 20;

/// The key a content is known by in the index: the first 128 bits of its
/// BLAKE3, half the memory of the whole hash per file (the index holds one
/// per file of the base snapshot), with collisions no likelier than
/// forgery.
fn content_key(hash: &Hash) -> u128 {
    let mut k = [0u8; 16];
    k.copy_from_slice(&hash.0[..16]);
    u128::from_le_bytes(k)
}

/// The contents on the host, and the sizes of the large ones.
#[derive(Debug)]
pub struct ContentIndex {
    hashes: GrowingTable,
    /// Sizes of the large stored files: a large file can only match stored
    /// content of its own size, so others skip the hashing pass.
    sizes: HashSet<u64>,
}

/// A failure of the index's scratch file.
fn scratch_error(e: std::io::Error) -> Error {
    Error::io(manifests::scratch_dir(), e)
}

impl ContentIndex {
    /// An empty index, in scratch files (see [`manifests::scratch_file`]).
    pub fn new() -> Result<ContentIndex> {
        Ok(ContentIndex {
            hashes: GrowingTable::new(manifests::scratch_file).map_err(scratch_error)?,
            sizes: HashSet::new(),
        })
    }

    /// Lists a content of `size` bytes as stored.
    pub fn insert(&mut self, hash: &Hash, size: u64) -> Result<()> {
        self.hashes
            .add(content_key(hash), 0)
            .map_err(scratch_error)?;
        if size > IN_MEMORY {
            self.sizes.insert(size);
        }
        Ok(())
    }

    /// Whether the content is stored.
    pub fn contains(&self, hash: &Hash) -> Result<bool> {
        let found = self.hashes.get(content_key(hash)).map_err(scratch_error)?;
        Ok(found.is_some())
    }

    /// Whether a file of `size` bytes may match a stored content: small
    /// ones always may (they are hashed anyway), large ones only when a
    /// stored file has their size.
    pub fn may_match(&self, size: u64) -> bool {
        size <= IN_MEMORY || self.sizes.contains(&size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_content_is_found_by_its_hash() -> Result<()> {
        let mut index = ContentIndex::new()?;
        let a = Hash(*blake3::hash(b"a").as_bytes());
        let b = Hash(*blake3::hash(b"b").as_bytes());
        index.insert(&a, 1)?;
        assert!(index.contains(&a)?);
        assert!(!index.contains(&b)?);
        Ok(())
    }

    #[test]
    fn only_large_sizes_are_remembered() -> Result<()> {
        let mut index = ContentIndex::new()?;
        let h = Hash([7; 32]);
        index.insert(&h, IN_MEMORY + 10)?;
        index.insert(&h, 100)?;
        assert!(index.may_match(100), "small files are always hashed");
        assert!(index.may_match(IN_MEMORY + 10));
        assert!(!index.may_match(IN_MEMORY + 11));
        Ok(())
    }
}
