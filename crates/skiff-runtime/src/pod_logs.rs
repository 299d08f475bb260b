//! Reading a container's logs.

use tokio::sync::mpsc;

use crate::error::{Result, RuntimeError};
use crate::logs::reader::LogOptions;
use crate::logs::LogRecord;
use crate::runtime::Runtime;

impl Runtime {
    /// Reads a container's logs (the current instance, or the previous one).
    pub async fn logs(&self, uid: &str, container: &str, opts: LogOptions) -> Result<LogStream> {
        let (path, sink) = self.entry(uid, |e| {
            let r = e.state.lock().unwrap_or_else(|p| p.into_inner());
            let c = r
                .containers
                .get(container)
                .ok_or_else(|| RuntimeError::ContainerNotFound {
                    pod: uid.to_owned(),
                    container: container.to_owned(),
                })?;
            let current = c.instance.as_ref().map(|i| i.number);
            let number = match (opts.previous, current) {
                (false, Some(n)) => n,
                (true, Some(n)) if n > 0 => n - 1,
                (true, _) => {
                    return Err(RuntimeError::LogsNotFound {
                        pod: uid.to_owned(),
                        container: container.to_owned(),
                        message: "previous terminated container not found".into(),
                    })
                }
                (false, None) => {
                    return Err(RuntimeError::LogsNotFound {
                        pod: uid.to_owned(),
                        container: container.to_owned(),
                        message: "container has not started".into(),
                    })
                }
            };
            let path = self.inner().paths(uid).log(container, number);
            let sink = if opts.previous {
                None
            } else {
                e.sinks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(container)
                    .cloned()
            };
            Ok((path, sink))
        })??;
        let (tx, rx) = mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            crate::logs::reader::read(&path, sink, &opts, &mut |rec| tx.blocking_send(rec).is_ok());
        });
        Ok(LogStream { rx })
    }
}

/// A stream of log records.
#[derive(Debug)]
pub struct LogStream {
    rx: mpsc::Receiver<LogRecord>,
}

impl LogStream {
    /// The next record; `None` at the end (or, when following, once the instance ended and
    /// everything was read).
    pub async fn next(&mut self) -> Option<LogRecord> {
        self.rx.recv().await
    }

    /// Reads everything as `kubectl logs` would print it.
    pub async fn collect(mut self, timestamps: bool) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(r) = self.next().await {
            out.extend(r.render(timestamps));
        }
        out
    }
}
