//! A SPDY/3.1 server session over one upgraded connection: the peer (client-go) opens
//! streams, we reply to each at once (as the kubelet's `httpstream/spdy` server does), relay
//! their data to the application and write the application's data back.
//!
//! Flow control: client-go's and the kubelet's `moby/spdystream` neither send WINDOW_UPDATE
//! nor honour ours (it drops them as unhandled frames), so holding our sends to the 64 KiB
//! window of SPDY/3.1 would stall every real client after 64 KiB. Memory is bounded by
//! back-pressure instead, as spdystream does with its unbuffered per-stream channels:
//!
//! * inbound: every data frame takes permits from a per-session byte budget
//!   ([`SESSION_BUDGET`]) that are returned only when the application has taken the data; when
//!   the budget is spent the session stops reading the connection (TCP pushes back on the
//!   client). A frame beyond a stream's window is therefore not an error but simply waits.
//! * outbound: one bounded queue of frames to a single writer task; a client that never reads
//!   blocks the writer, the queue fills, and the application's writes (and so the reads from
//!   the node) wait.
//!
//! Frame sizes, header blocks, open streams are capped (see `frame` and `headers`); a
//! protocol error ends the session with GOAWAY(PROTOCOL_ERROR); a bad stream is reset while
//! the others go on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::frame::{status, Frame, FrameReader, FrameWriter, FLAG_FIN, WRITE_CHUNK};
use super::headers::Headers;
use super::SpdyError;

/// Bytes of received data a session holds for the application before it stops reading.
pub(crate) const SESSION_BUDGET: usize = 4 << 20;
/// Streams open at once in one session (kubectl opens 2 per forwarded connection, 5 per exec).
pub(crate) const MAX_STREAMS: usize = 256;
/// Frames queued for the writer.
const OUT_QUEUE: usize = 64;
/// Streams opened but not yet taken by the application.
const ACCEPT_QUEUE: usize = 16;

enum Out {
    Frame(Frame),
    /// Flush and shut the connection's write side.
    Close,
}

#[derive(Debug, Default)]
struct StreamState {
    /// Where the peer's data goes; `None` once the peer sent FIN.
    data: Option<mpsc::UnboundedSender<(Bytes, OwnedSemaphorePermit)>>,
    /// We sent FIN or RST.
    local_closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    streams: Mutex<HashMap<u32, StreamState>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, StreamState>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets a stream both sides have finished.
    fn reap(map: &mut HashMap<u32, StreamState>, id: u32) {
        if map
            .get(&id)
            .is_some_and(|s| s.data.is_none() && s.local_closed)
        {
            map.remove(&id);
        }
    }
}

/// A running session. Dropping it ends the session's tasks at once; [`Session::close`]
/// says GOAWAY and flushes first.
#[derive(Debug)]
pub(crate) struct Session {
    incoming: mpsc::Receiver<Incoming>,
    out: mpsc::Sender<Out>,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Out::Frame(frame) => frame.fmt(f),
            Out::Close => f.write_str("Close"),
        }
    }
}

/// A stream the peer opened (already replied to).
#[derive(Debug)]
pub(crate) struct Incoming {
    /// Its id.
    pub(crate) id: u32,
    /// Its SYN_STREAM headers.
    pub(crate) headers: Headers,
    /// The peer's data.
    pub(crate) reader: StreamReader,
    /// Our side.
    pub(crate) writer: StreamWriter,
}

/// The peer's data on one stream; `None` after its FIN or RST, or the session's end.
#[derive(Debug)]
pub(crate) struct StreamReader {
    rx: mpsc::UnboundedReceiver<(Bytes, OwnedSemaphorePermit)>,
}

impl Default for StreamReader {
    /// A reader at its end (what is left when the real one was taken).
    fn default() -> Self {
        let (_, rx) = mpsc::unbounded_channel();
        StreamReader { rx }
    }
}

impl StreamReader {
    /// The next chunk (its budget is returned to the session as it is taken).
    pub(crate) async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await.map(|(data, _permit)| data)
    }
}

/// Our side of one stream (cheap to clone).
#[derive(Debug, Clone)]
pub(crate) struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
    shared: Arc<Shared>,
}

impl StreamWriter {
    /// Neither finished nor reset (by us or the peer), and the session is alive.
    pub(crate) fn is_open(&self) -> bool {
        self.shared
            .lock()
            .get(&self.id)
            .is_some_and(|s| !s.local_closed)
    }

