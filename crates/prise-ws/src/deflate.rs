//! The permessage-deflate codec (RFC 7692 §6 and §7.2), without I/O.
//!
//! It sits between the socket and tungstenite's framing, which knows nothing
//! of compression, and rewrites frames in both directions:
//!
//! ```text
//!  socket ──▶ Inbound: compressed frames (RSV1) ──inflate──▶ plain frames ──▶ tungstenite
//!  socket ◀── Outbound: compressed frames (RSV1) ◀─deflate── plain frames ◀── tungstenite
//! ```
//!
//! Control frames and uncompressed messages pass through untouched.
//! Inflated data is handed up in fragments of at most [`INFLATE_CHUNK`] bytes,
//! so no buffer here grows with the message; tungstenite reassembles them
//! under its own message cap.
//!
//! Failures are reported in tungstenite's own terms, so every caller's
//! existing mapping from errors to close codes applies unchanged:
//! - a message whose inflated size passes the message cap (a deflate bomb), or
//!   a compressed frame over the frame cap, is handed up as a frame header
//!   announcing `max_frame_size + 1` bytes, which tungstenite refuses before
//!   reading any payload: [`crate::WsError::Capacity`], close 1009;
//! - invalid compressed data, RSV1 on a continuation frame, or a new message
//!   inside a compressed one is handed up as an empty frame with a reserved
//!   bit set: [`crate::WsError::Protocol`], close 1002 (a control frame with
//!   RSV1 is handed up as it is, and refused the same way).
//!
//! After either, the inbound side is poisoned and hands up nothing more.

use bytes::{Buf, BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::extension::Negotiated;

/// Most inflated bytes handed up in one frame.
pub const INFLATE_CHUNK: usize = 16 * 1024;
/// Most compressed bytes inflated in one step.
const INPUT_CHUNK: usize = 4 * 1024;
/// The empty stored block that ends every compressed message (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

const OP_CONTINUE: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const RSV1: u8 = 0x40;
const RSV2: u8 = 0x20;

/// Which end of the connection this endpoint is: clients mask, servers do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Accepted the connection; frames received are masked.
    Server,
    /// Opened the connection; frames sent are masked.
    Client,
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    /// The three reserved bits, in place (`0x70` mask of the first byte).
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
}

impl Header {
    /// Parses a header at the start of `buf`: `None` when more bytes are needed.
    fn parse(buf: &[u8]) -> Option<(Self, usize)> {
        let [b0, b1, ..] = *buf else { return None };
        let (len, mut at) = match b1 & 0x7f {
            126 => (
                u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
                4,
            ),
            127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
            n => (u64::from(n), 2),
        };
        let mask = if b1 & 0x80 != 0 {
            let key: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
            at += 4;
            Some(key)
        } else {
            None
        };
        let header = Self {
            fin: b0 & 0x80 != 0,
            rsv: b0 & 0x70,
            opcode: b0 & 0x0f,
            mask,
            len,
        };
        Some((header, at))
    }

    fn write(&self, out: &mut BytesMut) {
        let b0 = (u8::from(self.fin) << 7) | self.rsv | self.opcode;
        let m = if self.mask.is_some() { 0x80 } else { 0 };
        out.put_u8(b0);
        match self.len {
            n if n < 126 => out.put_u8(m | n as u8),
            n if n <= u64::from(u16::MAX) => {
                out.put_u8(m | 126);
                out.put_u16(n as u16);
            }
            n => {
                out.put_u8(m | 127);
                out.put_u64(n);
            }
        }
        if let Some(key) = self.mask {
            out.put_slice(&key);
        }
    }

    fn is_control(&self) -> bool {
        self.opcode & 0x08 != 0
    }

    fn is_data_start(&self) -> bool {
        matches!(self.opcode, OP_TEXT | OP_BINARY)
    }
}

/// XORs `data` with `key`, starting `offset` bytes into the masked payload.
fn apply_mask(data: &mut [u8], key: [u8; 4], offset: u64) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= key[((offset + i as u64) % 4) as usize];
    }
}

