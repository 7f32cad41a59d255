//! [`FrameGate`]: the size limit of a downstream websocket, enforced on each
//! frame *header* as the bytes go by.
//!
//! actix's websocket codec checks its maximum frame size only once the
//! whole frame is buffered, and actix-ws's stream keeps reading into that
//! buffer meanwhile: a client announcing a 4 GiB frame would be buffered up
//! to 4 GiB before being refused. The gate sits between the request's body
//! and actix-ws, reads every frame header (passing all bytes on unchanged,
//! buffering at most a header), and stops the stream at the header of a
//! message that would go over the limit.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_http::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

/// The longest frame header: 2 bytes, 8 of extended length, 4 of mask key.
const MAX_HEADER: usize = 14;

/// A message (or frame) over the limit, from its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Oversize {
    /// The message's size so far with this frame, in bytes, as announced.
    pub size: u64,
    /// How many bytes of the chunk just fed come before the offending
    /// frame's header (they belong to whole frames and may be passed on).
    pub before: usize,
}

/// Follows the frames of a client's byte stream.
#[derive(Debug)]
pub(crate) struct FrameGate {
    limit: u64,
    /// The header being read, and how many of its bytes have arrived.
    header: [u8; MAX_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    remaining: u64,
    /// Payload bytes of the current message's data frames so far.
    message: u64,
}

impl FrameGate {
    pub fn new(limit: usize) -> FrameGate {
        FrameGate {
            limit: limit as u64,
            header: [0; MAX_HEADER],
            have: 0,
            remaining: 0,
            message: 0,
        }
    }

    /// The header's full length, once its first two bytes are known.
    fn header_len(&self) -> Option<usize> {
        if self.have < 2 {
            return None;
        }
        let second = self.header[1];
        let extended = match second & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        Some(2 + extended + mask)
    }

    /// Reads `chunk`, the next bytes from the client. `Err` at the header
    /// of a data frame taking its message over the limit (or a control
    /// frame over it).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Oversize> {
        let mut at = 0;
        // Where the header being read began in this chunk (0 when it began
        // in an earlier one).
        let mut header_start = 0;
        while at < chunk.len() {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .map_or(chunk.len() - at, |r| r.min(chunk.len() - at));
                self.remaining -= n as u64;
                at += n;
                continue;
            }
            if self.have == 0 {
                header_start = at;
            }
            let wanted = self.header_len().unwrap_or(2);
            let n = (wanted - self.have).min(chunk.len() - at);
            self.header[self.have..self.have + n].copy_from_slice(&chunk[at..at + n]);
            self.have += n;
            at += n;
            if self.header_len() == Some(self.have) {
                self.frame_header().map_err(|size| Oversize {
                    size,
                    before: header_start,
                })?;
            }
        }
        Ok(())
    }

    /// A whole header has arrived: checks it, and expects its payload.
    fn frame_header(&mut self) -> Result<(), u64> {
        let opcode = self.header[0] & 0x0F;
        let length = match self.header[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(bytes)
            }
            n => u64::from(n),
        };
        self.have = 0;
        let size = match opcode {
            // A continuation adds to the message; text or binary starts one.
            0x0 => self.message.saturating_add(length),
            0x1 | 0x2 => length,
            // Control frames (and reserved opcodes, which the codec refuses)
            // stand alone.
            _ => length,
        };
        if size > self.limit {
            return Err(size);
        }
        if opcode <= 0x2 {
            self.message = size;
        }
        self.remaining = length;
        Ok(())
    }
}

