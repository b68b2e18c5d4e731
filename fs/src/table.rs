//! A hash table of 128-bit keys and 64-bit values kept in a file, read and
//! written with positioned reads and writes, so that its size is the
//! kernel's page cache's business and not the process's memory: an index
//! of a million contents costs a few kilobytes of RAM.
//!
//! Open addressing with linear probing over slots of 24 bytes: the key
//! (stored with its lowest bit set, so that zero marks an empty slot: keys
//! that differ only in that bit are one key here), then the value; both
//! little-endian. A key's home slot is its high 64 bits modulo the slot
//! count, a power of two. Keys are meant to be hash prefixes (uniform).
//!
//! - [`Table`]: a fixed slot count at an offset of a file (the helper's
//!   index of a base snapshot is one, in front of its path records).
//! - [`GrowingTable`]: a table in a temporary file that doubles as it
//!   fills, like a `HashMap`; [`GrowingTable::get`] finds the first value
//!   added under a key.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes per slot.
pub const SLOT: u64 = 24;
/// Slots read at once while probing (192 bytes).
const PROBE: u64 = 8;
/// Slots read and written at once while placing a batch (96 KiB).
const WINDOW: u64 = 4096;

/// The key as stored: never zero.
fn stored(key: u128) -> u128 {
    key | 1
}

/// The key and value of slot `i` of `buf` (key 0: empty).
fn slot(buf: &[u8], i: u64) -> (u128, u64) {
    let at = (i * SLOT) as usize;
    let mut k = [0u8; 16];
    k.copy_from_slice(&buf[at..at + 16]);
    let mut v = [0u8; 8];
    v.copy_from_slice(&buf[at + 16..at + 24]);
    (u128::from_le_bytes(k), u64::from_le_bytes(v))
}

fn set_slot(buf: &mut [u8], i: u64, key: u128, value: u64) {
    let at = (i * SLOT) as usize;
    buf[at..at + 16].copy_from_slice(&key.to_le_bytes());
    buf[at + 16..at + 24].copy_from_slice(&value.to_le_bytes());
}

/// A table of a fixed number of slots (see the module documentation).
#[derive(Debug)]
pub struct Table {
    file: File,
    /// Where slot 0 is in the file.
    base: u64,
    slots: u64,
}

impl Table {
    /// An empty table of `slots` slots (a power of two) at `base` in
    /// `file`, which is extended (with zeros, that is empty slots) to hold
    /// it.
    pub fn create(file: File, base: u64, slots: u64) -> io::Result<Table> {
        if !slots.is_power_of_two() {
            return Err(io::Error::other("a table's slot count is a power of two"));
        }
        file.set_len(base + slots * SLOT)?;
        Ok(Table { file, base, slots })
    }

    /// The table of `slots` slots at `base` in `file`, as written before;
    /// `None` unless `slots` is a power of two.
    pub fn open(file: File, base: u64, slots: u64) -> Option<Table> {
        slots
            .is_power_of_two()
            .then_some(Table { file, base, slots })
    }

    fn home(&self, key: u128) -> u64 {
        ((key >> 64) as u64) & (self.slots - 1)
    }

    /// Reads slots `from..from + n` (not past the end) into `buf`.
    fn read(&self, buf: &mut [u8], from: u64, n: u64) -> io::Result<()> {
        let len = (n * SLOT) as usize;
        self.file
            .read_exact_at(&mut buf[..len], self.base + from * SLOT)
    }

    /// Walks the probe sequence of `key` and calls `visit` with the index
    /// and content of each slot up to and including the first empty one,
    /// until `visit` returns a value.
    fn probe<T>(
        &self,
        key: u128,
        mut visit: impl FnMut(u64, u128, u64) -> io::Result<Option<T>>,
    ) -> io::Result<Option<T>> {
        let mut buf = [0u8; (PROBE * SLOT) as usize];
        let mut i = self.home(key);
        let mut seen = 0;
        while seen < self.slots {
            let n = PROBE.min(self.slots - i);
            self.read(&mut buf, i, n)?;
            for j in 0..n {
                let (k, v) = slot(&buf, j);
                if let Some(t) = visit(i + j, k, v)? {
                    return Ok(Some(t));
                }
                if k == 0 {
                    return Ok(None);
                }
            }
            seen += n;
            i = (i + n) & (self.slots - 1);
        }
        Ok(None)
    }

    /// The first value stored under `key` (in probe order) that `accept`
    /// takes; the owner of a table with repeated keys checks each value
    /// against what it stands for.
    pub fn find(
        &self,
        key: u128,
        mut accept: impl FnMut(u64) -> io::Result<bool>,
    ) -> io::Result<Option<u64>> {
        let want = stored(key);
        self.probe(key, |_, k, v| Ok((k == want && accept(v)?).then_some(v)))
    }

    /// The first value stored under `key`.
    pub fn get(&self, key: u128) -> io::Result<Option<u64>> {
        self.find(key, |_| Ok(true))
    }

