//! The one binary encoding keel uses for wire frames and for its own on-disk records:
//! bincode 2 (serde), varint integers, with a size limit so a hostile length prefix can
//! never make a decoder allocate more than a frame may hold.

use crate::limits::FRAME_SIZE_MAX_BYTES;
use serde::{de::DeserializeOwned, Serialize};

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<FRAME_SIZE_MAX_BYTES>,
>;

const CONFIG: Config = bincode::config::standard().with_limit::<FRAME_SIZE_MAX_BYTES>();

/// A value that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The bytes are not a valid value of the expected type.
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The bytes decoded but left trailing garbage.
    #[error("decode: {0} trailing bytes")]
    Trailing(usize),
}

/// Encodes a value.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(value, CONFIG)?)
}

/// Decodes a whole buffer into a value; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, CONFIG)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reject_garbage() {
        let value = (7u64, String::from("k"), vec![1u8, 2, 3]);
        let bytes = encode(&value).unwrap();
        assert_eq!(decode::<(u64, String, Vec<u8>)>(&bytes).unwrap(), value);
        assert!(decode::<(u64, String, Vec<u8>)>(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode::<(u64, String, Vec<u8>)>(&longer), Err(CodecError::Trailing(1))));
    }

    /// Keys, values and raft payloads are `#[serde(with = "serde_bytes")]` so they decode as
    /// one block: that must not change a single byte of the encoding, or raft logs and
    /// records written before would no longer decode.
    #[test]
    fn byte_fields_encode_exactly_like_vec_u8() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Plain {
            key: Vec<u8>,
            old: Option<Vec<u8>>,
        }
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Bytes {
            #[serde(with = "serde_bytes")]
            key: Vec<u8>,
            #[serde(with = "serde_bytes")]
            old: Option<Vec<u8>>,
        }
        for (key, old) in [(vec![], None), (vec![0u8, 255, 7], Some(vec![1u8; 300])), (vec![9u8; 200], Some(vec![]))] {
            let plain = encode(&Plain { key: key.clone(), old: old.clone() }).unwrap();
            let bytes = encode(&Bytes { key: key.clone(), old: old.clone() }).unwrap();
            assert_eq!(plain, bytes);
            assert_eq!(decode::<Bytes>(&plain).unwrap(), Bytes { key, old });
        }
    }

    #[test]
    fn hostile_length_prefix_does_not_allocate() {
        // 1, then a Vec<u8> claiming u64::MAX elements (varint 0xff + 8 bytes).
        let bytes = [1u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<(u64, Vec<u8>)>(&bytes).is_err());
        assert!(decode::<(u64, serde_bytes::ByteBuf)>(&bytes).is_err());
    }
}
