//! [`FaultProxy`]: a loopback TCP proxy between the client under test and a backend server that
//! injects network faults on command: cut connections, black-hole them, add latency, refuse new
//! connections, or send new connections to another backend.
//!
//! It forwards bytes, knowing nothing of HTTP or websockets, so the client's handshake, frames,
//! pings and close frames pass through untouched (or not at all, under a fault).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::thread::{panic_message, ServerThread};
use crate::Watched;

/// Largest chunk read from one side at a time.
const CHUNK: usize = 64 * 1024;
/// Chunks read but not yet written, per direction; when full, reading stops (back-pressure).
const QUEUE: usize = 64;
/// How long a connection waits for the backend's TCP accept before giving up (and closing the
/// client's side).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`FaultProxy::drop_all`] waits for the proxy thread to close the sockets.
const CUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest latency actually applied by [`FaultProxy::stall`] (keeps `Instant` arithmetic finite).
const MAX_STALL: Duration = Duration::from_secs(24 * 60 * 60);

/// The faults applied to one connection, changed by the test thread.
#[derive(Debug, Clone, Copy, Default)]
struct ConnCtl {
    /// Neither side is read nor written until healed.
    black_holed: bool,
    /// Close both sockets now.
    cut: bool,
}

struct State {
    backend: SocketAddr,
    refusing: bool,
    accepted: usize,
    refused: usize,
    /// The open (forwarding) connections, by id.
    open: HashMap<u64, watch::Sender<ConnCtl>>,
    next_id: u64,
    panics: Vec<String>,
}

struct Shared {
    watched: Watched<State>,
    /// Latency added to every chunk (both directions, every connection).
    stall: watch::Sender<Duration>,
}

/// A TCP proxy on `127.0.0.1:PORT` that forwards every accepted connection to a backend address
/// (TCP_NODELAY on both sides) and injects faults on command.
///
/// Faults:
///
/// * [`drop_all`](Self::drop_all): closes both sockets of every open connection.
/// * [`black_hole`](Self::black_hole) / [`heal`](Self::heal): open connections stop forwarding,
///   without closing; `heal` resumes them.
/// * [`stall`](Self::stall): latency on every byte, both ways (a mode: new connections too).
/// * [`refuse`](Self::refuse): new connections are reset at once (a mode).
/// * [`set_backend`](Self::set_backend): new connections go to another address.
///
/// Each accepted connection dials the backend (bounded by 5 s); if that fails, the client's
/// connection is closed (the client sees EOF, typically before its handshake completes). A close
/// by one side is forwarded as a half-close (FIN) to the other; the connection ends when both
/// directions have ended, or at once when either side fails (e.g. is reset).
///
/// It runs on its own thread with a current-thread tokio runtime. Dropping it stops accepting,
/// closes every connection, joins the thread (bounded) and re-raises any panic from inside it.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: ServerThread,
}

