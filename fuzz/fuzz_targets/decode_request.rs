//! Decodes a peer's payload as a [`Request`] the way a session does (one
//! frame, read by `FrameReader::read`); whatever decodes must print and
//! round-trip unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use offsnap_fuzz::wire::decode_round_trip;
use offsnap_protocol::Request;

fuzz_target!(|data: &[u8]| {
    let _ = decode_round_trip::<Request>(data);
});
