//! Decoding a message exactly as a session does: the payload goes into a
//! frame, [`FrameReader::read`] decodes it. Whatever decodes must survive
//! `Debug`, and encode and decode back to itself.

use std::fmt::Debug;

use offsnap_protocol::{FrameReader, FrameWriter};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// `payload` as one frame: its little-endian `u32` length, then itself.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("fuzz inputs are far below 4 GiB");
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes `payload` as a `T` through a [`FrameReader`]; when it decodes,
/// checks that it prints and round-trips through [`FrameWriter`] and
/// [`FrameReader`] unchanged. Returns the value.
pub fn decode_round_trip<T>(payload: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let framed = frame(payload);
    let mut reader = FrameReader::new(&framed[..]);
    let value: T = match reader.read() {
        Ok(v) => v,
        Err(e) => {
            // Error messages are shown to users: they must format.
            let _ = e.to_string();
            return None;
        }
    };
    assert_eq!(reader.bytes_read(), framed.len() as u64);
    let _ = format!("{value:?}");

    let mut writer = FrameWriter::new(Vec::new());
    writer.write(&value).expect("a decoded value encodes");
    let bytes = writer.into_inner().expect("writing to memory");
    let again: T = FrameReader::new(&bytes[..])
        .read()
        .expect("an encoded value decodes");
    assert_eq!(again, value, "decode(encode(x)) != x");
    Some(value)
}
