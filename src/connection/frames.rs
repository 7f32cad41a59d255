//! Websocket frames in and out.
//!
//! Inbound, [`FrameAssembler`] joins continuation frames into whole messages
//! and enforces the size limit on each frame *header*, before the payload is
//! buffered: awc's own codec only notices an oversized frame after it has
//! read all of it. Outbound, [`seal`] turns a payload written after
//! [`HEADER_ROOM`] into a masked client frame without copying it.

use std::io;

use actix_codec::Decoder;
use actix_http::ws::{CloseReason, OpCode, Parser, ProtocolError};
use bytes::{Buf, Bytes, BytesMut};

/// One thing the peer sent that the connection must act on.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    /// A whole text or binary message (both carry UTF-8 JSON).
    Message(Bytes),
    /// A ping to answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong (an answer to our heartbeat).
    Pong(Bytes),
    /// The peer's close frame (`None`: no status code given).
    Close(Option<CloseReason>),
    /// A message over the limit began. Its bytes are being discarded as
    /// they arrive, never buffered; frames after it are decoded as usual
    /// (so the peer's answer to our 1009 close frame is still heard).
    TooLarge { size: u64, limit: usize },
}

/// Why the inbound stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("websocket protocol violation: {0}")]
    Protocol(String),
    #[error("websocket read failed")]
    Io(#[from] io::Error),
}

impl From<ProtocolError> for FrameError {
    fn from(err: ProtocolError) -> Self {
        match err {
            ProtocolError::Io(err) => FrameError::Io(err),
            other => FrameError::Protocol(other.to_string()),
        }
    }
}

/// Decodes server frames into [`Frame`]s, joining fragments.
pub(crate) struct FrameAssembler {
    limit: usize,
    /// The message being reassembled from continuation frames.
    partial: Option<BytesMut>,
    /// Payload bytes of an oversized frame still to discard.
    skip_bytes: u64,
    /// Whether continuation frames belong to an oversized message being
    /// discarded (until its final frame).
    skipping_message: bool,
}

/// The start of a data frame: what the limit check needs.
struct DataHeader {
    fin: bool,
    continuation: bool,
    header_len: usize,
    payload_len: u64,
}

/// Reads a data frame's header if it is complete (`None` otherwise, and for
/// control frames, which the codec caps at 125 bytes).
fn data_header(src: &[u8]) -> Option<DataHeader> {
    let (&first, &second) = (src.first()?, src.get(1)?);
    if first & 0x0F > 0x2 {
        return None;
    }
    let (header_len, payload_len) = match second & 0x7F {
        126 => (
            4,
            u64::from(u16::from_be_bytes(src.get(2..4)?.try_into().ok()?)),
        ),
        127 => (10, u64::from_be_bytes(src.get(2..10)?.try_into().ok()?)),
        n => (2, u64::from(n)),
    };
    // A masked server frame is refused by the codec; its key would follow.
    let header_len = header_len + if second & 0x80 != 0 { 4 } else { 0 };
    Some(DataHeader {
        fin: first & 0x80 != 0,
        continuation: first & 0x0F == 0x0,
        header_len,
        payload_len,
    })
}

impl FrameAssembler {
    pub fn new(limit: usize) -> Self {
        FrameAssembler {
            limit,
            partial: None,
            skip_bytes: 0,
            skipping_message: false,
        }
    }

    /// How many more bytes the frame at the start of `src` needs, when its
    /// header says so and it is within the limit: the reader reserves them in
    /// one go instead of growing its buffer read by read.
    pub fn wanted(&self, src: &[u8]) -> usize {
        if self.skip_bytes > 0 {
            return 0;
        }
        match data_header(src) {
            Some(header) if header.payload_len <= self.limit as u64 => {
                let total = header.header_len + header.payload_len as usize;
                total.saturating_sub(src.len())
            }
            _ => 0,
        }
    }

    /// Discards as much of an oversized frame as has arrived; `false` while
    /// more is to come.
    fn discard(&mut self, src: &mut BytesMut) -> bool {
        let n = usize::try_from(self.skip_bytes).map_or(src.len(), |skip| skip.min(src.len()));
        src.advance(n);
        self.skip_bytes -= n as u64;
        self.skip_bytes == 0
    }