    /// Writes `data` (in frames of at most 32 KiB); fails once the stream was reset or
    /// finished, or the session ended.
    pub(crate) async fn write(&self, data: &[u8]) -> Result<(), SpdyError> {
        for chunk in data.chunks(WRITE_CHUNK) {
            if !self.is_open() {
                return Err(SpdyError::StreamClosed(self.id));
            }
            let frame = Frame::Data {
                stream: self.id,
                flags: 0,
                data: Bytes::copy_from_slice(chunk),
            };
            self.out
                .send(Out::Frame(frame))
                .await
                .map_err(|_| SpdyError::StreamClosed(self.id))?;
        }
        Ok(())
    }

    fn close_local(&self) -> bool {
        let mut map = self.shared.lock();
        let Some(state) = map.get_mut(&self.id) else {
            return false;
        };
        if state.local_closed {
            return false;
        }
        state.local_closed = true;
        Shared::reap(&mut map, self.id);
        true
    }

    /// Half-closes our side (an empty DATA frame with FIN).
    pub(crate) async fn finish(&self) {
        if self.close_local() {
            let frame = Frame::Data {
                stream: self.id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            };
            let _ = self.out.send(Out::Frame(frame)).await;
        }
    }

    /// Aborts the stream both ways (RST_STREAM).
    pub(crate) async fn reset(&self, code: u32) {
        let known = {
            let mut map = self.shared.lock();
            map.remove(&self.id).is_some()
        };
        if known {
            let _ = self
                .out
                .send(Out::Frame(Frame::RstStream {
                    stream: self.id,
                    status: code,
                }))
                .await;
        }
    }
}

impl Session {
    /// Starts serving the peer on `io` (an upgraded connection, or a tunnel's byte stream).
    pub(crate) fn start<IO>(io: IO) -> Session
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(ACCEPT_QUEUE);
        let shared = Arc::new(Shared::default());
        let writer = tokio::spawn(write_loop(write_half, out_rx));
        let reader = tokio::spawn(read_loop(read_half, out_tx.clone(), shared.clone(), in_tx));
        Session {
            incoming: in_rx,
            out: out_tx,
            shared,
            reader,
            writer: Some(writer),
        }
    }

    /// The next stream the peer opens; `None` once the peer is gone (EOF, GOAWAY, error).
    pub(crate) async fn accept(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// Streams still tracked (open in at least one direction).
    #[cfg(test)]
    pub(crate) fn open_streams(&self) -> usize {
        self.shared.lock().len()
    }

    /// Says GOAWAY, flushes what is queued and shuts the connection (bounded: a peer that
    /// does not read gets 5 seconds).
    pub(crate) async fn close(mut self) {
        let last = self.shared.lock().keys().copied().max().unwrap_or(0);
        let out = self.out.clone();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async move {
            let _ = out
                .send(Out::Frame(Frame::GoAway {
                    last_good: last,
                    status: status::GOAWAY_OK,
                }))
                .await;
            let _ = out.send(Out::Close).await;
        })
        .await;
        if let Some(writer) = self.writer.take() {
            let abort = writer.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), writer)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Every stream ends with the session: readers see their end, writes fail (the
        // aborted reader task cannot do this cleanup itself).
        self.shared.lock().clear();
        self.reader.abort();
        if let Some(writer) = &self.writer {
            writer.abort();
        }
    }
}

