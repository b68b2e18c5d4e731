//! The content index: which contents are already on the host, as this run
//! knows them (the base snapshot's files, what an interrupted run
//! finished, and what this run sent whole). A new or changed file whose
//! content is listed travels as a link by content instead of its bytes.
//! The hashes are kept in scratch files, not in memory: the base snapshot
//! may hold millions of files. Listed contents are appended to a file
//! first; the first lookup places them in a table ([`offsnap_fs::table`]),
//! so a run with no new or changed file (nothing to look up) pays 16
//! bytes of sequential write per file, not the table's passes.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};

use offsnap_fs::table::GrowingTable;
use offsnap_protocol::Hash;

use crate::error::Result;
use crate::manifests::{self, scratch_error};

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
#[derive(Debug, Default)]
pub struct ContentIndex {
    /// Keys listed before any lookup, in a scratch file.
    listed: Option<BufWriter<File>>,
    /// The table, from the first lookup on.
    hashes: Option<GrowingTable>,
    /// Sizes of the large stored files: a large file can only match stored
    /// content of its own size, so others skip the hashing pass.
    sizes: HashSet<u64>,
}

impl ContentIndex {
    /// Lists a content of `size` bytes as stored.
    pub fn insert(&mut self, hash: &Hash, size: u64) -> Result<()> {
        let key = content_key(hash);
        match (&mut self.hashes, &mut self.listed) {
            (Some(table), _) => table.add(key, 0),
            (None, Some(file)) => file.write_all(&key.to_le_bytes()),
            (None, None) => manifests::scratch_file().and_then(|f| {
                self.listed
                    .insert(BufWriter::new(f))
                    .write_all(&key.to_le_bytes())
            }),
        }
        .map_err(scratch_error)?;
        if size > IN_MEMORY {
            self.sizes.insert(size);
        }
        Ok(())
    }

    /// Whether the content is stored.
    pub fn contains(&mut self, hash: &Hash) -> Result<bool> {
        let table = match &mut self.hashes {
            Some(t) => t,
            None => {
                let t = table_of(self.listed.take()).map_err(scratch_error)?;
                self.hashes.insert(t)
            }
        };
        let found = table.get(content_key(hash)).map_err(scratch_error)?;
        Ok(found.is_some())
    }

    /// Whether a file of `size` bytes may match a stored content: small
    /// ones always may (they are hashed anyway), large ones only when a
    /// stored file has their size.
    pub fn may_match(&self, size: u64) -> bool {
        size <= IN_MEMORY || self.sizes.contains(&size)
    }
}

/// A table of the keys listed in `listed`, whose file is then dropped.
fn table_of(listed: Option<BufWriter<File>>) -> std::io::Result<GrowingTable> {
    let mut table = GrowingTable::new(manifests::scratch_file)?;
    let Some(listed) = listed else {
        return Ok(table);
    };
    let mut file = listed.into_inner().map_err(|e| e.into_error())?;
    file.rewind()?;
    let mut read = BufReader::with_capacity(64 << 10, file);
    let mut key = [0u8; 16];
    loop {
        match read.read_exact(&mut key) {
            Ok(()) => table.add(u128::from_le_bytes(key), 0)?,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(table),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_content_is_found_by_its_hash() -> Result<()> {
        let mut index = ContentIndex::default();
        let h = |i: u32| Hash(*blake3::hash(&i.to_le_bytes()).as_bytes());
        // Listed before the first lookup, then after it.
        for i in 0..50_000 {
            index.insert(&h(i), 1)?;
        }
        assert!(index.contains(&h(7))?);
        assert!(!index.contains(&h(100_000))?);
        for i in 50_000..60_000 {
            index.insert(&h(i), 1)?;
        }
        for i in (0..60_000).step_by(97) {
            assert!(index.contains(&h(i))?, "{i}");
        }
        assert!(!index.contains(&h(60_000))?);
        Ok(())
    }

    #[test]
    fn only_large_sizes_are_remembered() -> Result<()> {
        let mut index = ContentIndex::default();
        let h = Hash([7; 32]);
        index.insert(&h, IN_MEMORY + 10)?;
        index.insert(&h, 100)?;
        assert!(index.may_match(100), "small files are always hashed");
        assert!(index.may_match(IN_MEMORY + 10));
        assert!(!index.may_match(IN_MEMORY + 11));
        Ok(())
    }
}
