//! Decodes a peer's payload as a [`Hello`] the way a session does (one
//! frame, read by `FrameReader::read`, and by `FrameReader::read_hello`
//! with its magic and version checks); whatever decodes must print and
//! round-trip unchanged, and both readers must agree.

#![no_main]

use libfuzzer_sys::fuzz_target;
use offsnap_fuzz::wire::{decode_round_trip, frame};
use offsnap_protocol::{FrameReader, Hello, PROTOCOL_VERSION};

fuzz_target!(|data: &[u8]| {
    let plain = decode_round_trip::<Hello>(data);
    let framed = frame(data);
    match FrameReader::new(&framed[..]).read_hello("offsnap fuzz") {
        Ok(hello) => {
            assert_eq!(hello.version, PROTOCOL_VERSION);
            assert_eq!(plain.as_ref(), Some(&hello), "read_hello and read disagree");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