    /// Stores a batch of `(key, value)` (repeated keys too: of equal homes,
    /// the earlier in the batch comes first in probe order) and empties
    /// it. Sorted by home, the batch goes through the table in windows,
    /// each read and written once: this is for batches dense in the table
    /// (building it, doubling it), where one write per slot would cost a
    /// system call each.
    pub fn place(&self, batch: &mut Vec<(u128, u64)>) -> io::Result<()> {
        let mut homed: Vec<(u64, u128, u64)> = batch
            .drain(..)
            .map(|(k, v)| (self.home(k), stored(k), v))
            .collect();
        homed.sort_by_key(|b| b.0);
        let Some(first) = homed.first() else {
            return Ok(());
        };
        let mut start = first.0 / WINDOW * WINDOW;
        let mut window = vec![0u8; (WINDOW.min(self.slots) * SLOT) as usize];
        let mut carry: Vec<(u128, u64)> = Vec::new();
        let mut rest = &homed[..];
        loop {
            let len = WINDOW.min(self.slots - start);
            self.read(&mut window, start, len)?;
            let n = rest.iter().take_while(|b| b.0 < start + len).count();
            let mut next = Vec::new();
            let from_carry = carry.drain(..).map(|(k, v)| (start, k, v));
            for (h, k, v) in from_carry.chain(rest[..n].iter().copied()) {
                match (h - start..len).find(|&i| slot(&window, i).0 == 0) {
                    Some(i) => set_slot(&mut window, i, k, v),
                    None => next.push((k, v)),
                }
            }
            let bytes = (len * SLOT) as usize;
            self.file
                .write_all_at(&window[..bytes], self.base + start * SLOT)?;
            rest = &rest[n..];
            carry = next;
            if start + len == self.slots {
                break;
            }
            start = match (carry.is_empty(), rest.first()) {
                (false, _) => start + len,
                (true, Some(b)) => b.0 / WINDOW * WINDOW,
                (true, None) => break,
            };
        }
        // Probes that ran past the table's end go on from its start.
        for (k, v) in carry {
            self.place_from(0, k, v)?;
        }
        Ok(())
    }

    /// Stores a stored-form key in the first empty slot from `i` on.
    fn place_from(&self, mut i: u64, key: u128, value: u64) -> io::Result<()> {
        let mut buf = [0u8; SLOT as usize];
        for _ in 0..self.slots {
            self.file.read_exact_at(&mut buf, self.base + i * SLOT)?;
            if slot(&buf, 0).0 == 0 {
                set_slot(&mut buf, 0, key, value);
                return self.file.write_all_at(&buf, self.base + i * SLOT);
            }
            i = (i + 1) & (self.slots - 1);
        }
        Err(io::Error::other("the table is full"))
    }

    /// Calls `f` with every stored `(key, value)`, a window at a time, in
    /// slot order.
    fn each_window(&self, mut f: impl FnMut(&[(u128, u64)]) -> io::Result<()>) -> io::Result<()> {
        let mut window = vec![0u8; (WINDOW.min(self.slots) * SLOT) as usize];
        let mut found = Vec::new();
        let mut start = 0;
        while start < self.slots {
            let len = WINDOW.min(self.slots - start);
            self.read(&mut window, start, len)?;
            found.clear();
            found.extend((0..len).map(|i| slot(&window, i)).filter(|s| s.0 != 0));
            f(&found)?;
            start += len;
        }
        Ok(())
    }
}

/// Slots a growing table starts with.
const FIRST_SLOTS: u64 = 1024;
/// Keys a growing table holds in memory before placing them in its file
/// in one pass (about 1.6 MiB): one small write per key costs the page
/// cache's write path each time, 27% of a no-change run's client time at
/// a million files.
const PENDING: usize = 1 << 15;

/// A table in a temporary file that doubles when half full (see the
/// module documentation).
pub struct GrowingTable {
    /// Makes the file of the next, twice as large table.
    make: Box<dyn FnMut() -> io::Result<File> + Send>,
    table: Table,
    /// Keys in the file.
    placed: u64,
    /// Keys (stored form) not placed in the file yet.
    pending: HashMap<u128, u64>,
}

