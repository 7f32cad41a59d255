//! One socket's worth of I/O: the reader (a stream of frames the actor
//! handles) and the writer (a task draining the [`Outbox`]). A session is
//! replaceable: the actor, its pending calls, routes and configuration
//! outlive it, which is what reconnecting needs.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};
use std::time::Instant;

use actix::prelude::*;
use awc::BoxedSocket;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::codec::Decoder;

use super::frames::{Frame, FrameAssembler, FrameError};
use super::outbox::{Outbox, Queued, Take};
use super::pacing::{PacingLink, ReadPacer};
use super::RpcConnection;

/// The smallest read: enough for many small frames per system call.
const READ_CHUNK: usize = 8 * 1024;

/// Frames up to this size are copied into one buffer and written together;
/// larger ones are written from where they lie.
const COALESCE: usize = 16 * 1024;

/// How the writer ended.
#[derive(Debug)]
pub(crate) enum WriterEnd {
    /// Our close frame was written.
    CloseSent,
    /// The connection stopped the writer.
    Stopped,
    /// Writing failed: the socket is unusable.
    Failed(io::Error),
}

/// Told to the actor when the writer task ends.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct WriterEnded {
    /// The session's generation (see [`Session::generation`]): a session
    /// given up on may end after its successor has started.
    pub generation: u64,
    pub end: WriterEnd,
}

/// The live I/O of one socket.
pub(crate) struct Session {
    writer: tokio::task::JoinHandle<()>,
    reader: SpawnHandle,
    generation: u64,
}

impl Session {
    /// Starts reading `io` as a stream of the actor and writing what the
    /// outbox holds from a task of its own. `early` are bytes that arrived
    /// with the handshake response: the first frames.
    pub fn start(
        io: BoxedSocket,
        early: BytesMut,
        outbox: Arc<Outbox>,
        max_message_size: usize,
        pacing: PacingLink,
        ctx: &mut Context<RpcConnection>,
    ) -> Session {
        let (read, write) = tokio::io::split(io);
        let reader = ctx.add_stream(SocketReader {
            io: read,
            buf: early,
            decoder: FrameAssembler::new(max_message_size),
            outbox: Arc::clone(&outbox),
            eof: false,
            pacer: pacing.pacer(),
            pacing,
            putting_off: false,
        });
        let addr = ctx.address().downgrade();
        let generation = outbox.generation();
        let writer = actix::spawn(async move {
            let end = write_loop(&outbox, generation, write).await;
            // A weak address: the writer must not keep the actor alive. If
            // the actor is gone, nobody needs to hear how the writer ended.
            if let Some(addr) = addr.upgrade() {
                // NOTE: one message per session, so ignoring the mailbox
                // bound here cannot grow anything.
                addr.do_send(WriterEnded { generation, end });
            }
        });
        Session {
            writer,
            reader,
            generation,
        }
    }

    /// Which of the outbox's generations this session writes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Stops reading at once and leaves the writer to write its farewell
    /// (see [`Outbox::reset`]) for at most `linger`; the socket closes when
    /// it is done. For a socket given up on while the connection goes on.
    pub fn detach(self, linger: std::time::Duration, ctx: &mut Context<RpcConnection>) {
        ctx.cancel_future(self.reader);
        let writer = self.writer;
        let abort = writer.abort_handle();
        // NOTE: a peer that stopped reading would keep the writer blocked
        // for ever; the timeout bounds it. A writer that is done ends this
        // task at once.
        actix::spawn(async move {
            if tokio::time::timeout(linger, writer).await.is_err() {
                abort.abort();
            }
        });
    }

    /// Ends the session's I/O at once (the socket closes when both halves
    /// are dropped).
    pub fn end(self, ctx: &mut Context<RpcConnection>) {
        self.writer.abort();
        ctx.cancel_future(self.reader);
    }
}

/// Reads frames. It holds no buffer while idle: the read buffer is released
/// whenever every byte in it has been decoded, and when a read finds nothing
/// while it is empty, so an idle connection costs no read memory. It pauses
/// (reads nothing) while the frames the connection owes the server exceed
/// the outbound budget.
struct SocketReader {
    io: ReadHalf<BoxedSocket>,
    buf: BytesMut,
    decoder: FrameAssembler,
    outbox: Arc<Outbox>,
    eof: bool,
    pacer: ReadPacer,
    pacing: PacingLink,
    /// Whether the read due now was put off (counted once per read).
    putting_off: bool,
}

