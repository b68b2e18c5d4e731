//! The frame decoder over an arbitrary stream, as either side reads it: the
//! peer's hello, then requests (the helper's side) or responses (the
//! client's side) until the stream ends. The stream hands out its bytes in
//! short, sometimes interrupted reads.
//!
//! Input: a mode byte (bit 0: read responses instead of requests; bit 1:
//! no hello first), a plan length (mod 8), the read plan, then the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use offsnap_fuzz::stream::Choppy;
use offsnap_protocol::frame::check_version;
use offsnap_protocol::message::MAGIC;
use offsnap_protocol::{FrameError, FrameReader, Request, Response};

fuzz_target!(|data: &[u8]| {
    let [mode, plan_len, rest @ ..] = data else {
        return;
    };
    let plan_len = usize::from(*plan_len % 8).min(rest.len());
    let (plan, stream) = rest.split_at(plan_len);
    let mut reader = FrameReader::new(Choppy::new(stream, plan));
    if mode & 2 == 0 {
        match reader.read_hello("offsnap fuzz") {
            Ok(hello) => {
                assert_eq!(hello.magic, MAGIC);
                check_version(&hello, "offsnap fuzz").expect("read_hello checked the version");
            }
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
    }
    loop {
        let res = if mode & 1 == 0 {
            reader.read::<Request>().map(|r| format!("{r:?}"))
        } else {
            reader.read::<Response>().map(|r| format!("{r:?}"))
        };
        let read = reader.bytes_read();
        assert!(
            read <= stream.len() as u64,
            "counted more than the stream holds"
        );
        match res {
            // A session stops at a malformed message; reading on checks
            // that the frame was consumed whole all the same.
            Ok(_) | Err(FrameError::Decode(_)) => {}
            Err(FrameError::Closed) => {
                assert_eq!(read, stream.len() as u64, "closed before the end");
                break;
            }
            Err(FrameError::Truncated) => {
                assert!(read < stream.len() as u64, "truncated with nothing left");
                break;
            }
            Err(e @ FrameError::TooLarge { .. }) => {
                let _ = e.to_string();
                break;
            }
            Err(e) => panic!("unexpected error on an in-memory stream: {e}"),
        }
    }
});