impl std::fmt::Debug for GrowingTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrowingTable")
            .field("table", &self.table)
            .field("placed", &self.placed)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl GrowingTable {
    /// An empty table in files made by `make` (empty, read-write; meant to
    /// be unlinked already, so nothing is left to clear up).
    pub fn new(mut make: impl FnMut() -> io::Result<File> + Send + 'static) -> io::Result<Self> {
        let table = Table::create(make()?, 0, FIRST_SLOTS)?;
        Ok(GrowingTable {
            make: Box::new(make),
            table,
            placed: 0,
            pending: HashMap::new(),
        })
    }

    /// How many keys it holds (a key added twice counts twice).
    fn len(&self) -> u64 {
        self.placed + self.pending.len() as u64
    }

    /// The value stored under `key` (the file's first, which is older than
    /// any pending one).
    pub fn get(&self, key: u128) -> io::Result<Option<u64>> {
        match self.table.get(key)? {
            Some(v) => Ok(Some(v)),
            None => Ok(self.pending.get(&stored(key)).copied()),
        }
    }

    /// Stores `value` under `key` without looking in the file: a key added
    /// again costs a slot and [`GrowingTable::get`] still finds its first
    /// value. An owner that must not add a key twice asks `get` first (one
    /// read: 4% of a no-change run's samples at a million files, which a
    /// set need not pay).
    pub fn add(&mut self, key: u128, value: u64) -> io::Result<()> {
        self.pending.entry(stored(key)).or_insert(value);
        if self.pending.len() >= PENDING {
            self.flush()?;
        }
        Ok(())
    }

    /// Places the pending keys, in a table grown first to keep it at most
    /// half full.
    fn flush(&mut self) -> io::Result<()> {
        let len = self.len();
        while len * 2 > self.table.slots {
            self.grow()?;
        }
        let mut batch: Vec<(u128, u64)> = self.pending.drain().collect();
        self.table.place(&mut batch)?;
        self.placed = len;
        Ok(())
    }

    /// Moves every placed key into a table of twice the slots. A window of
    /// the old table lands in two ranges of the new one (a key's home gains
    /// one bit), so placing it window by window reads and writes each part
    /// of the new table about once.
    fn grow(&mut self) -> io::Result<()> {
        let bigger = Table::create((self.make)()?, 0, self.table.slots * 2)?;
        let mut batch = Vec::with_capacity(WINDOW as usize);
        self.table.each_window(|found| {
            batch.extend_from_slice(found);
            bigger.place(&mut batch)
        })?;
        self.table = bigger;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(i: u64) -> u128 {
        u128::from_le_bytes(
            *blake3::hash(&i.to_le_bytes())
                .as_bytes()
                .first_chunk()
                .unwrap(),
        )
    }

    #[test]
    fn a_growing_table_finds_the_first_value_of_every_key() {
        let mut t = GrowingTable::new(tempfile::tempfile).unwrap();
        let n = 20_000 + PENDING as u64 * 3;
        for i in 0..20_000 {
            t.add(key(i), i).unwrap();
        }
        // Pending, in memory: found, and a second value does not replace it.
        for i in 0..20_000 {
            t.add(key(i), i + 1).unwrap();
            assert_eq!(t.get(key(i)).unwrap(), Some(i));
        }
        assert_eq!(t.get(key(n)).unwrap(), None);
        // Placed in the file, and found there, once enough are pending.
        for i in 20_000..n {
            t.add(key(i), i).unwrap();
        }
        assert!(t.placed >= PENDING as u64 * 3);
        // Added again once in the file: still found with the first value.
        for i in 0..PENDING as u64 * 2 {
            t.add(key(i), i + 7).unwrap();
        }
        assert!(t.table.slots >= t.len() * 2);
        for i in (0..n).step_by(7) {
            assert_eq!(t.get(key(i)).unwrap(), Some(i), "key {i}");
        }
        assert_eq!(t.get(key(n)).unwrap(), None);
    }

    #[test]
    fn a_batch_placed_by_windows_is_found_as_placed_one_by_one() {
        let slots = 4 * WINDOW;
        let t = Table::create(tempfile::tempfile().unwrap(), 40, slots).unwrap();
        // Runs of one home at a window's end (they spill into the next
        // window) and at the table's end (they wrap around), a key twice.
        let with_home = |home: u64, k: u64| (u128::from(home) << 64) | u128::from(k << 1);
        let mut batch = Vec::new();
        for (home, n) in [(WINDOW - 2, 5), (3 * WINDOW + 1, 3), (slots - 1, 4), (7, 2)] {
            for k in 0..n {
                batch.push((with_home(home, k), batch.len() as u64));
            }
        }
        batch.push((with_home(WINDOW - 2, 0), 999));
        let placed = batch.clone();
        t.place(&mut batch).unwrap();
        assert!(batch.is_empty());
        for &(k, _) in &placed {
            // The first of a key in the batch's order is found first.
            let first = placed.iter().find(|b| b.0 == k).map(|b| b.1);
            assert_eq!(t.get(k).unwrap(), first);
        }
        // Both values of the repeated key are there, in order.
        let mut seen = Vec::new();
        t.find(with_home(WINDOW - 2, 0), |v| {
            seen.push(v);
            Ok(false)
        })
        .unwrap();
        assert_eq!(seen, [0, 999]);
        // Nothing before the table's offset was touched.
        let mut head = [1u8; 40];
        t.file.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(head, [0u8; 40]);
    }

    #[test]
    fn a_full_table_says_so() {
        let t = Table::create(tempfile::tempfile().unwrap(), 0, 4).unwrap();
        t.place(&mut (0..4).map(|i| (key(i), i)).collect()).unwrap();
        assert!(t.place(&mut vec![(key(9), 9)]).is_err());
        assert_eq!(t.get(key(9)).unwrap(), None);
        assert_eq!(t.get(key(3)).unwrap(), Some(3));
    }
}
