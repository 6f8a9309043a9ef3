//! Framing: a u32 length prefix (tokio-util's length-delimited codec, bounded by
//! [`FRAME_SIZE_MAX_BYTES`]) around a `(call id, body)` envelope in keel's binary encoding.

use keel_types::limits::FRAME_SIZE_MAX_BYTES;
use tokio_util::codec::LengthDelimitedCodec;

/// The length-delimited framing every keel connection uses.
pub(crate) fn framing() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().length_field_length(4).max_frame_length(FRAME_SIZE_MAX_BYTES).new_codec()
}

/// One call on the wire: the caller's id for matching the reply, and the body.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Envelope<T> {
    pub id: u64,
    pub body: T,
}
