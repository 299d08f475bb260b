//! Framing of an exec stream: after the `Exec` request and the `Accepted` reply, both sides send
//! channel frames — one channel byte, a 4-byte big-endian length, the payload — with the
//! channels of Kubernetes' remote-command protocol (`v5.channel.k8s.io`), so the API server
//! relays WebSocket messages to and from the node without interpreting them.
//!
//! Server → node: [`STDIN`] data, [`RESIZE`] (`{"Width":W,"Height":H}`), [`CLOSE`] with one
//! payload byte naming the channel that ended (stdin). Node → server: [`STDOUT`], [`STDERR`],
//! then one [`STATUS`] frame (a `metav1.Status` as JSON) and the end of the stream.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::frame::FrameError;

/// Standard input (server → node).
pub const STDIN: u8 = 0;
/// Standard output (node → server).
pub const STDOUT: u8 = 1;
/// Standard error (node → server).
pub const STDERR: u8 = 2;
/// The command's outcome, a `metav1.Status` (node → server).
pub const STATUS: u8 = 3;
/// Terminal size changes (server → node).
pub const RESIZE: u8 = 4;
/// A channel ended (server → node; the payload names it).
pub const CLOSE: u8 = 255;

/// Largest exec frame payload.
pub const MAX_EXEC_FRAME: usize = 1 << 20;
/// Length of a frame header.
pub const HEADER_LEN: usize = 5;

/// A terminal size, as `kubectl` sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// One channel frame.
pub fn encode_frame(channel: u8, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + data.len());
    out.put_u8(channel);
    out.put_u32(data.len() as u32);
    out.put_slice(data);
    out.freeze()
}

/// Incremental splitter of channel frames.
#[derive(Debug, Default)]
pub struct ExecFrameDecoder {
    buffer: BytesMut,
}

impl ExecFrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Bytes)>, FrameError> {
        if self.buffer.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]) as usize;
        if len > MAX_EXEC_FRAME {
            return Err(FrameError::TooLarge {
                len,
                max: MAX_EXEC_FRAME,
            });
        }
        if self.buffer.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let channel = self.buffer[0];
        self.buffer.advance(HEADER_LEN);
        let payload = self.buffer.split_to(len).freeze();
        Ok(Some((channel, payload)))
    }
}

/// The `metav1.Status` ending an exec: success, a non-zero exit code, or an error.
pub fn status_json(exit_code: Option<i32>, error: Option<&str>, command: &[String]) -> Vec<u8> {
    let value = match (exit_code, error) {
        (_, Some(message)) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500,
        }),
        (Some(0), None) => serde_json::json!({"metadata": {}, "status": "Success"}),
        (Some(code), None) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        (None, None) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": "the command's exit status is unknown",
            "reason": "InternalError",
            "code": 500,
        }),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&encode_frame(STDOUT, b"hello"));
        bytes.extend_from_slice(&encode_frame(STATUS, b""));
        let mut d = ExecFrameDecoder::new();
        let mut got = Vec::new();
        for b in &bytes {
            d.push(&[*b]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                (STDOUT, Bytes::from_static(b"hello")),
                (STATUS, Bytes::new())
            ]
        );
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut d = ExecFrameDecoder::new();
        d.push(&[STDIN, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn statuses_are_upstream_shaped() {
        let ok: serde_json::Value =
            serde_json::from_slice(&status_json(Some(0), None, &[])).unwrap();
        assert_eq!(ok["status"], "Success");
        let failed: serde_json::Value =
            serde_json::from_slice(&status_json(Some(3), None, &["false".into()])).unwrap();
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        let size: TerminalSize = serde_json::from_str(r#"{"Width":80,"Height":24}"#).unwrap();
        assert_eq!((size.width, size.height), (80, 24));
    }
}
