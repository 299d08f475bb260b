//! Length-delimited framing: a 4-byte big-endian length, then that many bytes of JSON.
//!
//! The decoder is incremental (bytes arrive in arbitrary pieces), refuses a frame whose announced
//! length exceeds the limit as soon as the length is known, and never panics on any input.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest frame accepted by default (4 MiB): a pod is at most 3 MiB (the API's body limit).
pub const DEFAULT_MAX_FRAME_LEN: usize = 4 << 20;

/// Size of the length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// What can go wrong turning bytes into messages or back.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A frame announced (or would need) more bytes than the limit allows.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced or encoded length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The frame's payload is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The message could not be serialised.
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Serialises `message` and prefixes it with its length.
pub fn encode<T: Serialize>(message: &T, max_len: usize) -> Result<Bytes, FrameError> {
    let mut out = BytesMut::with_capacity(256);
    out.put_u32(0);
    {
        let mut writer = (&mut out).writer();
        serde_json::to_writer(&mut writer, message)
            .map_err(|e| FrameError::Encode(e.to_string()))?;
    }
    let len = out.len() - LENGTH_PREFIX_LEN;
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    let prefix = u32::try_from(len).map_err(|_| FrameError::TooLarge { len, max: max_len })?;
    out[..LENGTH_PREFIX_LEN].copy_from_slice(&prefix.to_be_bytes());
    Ok(out.freeze())
}

/// Parses one frame's payload into a message.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Incremental frame splitter with a size limit.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: BytesMut,
    max_len: usize,
}

impl FrameDecoder {
    /// A decoder accepting frames of at most `max_len` payload bytes.
    pub fn new(max_len: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            max_len,
        }
    }

    /// The payload limit.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Gives back the bytes buffered after the last returned frame (e.g. raw data that follows
    /// a stream's header frame).
    pub fn into_remaining(self) -> Bytes {
        self.buffer.freeze()
    }

    /// The next complete frame's payload, `None` if more bytes are needed, or an error if the
    /// announced length exceeds the limit (the stream cannot be resynchronised after that).
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buffer.len() < LENGTH_PREFIX_LEN {
            return Ok(None);
        }
        let mut prefix = [0u8; LENGTH_PREFIX_LEN];
        prefix.copy_from_slice(&self.buffer[..LENGTH_PREFIX_LEN]);
        let len = u32::from_be_bytes(prefix) as usize;
        if len > self.max_len {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_len,
            });
        }
        if self.buffer.len() < LENGTH_PREFIX_LEN + len {
            // Reserve once so a large frame arriving in pieces does not reallocate repeatedly.
            self.buffer
                .reserve(LENGTH_PREFIX_LEN + len - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(LENGTH_PREFIX_LEN);
        Ok(Some(self.buffer.split_to(len).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};

    #[test]
    fn round_trip_in_arbitrary_pieces() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let messages: Vec<serde_json::Value> = (0..50)
            .map(|i| serde_json::json!({"i": i, "pad": "x".repeat(rng.random_range(0..3000))}))
            .collect();
        let mut wire = Vec::new();
        for m in &messages {
            wire.extend_from_slice(&encode(m, DEFAULT_MAX_FRAME_LEN).unwrap());
        }
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        let mut out = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = rng.random_range(1..=rest.len().min(700));
            decoder.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(frame) = decoder.next_frame().unwrap() {
                out.push(decode::<serde_json::Value>(&frame).unwrap());
            }
        }
        assert_eq!(out, messages);
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn oversized_announcement_is_refused_before_the_body_arrives() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.push(&(1025u32).to_be_bytes());
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::TooLarge {
                len: 1025,
                max: 1024
            })
        );
        let mut decoder = FrameDecoder::new(1024);
        decoder.push(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decoder.next_frame(),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn encoding_over_the_limit_fails() {
        let big = "y".repeat(2000);
        assert!(matches!(
            encode(&big, 1000),
            Err(FrameError::TooLarge { max: 1000, .. })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for _ in 0..2000 {
            let mut data = vec![0u8; rng.random_range(0..512)];
            rng.fill_bytes(&mut data);
            let mut decoder = FrameDecoder::new(256);
            decoder.push(&data);
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        assert!(frame.len() <= 256);
                        let _ = decode::<serde_json::Value>(&frame);
                    }
                    Ok(None) => break,
                    Err(FrameError::TooLarge { len, max }) => {
                        assert!(len > max);
                        break;
                    }
                    Err(other) => panic!("unexpected error {other}"),
                }
            }
        }
    }
}