impl Stream for SocketReader {
    type Item = Result<Frame, FrameError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            ready!(this.outbox.poll_read_allowed(cx));
            match this.decoder.decode(&mut this.buf) {
                Ok(Some(frame)) => {
                    this.pacer.frame();
                    if this.buf.is_empty() {
                        this.buf = BytesMut::new();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Ok(None) => {}
                Err(err) => {
                    this.eof = true;
                    return Poll::Ready(Some(Err(err)));
                }
            }
            if this.eof {
                return Poll::Ready(None);
            }
            let due = match this.pacer.flooding() {
                true => this.pacer.next_read(this.pacing.quiet()),
                false => None,
            };
            if let Some(due) = due {
                if Instant::now() < due {
                    if !this.putting_off {
                        this.putting_off = true;
                        this.pacing.count_paced_read();
                    }
                    // A yield, not a sleep: see `pacing` for why.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            this.putting_off = false;
            let wanted = this.decoder.wanted(&this.buf).max(READ_CHUNK);
            this.buf.reserve(wanted);
            let room = this.buf.capacity() - this.buf.len();
            let n = match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.buf) {
                Poll::Ready(n) => n,
                Poll::Pending => {
                    if this.pacer.flooding() {
                        this.pacer.empty(Instant::now());
                    }
                    // The room reserved for this read goes back while there
                    // is nothing to read: an idle connection holds no buffer.
                    if this.buf.is_empty() {
                        this.buf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            };
            match n {
                Ok(0) => {
                    this.eof = true;
                    if !this.buf.is_empty() {
                        let cut = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the connection ended in the middle of a frame",
                        );
                        return Poll::Ready(Some(Err(FrameError::Io(cut))));
                    }
                }
                Ok(n) => this.pacer.read(Instant::now(), n == room),
                Err(err) => {
                    this.eof = true;
                    return Poll::Ready(Some(Err(FrameError::Io(err))));
                }
            }
        }
    }
}

/// Writes what the outbox holds until the close frame is written, the
/// connection stops the writer, or writing fails.
async fn write_loop(outbox: &Outbox, generation: u64, mut io: WriteHalf<BoxedSocket>) -> WriterEnd {
    let mut batch: Vec<Queued> = Vec::new();
    let mut buf = BytesMut::new();
    loop {
        let take = std::future::poll_fn(|cx| outbox.poll_take(cx, generation, &mut batch)).await;
        if take == Take::Stop {
            return WriterEnd::Stopped;
        }
        if let Err(err) = write_frames(&mut io, &batch, &mut buf).await {
            return WriterEnd::Failed(err);
        }
        outbox.written(generation, &batch);
        batch.clear();
        if take == Take::Close {
            // NOTE: no TCP shutdown here. RFC 6455 §7.1.1 has the server close
            // the TCP connection first, and a FIN right behind the close frame
            // makes actix-ws servers lose the frame (their stream reports the
            // EOF before decoding what arrived with it).
            return WriterEnd::CloseSent;
        }
    }
}

/// Writes `frames` in order: small ones gathered into `buf` and written
/// together, large ones from where they lie.
async fn write_frames<W: AsyncWrite + Unpin>(
    io: &mut W,
    frames: &[Queued],
    buf: &mut BytesMut,
) -> io::Result<()> {
    for queued in frames {
        let frame: &Bytes = &queued.frame;
        if frame.len() <= COALESCE {
            buf.put_slice(frame);
            if buf.len() < COALESCE {
                continue;
            }
        }
        if !buf.is_empty() {
            io.write_all(buf).await?;
            buf.clear();
        }
        if frame.len() > COALESCE {
            io.write_all(frame).await?;
        }
    }
    if !buf.is_empty() {
        io.write_all(buf).await?;
        buf.clear();
    }
    if buf.capacity() > 4 * COALESCE {
        *buf = BytesMut::new();
    }
    io.flush().await
}
