//! Helpers shared by the fuzz targets: framing a payload, decoding a
//! message the way a peer's bytes are decoded, a stream that hands out data
//! in small pieces, input layouts, and a plain in-memory model of applying
//! a delta.

pub mod layout;
pub mod model;
pub mod stream;
pub mod wire;
