//! The manifest reader over an arbitrary file: every entry it yields must
//! come in strictly increasing walk order, an error must end the stream,
//! and a manifest read cleanly to its end must write back to the same
//! entries.
//!
//! Input: a mode byte, then either (bit 0 clear) the whole manifest file,
//! or (bit 0 set) the record stream before compression, which the target
//! wraps in a valid header, zstd stream and checksum so that mutations
//! reach the record decoder.

#![no_main]

use std::cmp::Ordering;

use libfuzzer_sys::fuzz_target;
use offsnap_protocol::Entry;
use offsnap_protocol::manifest::{
    MANIFEST_MAGIC, MANIFEST_VERSION, ManifestReader, ManifestWriter,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        wrap(rest)
    };
    let Some(entries) = read_all(&file) else {
        return;
    };
    for pair in entries.windows(2) {
        assert_eq!(pair[0].path.walk_cmp(&pair[1].path), Ordering::Less);
    }
    let mut w = ManifestWriter::new(Vec::new()).expect("writing to memory");
    for e in &entries {
        w.push(e)
            .expect("entries the reader accepted can be written");
    }
    let (bytes, hash, len) = w.finish().expect("writing to memory");
    assert_eq!(len, bytes.len() as u64);
    assert_eq!(hash.0, *blake3::hash(&bytes[..bytes.len() - 32]).as_bytes());
    assert_eq!(
        read_all(&bytes).as_ref(),
        Some(&entries),
        "written back differently"
    );
});

/// A manifest file around an uncompressed record stream.
fn wrap(records: &[u8]) -> Vec<u8> {
    let mut out = MANIFEST_MAGIC.to_vec();
    out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
    out.extend_from_slice(&zstd::bulk::compress(records, 1).expect("compressing in memory"));
    let hash = blake3::hash(&out);
    out.extend_from_slice(hash.as_bytes());
    out
}

/// All entries, or `None` when the manifest is refused somewhere.
fn read_all(file: &[u8]) -> Option<Vec<Entry>> {
    let mut reader = match ManifestReader::new(file) {
        Ok(r) => r,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    let mut entries = Vec::new();
    let mut failed = false;
    for item in reader.by_ref() {
        assert!(!failed, "an entry after an error");
        match item {
            Ok(e) => entries.push(e),
            Err(e) => {
                let _ = e.to_string();
                failed = true;
            }
        }
    }
    assert!(reader.next().is_none(), "the stream went on after its end");
    (!failed).then_some(entries)
}