    /// Checks the next data frame's announced length against what the
    /// current message may still grow by; over the limit, starts discarding
    /// it (its header is consumed) and reports the size the first time.
    fn check_limit(&mut self, src: &mut BytesMut) -> Limit {
        let Some(header) = data_header(src) else {
            return Limit::Within;
        };
        if src.len() < header.header_len {
            return Limit::Within;
        }
        let is_continuation = header.continuation;
        if !is_continuation {
            self.skipping_message = false;
        }
        let so_far = if is_continuation {
            self.partial.as_ref().map_or(0, |p| p.len() as u64)
        } else {
            0
        };
        let size = so_far.saturating_add(header.payload_len);
        let skipping = is_continuation && self.skipping_message;
        if size <= self.limit as u64 && !skipping {
            return Limit::Within;
        }
        src.advance(header.header_len);
        self.skip_bytes = header.payload_len;
        self.partial = None;
        self.skipping_message = !header.fin;
        if skipping {
            // The rest of a message already reported is dropped silently.
            Limit::Skipping
        } else {
            Limit::TooLarge(Frame::TooLarge {
                size,
                limit: self.limit,
            })
        }
    }
}

/// What [`FrameAssembler::check_limit`] found.
enum Limit {
    /// The next frame (if any) may be parsed.
    Within,
    /// A frame of a message already reported was consumed (its payload,
    /// possibly empty, is being discarded).
    Skipping,
    /// A message over the limit began (its frame is being discarded).
    TooLarge(Frame),
}

impl Decoder for FrameAssembler {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            if self.skip_bytes > 0 && !self.discard(src) {
                return Ok(None);
            }
            match self.check_limit(src) {
                Limit::TooLarge(frame) => return Ok(Some(frame)),
                // NOTE: a skipped frame may be empty: look at the next one
                // from the top, never straight with the parser.
                Limit::Skipping => continue,
                Limit::Within => {}
            }
            // `false`: we are the client, so server frames must be unmasked.
            let Some((fin, opcode, payload)) = Parser::parse(src, false, self.limit)? else {
                return Ok(None);
            };
            let payload = payload.unwrap_or_default();
            match opcode {
                OpCode::Text | OpCode::Binary => {
                    if self.partial.is_some() {
                        return Err(FrameError::Protocol(
                            "a new message began before the fragmented one ended".into(),
                        ));
                    }
                    if fin {
                        return Ok(Some(Frame::Message(payload.freeze())));
                    }
                    self.partial = Some(payload);
                }
                OpCode::Continue => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(FrameError::Protocol(
                            "continuation frame without a message to continue".into(),
                        ));
                    };
                    partial.extend_from_slice(&payload);
                    if fin {
                        let whole = self.partial.take().unwrap_or_default();
                        return Ok(Some(Frame::Message(whole.freeze())));
                    }
                }
                OpCode::Ping => return Ok(Some(Frame::Ping(payload.freeze()))),
                OpCode::Pong => return Ok(Some(Frame::Pong(payload.freeze()))),
                OpCode::Close => {
                    // A malformed close payload still means "closing"; keep no reason.
                    let reason = Parser::try_parse_close_payload(&payload).unwrap_or(None);
                    return Ok(Some(Frame::Close(reason)));
                }
                OpCode::Bad => return Err(FrameError::Protocol("bad opcode".into())),
            }
        }
    }
}

/// Room kept in front of a payload for the largest client frame header:
/// 2 bytes, an 8-byte length, a 4-byte mask.
pub(crate) const HEADER_ROOM: usize = 14;

/// An empty buffer with [`HEADER_ROOM`] in front, for a payload to be
/// written straight after it and then [`seal`]ed into a frame: the message is
/// never copied into a second buffer.
pub(crate) fn frame_buffer(payload_capacity: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_ROOM + payload_capacity);
    buf.resize(HEADER_ROOM, 0);
    buf
}

/// Turns a [`frame_buffer`] holding a payload into one masked, final client
/// frame (RFC 6455 §5.3: clients mask everything they send).
pub(crate) fn seal(mut buf: Vec<u8>, opcode: OpCode) -> Bytes {
    let len = buf.len().saturating_sub(HEADER_ROOM);
    let mask: [u8; 4] = rand::random();
    apply_mask(&mut buf[HEADER_ROOM..], mask);
    let mut header = [0u8; HEADER_ROOM];
    header[0] = 0x80 | u8::from(opcode);
    let mut at = 2;
    if len < 126 {
        header[1] = 0x80 | len as u8;
    } else if let Ok(len) = u16::try_from(len) {
        header[1] = 0x80 | 126;
        header[2..4].copy_from_slice(&len.to_be_bytes());
        at = 4;
    } else {
        header[1] = 0x80 | 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        at = 10;
    }
    header[at..at + 4].copy_from_slice(&mask);
    let header_len = at + 4;
    let start = HEADER_ROOM - header_len;
    buf[start..HEADER_ROOM].copy_from_slice(&header[..header_len]);
    let mut frame = Bytes::from(buf);
    frame.advance(start);
    frame
}

