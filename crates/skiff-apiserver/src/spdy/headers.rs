//! SPDY/3 header blocks: the name/value block (32-bit counts and lengths, lower-case names,
//! several values of one name joined by NUL) and its zlib compression, one stream per
//! direction for the whole session, primed with SPDY/3's dictionary (what Go's
//! `moby/spdystream/spdy` framer does: `zlib.NewReaderDict` / `NewWriterLevelDict`, flushed
//! after each block).
//!
//! A header block is bounded twice: its compressed size by the frame cap, and its
//! decompressed size by [`MAX_HEADER_BLOCK`] — a zlib bomb (a few bytes inflating to
//! megabytes) is cut off at that size instead of being inflated into memory.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::SpdyError;

/// Largest decompressed header block accepted (upstream's streams send a few dozen bytes).
pub(crate) const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Most name/value pairs in one block.
pub(crate) const MAX_HEADERS: usize = 100;

/// The zlib dictionary of SPDY/3 (section 2.6.10.1 of the draft), 1423 bytes.
#[rustfmt::skip]
pub(crate) const DICTIONARY: &[u8; 1423] = b"\
    \x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03put\x00\
    \x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\x0eaccept-char\
    set\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\x00\x00\x00\x0daccept-\
    ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\x0dauthorization\x00\x00\x00\
    \x0dcache-control\x00\x00\x00\x0aconnection\x00\x00\x00\x0ccontent-base\x00\x00\x00\x10c\
    ontent-encoding\x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-length\x00\x00\
    \x00\x10content-location\x00\x00\x00\x0bcontent-md5\x00\x00\x00\x0dcontent-range\x00\x00\
    \x00\x0ccontent-type\x00\x00\x00\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\x00\
    \x00\x00\x07expires\x00\x00\x00\x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\x00\
    \x00\x00\x11if-modified-since\x00\x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\
    \x00\x00\x13if-unmodified-since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\
    \x00\x00\x0cmax-forwards\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\
    \x00\x13proxy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0br\
    etry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07trailer\x00\x00\x00\
    \x11transfer-encoding\x00\x00\x00\x07upgrade\x00\x00\x00\x0auser-agent\x00\x00\x00\x04va\
    ry\x00\x00\x00\x03via\x00\x00\x00\x07warning\x00\x00\x00\x10www-authenticate\x00\x00\x00\
    \x06method\x00\x00\x00\x03get\x00\x00\x00\x06status\x00\x00\x00\x06200\x20OK\x00\x00\x00\
    \x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\x00\
    \x0aset-cookie\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin10010120120220520630030230\
    3304305306307402405406407408409410411412413414415416417502504505203\x20Non-Authoritative\
    \x20Information204\x20No\x20Content301\x20Moved\x20Permanently400\x20Bad\x20Request401\
    \x20Unauthorized403\x20Forbidden404\x20Not\x20Found500\x20Internal\x20Server\x20Error501\
    \x20Not\x20Implemented503\x20Service\x20UnavailableJan\x20Feb\x20Mar\x20Apr\x20May\x20Ju\
    n\x20Jul\x20Aug\x20Sept\x20Oct\x20Nov\x20Dec\x2000:00:00\x20Mon,\x20Tue,\x20Wed,\x20Thu,\
    \x20Fri,\x20Sat,\x20Sun,\x20GMTchunked,text/html,image/png,image/jpg,image/gif,applicati\
    on/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflat\
    e,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// The name/value pairs of a SYN_STREAM, SYN_REPLY or HEADERS frame, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The (first) value of `name` (names are lower case on the wire; compared as such).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split('\0').next().unwrap_or_default())
    }

    /// Adds a pair (the name is lower-cased, as SPDY requires).
    #[cfg(test)]
    pub(crate) fn push(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_string()));
    }

    /// The uncompressed block.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (name, value) in &self.0 {
            out.extend_from_slice(&(name.len() as u32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    /// Parses an uncompressed block.
    pub(crate) fn decode(block: &[u8]) -> Result<Headers, SpdyError> {
        let mut rest = block;
        let mut take = |n: usize| -> Result<&[u8], SpdyError> {
            if rest.len() < n {
                return Err(SpdyError::Protocol("truncated header block".into()));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let count = word(take(4)?);
        if count > MAX_HEADERS {
            return Err(SpdyError::Protocol(format!(
                "{count} headers in one block (at most {MAX_HEADERS})"
            )));
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let len = word(take(4)?);
            let name = String::from_utf8_lossy(take(len)?).to_ascii_lowercase();
            let len = word(take(4)?);
            let value = String::from_utf8_lossy(take(len)?).into_owned();
            headers.push((name, value));
        }
        Ok(Headers(headers))
    }
}

/// Inflates the peer's header blocks (one zlib stream for the session).
pub(crate) struct Inflater {
    z: Decompress,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("total_in", &self.z.total_in())
            .finish()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            z: Decompress::new(true),
        }
    }
}

impl Inflater {
    /// Inflates one compressed block (all of `input` is consumed, as the stream continues in
    /// the next frame) into at most [`MAX_HEADER_BLOCK`] bytes.
    pub(crate) fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out: Vec<u8> = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let before_in = self.z.total_in();
            let before_out = self.z.total_out();
            let result = self.z.decompress(input, &mut chunk, FlushDecompress::Sync);
            let used = (self.z.total_in() - before_in) as usize;
            let made = (self.z.total_out() - before_out) as usize;
            input = &input[used..];
            if out.len() + made > MAX_HEADER_BLOCK {
                return Err(SpdyError::Protocol(format!(
                    "a header block inflates past {MAX_HEADER_BLOCK} bytes"
                )));
            }
            out.extend_from_slice(&chunk[..made]);
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(SpdyError::Protocol("the header zlib stream ended".into()))
                }
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError::Protocol(format!("header dictionary: {e}")))?;
                    continue;
                }
                Err(error) => {
                    return Err(SpdyError::Protocol(format!(
                        "corrupt compressed header block: {error}"
                    )))
                }
            }
            // Done when the input is consumed and the inflater had room to spare.
            if input.is_empty() && made < chunk.len() {
                return Ok(out);
            }
            if used == 0 && made == 0 {
                return Err(SpdyError::Protocol(
                    "compressed header block makes no progress".into(),
                ));
            }
        }
    }
}