impl FaultProxy {
    /// Binds `127.0.0.1:0` and forwards every connection to `backend`.
    pub fn start(backend: SocketAddr) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("FaultProxy: binding 127.0.0.1:0 failed");
        let addr = listener
            .local_addr()
            .expect("FaultProxy: local_addr of listener failed");
        listener
            .set_nonblocking(true)
            .expect("FaultProxy: set_nonblocking failed");
        let shared = Arc::new(Shared {
            watched: Watched::new(State {
                backend,
                refusing: false,
                accepted: 0,
                refused: 0,
                open: HashMap::new(),
                next_id: 0,
                panics: Vec::new(),
            }),
            stall: watch::Sender::new(Duration::ZERO),
        });
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let thread_shared = shared.clone();
        let (thread, ()) =
            ServerThread::spawn(format!("fault-proxy-{}", addr.port()), move |ready| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("FaultProxy: building tokio runtime failed");
                runtime.block_on(accept_loop(listener, thread_shared, shutdown_rx, ready));
                // Dropping the runtime cancels every connection task, closing its sockets.
                drop(runtime);
            });
        FaultProxy {
            addr,
            shared,
            shutdown: Some(shutdown_tx),
            thread,
        }
    }

    /// `ws://127.0.0.1:PORT/` (the backend sees whatever path the client asks for).
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// The proxy's own address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where new connections are forwarded to.
    pub fn backend(&self) -> SocketAddr {
        self.shared.watched.lock().backend
    }

    // ---- faults ------------------------------------------------------------------------------

    /// Cuts every connection open now: both of its sockets are closed together, without any
    /// websocket close frame (a plain TCP close, so a FIN; Linux sends a RST instead when
    /// unread bytes were waiting in that socket). Returns once those sockets are closed
    /// (bounded; panics otherwise), with how many connections were cut.
    ///
    /// Data the proxy held (stalled or black-holed) is discarded. Connections accepted after
    /// this call are forwarded normally: use [`refuse`](Self::refuse) to keep the client out.
    pub fn drop_all(&self) -> usize {
        let ids: Vec<u64> = self.shared.watched.update(|s| {
            for ctl in s.open.values() {
                ctl.send_modify(|c| c.cut = true);
            }
            s.open.keys().copied().collect()
        });
        let closed = self.shared.watched.wait_blocking(CUT_TIMEOUT, |s| {
            ids.iter().all(|id| !s.open.contains_key(id)).then_some(())
        });
        if closed.is_none() {
            panic!(
                "FaultProxy: drop_all: {} connection(s) not closed within {CUT_TIMEOUT:?}",
                ids.len()
            );
        }
        ids.len()
    }

    /// Black-holes every connection open now: from this call on, the proxy neither reads nor
    /// writes either of its sockets, and closes nothing — a vanished peer. The client's writes
    /// succeed (until the kernel buffers fill up), nothing comes back, and neither side learns
    /// of the other closing. Bytes the proxy read before the call may still be delivered (at
    /// most the chunk being written at that moment). Returns how many connections were
    /// black-holed.
    ///
    /// Only the connections open now: connections accepted later are forwarded normally.
    pub fn black_hole(&self) -> usize {
        self.shared.watched.update(|s| {
            for ctl in s.open.values() {
                ctl.send_modify(|c| c.black_holed = true);
            }
            s.open.len()
        })
    }

    /// Resumes every black-holed connection: forwarding starts again where it stopped, so what
    /// either side sent meanwhile is delivered then, in order, and a close by either side
    /// meanwhile reaches the other then (as after a healed network partition, where TCP
    /// retransmits). Returns how many connections were resumed.
    pub fn heal(&self) -> usize {
        self.shared.watched.update(|s| {
            let mut resumed = 0;
            for ctl in s.open.values() {
                ctl.send_if_modified(|c| {
                    let was = c.black_holed;
                    c.black_holed = false;
                    resumed += usize::from(was);
                    was
                });
            }
            resumed
        })
    }

    /// Delays every chunk of bytes, both ways, on every connection (open ones and later ones,
    /// whose handshake is delayed too), by `delay` after the proxy read it: latency, not a
    /// throughput limit. Chunks keep their order, and a half-close waits its turn behind them. The delay applies to chunks still waiting too, so `stall(Duration::ZERO)` releases
    /// everything held at once.
    pub fn stall(&self, delay: Duration) {
        self.shared.stall.send_replace(delay);
    }

    /// While `true`, every new connection is accepted and immediately reset (closed with
    /// `SO_LINGER` 0, so a RST, before reading anything) and counted in
    /// [`refused`](Self::refused), not in [`accepted`](Self::accepted): "the server is down".
    /// Connections already open are untouched. `false` accepts again.
    pub fn refuse(&self, on: bool) {
        self.shared.watched.update(|s| s.refusing = on);
    }

    /// Connections accepted from now on are forwarded to `backend`; open ones keep theirs.
    pub fn set_backend(&self, backend: SocketAddr) {
        self.shared.watched.update(|s| s.backend = backend);
    }

    // ---- observation -------------------------------------------------------------------------

    /// Connections open now (accepted and not yet closed; black-holed ones included).
    pub fn connections(&self) -> usize {
        self.shared.watched.lock().open.len()
    }

    /// Connections accepted for forwarding so far (refused ones are not counted).
    pub fn accepted(&self) -> usize {
        self.shared.watched.lock().accepted
    }

    /// Connections refused so far (see [`refuse`](Self::refuse)).
    pub fn refused(&self) -> usize {
        self.shared.watched.lock().refused
    }

    /// Waits (async, bounded) until at least `n` connections were accepted; returns the count.
    /// Panics on timeout.
    pub async fn wait_accepted(&self, n: usize, timeout: Duration) -> usize {
        match self
            .shared
            .watched
            .wait_async(timeout, |s| (s.accepted >= n).then_some(s.accepted))
            .await
        {
            Some(count) => count,
            None => panic!(
                "FaultProxy: timed out after {timeout:?} waiting for {n} accepted connection(s); \
                 accepted {}",
                self.accepted()
            ),
        }
    }

    /// Waits (async, bounded) until exactly `n` connections are open. Panics on timeout.
    pub async fn wait_open(&self, n: usize, timeout: Duration) {
        if self
            .shared
            .watched
            .wait_async(timeout, |s| (s.open.len() == n).then_some(()))
            .await
            .is_none()
        {
            panic!(
                "FaultProxy: timed out after {timeout:?} waiting for {n} open connection(s); \
                 have {}",
                self.connections()
            );
        }
    }

    /// Waits (async, bounded) until at least `n` connections were refused; returns the count.
    /// Panics on timeout.
    pub async fn wait_refused(&self, n: usize, timeout: Duration) -> usize {
        match self
            .shared
            .watched
            .wait_async(timeout, |s| (s.refused >= n).then_some(s.refused))
            .await
        {
            Some(count) => count,
            None => panic!(
                "FaultProxy: timed out after {timeout:?} waiting for {n} refused connection(s); \
                 refused {}",
                self.refused()
            ),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.thread.join();
        let panics = std::mem::take(&mut self.shared.watched.lock().panics);
        self.thread.raise_recorded(panics);
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener)
        .expect("FaultProxy: registering listener with tokio failed");
    let _ = ready.send(());
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => accept(stream, &shared),
                Err(err) => {
                    // E.g. out of file descriptors: do not spin on it.
                    log::debug!("FaultProxy: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// Registers (or refuses) a freshly accepted connection and spawns its forwarding task.
fn accept(client: TcpStream, shared: &Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let registered = shared.watched.update(|s| {
        if s.refusing {
            s.refused += 1;
            return None;
        }
        s.accepted += 1;
        let id = s.next_id;
        s.next_id += 1;
        let (ctl_tx, ctl_rx) = watch::channel(ConnCtl::default());
        s.open.insert(id, ctl_tx);
        Some((id, s.backend, ctl_rx))
    });
    let Some((id, backend, ctl)) = registered else {
        let _ = client.set_zero_linger();
        drop(client);
        return;
    };
    // Created here so that a task cancelled before its first poll still unregisters.
    let registration = Registration {
        shared: shared.clone(),
        id,
    };
    let stall = shared.stall.subscribe();
    tokio::spawn(async move {
        let registration = registration;
        let forwarding = AssertUnwindSafe(forward(client, backend, ctl, stall)).catch_unwind();
        // The sockets are closed (dropped with `forward`) before the registration goes.
        if let Err(payload) = forwarding.await {
            let msg = format!("connection {id}: {}", panic_message(payload.as_ref()));
            registration.shared.watched.update(|s| s.panics.push(msg));
        }
        drop(registration);
    });
}

/// Removes a connection from the open ones when its task ends or is dropped.
struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.watched.update(|s| s.open.remove(&self.id));
    }
}

/// One chunk passed from a side's reader to the other side's writer.
enum Chunk {
    Data(Vec<u8>),
    /// The reader saw EOF: shut the other side's writing down (half-close).
    Eof,
    /// The reader failed (e.g. reset): end the whole connection.
    Failed(io::Error),
}

struct Item {
    read_at: Instant,
    chunk: Chunk,
}

/// Forwards one connection until both directions ended, one failed, or it is cut.
async fn forward(
    client: TcpStream,
    backend: SocketAddr,
    ctl: watch::Receiver<ConnCtl>,
    stall: watch::Receiver<Duration>,
) {
    let mut cut_rx = ctl.clone();
    // Also ends when the control is gone (the proxy is going away).
    let cut = async move {
        let _ = cut_rx.wait_for(|c| c.cut).await;
    };
    let work = async move {
        let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await
        {
            Ok(Ok(server)) => server,
            Ok(Err(err)) => {
                log::debug!("FaultProxy: connecting to backend {backend} failed: {err}");
                return;
            }
            Err(_) => {
                log::debug!("FaultProxy: connecting to backend {backend} timed out");
                return;
            }
        };
        let _ = server.set_nodelay(true);
        let (client_r, client_w) = client.into_split();
        let (server_r, server_w) = server.into_split();
        let (up_tx, up_rx) = mpsc::channel(QUEUE);
        let (down_tx, down_rx) = mpsc::channel(QUEUE);
        let ended = tokio::try_join!(
            read_side(client_r, up_tx, ctl.clone()),
            write_side(server_w, up_rx, ctl.clone(), stall.clone()),
            read_side(server_r, down_tx, ctl.clone()),
            write_side(client_w, down_rx, ctl, stall),
        );
        if let Err(err) = ended {
            log::debug!("FaultProxy: connection ended: {err}");
        }
    };
    tokio::select! {
        () = cut => {}
        () = work => {}
    }
}

/// Waits until the connection is not black-holed. Never returns once the control is gone (the
/// connection is being cut then, which ends its task).
async fn passable(ctl: &mut watch::Receiver<ConnCtl>) {
    if ctl.wait_for(|c| !c.black_holed).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Reads one side into the queue towards the other side's writer; ends after queueing EOF or a
/// read error.
async fn read_side(
    mut from: OwnedReadHalf,
    to: mpsc::Sender<Item>,
    mut ctl: watch::Receiver<ConnCtl>,
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        // Not reading while black-holed: the sender's kernel buffers fill, as with a vanished
        // peer, and its close goes unnoticed.
        passable(&mut ctl).await;
        let chunk = match from.read(&mut buf).await {
            Ok(0) => Chunk::Eof,
            Ok(n) => Chunk::Data(buf[..n].to_vec()),
            Err(err) => Chunk::Failed(err),
        };
        let last = !matches!(chunk, Chunk::Data(_));
        let item = Item {
            read_at: Instant::now(),
            chunk,
        };
        // A gone writer ended with an error, which the connection reports.
        if to.send(item).await.is_err() || last {
            return Ok(());
        }
    }
}

/// Writes what the reader of the other side queued, after the stall and only while not
/// black-holed (the gate that makes `black_hole` hold bytes read just before it).
async fn write_side(
    mut to: OwnedWriteHalf,
    mut from: mpsc::Receiver<Item>,
    mut ctl: watch::Receiver<ConnCtl>,
    mut stall: watch::Receiver<Duration>,
) -> io::Result<()> {
    while let Some(item) = from.recv().await {
        // The current stall, so changing it also moves chunks already waiting.
        loop {
            let delay = (*stall.borrow_and_update()).min(MAX_STALL);
            let due = item.read_at + delay;
            if Instant::now() >= due {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                changed = stall.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(due).await;
                    }
                }
            }
        }
        passable(&mut ctl).await;
        match item.chunk {
            Chunk::Data(bytes) => to.write_all(&bytes).await?,
            Chunk::Eof => {
                to.shutdown().await?;
                return Ok(());
            }
            Chunk::Failed(err) => return Err(err),
        }
    }
    Ok(())
}