/// A masked text frame carrying `text`.
pub(crate) fn text_frame(text: &[u8]) -> Bytes {
    let mut buf = frame_buffer(text.len());
    buf.extend_from_slice(text);
    seal(buf, OpCode::Text)
}

/// A masked ping: the heartbeat's.
pub(crate) fn ping_frame(payload: &[u8]) -> Bytes {
    let mut buf = frame_buffer(payload.len());
    buf.extend_from_slice(payload);
    seal(buf, OpCode::Ping)
}

/// A masked pong echoing a ping's payload.
pub(crate) fn pong_frame(payload: &[u8]) -> Bytes {
    let mut buf = frame_buffer(payload.len());
    buf.extend_from_slice(payload);
    seal(buf, OpCode::Pong)
}

/// A masked close frame: the code, then the reason (the caller keeps both
/// valid; see [`crate::message::Close`]).
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut buf = frame_buffer(2 + reason.len());
    buf.extend_from_slice(&code.to_be_bytes());
    buf.extend_from_slice(reason.as_bytes());
    seal(buf, OpCode::Close)
}

/// XORs `payload` with the repeating 4-byte mask, eight bytes at a time.
fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Whole chunks are multiples of 4, so the mask restarts at index 0.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_http::ws::CloseCode;

    /// An unmasked server frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 | opcode } else { opcode }];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xFFFF => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn decode_all(assembler: &mut FrameAssembler, bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut src = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = assembler.decode(&mut src)? {
            frames.push(frame);
        }
        Ok(frames)
    }

    #[test]
    fn fragments_are_joined_and_control_frames_pass_between_them() {
        let mut bytes = frame(false, 0x1, b"{\"a\":");
        bytes.extend(frame(true, 0x9, b"hi"));
        bytes.extend(frame(false, 0x0, b"[1,"));
        bytes.extend(frame(true, 0x0, b"2]}"));
        bytes.extend(frame(true, 0x2, b"{}"));
        let frames = decode_all(&mut FrameAssembler::new(1024), &bytes).unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::Ping(Bytes::from_static(b"hi")),
                Frame::Message(Bytes::from_static(b"{\"a\":[1,2]}")),
                Frame::Message(Bytes::from_static(b"{}")),
            ]
        );
    }

    #[test]
    fn frames_split_across_reads_wait_for_the_rest() {
        let bytes = frame(true, 0x1, &[b'x'; 300]);
        let mut assembler = FrameAssembler::new(1024);
        let mut src = BytesMut::new();
        for chunk in bytes.chunks(7) {
            assert_eq!(assembler.decode(&mut src).unwrap(), None);
            src.extend_from_slice(chunk);
        }
        let whole = assembler.decode(&mut src).unwrap().unwrap();
        assert_eq!(whole, Frame::Message(Bytes::from(vec![b'x'; 300])));
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header_alone() {
        // Only the 10-byte header of a 1 GiB frame has arrived.
        let mut bytes = vec![0x81, 127];
        bytes.extend_from_slice(&(1u64 << 30).to_be_bytes());
        let mut assembler = FrameAssembler::new(1 << 20);
        let mut src = BytesMut::from(&bytes[..]);
        let frame = assembler.decode(&mut src).unwrap();
        assert_eq!(
            frame,
            Some(Frame::TooLarge {
                size: 1 << 30,
                limit: 1 << 20
            })
        );
        assert!(src.is_empty(), "the header was consumed");
        // What arrives of the payload is dropped, not kept.
        src.extend_from_slice(&[b'x'; 4096]);
        assert_eq!(assembler.decode(&mut src).unwrap(), None);
        assert!(
            src.is_empty() && src.capacity() < 1 << 20,
            "nothing buffered"
        );
        assert_eq!(assembler.skip_bytes, (1 << 30) - 4096);
    }

    #[test]
    fn frames_after_a_skipped_message_are_decoded() {
        let mut bytes = frame(true, 0x1, &[b'a'; 200]);
        bytes.extend(frame(true, 0x8, &1000u16.to_be_bytes()));
        let frames = decode_all(&mut FrameAssembler::new(100), &bytes).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(
            frames[0],
            Frame::TooLarge {
                size: 200,
                limit: 100
            }
        );
        assert!(matches!(frames[1], Frame::Close(Some(_))));
    }

    #[test]
    fn fragments_may_not_add_up_past_the_limit_and_the_rest_is_skipped() {
        let mut bytes = frame(false, 0x1, &[b'a'; 60]);
        bytes.extend(frame(false, 0x0, &[b'b'; 60]));
        bytes.extend(frame(false, 0x0, &[b'c'; 10]));
        bytes.extend(frame(true, 0x0, &[b'd'; 10]));
        bytes.extend(frame(true, 0x1, b"{}"));
        let frames = decode_all(&mut FrameAssembler::new(100), &bytes).unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::TooLarge {
                    size: 120,
                    limit: 100
                },
                Frame::Message(Bytes::from_static(b"{}")),
            ]
        );
    }

    /// Regression (found by `frames_split_anyhow_decode_the_same`): an
    /// empty continuation frame of an oversized message being discarded made
    /// the next frame skip the limit check, and a continuation after it was
    /// taken for a protocol violation (the connection closed with 1002).
    #[test]
    fn empty_fragments_of_a_discarded_message_are_skipped_too() {
        let mut bytes = frame(false, 0x1, &[b'a'; 96]);
        bytes.extend(frame(false, 0x0, b""));
        bytes.extend(frame(true, 0x0, b""));
        bytes.extend(frame(true, 0x1, b"{}"));
        let frames = decode_all(&mut FrameAssembler::new(64), &bytes).unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::TooLarge {
                    size: 96,
                    limit: 64
                },
                Frame::Message(Bytes::from_static(b"{}")),
            ]
        );
    }

    #[test]
    fn broken_sequences_are_protocol_errors() {
        let lone_continuation = frame(true, 0x0, b"x");
        assert!(matches!(
            decode_all(&mut FrameAssembler::new(100), &lone_continuation),
            Err(FrameError::Protocol(_))
        ));
        let mut interleaved = frame(false, 0x1, b"x");
        interleaved.extend(frame(true, 0x1, b"y"));
        assert!(matches!(
            decode_all(&mut FrameAssembler::new(100), &interleaved),
            Err(FrameError::Protocol(_))
        ));
        let masked = [0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1];
        assert!(matches!(
            decode_all(&mut FrameAssembler::new(100), &masked),
            Err(FrameError::Protocol(_))
        ));
        let bad_opcode = frame(true, 0x3, b"");
        assert!(decode_all(&mut FrameAssembler::new(100), &bad_opcode).is_err());
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let frames =
            decode_all(&mut FrameAssembler::new(100), &frame(true, 0x8, &payload)).unwrap();
        assert_eq!(
            frames,
            vec![Frame::Close(Some(CloseReason {
                code: CloseCode::Other(4000),
                description: Some("bye".into())
            }))]
        );
        let bad = decode_all(&mut FrameAssembler::new(100), &frame(true, 0x8, &[0x00])).unwrap();
        assert_eq!(bad, vec![Frame::Close(None)]);
    }

    /// Decodes one of our (masked) frames the way a server would.
    fn server_side(frame: &[u8]) -> (bool, OpCode, Vec<u8>) {
        let mut src = BytesMut::from(frame);
        let (fin, opcode, payload) = Parser::parse(&mut src, true, 1 << 30).unwrap().unwrap();
        assert!(src.is_empty(), "exactly one frame");
        (fin, opcode, payload.map(|p| p.to_vec()).unwrap_or_default())
    }

    #[test]
    fn outbound_frames_are_masked_and_decode_back_at_every_length_class() {
        for len in [0, 1, 7, 8, 9, 125, 126, 127, 65_535, 65_536, 70_001] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let frame = text_frame(&payload);
            assert_eq!(frame[0], 0x81, "fin + text");
            assert_ne!(frame[1] & 0x80, 0, "masked");
            let (fin, opcode, back) = server_side(&frame);
            assert!(fin);
            assert_eq!(opcode, OpCode::Text);
            assert_eq!(back, payload, "length {len}");
        }
    }

    #[test]
    fn control_frames_decode_back() {
        let (_, opcode, payload) = server_side(&pong_frame(b"hi"));
        assert_eq!((opcode, payload.as_slice()), (OpCode::Pong, &b"hi"[..]));
        let (_, opcode, payload) = server_side(&close_frame(4000, "bye"));
        assert_eq!(opcode, OpCode::Close);
        assert_eq!(payload, [&4000u16.to_be_bytes()[..], b"bye"].concat());
    }

    #[test]
    fn masks_differ_between_frames() {
        let a = text_frame(b"same payload");
        let b = text_frame(b"same payload");
        let c = text_frame(b"same payload");
        assert!(a != b || b != c, "three frames with the same mask");
    }

    /// Messages (text or binary, some over the limit) cut into fragments
    /// with pings between them, the byte stream delivered in chunks of
    /// any sizes: the assembler yields exactly the messages and pings, in
    /// order, each oversized one as `TooLarge`.
    fn any_split_gives_the_same_frames(
        messages: &[(Vec<u8>, bool, Vec<usize>, bool)],
        chunks: &[usize],
        limit: usize,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for (n, (payload, binary, cuts, ping_between)) in messages.iter().enumerate() {
            let mut pieces: Vec<&[u8]> = Vec::new();
            let mut rest = &payload[..];
            for &cut in cuts {
                let at = cut.min(rest.len());
                let (head, tail) = rest.split_at(at);
                pieces.push(head);
                rest = tail;
            }
            pieces.push(rest);
            let last = pieces.len() - 1;
            // An oversized message is reported by the frame that crosses
            // the limit: the first one, when it alone is too large.
            let told_at_first = pieces[0].len() > limit;
            for (i, piece) in pieces.iter().enumerate() {
                let opcode = match (i, binary) {
                    (0, true) => 0x2,
                    (0, false) => 0x1,
                    _ => 0x0,
                };
                bytes.extend(frame(i == last, opcode, piece));
                if i == 0 && told_at_first {
                    expected.push(Frame::TooLarge { size: 0, limit });
                }
                if *ping_between && i == 0 && last > 0 {
                    bytes.extend(frame(true, 0x9, &[n as u8]));
                    expected.push(Frame::Ping(Bytes::from(vec![n as u8])));
                }
            }
            if payload.len() <= limit {
                expected.push(Frame::Message(Bytes::from(payload.clone())));
            } else if !told_at_first {
                expected.push(Frame::TooLarge { size: 0, limit });
            }
        }
        let mut assembler = FrameAssembler::new(limit);
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        let mut input = &bytes[..];
        let mut sizes = chunks.iter().cycle();
        while !input.is_empty() {
            let n = (*sizes.next().unwrap_or(&1)).clamp(1, input.len());
            src.extend_from_slice(&input[..n]);
            input = &input[n..];
            while let Some(frame) = assembler.decode(&mut src).map_err(|e| {
                proptest::test_runner::TestCaseError::fail(format!("decode failed: {e}"))
            })? {
                got.push(frame);
            }
        }
        // Sizes of oversized messages depend on where the limit was crossed.
        let got: Vec<Frame> = got
            .into_iter()
            .map(|f| match f {
                Frame::TooLarge { limit, .. } => Frame::TooLarge { size: 0, limit },
                other => other,
            })
            .collect();
        proptest::prop_assert_eq!(got, expected);
        proptest::prop_assert!(src.is_empty());
        Ok(())
    }

    fn message_strategy(
    ) -> impl proptest::strategy::Strategy<Value = Vec<(Vec<u8>, bool, Vec<usize>, bool)>> {
        use proptest::prelude::*;
        prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 0..400),
                any::<bool>(),
                prop::collection::vec(0usize..200, 0..4),
                any::<bool>(),
            ),
            1..8,
        )
    }

    proptest::proptest! {
        #[test]
        fn frames_split_anyhow_decode_the_same(
            messages in message_strategy(),
            chunks in proptest::collection::vec(1usize..300, 1..16),
            limit in 64usize..512,
        ) {
            any_split_gives_the_same_frames(&messages, &chunks, limit)?;
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(50_000))]
        /// The long run: `cargo test -- --ignored`.
        #[test]
        #[ignore = "long: many more cases"]
        fn frames_split_anyhow_decode_the_same_long(
            messages in message_strategy(),
            chunks in proptest::collection::vec(1usize..300, 1..16),
            limit in 64usize..512,
        ) {
            any_split_gives_the_same_frames(&messages, &chunks, limit)?;
        }
    }
}
