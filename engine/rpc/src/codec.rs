//! Frame and envelope encoding: a u32 length prefix (tokio-util's length-delimited codec,
//! bounded by [`FRAME_SIZE_MAX_BYTES`]) around a bincode-encoded `(call id, body)` pair.

use bytes::Bytes;
use keel_types::limits::FRAME_SIZE_MAX_BYTES;
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

/// The bincode configuration for every keel frame. The limit stops a hostile length prefix
/// inside a frame from making the decoder allocate more than a frame can hold.
type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<FRAME_SIZE_MAX_BYTES>,
>;

const CONFIG: Config = bincode::config::standard().with_limit::<FRAME_SIZE_MAX_BYTES>();

/// A frame whose body could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The bytes are not a valid message of the expected type.
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The bytes decoded but left trailing garbage.
    #[error("decode: {0} trailing bytes")]
    Trailing(usize),
}

/// Encodes a value the way keel frames carry it.
pub fn encode<T: Serialize>(value: &T) -> Result<Bytes, CodecError> {
    Ok(bincode::serde::encode_to_vec(value, CONFIG)?.into())
}

/// Decodes a whole frame body into a value; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, CONFIG)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reject_garbage() {
        let env = Envelope { id: 7, body: (String::from("k"), vec![1u8, 2, 3]) };
        let bytes = encode(&env).unwrap();
        let back: Envelope<(String, Vec<u8>)> = decode(&bytes).unwrap();
        assert_eq!(back.id, 7);
        assert_eq!(back.body.1, vec![1, 2, 3]);
        assert!(decode::<Envelope<(String, Vec<u8>)>>(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(matches!(decode::<Envelope<(String, Vec<u8>)>>(&longer), Err(CodecError::Trailing(1))));
    }

    #[test]
    fn hostile_length_prefix_does_not_allocate() {
        // id = 1, then a Vec<u8> claiming u64::MAX elements (varint 0xff + 8 bytes).
        let bytes = [1u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<Envelope<Vec<u8>>>(&bytes).is_err());
    }
}