/// A downstream's body with a [`FrameGate`] on it: it ends with
/// [`PayloadError::Overflow`] at the header of a message over the limit,
/// and `oversize` then says how large that message announced itself.
pub(crate) struct Gated<S> {
    inner: S,
    gate: FrameGate,
    oversize: Rc<Cell<Option<u64>>>,
    state: GateState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateState {
    Open,
    /// The bytes before an oversized header were passed on: one `Pending`
    /// next (see [`Gated::poll_next`]), then the error.
    Pausing,
    Failing,
    Done,
}

impl<S> Gated<S> {
    pub fn new(inner: S, limit: usize, oversize: Rc<Cell<Option<u64>>>) -> Gated<S> {
        Gated {
            inner,
            gate: FrameGate::new(limit),
            oversize,
            state: GateState::Open,
        }
    }
}

impl<S> Stream for Gated<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.state {
            GateState::Open => {}
            GateState::Pausing => {
                // NOTE: actix-ws reads its payload until `Pending` before it
                // decodes, and gives its buffer up on an error: a `Pending`
                // (with a wake-up) between the whole frames before the
                // offending header and the error lets it decode them first.
                this.state = GateState::Failing;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            GateState::Failing => {
                this.state = GateState::Done;
                return Poll::Ready(Some(Err(PayloadError::Overflow)));
            }
            GateState::Done => return Poll::Ready(None),
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => match this.gate.feed(&chunk) {
                Ok(()) => Poll::Ready(Some(Ok(chunk))),
                Err(Oversize { size, before }) => {
                    this.oversize.set(Some(size));
                    if before == 0 {
                        this.state = GateState::Done;
                        return Poll::Ready(Some(Err(PayloadError::Overflow)));
                    }
                    this.state = GateState::Pausing;
                    Poll::Ready(Some(Ok(chunk.slice(..before))))
                }
            },
            Poll::Ready(None) => {
                this.state = GateState::Done;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame header (masked, as clients send) and a payload of
    /// `len` zero bytes.
    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match len {
            0..=125 => out.push(0x80 | len as u8),
            126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out.extend(std::iter::repeat_n(0u8, len));
        out
    }

    /// Only the header of a frame announcing `len` bytes.
    fn header_only(opcode: u8, len: u64) -> Vec<u8> {
        let mut out = vec![0x80 | opcode, 0x80 | 127];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[1, 2, 3, 4]);
        out
    }

    #[test]
    fn frames_within_the_limit_pass_whatever_the_split() {
        let mut bytes = frame(true, 1, 100);
        bytes.extend(frame(true, 9, 4)); // a ping
        bytes.extend(frame(true, 2, 300));
        bytes.extend(frame(false, 1, 150));
        bytes.extend(frame(true, 0, 150));
        for split in [1, 2, 3, 7, 13, 64, 1000] {
            let mut gate = FrameGate::new(300);
            for chunk in bytes.chunks(split) {
                assert_eq!(gate.feed(chunk), Ok(()), "split {split}");
            }
            assert_eq!((gate.have, gate.remaining), (0, 0), "split {split}");
        }
    }

    #[test]
    fn a_huge_frame_is_refused_from_its_header_alone() {
        let mut gate = FrameGate::new(1024);
        let mut bytes = frame(true, 1, 10);
        let before = bytes.len();
        bytes.extend(header_only(1, 1 << 40));
        assert_eq!(
            gate.feed(&bytes),
            Err(Oversize {
                size: 1 << 40,
                before
            })
        );
    }

    #[test]
    fn a_header_split_across_chunks_is_checked_when_whole() {
        let mut gate = FrameGate::new(1024);
        let header = header_only(2, 5000);
        assert_eq!(gate.feed(&header[..3]), Ok(()));
        assert_eq!(
            gate.feed(&header[3..]),
            Err(Oversize {
                size: 5000,
                before: 0
            })
        );
    }

    #[test]
    fn fragments_may_not_add_up_past_the_limit() {
        let mut gate = FrameGate::new(250);
        assert_eq!(gate.feed(&frame(false, 1, 100)), Ok(()));
        assert_eq!(gate.feed(&frame(false, 0, 100)), Ok(()));
        assert_eq!(gate.feed(&frame(true, 10, 5)), Ok(()), "a pong in between");
        assert_eq!(
            gate.feed(&frame(true, 0, 100)),
            Err(Oversize {
                size: 300,
                before: 0
            })
        );
        // A new message starts from zero.
        let mut gate = FrameGate::new(250);
        assert_eq!(gate.feed(&frame(true, 1, 200)), Ok(()));
        assert_eq!(gate.feed(&frame(true, 1, 200)), Ok(()));
    }

    #[test]
    fn exactly_the_limit_passes() {
        let mut gate = FrameGate::new(126);
        assert_eq!(gate.feed(&frame(true, 1, 126)), Ok(()));
        assert_eq!(
            gate.feed(&frame(true, 1, 127)),
            Err(Oversize {
                size: 127,
                before: 0
            })
        );
    }

    #[test]
    fn the_stream_passes_whole_frames_before_the_error() {
        let mut bytes = frame(true, 1, 10);
        let good = bytes.len();
        bytes.extend(header_only(1, 1 << 30));
        let chunks: Vec<Result<Bytes, PayloadError>> = vec![Ok(Bytes::from(bytes))];
        let oversize = Rc::new(Cell::new(None));
        let mut gated = Gated::new(futures_util::stream::iter(chunks), 64, Rc::clone(&oversize));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(&mut gated).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(chunk))) => assert_eq!(chunk.len(), good),
            other => panic!("{other:?}"),
        }
        assert!(
            Pin::new(&mut gated).poll_next(&mut cx).is_pending(),
            "a pause"
        );
        assert!(matches!(
            Pin::new(&mut gated).poll_next(&mut cx),
            Poll::Ready(Some(Err(PayloadError::Overflow)))
        ));
        assert!(matches!(
            Pin::new(&mut gated).poll_next(&mut cx),
            Poll::Ready(None)
        ));
        assert_eq!(oversize.get(), Some(1 << 30));
    }
}
