//! [`RawServer`]: a hand-rolled websocket peer on a bare tokio `TcpListener`, for tests that need
//! byte-level control over what the client receives.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::thread::{panic_message, ServerThread};
use crate::Watched;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest HTTP request head accepted during the handshake.
const MAX_REQUEST_HEAD: usize = 64 * 1024;

type Script = dyn Fn(RawConn) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

enum Mode {
    /// 101 handshake, then the script.
    Script(Box<Script>),
    /// Answer with this HTTP status and close.
    Reject(u16),
    /// Answer with these exact bytes and close.
    Respond(Vec<u8>),
}

struct State {
    accepted: usize,
    requests: Vec<String>,
    panics: Vec<String>,
}

/// A minimal websocket server: hand-made handshake, then a per-connection async script drives a
/// [`RawConn`]. Runs on its own thread with a current-thread tokio runtime. Dropping it stops the
/// accept loop and drops every connection (scripts still running are cancelled), joins the thread
/// (bounded) and re-raises any script panic.
pub struct RawServer {
    addr: SocketAddr,
    shared: Arc<Watched<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: ServerThread,
}

impl RawServer {
    /// Accepts connections; for each, after a successful handshake, runs `script` with the
    /// connection. A panicking script is recorded and re-raised when the server is dropped.
    pub fn start<F, Fut>(script: F) -> RawServer
    where
        F: Fn(RawConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::with_mode(Mode::Script(Box::new(move |conn| Box::pin(script(conn)))))
    }

    /// A server answering every handshake with this HTTP status (empty body) and closing.
    pub fn reject(status: u16) -> RawServer {
        Self::with_mode(Mode::Reject(status))
    }

    /// A server answering every handshake request with exactly these bytes and closing (for
    /// malformed handshake responses: wrong accept key, missing Upgrade header, garbage, …).
    pub fn respond_raw(bytes: impl Into<Vec<u8>>) -> RawServer {
        Self::with_mode(Mode::Respond(bytes.into()))
    }

    fn with_mode(mode: Mode) -> RawServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("RawServer: binding 127.0.0.1:0 failed");
        let addr = listener
            .local_addr()
            .expect("RawServer: local_addr of listener failed");
        listener
            .set_nonblocking(true)
            .expect("RawServer: set_nonblocking failed");
        let shared = Arc::new(Watched::new(State {
            accepted: 0,
            requests: Vec::new(),
            panics: Vec::new(),
        }));
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_shared = shared.clone();
        let (thread, ()) =
            ServerThread::spawn(format!("raw-server-{}", addr.port()), move |ready| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("RawServer: building tokio runtime failed");
                runtime.block_on(accept_loop(
                    listener,
                    Arc::new(mode),
                    thread_shared,
                    shutdown_rx,
                    ready,
                ));
                // Dropping the runtime cancels every connection task (dropping its socket).
                drop(runtime);
            });
        RawServer {
            addr,
            shared,
            shutdown: Some(shutdown_tx),
            thread,
        }
    }

    /// `ws://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of TCP connections accepted so far (whatever became of their handshake).
    pub fn connections_accepted(&self) -> usize {
        self.shared.lock().accepted
    }

    /// The HTTP request heads (request line + headers, without the final blank line) of every
    /// handshake request read so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.thread.join();
        let panics = std::mem::take(&mut self.shared.lock().panics);
        self.thread.raise_recorded(panics);
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    mode: Arc<Mode>,
    shared: Arc<Watched<State>>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener)
        .expect("RawServer: registering listener with tokio failed");
    let _ = ready.send(());
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.update(|s| s.accepted += 1);
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, mode.clone(), shared.clone()));
                }
                Err(err) => log::debug!("RawServer: accept failed: {err}"),
            },
        }
    }
}

