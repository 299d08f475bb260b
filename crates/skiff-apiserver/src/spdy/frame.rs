//! SPDY/3 frames (the framing of `moby/spdystream/spdy`, version 3, which client-go and the
//! kubelet speak): reading them off a byte stream with size caps, and encoding ours.
//!
//! Control frames: `1 | version(15) | type(16) | flags(8) | length(24) | payload`; data
//! frames: `0 | stream id(31) | flags(8) | length(24) | payload`.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::headers::{Deflater, Headers, Inflater};
use super::SpdyError;

/// The SPDY version spoken.
pub(crate) const VERSION: u16 = 3;
/// FLAG_FIN on data and SYN_STREAM/SYN_REPLY/HEADERS frames.
pub(crate) const FLAG_FIN: u8 = 0x01;
/// Largest control frame read (header blocks of upstream's streams are tiny).
pub(crate) const MAX_CONTROL_FRAME: usize = 64 * 1024;
/// Largest data frame read (client-go writes at most 32 KiB per frame).
pub(crate) const MAX_DATA_FRAME: usize = 1 << 20;
/// Largest data payload we write in one frame.
pub(crate) const WRITE_CHUNK: usize = 32 * 1024;

/// RST_STREAM status codes (SPDY/3 section 2.6.3).
pub(crate) mod status {
    /// PROTOCOL_ERROR.
    pub(crate) const PROTOCOL_ERROR: u32 = 1;
    /// INVALID_STREAM: a frame for a stream that is not open.
    pub(crate) const INVALID_STREAM: u32 = 2;
    /// REFUSED_STREAM: too many open streams.
    pub(crate) const REFUSED_STREAM: u32 = 3;
    /// STREAM_IN_USE: a SYN_STREAM for an id already used.
    pub(crate) const STREAM_IN_USE: u32 = 8;
    /// STREAM_ALREADY_CLOSED: data after the peer's FIN.
    pub(crate) const STREAM_ALREADY_CLOSED: u32 = 9;
    /// GOAWAY: OK.
    pub(crate) const GOAWAY_OK: u32 = 0;
    /// GOAWAY: PROTOCOL_ERROR.
    pub(crate) const GOAWAY_PROTOCOL_ERROR: u32 = 1;
}

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A peer opens a stream.
    SynStream {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    /// The answer to a SYN_STREAM.
    SynReply {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    /// A stream is aborted.
    RstStream { stream: u32, status: u32 },
    /// Session settings: `(flags, id, value)`.
    Settings { entries: Vec<(u8, u32, u32)> },
    /// Liveness probe (echoed when the peer started it).
    Ping { id: u32 },
    /// The session ends.
    GoAway { last_good: u32, status: u32 },
    /// More headers on a stream.
    Headers {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    /// Flow-control credit.
    WindowUpdate { stream: u32, delta: u32 },
    /// Stream data.
    Data { stream: u32, flags: u8, data: Bytes },
    /// A control frame type SPDY/3 does not define (ignored, as the draft says).
    Unknown { kind: u16 },
}

fn word(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads frames, inflating header blocks in the session's zlib stream.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    inflater: Inflater,
}

impl FrameReader {
    /// The next frame; `None` at a clean end of the stream (between frames).
    pub(crate) async fn read<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
    ) -> Result<Option<Frame>, SpdyError> {
        let mut head = [0u8; 8];
        match r.read(&mut head[..1]).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(SpdyError::Io(e.to_string())),
        }
        r.read_exact(&mut head[1..])
            .await
            .map_err(|e| SpdyError::Io(e.to_string()))?;
        let first = word(&head[..4]);
        let flags = head[4];
        let length = (word(&head[4..]) & 0x00ff_ffff) as usize;
        let control = first & 0x8000_0000 != 0;
        let cap = if control {
            MAX_CONTROL_FRAME
        } else {
            MAX_DATA_FRAME
        };
        if length > cap {
            return Err(SpdyError::Protocol(format!(
                "a {} frame of {length} bytes (at most {cap})",
                if control { "control" } else { "data" }
            )));
        }
        let mut payload = vec![0u8; length];
        r.read_exact(&mut payload)
            .await
            .map_err(|e| SpdyError::Io(e.to_string()))?;
        if !control {
            let stream = first & 0x7fff_ffff;
            if stream == 0 {
                return Err(SpdyError::Protocol("data frame on stream 0".into()));
            }
            return Ok(Some(Frame::Data {
                stream,
                flags,
                data: Bytes::from(payload),
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        let kind = (first & 0xffff) as u16;
        if version != VERSION {
            return Err(SpdyError::Protocol(format!(
                "SPDY version {version} (only {VERSION} is spoken)"
            )));
        }
        self.control(kind, flags, &payload).map(Some)
    }

    fn control(&mut self, kind: u16, flags: u8, p: &[u8]) -> Result<Frame, SpdyError> {
        let need = |n: usize| {
            if p.len() < n {
                Err(SpdyError::Protocol(format!(
                    "control frame type {kind} of {} bytes is too short",
                    p.len()
                )))
            } else {
                Ok(())
            }
        };
        let stream_of = |b: &[u8]| -> Result<u32, SpdyError> {
            let id = word(b) & 0x7fff_ffff;
            if id == 0 {
                return Err(SpdyError::Protocol(format!(
                    "control frame type {kind} on stream 0"
                )));
            }
            Ok(id)
        };
        Ok(match kind {
            SYN_STREAM => {
                need(10)?;
                let stream = stream_of(p)?;
                let headers = self.headers(&p[10..])?;
                Frame::SynStream {
                    stream,
                    flags,
                    headers,
                }
            }
            SYN_REPLY | HEADERS => {
                need(4)?;
                let stream = stream_of(p)?;
                let headers = self.headers(&p[4..])?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                need(8)?;
                Frame::RstStream {
                    stream: stream_of(p)?,
                    status: word(&p[4..]),
                }
            }
            SETTINGS => {
                need(4)?;
                let count = word(p) as usize;
                if p.len() != 4 + count.saturating_mul(8) {
                    return Err(SpdyError::Protocol(format!(
                        "SETTINGS of {} bytes announces {count} entries",
                        p.len()
                    )));
                }
                let entries = p[4..]
                    .chunks_exact(8)
                    .map(|e| (e[0], word(e) & 0x00ff_ffff, word(&e[4..])))
                    .collect();
                Frame::Settings { entries }
            }
            PING => {
                need(4)?;
                Frame::Ping { id: word(p) }
            }
            GOAWAY => {
                need(4)?;
                Frame::GoAway {
                    last_good: word(p) & 0x7fff_ffff,
                    status: if p.len() >= 8 { word(&p[4..]) } else { 0 },
                }
            }
            WINDOW_UPDATE => {
                need(8)?;
                Frame::WindowUpdate {
                    stream: word(p) & 0x7fff_ffff,
                    delta: word(&p[4..]) & 0x7fff_ffff,
                }
            }
            kind => Frame::Unknown { kind },
        })
    }

    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        Headers::decode(&self.inflater.inflate(compressed)?)
    }
}

/// Encodes frames, deflating header blocks in our zlib stream.
#[derive(Debug, Default)]
pub(crate) struct FrameWriter {
    deflater: Deflater,
}

impl FrameWriter {
    /// Appends `frame`'s bytes to `out`.
    pub(crate) fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) {
        let control = |out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[u8]| {
            out.extend_from_slice(&(0x8000u16 | VERSION).to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            let len = payload.len() as u32;
            out.extend_from_slice(&((u32::from(flags) << 24) | (len & 0x00ff_ffff)).to_be_bytes());
            out.extend_from_slice(payload);
        };
        match frame {
            Frame::SynStream {
                stream,
                flags,
                headers,
            } => {
                let mut p = Vec::new();
                p.extend_from_slice(&stream.to_be_bytes());
                p.extend_from_slice(&0u32.to_be_bytes());
                p.extend_from_slice(&[0, 0]);
                p.extend(self.deflater.deflate(&headers.encode()));
                control(out, SYN_STREAM, *flags, &p);
            }
            Frame::SynReply {
                stream,
                flags,
                headers,
            }
            | Frame::Headers {
                stream,
                flags,
                headers,
            } => {
                let kind = if matches!(frame, Frame::SynReply { .. }) {
                    SYN_REPLY
                } else {
                    HEADERS
                };
                let mut p = stream.to_be_bytes().to_vec();
                p.extend(self.deflater.deflate(&headers.encode()));
                control(out, kind, *flags, &p);
            }
            Frame::RstStream { stream, status } => {
                let mut p = stream.to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(out, RST_STREAM, 0, &p);
            }
            Frame::Settings { entries } => {
                let mut p = (entries.len() as u32).to_be_bytes().to_vec();
                for (flags, id, value) in entries {
                    p.extend_from_slice(&((u32::from(*flags) << 24) | id).to_be_bytes());
                    p.extend_from_slice(&value.to_be_bytes());
                }
                control(out, SETTINGS, 0, &p);
            }
            Frame::Ping { id } => control(out, PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                let mut p = last_good.to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(out, GOAWAY, 0, &p);
            }
            Frame::WindowUpdate { stream, delta } => {
                let mut p = stream.to_be_bytes().to_vec();
                p.extend_from_slice(&delta.to_be_bytes());
                control(out, WINDOW_UPDATE, 0, &p);
            }
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                let len = data.len() as u32;
                out.extend_from_slice(
                    &((u32::from(*flags) << 24) | (len & 0x00ff_ffff)).to_be_bytes(),
                );
                out.extend_from_slice(data);
            }
            Frame::Unknown { kind } => control(out, *kind, 0, &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> Headers {
        let mut h = Headers::default();
        h.push("streamtype", "data");
        h.push("port", "80");
        h.push("requestid", "3");
        h
    }

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                stream: 1,
                flags: 0,
                headers: headers(),
            },
            Frame::SynReply {
                stream: 1,
                flags: FLAG_FIN,
                headers: Headers::default(),
            },
            Frame::Headers {
                stream: 3,
                flags: 0,
                headers: headers(),
            },
            Frame::RstStream {
                stream: 5,
                status: status::STREAM_IN_USE,
            },
            Frame::Settings {
                entries: vec![(0, 7, 65536), (1, 4, 100)],
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_good: 9,
                status: status::GOAWAY_OK,
            },
            Frame::WindowUpdate {
                stream: 1,
                delta: 1024,
            },
            Frame::Data {
                stream: 1,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream: 3,
                flags: 0,
                data: Bytes::new(),
            },
        ]
    }

    async fn read_all(bytes: &[u8]) -> Result<Vec<Frame>, SpdyError> {
        let mut reader = FrameReader::default();
        let mut r = bytes;
        let mut frames = Vec::new();
        while let Some(f) = reader.read(&mut r).await? {
            frames.push(f);
        }
        Ok(frames)
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let mut writer = FrameWriter::default();
        let mut wire = Vec::new();
        for f in all_frames() {
            writer.encode(&f, &mut wire);
        }
        assert_eq!(read_all(&wire).await.unwrap(), all_frames());
    }

    #[tokio::test]
    async fn known_wire_bytes() {
        // RST_STREAM(5, STREAM_IN_USE), PING(7), DATA(1, FIN, "hi") as spdystream writes them.
        let mut writer = FrameWriter::default();
        let mut wire = Vec::new();
        for f in [
            Frame::RstStream {
                stream: 5,
                status: status::STREAM_IN_USE,
            },
            Frame::Ping { id: 7 },
            Frame::Data {
                stream: 1,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hi"),
            },
        ] {
            writer.encode(&f, &mut wire);
        }
        assert_eq!(
            wire,
            [
                0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 8, // RST_STREAM
                0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7, // PING
                0, 0, 0, 1, 1, 0, 0, 2, b'h', b'i', // DATA
            ]
        );
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_reading_them() {
        // A data frame announcing 16 MiB - 1 and a control frame announcing 1 MiB.
        let data = [0u8, 0, 0, 1, 0, 0xff, 0xff, 0xff];
        let err = read_all(&data).await.unwrap_err();
        assert!(err.to_string().contains("data frame of 16777215"), "{err}");
        let control = [0x80u8, 3, 0, 1, 0, 0x10, 0, 0];
        let err = read_all(&control).await.unwrap_err();
        assert!(
            err.to_string().contains("control frame of 1048576"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn malformed_frames_are_errors() {
        // Wrong version, short RST_STREAM, stream 0 data, SETTINGS count mismatch, truncation.
        for bad in [
            &[0x80u8, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..],
            &[0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1],
            &[0, 0, 0, 0, 0, 0, 0, 0],
            &[0x80, 3, 0, 4, 0, 0, 0, 4, 0, 0, 0, 9],
            &[0x80, 3, 0, 6, 0, 0, 0, 4, 0],
        ] {
            assert!(read_all(bad).await.is_err(), "{bad:?}");
        }
        // Unknown control frame types are skipped.
        let frames = read_all(&[0x80, 3, 0, 0x20, 0, 0, 0, 1, 9]).await.unwrap();
        assert_eq!(frames, vec![Frame::Unknown { kind: 0x20 }]);
    }
}
