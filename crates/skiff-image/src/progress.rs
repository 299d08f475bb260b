//! Progress reporting for long operations (import, download, unpack). The store calls these
//! hooks; the binary draws progress bars with them, the agent can log or ignore them.

/// Receives progress of the tasks of one operation. A task is identified by a short id that is
/// unique within the operation (e.g. `layer 3f2a…`); bytes are counted against `total` when it is
/// known.
pub trait Progress: Send + Sync {
    /// A task starts.
    fn begin(&self, task: &str, label: &str, total: Option<u64>);
    /// `bytes` more bytes of the task are done.
    fn advance(&self, task: &str, bytes: u64);
    /// The task ended; `message` says how (e.g. `done`, `already present`).
    fn finish(&self, task: &str, message: &str);
}

/// Ignores all progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _task: &str, _label: &str, _total: Option<u64>) {}
    fn advance(&self, _task: &str, _bytes: u64) {}
    fn finish(&self, _task: &str, _message: &str) {}
}

/// Logs task starts and ends through `tracing` (for daemons without a terminal).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogProgress;

impl Progress for LogProgress {
    fn begin(&self, task: &str, label: &str, total: Option<u64>) {
        tracing::info!(task, total, "{label}");
    }
    fn advance(&self, _task: &str, _bytes: u64) {}
    fn finish(&self, task: &str, message: &str) {
        tracing::info!(task, "{message}");
    }
}

/// A reader that reports the bytes read through it as progress of one task.
pub(crate) struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
    task: &'a str,
    pending: u64,
}

impl<'a, R> ProgressReader<'a, R> {
    pub(crate) fn new(inner: R, progress: &'a dyn Progress, task: &'a str) -> Self {
        ProgressReader {
            inner,
            progress,
            task,
            pending: 0,
        }
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pending += n as u64;
        // Report in chunks so a progress bar is not redrawn for every small read.
        if self.pending >= 256 * 1024 || n == 0 {
            self.progress.advance(self.task, self.pending);
            self.pending = 0;
        }
        Ok(n)
    }
}