async fn write_loop<W: AsyncWrite>(write_half: W, mut rx: mpsc::Receiver<Out>) {
    let mut w = std::pin::pin!(write_half);
    let mut encoder = FrameWriter::default();
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut close = false;
        // Batch what is already queued into one write.
        while let Some(out) = next.take() {
            match out {
                Out::Frame(frame) => encoder.encode(&frame, &mut buf),
                Out::Close => {
                    close = true;
                    break;
                }
            }
            if buf.len() < 64 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
                return;
            }
            buf.clear();
        }
        if close {
            let _ = w.shutdown().await;
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn read_loop<R: AsyncRead>(
    read_half: R,
    out: mpsc::Sender<Out>,
    shared: Arc<Shared>,
    incoming: mpsc::Sender<Incoming>,
) {
    let mut r = std::pin::pin!(read_half);
    let mut frames = FrameReader::default();
    let budget = Arc::new(Semaphore::new(SESSION_BUDGET));
    let mut last_id = 0u32;
    let send = |frame: Frame| {
        let out = out.clone();
        async move {
            let _ = out.send(Out::Frame(frame)).await;
        }
    };
    loop {
        let frame = match frames.read(&mut r).await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(SpdyError::Io(_)) => break,
            Err(error) => {
                tracing::debug!(%error, "SPDY session ends on a protocol error");
                send(Frame::GoAway {
                    last_good: last_id,
                    status: status::GOAWAY_PROTOCOL_ERROR,
                })
                .await;
                let _ = out.send(Out::Close).await;
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream,
                flags,
                headers,
            } => {
                if stream % 2 == 0 || stream <= last_id {
                    let code = if shared.lock().contains_key(&stream) {
                        status::STREAM_IN_USE
                    } else {
                        status::PROTOCOL_ERROR
                    };
                    send(Frame::RstStream {
                        stream,
                        status: code,
                    })
                    .await;
                    continue;
                }
                last_id = stream;
                let (tx, rx) = mpsc::unbounded_channel();
                let refused = {
                    let mut map = shared.lock();
                    if map.len() >= MAX_STREAMS {
                        true
                    } else {
                        map.insert(
                            stream,
                            StreamState {
                                data: (flags & FLAG_FIN == 0).then_some(tx),
                                local_closed: false,
                            },
                        );
                        false
                    }
                };
                if refused {
                    send(Frame::RstStream {
                        stream,
                        status: status::REFUSED_STREAM,
                    })
                    .await;
                    continue;
                }
                send(Frame::SynReply {
                    stream,
                    flags: 0,
                    headers: Headers::default(),
                })
                .await;
                let accepted = Incoming {
                    id: stream,
                    headers,
                    reader: StreamReader { rx },
                    writer: StreamWriter {
                        id: stream,
                        out: out.clone(),
                        shared: shared.clone(),
                    },
                };
                if incoming.send(accepted).await.is_err() {
                    // Nobody takes streams any more: refuse it.
                    shared.lock().remove(&stream);
                    send(Frame::RstStream {
                        stream,
                        status: status::REFUSED_STREAM,
                    })
                    .await;
                }
            }
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                let target = {
                    let map = shared.lock();
                    map.get(&stream).map(|s| s.data.clone())
                };
                let sender = match target {
                    None => {
                        send(Frame::RstStream {
                            stream,
                            status: status::INVALID_STREAM,
                        })
                        .await;
                        continue;
                    }
                    Some(None) => {
                        send(Frame::RstStream {
                            stream,
                            status: status::STREAM_ALREADY_CLOSED,
                        })
                        .await;
                        continue;
                    }
                    Some(Some(sender)) => sender,
                };
                if !data.is_empty() {
                    // Back-pressure: wait until the application took enough earlier data.
                    // Each frame costs at least 256 bytes, so tiny frames cannot pile up either.
                    let cost = data.len().max(256) as u32;
                    let Ok(permit) = budget.clone().acquire_many_owned(cost).await else {
                        break;
                    };
                    // The application may have dropped its reader: the data is discarded.
                    let _ = sender.send((data, permit));
                }
                if flags & FLAG_FIN != 0 {
                    let mut map = shared.lock();
                    if let Some(s) = map.get_mut(&stream) {
                        s.data = None;
                    }
                    Shared::reap(&mut map, stream);
                }
            }
            Frame::RstStream { stream, .. } => {
                shared.lock().remove(&stream);
            }
            Frame::Ping { id } => {
                // Pings the client started have odd ids; ours (we send none) would be even.
                if id % 2 == 1 {
                    send(Frame::Ping { id }).await;
                }
            }
            Frame::GoAway { .. } => break,
            Frame::Headers { stream, flags, .. } => {
                if flags & FLAG_FIN != 0 {
                    let mut map = shared.lock();
                    if let Some(s) = map.get_mut(&stream) {
                        s.data = None;
                    }
                    Shared::reap(&mut map, stream);
                }
            }
            // We open no streams, so a SYN_REPLY is the peer's mistake; SETTINGS and
            // WINDOW_UPDATE are moot (see the module comment); unknown types are ignored.
            Frame::SynReply { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
    }
    // The peer is gone: every stream's reader sees its end.
    for state in shared.lock().values_mut() {
        state.data = None;
    }
}

#[cfg(test)]
mod tests {
    //! Hostile peers against a session on an in-memory pipe, with tokio's paused clock so
    //! "nothing more happens" is decided without real waiting.

    use std::time::Duration;

    use tokio::io::{AsyncReadExt, DuplexStream, ReadHalf, WriteHalf};

    use super::*;

    struct Client {
        r: ReadHalf<DuplexStream>,
        w: WriteHalf<DuplexStream>,
        reader: FrameReader,
        writer: FrameWriter,
    }

    impl Client {
        fn new(io: DuplexStream) -> Client {
            let (r, w) = tokio::io::split(io);
            Client {
                r,
                w,
                reader: FrameReader::default(),
                writer: FrameWriter::default(),
            }
        }

        async fn send(&mut self, frame: Frame) {
            let mut buf = Vec::new();
            self.writer.encode(&frame, &mut buf);
            self.w.write_all(&buf).await.unwrap();
        }

        async fn recv(&mut self) -> Option<Frame> {
            self.reader.read(&mut self.r).await.unwrap()
        }

        async fn open(&mut self, stream: u32, kind: &str) {
            let mut headers = Headers::default();
            headers.push("streamtype", kind);
            self.send(Frame::SynStream {
                stream,
                flags: 0,
                headers,
            })
            .await;
        }

        fn data(stream: u32, len: usize) -> Frame {
            Frame::Data {
                stream,
                flags: 0,
                data: Bytes::from(vec![7u8; len]),
            }
        }
    }

    fn pair() -> (Session, Client) {
        let (server, client) = tokio::io::duplex(64 * 1024);
        (Session::start(server), Client::new(client))
    }

    #[tokio::test]
    async fn streams_are_replied_and_data_flows_both_ways() {
        let (mut session, mut client) = pair();
        client.open(1, "stdout").await;
        let mut incoming = session.accept().await.unwrap();
        assert_eq!(incoming.headers.get("streamtype"), Some("stdout"));
        assert!(matches!(
            client.recv().await,
            Some(Frame::SynReply { stream: 1, .. })
        ));
        client
            .send(Frame::Data {
                stream: 1,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"in"),
            })
            .await;
        assert_eq!(incoming.reader.recv().await.as_deref(), Some(&b"in"[..]));
        assert_eq!(incoming.reader.recv().await, None, "FIN ends the reader");
        incoming.writer.write(b"out").await.unwrap();
        incoming.writer.finish().await;
        assert_eq!(
            client.recv().await,
            Some(Frame::Data {
                stream: 1,
                flags: 0,
                data: Bytes::from_static(b"out")
            })
        );
        assert!(matches!(
            client.recv().await,
            Some(Frame::Data {
                stream: 1,
                flags: FLAG_FIN,
                ..
            })
        ));
        // Both sides finished: the stream is forgotten (nothing accumulates per stream).
        assert_eq!(session.open_streams(), 0);
        session.close().await;
        assert!(matches!(
            client.recv().await,
            Some(Frame::GoAway { status: 0, .. })
        ));
        assert_eq!(
            client.recv().await,
            None,
            "the connection is shut after GOAWAY"
        );
    }

    #[tokio::test]
    async fn pings_are_answered_and_bad_stream_ids_reset_while_others_go_on() {
        let (mut session, mut client) = pair();
        client.send(Frame::Ping { id: 1 }).await;
        assert_eq!(client.recv().await, Some(Frame::Ping { id: 1 }));
        // Data for a stream never opened, an even (server-side) id, a reused id.
        client.send(Client::data(99, 4)).await;
        assert_eq!(
            client.recv().await,
            Some(Frame::RstStream {
                stream: 99,
                status: status::INVALID_STREAM
            })
        );
        client.open(2, "stdin").await;
        assert_eq!(
            client.recv().await,
            Some(Frame::RstStream {
                stream: 2,
                status: status::PROTOCOL_ERROR
            })
        );
        client.open(3, "stdin").await;
        let _ = session.accept().await.unwrap();
        assert!(matches!(
            client.recv().await,
            Some(Frame::SynReply { stream: 3, .. })
        ));
        client.open(3, "stdin").await;
        assert_eq!(
            client.recv().await,
            Some(Frame::RstStream {
                stream: 3,
                status: status::STREAM_IN_USE
            })
        );
        // Data after the peer's FIN.
        client
            .send(Frame::Data {
                stream: 3,
                flags: FLAG_FIN,
                data: Bytes::new(),
            })
            .await;
        client.send(Client::data(3, 1)).await;
        assert_eq!(
            client.recv().await,
            Some(Frame::RstStream {
                stream: 3,
                status: status::STREAM_ALREADY_CLOSED
            })
        );
        // The session still serves new streams.
        client.open(5, "stdout").await;
        assert_eq!(session.accept().await.unwrap().id, 5);
    }

    #[tokio::test]
    async fn oversized_frame_ends_the_session_with_goaway() {
        let (mut session, mut client) = pair();
        client.open(1, "stdin").await;
        let _stream = session.accept().await.unwrap();
        let _ = client.recv().await;
        // A data frame header announcing 16 MiB - 1 bytes: refused before reading it.
        client
            .w
            .write_all(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        assert_eq!(
            client.recv().await,
            Some(Frame::GoAway {
                last_good: 1,
                status: status::GOAWAY_PROTOCOL_ERROR
            })
        );
        assert_eq!(client.recv().await, None);
        assert!(session.accept().await.is_none());
    }

    #[tokio::test]
    async fn zlib_bomb_in_a_header_block_ends_the_session() {
        let (mut session, mut client) = pair();
        // 16 MiB of header block compressed to ~16 KiB (under the frame cap).
        let bomb = super::super::headers::Deflater::default().deflate(&vec![0u8; 16 << 20]);
        let mut payload = 1u32.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0; 6]);
        payload.extend_from_slice(&bomb);
        let mut frame = vec![0x80, 3, 0, 1];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        client.w.write_all(&frame).await.unwrap();
        assert!(matches!(
            client.recv().await,
            Some(Frame::GoAway {
                status: status::GOAWAY_PROTOCOL_ERROR,
                ..
            })
        ));
        assert!(session.accept().await.is_none());
    }

    #[tokio::test]
    async fn open_streams_are_capped() {
        let (mut session, mut client) = pair();
        let mut held = Vec::new();
        for i in 0..MAX_STREAMS as u32 {
            client.open(2 * i + 1, "data").await;
            held.push(session.accept().await.unwrap());
            assert!(matches!(client.recv().await, Some(Frame::SynReply { .. })));
        }
        let over = 2 * MAX_STREAMS as u32 + 1;
        client.open(over, "data").await;
        assert_eq!(
            client.recv().await,
            Some(Frame::RstStream {
                stream: over,
                status: status::REFUSED_STREAM
            })
        );
        // Closing one makes room again.
        held[0].writer.reset(status::PROTOCOL_ERROR).await;
        assert!(matches!(
            client.recv().await,
            Some(Frame::RstStream { stream: 1, .. })
        ));
        client.open(over + 2, "data").await;
        assert_eq!(session.accept().await.unwrap().id, over + 2);
    }

    #[tokio::test(start_paused = true)]
    async fn unread_data_stops_the_session_reading() {
        let (mut session, mut client) = pair();
        client.open(1, "stdin").await;
        // The application takes the stream but never reads its data.
        let _stream = session.accept().await.unwrap();
        let _ = client.recv().await;
        let mut sent = 0usize;
        let flood = async {
            for _ in 0..1024 {
                client.send(Client::data(1, 32 * 1024)).await;
                sent += 32 * 1024;
            }
        };
        // The paused clock jumps to the timeout as soon as every task is stuck.
        let finished = tokio::time::timeout(Duration::from_secs(60), flood).await;
        assert!(finished.is_err(), "32 MiB were taken without being read");
        assert!(
            sent <= SESSION_BUDGET + 256 * 1024,
            "{sent} bytes accepted for an application that reads nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_holds_the_writer() {
        let (mut session, mut client) = pair();
        client.open(1, "stdout").await;
        let stream = session.accept().await.unwrap();
        let mut written = 0usize;
        let flood = async {
            for _ in 0..1024 {
                stream.writer.write(&[1u8; 32 * 1024]).await.unwrap();
                written += 32 * 1024;
            }
        };
        let finished = tokio::time::timeout(Duration::from_secs(60), flood).await;
        assert!(
            finished.is_err(),
            "32 MiB were queued for a client that reads nothing"
        );
        assert!(written <= 4 << 20, "{written} bytes queued");
        // The client reads again: everything queued arrives, in order.
        let mut buf = vec![0u8; 4096];
        assert!(client.r.read(&mut buf).await.unwrap() > 0);
    }

    #[tokio::test]
    async fn dropping_the_session_ends_its_tasks_and_connection() {
        let (mut session, mut client) = pair();
        client.open(1, "stdin").await;
        let mut stream = session.accept().await.unwrap();
        let _ = client.recv().await;
        drop(session);
        // The connection's halves were dropped with the tasks: the client sees its end,
        // and the stream's reader its end.
        let mut rest = Vec::new();
        client.r.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(stream.reader.recv().await, None);
        assert!(stream.writer.write(b"x").await.is_err());
    }
}
