//! Framing: a u32 length prefix (tokio-util's length-delimited codec, bounded by
//! [`FRAME_SIZE_MAX_BYTES`]) around a `(call id, body)` envelope in keel's binary encoding.

use bytes::Bytes;
use futures::SinkExt;
use keel_types::limits::FRAME_SIZE_MAX_BYTES;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedWrite, LengthDelimitedCodec};

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

/// Frames queued for one write, so a busy connection sends many frames per syscall.
const FRAMES_PER_FLUSH_MAX: usize = 256;

/// Writes every frame from `rx` to `sink` until `rx` closes (Ok) or a write fails (Err):
/// whatever is queued when the writer wakes goes out together in one flush, instead of one
/// `writev` per frame.
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    sink: &mut FramedWrite<W, LengthDelimitedCodec>,
    rx: &mut mpsc::Receiver<Bytes>,
) -> std::io::Result<()> {
    while let Some(frame) = rx.recv().await {
        sink.feed(frame).await?;
        for _ in 1..FRAMES_PER_FLUSH_MAX {
            match rx.try_recv() {
                Ok(frame) => sink.feed(frame).await?,
                Err(_) => break,
            }
        }
        SinkExt::<Bytes>::flush(sink).await?;
    }
    Ok(())
}
