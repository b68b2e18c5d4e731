//! A hash table in an unlinked temporary file, for what `verify` must
//! remember about every inode or hard-link target it meets: fixed-size
//! keys (a BLAKE3 of what is looked up) and values, read and written with
//! positioned I/O, so its memory does not grow with how many it holds.
//!
//! Layout: a power of two of 80-byte slots (a state byte, 7 zero bytes,
//! the 32-byte key, the 40-byte value), open addressing with linear
//! probing from the slot the key's first 8 bytes name. The table doubles
//! (into a new file) before it is half full. Unused slots are holes of the
//! sparse file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A key: a hash of what is looked up.
pub type Key = [u8; 32];
/// A value.
pub type Value = [u8; 40];

const SLOT: usize = 80;
const FIRST_SLOTS: u64 = 1024;
/// Slots read at a time while the table grows.
const BATCH: usize = 4096;
const EMPTY: u8 = 0;
const USED: u8 = 1;

/// See the module documentation.
pub struct DiskMap {
    file: File,
    slots: u64,
    len: u64,
}

impl DiskMap {
    /// An empty table.
    pub fn new() -> io::Result<DiskMap> {
        DiskMap::with_slots(FIRST_SLOTS)
    }

    fn with_slots(slots: u64) -> io::Result<DiskMap> {
        let file = tempfile::tempfile()?;
        file.set_len(slots * SLOT as u64)?;
        Ok(DiskMap {
            file,
            slots,
            len: 0,
        })
    }

    /// The key for `bytes`.
    pub fn key(bytes: &[u8]) -> Key {
        *blake3::hash(bytes).as_bytes()
    }

    /// How many keys it holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value stored for `key`.
    pub fn get(&self, key: &Key) -> io::Result<Option<Value>> {
        let (_, slot) = self.find(key)?;
        Ok((slot[0] == USED).then(|| value_of(&slot)))
    }

    /// Stores `value` for `key`, replacing what was there.
    pub fn insert(&mut self, key: &Key, value: &Value) -> io::Result<()> {
        if (self.len + 1) * 2 > self.slots {
            self.grow()?;
        }
        let (at, slot) = self.find(key)?;
        if slot[0] != USED {
            self.len += 1;
        }
        self.file
            .write_all_at(&encode(key, value), at * SLOT as u64)
    }

    /// The slot holding `key`, or the empty one where it would go.
    fn find(&self, key: &Key) -> io::Result<(u64, [u8; SLOT])> {
        let mut at = home(key, self.slots);
        let mut slot = [0u8; SLOT];
        loop {
            self.file.read_exact_at(&mut slot, at * SLOT as u64)?;
            if slot[0] == EMPTY || slot[8..40] == key[..] {
                return Ok((at, slot));
            }
            at = (at + 1) & (self.slots - 1);
        }
    }

    /// Moves everything into a table twice the size.
    fn grow(&mut self) -> io::Result<()> {
        let mut bigger = DiskMap::with_slots(self.slots * 2)?;
        let mut buf = vec![0u8; BATCH * SLOT];
        let mut done = 0u64;
        while done < self.slots {
            let n = (self.slots - done).min(BATCH as u64) as usize;
            let chunk = &mut buf[..n * SLOT];
            self.file.read_exact_at(chunk, done * SLOT as u64)?;
            for slot in chunk.chunks_exact(SLOT) {
                if slot[0] == USED {
                    let mut key = [0u8; 32];
                    key.copy_from_slice(&slot[8..40]);
                    bigger.insert(&key, &value_of(slot))?;
                }
            }
            done += n as u64;
        }
        *self = bigger;
        Ok(())
    }
}

fn home(key: &Key, slots: u64) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key[..8]);
    u64::from_le_bytes(first) & (slots - 1)
}

fn encode(key: &Key, value: &Value) -> [u8; SLOT] {
    let mut slot = [0u8; SLOT];
    slot[0] = USED;
    slot[8..40].copy_from_slice(key);
    slot[40..].copy_from_slice(value);
    slot
}

fn value_of(slot: &[u8]) -> Value {
    let mut v = [0u8; 40];
    v.copy_from_slice(&slot[40..SLOT]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_stored_is_found_across_growth_and_nothing_else() -> io::Result<()> {
        let mut map = DiskMap::new()?;
        let value = |i: u32| {
            let mut v = [0u8; 40];
            v[..4].copy_from_slice(&i.to_le_bytes());
            v
        };
        for i in 0..5000u32 {
            map.insert(&DiskMap::key(&i.to_le_bytes()), &value(i))?;
        }
        // Replacing does not add.
        map.insert(&DiskMap::key(&7u32.to_le_bytes()), &value(70))?;
        assert_eq!(map.len(), 5000);
        for i in 0..5000u32 {
            let want = if i == 7 { value(70) } else { value(i) };
            assert_eq!(map.get(&DiskMap::key(&i.to_le_bytes()))?, Some(want));
        }
        for i in 5000..6000u32 {
            assert_eq!(map.get(&DiskMap::key(&i.to_le_bytes()))?, None);
        }
        Ok(())
    }
}