async fn serve(mut stream: TcpStream, mode: Arc<Mode>, shared: Arc<Watched<State>>) {
    // Read the request head up to \r\n\r\n; keep whatever follows it.
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let rest = buf[head_end + 4..].to_vec();
    shared.update(|s| s.requests.push(head.clone()));

    let script = match &*mode {
        Mode::Reject(status) => {
            let response = format!(
                "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                reason_phrase(*status)
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
            return;
        }
        Mode::Respond(bytes) => {
            let _ = stream.write_all(bytes).await;
            let _ = stream.shutdown().await;
            return;
        }
        Mode::Script(script) => script,
    };

    let key = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_owned())
    });
    let Some(key) = key else {
        let _ = stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        return;
    };
    let accept = actix_http::ws::hash_key(key.as_bytes());
    let mut response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ".to_vec();
    response.extend_from_slice(&accept);
    response.extend_from_slice(b"\r\n\r\n");
    if stream.write_all(&response).await.is_err() {
        return;
    }

    let conn = RawConn {
        stream,
        buf: rest,
        request: head,
    };
    if let Err(payload) = AssertUnwindSafe(script(conn)).catch_unwind().await {
        let msg = panic_message(payload.as_ref());
        shared.update(|s| s.panics.push(msg));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

enum Parsed {
    /// A complete frame and the number of bytes it used.
    Frame(RawFrame, usize),
    /// At least this many bytes in total are needed.
    Need(usize),
}

/// Parses one frame from the start of `buf` without consuming; `None` for an absurd length.
fn parse_frame(buf: &[u8]) -> Option<Parsed> {
    const MAX_FRAME: u64 = 1 << 30;
    if buf.len() < 2 {
        return Some(Parsed::Need(2));
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut pos) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Some(Parsed::Need(4));
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Some(Parsed::Need(10));
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if len > MAX_FRAME {
        return None;
    }
    let len = len as usize;
    let mask_at = pos;
    if masked {
        pos += 4;
    }
    let total = pos + len;
    if buf.len() < total {
        return Some(Parsed::Need(total));
    }
    let mut payload = buf[pos..total].to_vec();
    if masked {
        let mask = &buf[mask_at..mask_at + 4];
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Some(Parsed::Frame(
        RawFrame {
            fin,
            opcode,
            payload,
        },
        total,
    ))
}

/// One frame read from the client (already unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// For close frames: the status code and reason, if the payload has them.
    pub fn close_code(&self) -> Option<(u16, String)> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2).then(|| {
            (
                u16::from_be_bytes([self.payload[0], self.payload[1]]),
                String::from_utf8_lossy(&self.payload[2..]).into_owned(),
            )
        })
    }
}

/// One accepted, upgraded connection; owns the `TcpStream`. Dropping it drops the TCP connection
/// without a close frame. Send errors (peer gone) are ignored; reads return `None` on EOF/error.
pub struct RawConn {
    stream: TcpStream,
    /// Bytes read from the socket but not consumed yet.
    buf: Vec<u8>,
    request: String,
}

impl RawConn {
    /// The handshake request head (request line + headers).
    pub fn request(&self) -> &str {
        &self.request
    }

    /// Value of a handshake request header (name case-insensitive).
    pub fn request_header(&self, name: &str) -> Option<String> {
        self.request.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// Reads one whole client frame, unmasking it. `None` on EOF (also mid-frame), read error or
    /// an absurd length (> 1 GiB). Unbounded in time: wrap in a timeout. Cancel-safe (partially
    /// received frames stay buffered).
    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        loop {
            let needed = match parse_frame(&self.buf)? {
                Parsed::Frame(frame, used) => {
                    self.buf.drain(..used);
                    return Some(frame);
                }
                Parsed::Need(total) => total - self.buf.len(),
            };
            self.buf.reserve(needed.clamp(4096, 1 << 20));
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads frames until a complete text/binary message (joining continuations, answering pings
    /// with pongs, skipping pongs) and parses it as JSON (unparseable: `Value::String(text)`).
    /// `None` on EOF or on a close frame (which is not answered).
    pub async fn read_json(&mut self) -> Option<Value> {
        let mut message: Option<Vec<u8>> = None;
        loop {
            let frame = self.read_frame().await?;
            match frame.opcode {
                OP_PING => {
                    self.send_frame(true, OP_PONG, &frame.payload).await;
                    continue;
                }
                OP_PONG => continue,
                OP_CLOSE => return None,
                OP_TEXT | OP_BINARY => message = Some(frame.payload),
                OP_CONTINUATION => message
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(&frame.payload),
                _ => continue,
            }
            if frame.fin {
                let bytes = message.take().unwrap_or_default();
                return Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                }));
            }
        }
    }

    /// Header bytes of an unmasked server frame with this fin/opcode/payload length (7-bit,
    /// 16-bit or 64-bit length encoding as required).
    pub fn frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut header = vec![(if fin { 0x80 } else { 0 }) | (opcode & 0x0f)];
        if len < 126 {
            header.push(len as u8);
        } else if len <= u64::from(u16::MAX) {
            header.push(126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            header.push(127);
            header.extend_from_slice(&len.to_be_bytes());
        }
        header
    }

    /// Writes one unmasked server frame.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let mut bytes = Self::frame_header(fin, opcode, payload.len() as u64);
        bytes.extend_from_slice(payload);
        self.send_raw(&bytes).await;
    }

    /// One final text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(true, OP_TEXT, text.as_bytes()).await;
    }

    /// One final text frame holding the compact JSON.
    pub async fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Writes raw bytes as they are (errors ignored).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(err) = self.stream.write_all(bytes).await {
            log::debug!("RawConn: write failed: {err}");
            return;
        }
        let _ = self.stream.flush().await;
    }

    /// A close frame with this code and reason.
    pub async fn send_close(&mut self, code: u16, reason: &str) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send_frame(true, OP_CLOSE, &payload).await;
    }

    /// Keeps the connection open doing nothing (frames, pings included, are read and ignored)
    /// until the peer closes — EOF or a close frame, which is not answered — or `max` elapses.
    pub async fn idle(&mut self, max: Duration) {
        let _ = tokio::time::timeout(max, async {
            while let Some(frame) = self.read_frame().await {
                if frame.opcode == OP_CLOSE {
                    break;
                }
            }
        })
        .await;
    }
}
