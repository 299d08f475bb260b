//! Container logs and exec served to the server over the link (for `kubectl logs` and
//! `kubectl exec`): logs read from the runtime's CRI log files, commands run through the
//! runtime's exec with pipes or a terminal.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use skiff_link::proto::{ExecRequest, LogRequest, PortForwardRequest};
use skiff_link::quic::{ExecIo, LogError, LogProvider, LogReader, NodeHttpHandler};
use skiff_runtime::{ExecOptions, ExitStatus, LogOptions, Runtime, RuntimeError};
use tokio::io::AsyncWriteExt;

/// Buffer between the log reader task and the link stream.
const PIPE: usize = 64 * 1024;

/// Which uid a `namespace/name` has on this node (the pods the node runs).
#[derive(Debug, Default)]
pub struct PodIndex {
    by_name: Mutex<HashMap<(String, String), String>>,
}

impl PodIndex {
    /// Records a pod.
    pub fn insert(&self, namespace: &str, name: &str, uid: &str) {
        self.by_name
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((namespace.to_string(), name.to_string()), uid.to_string());
    }

    /// Forgets a pod (only if the name still maps to this uid).
    pub fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_string(), name.to_string());
        if map.get(&key).is_some_and(|u| u == uid) {
            map.remove(&key);
        }
    }

    /// The uid of `namespace/name`.
    pub fn uid(&self, namespace: &str, name: &str) -> Option<String> {
        self.by_name
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

/// Serves logs and exec of this node's containers.
pub struct NodeStreams {
    pub(crate) runtime: Runtime,
    pub(crate) pods: Arc<PodIndex>,
    /// The node's own HTTP endpoints (`nodes/proxy`), if served.
    pub(crate) node_http: Option<NodeHttpHandler>,
}

impl std::fmt::Debug for NodeStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStreams").finish_non_exhaustive()
    }
}

impl NodeStreams {
    /// Streams over `runtime`, finding pods through `pods`.
    pub fn new(runtime: Runtime, pods: Arc<PodIndex>) -> NodeStreams {
        NodeStreams {
            runtime,
            pods,
            node_http: None,
        }
    }

    /// Also serves the node's own HTTP endpoints on node HTTP streams (`nodes/proxy`).
    pub fn with_node_http(mut self, handler: NodeHttpHandler) -> NodeStreams {
        self.node_http = Some(handler);
        self
    }

    pub(crate) fn find(&self, namespace: &str, pod: &str) -> Result<String, LogError> {
        self.pods
            .uid(namespace, pod)
            .ok_or_else(|| LogError::NotFound(format!("pods {pod:?} not found on this node")))
    }

    async fn open(&self, request: LogRequest) -> Result<LogReader, LogError> {
        let uid = self.find(&request.namespace, &request.pod)?;
        let since = request.since_seconds.filter(|s| *s > 0).and_then(|s| {
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(s))
                .ok()
        });
        let options = LogOptions {
            follow: request.follow,
            tail_lines: request.tail_lines.map(|n| n.max(0) as usize),
            since,
            limit_bytes: request.limit_bytes.filter(|n| *n > 0).map(|n| n as usize),
            timestamps: request.timestamps,
            previous: request.previous,
        };
        let mut stream = self
            .runtime
            .logs(&uid, &request.container, options)
            .await
            .map_err(|e| match e {
                RuntimeError::PodNotFound(_) => {
                    LogError::NotFound(format!("pods {:?} not found on this node", request.pod))
                }
                RuntimeError::ContainerNotFound { .. } => LogError::NotFound(format!(
                    "container {:?} in pod {:?} is not available",
                    request.container, request.pod
                )),
                RuntimeError::LogsNotFound { .. } if request.previous => {
                    LogError::NotFound(format!(
                        "previous terminated container {:?} in pod {:?} not found",
                        request.container, request.pod
                    ))
                }
                RuntimeError::LogsNotFound { .. } => LogError::NotFound(format!(
                    "container {:?} in pod {:?} is waiting to start",
                    request.container, request.pod
                )),
                other => LogError::Failed(other.to_string()),
            })?;
        let (reader, mut writer) = tokio::io::duplex(PIPE);
        let timestamps = request.timestamps;
        tokio::spawn(async move {
            while let Some(record) = stream.next().await {
                if writer.write_all(&record.render(timestamps)).await.is_err() {
                    return;
                }
            }
            let _ = writer.shutdown().await;
        });
        Ok(Box::new(reader))
    }
}