/// Deflates our header blocks (one zlib stream for the session, primed with the dictionary).
pub(crate) struct Deflater {
    z: Compress,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("total_in", &self.z.total_in())
            .finish()
    }
}

impl Default for Deflater {
    fn default() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        // Cannot fail on a fresh stream.
        let _ = z.set_dictionary(DICTIONARY);
        Deflater { z }
    }
}

impl Deflater {
    /// Compresses one block, sync-flushed so the peer can inflate it whole.
    pub(crate) fn deflate(&mut self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = block;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.z.total_in();
            // `compress_vec` writes into the spare capacity.
            let _ = self.z.compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.z.total_in() - before) as usize..];
            // A sync flush is complete once it left spare room behind.
            if input.is_empty() && out.capacity() - out.len() >= 64 {
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Headers {
        let mut h = Headers::default();
        h.push("streamType", "stdout");
        h.push("port", "8080");
        h.push("requestid", "0");
        h
    }

    #[test]
    fn block_round_trips_and_lower_cases_names() {
        let h = sample();
        let back = Headers::decode(&h.encode()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.get("StreamType"), Some("stdout"));
        assert_eq!(back.0[0].0, "streamtype");
    }

    #[test]
    fn compression_context_spans_blocks() {
        let mut d = Deflater::default();
        let mut i = Inflater::default();
        for n in 0..20 {
            let mut h = sample();
            h.push("n", &n.to_string());
            let wire = d.deflate(&h.encode());
            assert_eq!(Headers::decode(&i.inflate(&wire).unwrap()).unwrap(), h);
        }
    }

    #[test]
    fn dictionary_is_used() {
        // The zlib header's FDICT bit is set and the dictionary id is the adler32 of
        // SPDY/3's dictionary (0xe3c6a7c2, what Go's framer announces).
        let wire = Deflater::default().deflate(&sample().encode());
        assert_eq!(wire[1] & 0x20, 0x20, "FDICT set");
        assert_eq!(&wire[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn inflates_reference_zlib_blocks() {
        // Two consecutive blocks from C zlib (deflateSetDictionary + Z_SYNC_FLUSH), as a Go
        // client sends them: `streamtype: error`, then `streamtype: stdout` in the same stream.
        let mut i = Inflater::default();
        let first = i
            .inflate(&unhex(
                "78bbe3c6a7c202a62346703a2b294a4dcc851625aca9a08006000000ffff",
            ))
            .unwrap();
        assert_eq!(
            Headers::decode(&first).unwrap().get("streamtype"),
            Some("error")
        );
        let second = i.inflate(&unhex("c22a054ccc29f9a52500000000ffff")).unwrap();
        assert_eq!(
            Headers::decode(&second).unwrap().get("streamtype"),
            Some("stdout")
        );
    }

    #[test]
    fn zlib_bomb_is_cut_off() {
        // 16 MiB of zeros compresses to ~16 KiB; inflating it must stop at the cap.
        let mut d = Deflater::default();
        let zeros = vec![0u8; 16 << 20];
        let wire = d.deflate(&zeros);
        assert!(wire.len() < 64 * 1024);
        let err = Inflater::default().inflate(&wire).unwrap_err();
        assert!(err.to_string().contains("inflates past"), "{err}");
    }

    #[test]
    fn truncated_and_oversized_blocks_are_refused() {
        assert!(Headers::decode(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
        let mut many = Vec::new();
        many.extend_from_slice(&1000u32.to_be_bytes());
        assert!(Headers::decode(&many).is_err());
        assert!(Inflater::default().inflate(b"not zlib at all").is_err());
    }
}
