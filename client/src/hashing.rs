//! BLAKE3 on a second core: a large file's content is hashed by a thread of
//! its own while the sending thread reads, diffs and sends it.

use std::sync::mpsc;
use std::thread::JoinHandle;

use offsnap_protocol::Hash;

/// Chunks in flight to the hashing thread (each a few hundred KiB to a
/// few MiB): enough to keep it busy, little memory.
const QUEUE: usize = 4;

/// Hashes what it is given, in order, on its own thread (or on the
/// caller's, if no thread could be started).
pub enum BackgroundHasher {
    /// Hashing on a thread of its own.
    Thread {
        /// Chunks to hash.
        tx: mpsc::SyncSender<Vec<u8>>,
        /// The thread, which returns its hasher.
        thread: JoinHandle<blake3::Hasher>,
    },
    /// Hashing on the caller's thread.
    Inline(Box<blake3::Hasher>),
}

impl BackgroundHasher {
    /// Starts the thread.
    pub fn new() -> BackgroundHasher {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("hash".into())
            .spawn(move || {
                let mut h = blake3::Hasher::new();
                for chunk in rx {
                    h.update(&chunk);
                }
                h
            });
        match spawned {
            Ok(thread) => BackgroundHasher::Thread { tx, thread },
            Err(_) => BackgroundHasher::Inline(Box::default()),
        }
    }

    /// Hashes `data` next.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            // A send fails only if the thread is gone; `finish` says so.
            BackgroundHasher::Thread { tx, .. } => {
                let _ = tx.send(data.to_vec());
            }
            BackgroundHasher::Inline(h) => {
                h.update(data);
            }
        }
    }

    /// The hash of everything given.
    pub fn finish(self) -> Result<Hash, String> {
        match self {
            BackgroundHasher::Thread { tx, thread } => {
                drop(tx);
                thread
                    .join()
                    .map(|h| Hash::from(h.finalize()))
                    .map_err(|_| "the hashing thread failed".to_string())
            }
            BackgroundHasher::Inline(h) => Ok(Hash::from(h.finalize())),
        }
    }
}

impl Default for BackgroundHasher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_like_blake3() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut h = BackgroundHasher::new();
        for chunk in data.chunks(100_003) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), Ok(Hash::of(&data)));
    }
}