impl NodeStreams {
    async fn exec(&self, request: ExecRequest) -> Result<ExecIo, LogError> {
        let uid = self.find(&request.namespace, &request.pod)?;
        let mut process = self
            .runtime
            .exec(
                &uid,
                &request.container,
                ExecOptions {
                    command: request.command.clone(),
                    tty: request.tty,
                    stdin: request.stdin,
                },
            )
            .await
            .map_err(|e| match e {
                RuntimeError::PodNotFound(_) => {
                    LogError::NotFound(format!("pods {:?} not found on this node", request.pod))
                }
                RuntimeError::ContainerNotFound { .. } => LogError::NotFound(format!(
                    "container {} is not valid for pod {}",
                    request.container, request.pod
                )),
                RuntimeError::ContainerNotRunning { .. } => LogError::Failed(format!(
                    "container {:?} of pod {:?} is not running",
                    request.container, request.pod
                )),
                other => LogError::Failed(other.to_string()),
            })?;
        let mut io = ExecIo {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
            exit: Box::pin(async { Err("not started".to_string()) }),
        };
        if let Some(terminal) = process.terminal.take() {
            let output = terminal
                .try_clone()
                .map_err(|e| LogError::Failed(format!("cannot share the terminal: {e}")))?;
            let control = terminal
                .try_clone()
                .map_err(|e| LogError::Failed(format!("cannot share the terminal: {e}")))?;
            io.stdout = Some(Box::new(tokio::fs::File::from_std(output)));
            if request.stdin {
                io.stdin = Some(Box::new(tokio::fs::File::from_std(terminal)));
            }
            io.resize = Some(Box::new(move |cols, rows| resize(&control, cols, rows)));
        } else {
            if let Some(stdin) = process.stdin.take() {
                io.stdin = Some(Box::new(tokio::fs::File::from_std(stdin)));
            }
            if let Some(stdout) = process.stdout.take() {
                io.stdout = Some(Box::new(tokio::fs::File::from_std(stdout)));
            }
            if let Some(stderr) = process.stderr.take() {
                io.stderr = Some(Box::new(tokio::fs::File::from_std(stderr)));
            }
        }
        io.exit = Box::pin(async move {
            match process.wait().await {
                ExitStatus::Unknown => Err("the command's exit status is unknown".to_string()),
                status => Ok(status.code()),
            }
        });
        Ok(io)
    }
}

/// Sets a terminal's size.
fn resize(terminal: &std::fs::File, cols: u16, rows: u16) {
    use std::os::fd::AsRawFd;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize on a terminal descriptor we own.
    unsafe {
        libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size);
    }
}

impl LogProvider for NodeStreams {
    fn open_log(
        &self,
        request: LogRequest,
    ) -> Pin<Box<dyn Future<Output = Result<LogReader, LogError>> + Send + '_>> {
        Box::pin(self.open(request))
    }

    fn open_exec(
        &self,
        request: ExecRequest,
    ) -> Pin<Box<dyn Future<Output = Result<ExecIo, LogError>> + Send + '_>> {
        Box::pin(self.exec(request))
    }

    fn node_http(&self) -> Option<NodeHttpHandler> {
        self.node_http.clone()
    }

    fn open_port_forward(
        &self,
        request: PortForwardRequest,
    ) -> Pin<Box<dyn Future<Output = Result<tokio::net::TcpStream, LogError>> + Send + '_>> {
        Box::pin(async move {
            let uid = self.find(&request.namespace, &request.pod)?;
            let netns = self.runtime.netns_path(&uid);
            crate::port_forward::connect(netns.as_deref(), &uid, request.port).await
        })
    }
}