/// The data message the inbound side is in, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InMessage {
    None,
    /// An uncompressed fragmented message: tungstenite checks it.
    Plain,
    /// A compressed message: `opcode` of its first frame, `started` once a
    /// fragment of it was handed up.
    Compressed {
        opcode: u8,
        started: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InState {
    /// Waiting for a frame header.
    Header,
    /// Copying `remaining` payload bytes of an untouched frame.
    Pass { remaining: u64 },
    /// Inflating a compressed frame.
    Inflate {
        remaining: u64,
        mask: Option<[u8; 4]>,
        offset: u64,
        fin: bool,
        tail_fed: bool,
    },
    /// Failed: nothing more is handed up.
    Poisoned,
}

/// Inbound half: compressed frames from the peer in, plain frames for tungstenite out.
pub struct Inbound {
    side: Side,
    max_message: usize,
    max_frame: usize,
    reset_each_message: bool,
    inflate: Decompress,
    state: InState,
    message: InMessage,
    /// Inflated bytes of the current message.
    inflated: usize,
    /// Compressed bytes of the current message.
    compressed: u64,
    /// Unmasked compressed bytes not yet inflated (at most [`INPUT_CHUNK`]).
    pending: BytesMut,
    /// Inflated bytes not yet handed up (at most [`INFLATE_CHUNK`]).
    chunk: Vec<u8>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("state", &self.state)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl Inbound {
    /// An inbound half for `side`, capping inflated messages at `max_message`
    /// and compressed frames at `max_frame` bytes.
    pub fn new(side: Side, n: &Negotiated, max_message: usize, max_frame: usize) -> Self {
        Self {
            side,
            max_message,
            max_frame,
            reset_each_message: n.recv_no_context_takeover,
            // The largest window decodes whatever window the peer used.
            inflate: Decompress::new_with_window_bits(false, 15),
            state: InState::Header,
            message: InMessage::None,
            inflated: 0,
            compressed: 0,
            pending: BytesMut::new(),
            chunk: Vec::new(),
        }
    }

    /// True once a failure was handed up.
    pub fn is_poisoned(&self) -> bool {
        self.state == InState::Poisoned
    }

    /// The header of a frame handed up: masked (with a zero key, so the payload
    /// is unchanged) when tungstenite is the server and expects masked frames.
    fn up_header(&self, fin: bool, rsv: u8, opcode: u8, len: u64) -> Header {
        Header {
            fin,
            rsv,
            opcode,
            mask: (self.side == Side::Server).then_some([0; 4]),
            len,
        }
    }

    fn current_opcode(&self) -> u8 {
        match self.message {
            InMessage::Compressed {
                started: false,
                opcode,
            } => opcode,
            _ => OP_CONTINUE,
        }
    }

    /// Hands up a frame tungstenite refuses with a capacity error.
    fn fail_too_big(&mut self, out: &mut BytesMut) {
        let len = self.max_frame as u64 + 1;
        self.up_header(true, 0, self.current_opcode(), len)
            .write(out);
        self.poison();
    }

    /// Hands up a frame tungstenite refuses with a protocol error.
    fn fail_protocol(&mut self, out: &mut BytesMut) {
        self.up_header(true, RSV2, self.current_opcode(), 0)
            .write(out);
        self.poison();
    }

    fn poison(&mut self) {
        self.state = InState::Poisoned;
        self.pending = BytesMut::new();
        self.chunk = Vec::new();
    }

    /// Hands up the inflated bytes gathered so far as one fragment.
    fn emit_chunk(&mut self, fin: bool, out: &mut BytesMut) {
        let h = self.up_header(fin, 0, self.current_opcode(), self.chunk.len() as u64);
        h.write(out);
        out.extend_from_slice(&self.chunk);
        self.chunk.clear();
        if let InMessage::Compressed { started, .. } = &mut self.message {
            *started = true;
        }
    }

    /// Consumes bytes of `input` and appends frames for tungstenite to `out`.
    ///
    /// Each call does a bounded amount of work. Returns false when nothing
    /// could be done without more input.
    pub fn process(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> bool {
        match self.state {
            InState::Poisoned => false,
            InState::Header => {
                let Some((h, at)) = Header::parse(input) else {
                    return false;
                };
                self.on_header(h, at, input, out);
                true
            }
            InState::Pass { remaining } => {
                if input.is_empty() {
                    return false;
                }
                let n = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                out.extend_from_slice(&input[..n]);
                input.advance(n);
                let remaining = remaining - n as u64;
                self.state = if remaining == 0 {
                    InState::Header
                } else {
                    InState::Pass { remaining }
                };
                true
            }
            InState::Inflate { .. } => self.inflate_step(input, out),
        }
    }

    fn on_header(&mut self, h: Header, at: usize, input: &mut BytesMut, out: &mut BytesMut) {
        let compressed_message = matches!(self.message, InMessage::Compressed { .. });
        let masked_ok = h.mask.is_some() == (self.side == Side::Server);
        if h.is_control() || (h.rsv & RSV1 == 0 && !compressed_message) {
            // Control frames, and frames outside compressed messages without
            // RSV1: tungstenite checks them as they are.
            if !h.is_control() && h.rsv == 0 {
                if h.is_data_start() && !h.fin {
                    self.message = InMessage::Plain;
                } else if h.opcode == OP_CONTINUE && h.fin {
                    self.message = InMessage::None;
                }
            }
            out.extend_from_slice(&input[..at]);
            input.advance(at);
            self.state = if h.len == 0 {
                InState::Header
            } else {
                InState::Pass { remaining: h.len }
            };
            return;
        }
        input.advance(at);
        let starts = h.is_data_start() && h.rsv == RSV1 && self.message == InMessage::None;
        let continues = h.opcode == OP_CONTINUE && h.rsv == 0 && compressed_message;
        if !(starts || continues) || !masked_ok {
            // RSV1 on a continuation or inside a plain message, another
            // reserved bit, a new message inside a compressed one, or wrong
            // masking: the connection fails.
            self.fail_protocol(out);
            return;
        }
        if starts {
            self.message = InMessage::Compressed {
                opcode: h.opcode,
                started: false,
            };
            self.inflated = 0;
            self.compressed = 0;
        }
        if h.len > self.max_frame as u64 {
            self.fail_too_big(out);
            return;
        }
        self.state = InState::Inflate {
            remaining: h.len,
            mask: h.mask,
            offset: 0,
            fin: h.fin,
            tail_fed: false,
        };
    }

    fn inflate_step(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> bool {
        let InState::Inflate {
            mut remaining,
            mask,
            mut offset,
            fin,
            mut tail_fed,
        } = self.state
        else {
            return false;
        };
        if self.pending.is_empty() {
            if remaining > 0 {
                if input.is_empty() {
                    return false;
                }
                let n = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len())
                    .min(INPUT_CHUNK);
                let mut piece = input.split_to(n);
                if let Some(key) = mask {
                    apply_mask(&mut piece, key, offset);
                }
                self.pending.unsplit(piece);
                remaining -= n as u64;
                offset += n as u64;
                self.compressed += n as u64;
            } else if fin && !tail_fed {
                // An empty payload is taken as an empty message: the tail
                // alone is not a valid block.
                if self.compressed > 0 {
                    self.pending.extend_from_slice(&TAIL);
                }
                tail_fed = true;
            }
        }
        self.state = InState::Inflate {
            remaining,
            mask,
            offset,
            fin,
            tail_fed,
        };
        // Inflate into the free part of the chunk, never past its capacity.
        if self.chunk.capacity() == 0 {
            self.chunk = Vec::with_capacity(INFLATE_CHUNK);
        }
        let before_in = self.inflate.total_in();
        let before_out = self.chunk.len();
        let flush = if tail_fed {
            FlushDecompress::Sync
        } else {
            FlushDecompress::None
        };
        let room = self.chunk.capacity() - self.chunk.len();
        let status = self
            .inflate
            .decompress_vec(&self.pending, &mut self.chunk, flush);
        let consumed = (self.inflate.total_in() - before_in) as usize;
        self.pending.advance(consumed);
        let produced = self.chunk.len() - before_out;
        self.inflated = self.inflated.saturating_add(produced);
        match status {
            Err(_) => {
                self.fail_protocol(out);
                return true;
            }
            Ok(Status::StreamEnd) => {
                // The peer ended the deflate stream (a final block): start a
                // fresh one for whatever follows.
                self.inflate.reset(false);
            }
            Ok(_) => {}
        }
        if self.inflated > self.max_message {
            self.fail_too_big(out);
            return true;
        }
        if self.chunk.len() == self.chunk.capacity() {
            self.emit_chunk(false, out);
            return true;
        }
        let drained = self.pending.is_empty() && produced < room;
        if drained && remaining == 0 {
            if !fin {
                self.state = InState::Header;
                return true;
            }
            if tail_fed {
                self.emit_chunk(true, out);
                self.message = InMessage::None;
                self.state = InState::Header;
                if self.reset_each_message {
                    self.inflate.reset(false);
                }
                self.chunk = Vec::new();
            }
        }
        // Progress: input consumed, output produced or the tail queued.
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    Header,
    Pass {
        remaining: u64,
    },
    Deflate {
        remaining: u64,
        header: Header,
        offset: u64,
        first: bool,
    },
}

/// Outbound half: plain frames from tungstenite in, compressed frames for the socket out.
pub struct Outbound {
    deflate: Compress,
    reset_each_message: bool,
    state: OutState,
    /// Inside a message whose first frame was compressed.
    in_message: bool,
    /// Bytes of a header split across writes (at most 14).
    header: Vec<u8>,
    /// Compressed payload of the current frame.
    payload: Vec<u8>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// An outbound half compressing as agreed in `n`.
    pub fn new(n: &Negotiated) -> Self {
        // zlib cannot make a raw stream with a 256-byte window; with 512 it
        // never emits a distance over 250, so its output fits a 2^8 window.
        let bits = n.send_window_bits.clamp(9, 15);
        Self {
            deflate: Compress::new_with_window_bits(
                Compression::new(u32::from(n.level.min(9))),
                false,
                bits,
            ),
            reset_each_message: n.send_no_context_takeover,
            state: OutState::Header,
            in_message: false,
            header: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// Consumes all of `input` (frames written by tungstenite) and appends what
    /// is ready for the socket to `out`.
    pub fn process(&mut self, mut input: &[u8], out: &mut BytesMut) {
        while !input.is_empty() {
            match self.state {
                OutState::Header => {
                    let need = 14usize.saturating_sub(self.header.len()).min(input.len());
                    let old = self.header.len();
                    self.header.extend_from_slice(&input[..need]);
                    let Some((h, at)) = Header::parse(&self.header) else {
                        input = &input[need..];
                        continue;
                    };
                    // Bytes taken past the header go back to the input.
                    input = &input[at - old..];
                    self.header.clear();
                    self.on_header(h, out);
                }
                OutState::Pass { remaining } => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        OutState::Header
                    } else {
                        OutState::Pass { remaining }
                    };
                }
                OutState::Deflate {
                    remaining,
                    header,
                    offset,
                    first,
                } => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let mut piece = input[..n].to_vec();
                    input = &input[n..];
                    if let Some(key) = header.mask {
                        apply_mask(&mut piece, key, offset);
                    }
                    self.compress(&piece, FlushCompress::None);
                    let remaining = remaining - n as u64;
                    self.state = OutState::Deflate {
                        remaining,
                        header,
                        offset: offset + n as u64,
                        first,
                    };
                    if remaining == 0 {
                        self.finish_frame(header, first, out);
                    }
                }
            }
        }
    }

    fn on_header(&mut self, h: Header, out: &mut BytesMut) {
        let compress = h.rsv == 0
            && ((h.is_data_start() && !self.in_message)
                || (h.opcode == OP_CONTINUE && self.in_message));
        if !compress || h.is_control() {
            h.write(out);
            self.state = if h.len == 0 {
                OutState::Header
            } else {
                OutState::Pass { remaining: h.len }
            };
            return;
        }
        let first = h.is_data_start();
        self.in_message = !h.fin;
        self.state = OutState::Deflate {
            remaining: h.len,
            header: h,
            offset: 0,
            first,
        };
        if h.len == 0 {
            self.finish_frame(h, first, out);
        }
    }

    fn compress(&mut self, mut data: &[u8], flush: FlushCompress) {
        loop {
            self.payload.reserve(data.len() / 2 + 64);
            let before_in = self.deflate.total_in();
            let before_out = self.payload.len();
            // Compressing into memory only fails on a misuse of the stream,
            // which this loop never does; an error ends the frame as it is.
            if self
                .deflate
                .compress_vec(data, &mut self.payload, flush)
                .is_err()
            {
                return;
            }
            let consumed = (self.deflate.total_in() - before_in) as usize;
            data = &data[consumed..];
            let full = self.payload.len() == self.payload.capacity();
            let progressed = consumed > 0 || self.payload.len() > before_out;
            if data.is_empty() && (!full || !progressed) {
                return;
            }
        }
    }

    fn finish_frame(&mut self, h: Header, first: bool, out: &mut BytesMut) {
        self.compress(&[], FlushCompress::Sync);
        if h.fin && self.payload.ends_with(&TAIL) {
            self.payload.truncate(self.payload.len() - TAIL.len());
        } else if h.fin && self.payload.is_empty() {
            // Nothing was pending since the last flush (an empty message): one
            // empty stored block header, which the peer's tail completes
            // (RFC 7692 §7.2.3.6).
            self.payload.push(0x00);
        }
        if h.fin && self.reset_each_message {
            self.deflate.reset();
        }
        let header = Header {
            fin: h.fin,
            rsv: if first { RSV1 } else { 0 },
            opcode: h.opcode,
            mask: h.mask,
            len: self.payload.len() as u64,
        };
        header.write(out);
        if let Some(key) = h.mask {
            apply_mask(&mut self.payload, key, 0);
        }
        out.extend_from_slice(&self.payload);
        self.payload.clear();
        if self.payload.capacity() > INFLATE_CHUNK {
            // Do not keep a large message's buffer on an idle connection.
            self.payload = Vec::new();
        }
        self.state = OutState::Header;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated() -> Negotiated {
        Negotiated {
            level: 6,
            send_window_bits: 15,
            send_no_context_takeover: false,
            recv_no_context_takeover: false,
        }
    }

    /// Runs the inbound half over `input` until it stops.
    fn inbound(side: Side, max_message: usize, input: &[u8]) -> (BytesMut, bool) {
        let mut rx = Inbound::new(side, &negotiated(), max_message, 1 << 20);
        let mut input = BytesMut::from(input);
        let mut out = BytesMut::new();
        while rx.process(&mut input, &mut out) {}
        (out, rx.is_poisoned())
    }

    #[test]
    fn inflates_the_rfc_example() {
        // RFC 7692 §7.2.3.1: "Hello" compressed, one unmasked frame from a server.
        let frame = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let (out, poisoned) = inbound(Side::Client, 1024, &frame);
        assert!(!poisoned);
        assert_eq!(&out[..], b"\x81\x05Hello");
        // The same split in two fragments (§7.2.3.3), the second without RSV1.
        let frames = [
            0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
        ];
        let (out, _) = inbound(Side::Client, 1024, &frames);
        assert_eq!(&out[..], b"\x81\x05Hello");
    }

    #[test]
    fn masked_frames_from_a_client_are_handed_up_masked_with_a_zero_key() {
        let key = [1, 2, 3, 4];
        let mut payload = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        apply_mask(&mut payload, key, 0);
        let mut frame = vec![0xc1, 0x87];
        frame.extend_from_slice(&key);
        frame.extend_from_slice(&payload);
        let (out, _) = inbound(Side::Server, 1024, &frame);
        assert_eq!(&out[..], b"\x81\x85\0\0\0\0Hello");
        // The same frame unmasked is refused on the server side.
        let (out, poisoned) = inbound(Side::Client, 1024, &frame);
        assert!(poisoned);
        assert_eq!(out[0] & RSV2, RSV2);
    }

    #[test]
    fn control_and_plain_frames_pass_through() {
        let frames = b"\x89\x02hi\x81\x03abc\x01\x01a\x80\x01b";
        let (out, poisoned) = inbound(Side::Client, 1024, frames);
        assert!(!poisoned);
        assert_eq!(&out[..], frames);
    }

    #[test]
    fn a_deflate_bomb_stops_at_the_cap() {
        // 1 MiB of zeros compresses to about 1 KiB.
        let mut c = Compress::new(Compression::best(), false);
        let mut payload = Vec::with_capacity(4096);
        c.compress_vec(&vec![0; 1 << 20], &mut payload, FlushCompress::Sync)
            .unwrap();
        assert!(payload.len() < 4096);
        let mut frame = BytesMut::new();
        Header {
            fin: true,
            rsv: RSV1,
            opcode: OP_BINARY,
            mask: None,
            len: payload.len() as u64,
        }
        .write(&mut frame);
        frame.extend_from_slice(&payload);
        let (out, poisoned) = inbound(Side::Client, 64 * 1024, &frame);
        assert!(poisoned);
        // Full fragments up to the cap, then the header of a frame over the
        // frame cap, which tungstenite refuses before reading a payload.
        let mut rest = &out[..];
        let mut fragments = 0;
        let last = loop {
            let (h, at) = Header::parse(rest).unwrap();
            if rest.len() == at {
                break h;
            }
            assert_eq!(h.len, INFLATE_CHUNK as u64);
            rest = &rest[at + h.len as usize..];
            fragments += 1;
        };
        assert_eq!(fragments, 64 * 1024 / INFLATE_CHUNK);
        assert_eq!(last.len, (1 << 20) + 1);
    }

    #[test]
    fn a_small_bomb_in_bytes_is_cut_at_the_cap() {
        // 37 bytes of raw deflate (zlib level 9, sync flush, tail removed)
        // that inflate to 20,000 zero bytes; the cap is 1,000.
        let mut frame = vec![0xc2, 37];
        frame.extend_from_slice(&[
            0xec, 0xc1, 0x31, 0x01, 0x00, 0x00, 0x00, 0xc2, 0xa0, 0xf5, 0x4f, 0x6d, 0x0d, 0x0f,
            0xa0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x78, 0x30, 0x00,
        ]);
        let (out, poisoned) = inbound(Side::Client, 1000, &frame);
        assert!(poisoned);
        // Nothing inflated is handed up: only a binary frame header announcing
        // one byte over the frame cap (1 MiB here).
        assert_eq!(&out[..], &[0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 1]);
        // Under a large enough cap the same bytes are a 20,000-byte message.
        let (out, poisoned) = inbound(Side::Client, 20_000, &frame);
        assert!(!poisoned);
        let payload: usize = {
            let mut rest = &out[..];
            let mut total = 0;
            while let Some((h, at)) = Header::parse(rest) {
                total += h.len as usize;
                rest = &rest[at + h.len as usize..];
            }
            total
        };
        assert_eq!(payload, 20_000);
    }

    #[test]
    fn invalid_compressed_data_is_a_protocol_error() {
        // An empty compressed payload is an empty message.
        let (out, poisoned) = inbound(Side::Client, 1024, &[0xc1, 0x00]);
        assert!(!poisoned);
        assert_eq!(&out[..], &[0x81, 0x00]);
        // 0xff starts a block of the reserved type 3.
        let (out, poisoned) = inbound(Side::Client, 1024, &[0xc1, 0x02, 0xff, 0xff]);
        assert!(poisoned);
        assert_eq!(&out[..], &[0x80 | RSV2 | OP_TEXT, 0x00]);
        // RSV1 on a control frame is handed up as it is: tungstenite refuses it.
        let (out, poisoned) = inbound(Side::Client, 1024, &[0xc9, 0x00]);
        assert!(!poisoned);
        assert_eq!(&out[..], &[0xc9, 0x00]);
        // RSV1 on a continuation frame.
        let (out, poisoned) = inbound(Side::Client, 1024, &[0x01, 0x01, b'a', 0xc0, 0x00]);
        assert!(poisoned);
        assert_eq!(out[3] & RSV2, RSV2);
    }

    #[test]
    fn outbound_compresses_and_inbound_restores_with_context_takeover() {
        let n = negotiated();
        let mut tx = Outbound::new(&n);
        let mut rx = Inbound::new(Side::Client, &n, 1 << 20, 1 << 20);
        let mut sizes = Vec::new();
        for message in [
            "hello hello hello hello".repeat(50),
            String::new(),
            "hello hello hello hello".repeat(50),
        ] {
            // An unmasked text frame as tungstenite writes it on the server side,
            // fed a few bytes at a time.
            let mut plain = BytesMut::new();
            Header {
                fin: true,
                rsv: 0,
                opcode: OP_TEXT,
                mask: None,
                len: message.len() as u64,
            }
            .write(&mut plain);
            plain.extend_from_slice(message.as_bytes());
            let mut wire = BytesMut::new();
            for piece in plain.chunks(7) {
                tx.process(piece, &mut wire);
            }
            let (h, _) = Header::parse(&wire).unwrap();
            assert_eq!(h.rsv, RSV1);
            sizes.push(wire.len());
            let mut out = BytesMut::new();
            while rx.process(&mut wire, &mut out) {}
            let (h, at) = Header::parse(&out).unwrap();
            assert!(h.fin);
            assert_eq!(&out[at..], message.as_bytes());
        }
        // The empty message is one byte; the second copy refers back to the
        // first: smaller on the wire.
        assert_eq!(sizes[1], 3, "{sizes:?}");
        assert!(sizes[2] < sizes[0], "{sizes:?}");
    }
}
