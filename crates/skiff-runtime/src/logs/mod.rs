//! Container logs in the CRI format (`2026-11-21T22:00:00.123456789Z stdout F message`).
//!
//! Containers write into FIFOs; the [`pump`] thread turns what it reads into CRI lines, rotates
//! the files by size, and wakes followers. The [`reader`] serves tail/since/follow/limit
//! requests from the files.

pub mod pump;
pub mod reader;

use jiff::Timestamp;

/// Which standard stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The CRI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line (or partial line) of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// When the runtime read it.
    pub time: Timestamp,
    /// The stream.
    pub stream: Stream,
    /// `P`: the line continues in the next record (it was longer than the line limit).
    pub partial: bool,
    /// The bytes, without the newline.
    pub message: Vec<u8>,
}

/// RFC 3339 UTC time with nanoseconds, as the CRI log format uses.
pub fn format_time(ts: Timestamp) -> String {
    let dt = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond()
    )
}

impl LogRecord {
    /// The record as a line of a CRI log file (with the trailing newline).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format_time(self.time).as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.stream.as_str().as_bytes());
        out.extend_from_slice(if self.partial { b" P " } else { b" F " });
        out.extend_from_slice(&self.message);
        out.push(b'\n');
    }

    /// Parses a CRI log line (without its newline). Unknown tags after `F`/`P` are ignored.
    pub fn parse(line: &[u8]) -> Option<LogRecord> {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let time = std::str::from_utf8(parts.next()?)
            .ok()?
            .parse::<Timestamp>()
            .ok()?;
        let stream = match parts.next()? {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return None,
        };
        let tag = parts.next()?;
        let partial = tag.split(|b| *b == b':').next()? == b"P";
        let message = parts.next().unwrap_or(b"").to_vec();
        Some(LogRecord {
            time,
            stream,
            partial,
            message,
        })
    }

    /// The record as `kubectl logs` prints it: the message, a newline unless partial, and
    /// optionally the timestamp in front.
    pub fn render(&self, timestamps: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.message.len() + 32);
        if timestamps {
            out.extend_from_slice(format_time(self.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.message);
        if !self.partial {
            out.push(b'\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_round_trip() {
        let rec = LogRecord {
            time: "2026-11-21T22:00:00.000000005Z".parse().unwrap(),
            stream: Stream::Stderr,
            partial: false,
            message: b"hello world".to_vec(),
        };
        let mut line = Vec::new();
        rec.encode(&mut line);
        assert_eq!(
            line,
            b"2026-11-21T22:00:00.000000005Z stderr F hello world\n"
        );
        assert_eq!(LogRecord::parse(&line[..line.len() - 1]), Some(rec.clone()));
        assert_eq!(rec.render(false), b"hello world\n");
        assert_eq!(
            rec.render(true),
            b"2026-11-21T22:00:00.000000005Z hello world\n"
        );
        let partial = LogRecord::parse(b"2026-11-21T22:00:00.1Z stdout P abc").unwrap();
        assert!(partial.partial);
        assert_eq!(partial.render(false), b"abc");
        assert!(LogRecord::parse(b"garbage").is_none());
        assert_eq!(
            LogRecord::parse(b"2026-11-21T22:00:00Z stdout F")
                .unwrap()
                .message,
            b""
        );
    }
}
