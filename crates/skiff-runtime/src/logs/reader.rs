//! Reading a container instance's log files: tail, since, limit, and follow across rotations.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::pump::LogSink;
use super::LogRecord;

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep streaming new output until the container instance ends.
    pub follow: bool,
    /// Only the last N records.
    pub tail_lines: Option<usize>,
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
    /// Stop after this many bytes of rendered output.
    pub limit_bytes: Option<usize>,
    /// Count rendered bytes with timestamps (for `limit_bytes`, as `kubectl logs --timestamps`).
    pub timestamps: bool,
    /// The previous instance of the container (restartCount - 1).
    pub previous: bool,
}

/// The files of one instance, oldest first (`N.log.K` … `N.log.1`, `N.log`).
pub fn instance_files(current: &Path) -> Vec<PathBuf> {
    let mut rotated = Vec::new();
    for i in 1.. {
        let p = PathBuf::from(format!("{}.{i}", current.display()));
        if !p.exists() {
            break;
        }
        rotated.push(p);
    }
    rotated.reverse();
    if current.exists() {
        rotated.push(current.to_path_buf());
    }
    rotated
}

fn parse_all(bytes: &[u8]) -> Vec<LogRecord> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(LogRecord::parse)
        .collect()
}

/// Reads records through `emit` until it returns false; `sink` (the running instance's) makes
/// it follow. Blocking.
pub fn read(
    current: &Path,
    sink: Option<Arc<LogSink>>,
    opts: &LogOptions,
    emit: &mut dyn FnMut(LogRecord) -> bool,
) {
    let mut budget = opts.limit_bytes.unwrap_or(usize::MAX);
    let mut pass = |rec: LogRecord, emit: &mut dyn FnMut(LogRecord) -> bool| -> bool {
        if let Some(since) = opts.since {
            if rec.time < since {
                return true;
            }
        }
        let size = rec.render(opts.timestamps).len();
        if size > budget {
            return false;
        }
        budget -= size;
        emit(rec)
    };

    // Snapshot what exists now: rotated files whole, the current file up to its present end.
    let files = instance_files(current);
    let mut records = Vec::new();
    let mut position: Option<(u64, u64)> = None; // (inode, offset) of the current file
    for path in &files {
        let Ok(mut f) = File::open(path) else {
            continue;
        };
        let mut bytes = Vec::new();
        if f.read_to_end(&mut bytes).is_err() {
            continue;
        }
        if path == current {
            // Only whole lines; a half-written last line is picked up when following.
            let end = bytes
                .iter()
                .rposition(|b| *b == b'\n')
                .map(|i| i + 1)
                .unwrap_or(0);
            bytes.truncate(end);
            let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
            position = Some((ino, end as u64));
        }
        records.extend(parse_all(&bytes));
    }
    if let Some(n) = opts.tail_lines {
        let skip = records.len().saturating_sub(n);
        records.drain(..skip);
    }
    for rec in records {
        if !pass(rec, emit) {
            return;
        }
    }
    let Some(sink) = sink.filter(|_| opts.follow) else {
        return;
    };

    // Follow: read what the pump appends; switch files when the current one is rotated away.
    let (mut ino, mut offset) = position.unwrap_or((0, 0));
    let mut file = File::open(current).ok();
    if let Some(f) = &file {
        if f.metadata().map(|m| m.ino()).unwrap_or(0) != ino {
            // Rotated between the snapshot and now: the new file is read from its start.
            ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
            offset = 0;
        }
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut seen = sink.seq();
    loop {
        let mut progressed = false;
        if let Some(f) = file.as_mut() {
            if f.seek(SeekFrom::Start(offset)).is_ok() {
                let mut chunk = Vec::new();
                if let Ok(n) = f.read_to_end(&mut chunk) {
                    if n > 0 {
                        progressed = true;
                        offset += n as u64;
                        pending.extend_from_slice(&chunk);
                        let end = pending
                            .iter()
                            .rposition(|b| *b == b'\n')
                            .map(|i| i + 1)
                            .unwrap_or(0);
                        let complete: Vec<u8> = pending.drain(..end).collect();
                        for rec in parse_all(&complete) {
                            if !pass(rec, emit) {
                                return;
                            }
                        }
                    }
                }
            }
        }
        if progressed {
            continue;
        }
        // At the end of the file: rotated?
        let now_ino = std::fs::metadata(current).map(|m| m.ino()).ok();
        if now_ino.is_some() && now_ino != Some(ino) {
            file = File::open(current).ok();
            ino = now_ino.unwrap_or(0);
            offset = 0;
            pending.clear();
            continue;
        }
        if sink.is_closed() {
            // One last look for bytes written just before the close.
            if let Some(f) = file.as_mut() {
                let mut chunk = Vec::new();
                if f.seek(SeekFrom::Start(offset)).is_ok()
                    && f.read_to_end(&mut chunk).map(|n| n > 0).unwrap_or(false)
                {
                    offset += chunk.len() as u64;
                    pending.extend_from_slice(&chunk);
                    continue;
                }
            }
            return;
        }
        seen = sink.wait_change(seen, Duration::from_millis(500));
        if file.is_none() {
            file = File::open(current).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::pump::Rotation;
    use super::super::Stream;
    use super::*;

    fn line(msg: &str, secs: i64) -> Vec<u8> {
        let mut out = Vec::new();
        LogRecord {
            time: Timestamp::from_second(1_700_000_000 + secs).unwrap(),
            stream: Stream::Stdout,
            partial: false,
            message: msg.as_bytes().to_vec(),
        }
        .encode(&mut out);
        out
    }

    fn collect(current: &Path, sink: Option<Arc<LogSink>>, opts: &LogOptions) -> Vec<String> {
        let mut out = Vec::new();
        read(current, sink, opts, &mut |r| {
            out.push(String::from_utf8(r.message).unwrap());
            true
        });
        out
    }

    #[test]
    fn tail_since_and_limit_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("0.log");
        std::fs::write(
            dir.path().join("0.log.2"),
            [line("a", 1), line("b", 2)].concat(),
        )
        .unwrap();
        std::fs::write(dir.path().join("0.log.1"), line("c", 3)).unwrap();
        std::fs::write(
            &current,
            [
                line("d", 4),
                line("e", 5),
                b"2023-11-14T22:13:26Z stdout F half".to_vec(),
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(
            collect(&current, None, &LogOptions::default()),
            ["a", "b", "c", "d", "e"]
        );
        assert_eq!(
            collect(
                &current,
                None,
                &LogOptions {
                    tail_lines: Some(2),
                    ..Default::default()
                }
            ),
            ["d", "e"]
        );
        let since = Timestamp::from_second(1_700_000_003).unwrap();
        assert_eq!(
            collect(
                &current,
                None,
                &LogOptions {
                    since: Some(since),
                    ..Default::default()
                }
            ),
            ["c", "d", "e"]
        );
        assert_eq!(
            collect(
                &current,
                None,
                &LogOptions {
                    limit_bytes: Some(4),
                    ..Default::default()
                }
            ),
            ["a", "b"]
        );
    }

    #[test]
    fn follow_sees_new_lines_and_rotation_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("0.log");
        let sink = LogSink::open(
            &current,
            Rotation {
                max_size: 4096,
                max_files: 3,
            },
        )
        .unwrap();
        let writer = {
            let sink = Arc::clone(&sink);
            let fifo = dir.path().join("fifo");
            std::thread::spawn(move || {
                // Go through a real pump so rotation and close behave as in production.
                let (w, r) = super::super::pump::create_fifo(&fifo, 0).unwrap();
                let pump = super::super::pump::LogPump::start().unwrap();
                pump.add(r, Stream::Stdout, &sink).unwrap();
                let mut w = File::from(w);
                for i in 0..200 {
                    use std::io::Write;
                    writeln!(w, "line {i:03} {}", "x".repeat(50)).unwrap();
                    if i % 50 == 0 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                drop(w);
                sink.wait_closed(Duration::from_secs(5));
                drop(pump);
            })
        };
        let got = collect(
            &current,
            Some(Arc::clone(&sink)),
            &LogOptions {
                follow: true,
                ..Default::default()
            },
        );
        writer.join().unwrap();
        // Rotation keeps 3 files of 4 KiB: early lines may be gone, but what was read is in
        // order, without gaps after the first, and ends with the last line.
        assert!(!got.is_empty());
        assert!(
            got.last().unwrap().starts_with("line 199"),
            "{:?}",
            got.last()
        );
        let numbers: Vec<usize> = got.iter().map(|l| l[5..8].parse().unwrap()).collect();
        for w in numbers.windows(2) {
            assert_eq!(w[1], w[0] + 1, "no gaps or repeats");
        }
    }
}
