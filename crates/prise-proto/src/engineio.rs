//! Engine.IO protocol v4 packets, without I/O.
//!
//! Engine.IO is the transport layer under Socket.IO: a session (`sid`) that
//! carries packets over HTTP long-polling or a WebSocket, with a heartbeat the
//! server drives (`2` ping, `3` pong) and an upgrade from polling to WebSocket
//! (`2probe` / `3probe` / `5`).
//!
//! - On a WebSocket, one frame is one packet: a text frame is a type digit and
//!   its data (`4hello`), a binary frame is a binary message as is.
//! - On HTTP long-polling, one body is a *payload*: packets joined by the
//!   record separator `\x1e`; a binary message is `b` + its base64.
//!
//! Every size a peer controls is capped by [`PayloadLimits`]: the payload
//! length (`maxPayload` of the handshake) and the number of packets in it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The protocol revision spoken here (the `EIO=4` query parameter).
pub const PROTOCOL_VERSION: u8 = 4;
/// Separator between packets of a long-polling payload (ASCII record separator).
pub const SEPARATOR: u8 = 0x1e;
/// Default cap on one payload, in bytes (the `maxPayload` of the handshake).
pub const DEFAULT_MAX_PAYLOAD: usize = 1_000_000;
/// Default cap on the number of packets in one long-polling payload.
pub const DEFAULT_MAX_PACKETS_PER_PAYLOAD: usize = 1_024;

/// The seven packet types of Engine.IO v4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`: sent by the server when a session opens, carries the [`Handshake`].
    Open,
    /// `1`: the session is closing.
    Close,
    /// `2`: heartbeat request (and the `2probe` of an upgrade).
    Ping,
    /// `3`: heartbeat answer (and the `3probe` of an upgrade).
    Pong,
    /// `4`: an application message.
    Message,
    /// `5`: the client completes an upgrade to WebSocket.
    Upgrade,
    /// `6`: nothing; ends a pending long-poll during an upgrade.
    Noop,
}

impl PacketType {
    /// The ASCII digit of this type.
    pub fn as_char(self) -> char {
        match self {
            Self::Open => '0',
            Self::Close => '1',
            Self::Ping => '2',
            Self::Pong => '3',
            Self::Message => '4',
            Self::Upgrade => '5',
            Self::Noop => '6',
        }
    }

    /// Parses a type digit.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Open,
            b'1' => Self::Close,
            b'2' => Self::Ping,
            b'3' => Self::Pong,
            b'4' => Self::Message,
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            _ => return None,
        })
    }
}

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// A text packet: its type and its data (possibly empty).
    Text(PacketType, String),
    /// A binary message (a WebSocket binary frame, or `b…` in a payload).
    Binary(Bytes),
}

impl Packet {
    /// A text message packet (`4` + text).
    pub fn message(text: impl Into<String>) -> Self {
        Self::Text(PacketType::Message, text.into())
    }

    /// Encodes this packet as it travels in one WebSocket frame: text packets
    /// as their type digit and data, binary as is.
    pub fn encode_text(&self) -> Option<String> {
        match self {
            Self::Text(t, data) => {
                let mut s = String::with_capacity(1 + data.len());
                s.push(t.as_char());
                s.push_str(data);
                Some(s)
            }
            Self::Binary(_) => None,
        }
    }
}

/// Why bytes are not a valid Engine.IO packet or payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The packet is empty (no type digit).
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type digit.
    #[error("unknown packet type")]
    UnknownType,
    /// A `b` packet is not valid base64.
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    /// A text payload is not UTF-8.
    #[error("payload is not valid utf-8")]
    InvalidUtf8,
    /// The payload is larger than the cap.
    #[error("payload of {0} bytes is over the limit")]
    PayloadTooLarge(usize),
    /// The payload holds more packets than the cap.
    #[error("payload holds too many packets")]
    TooManyPackets,
}

/// Decodes one packet from the text of a WebSocket text frame.
///
/// # Errors
/// [`DecodeError::Empty`] or [`DecodeError::UnknownType`].
pub fn decode_text(text: &str) -> Result<Packet, DecodeError> {
    let first = *text.as_bytes().first().ok_or(DecodeError::Empty)?;
    let t = PacketType::from_byte(first).ok_or(DecodeError::UnknownType)?;
    // The type digit is ASCII, so index 1 is a char boundary.
    Ok(Packet::Text(t, text[1..].to_owned()))
}

/// Caps on a long-polling payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadLimits {
    /// Most bytes in one payload (default [`DEFAULT_MAX_PAYLOAD`]).
    pub max_payload: usize,
    /// Most packets in one payload (default [`DEFAULT_MAX_PACKETS_PER_PAYLOAD`]).
    pub max_packets: usize,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        Self {
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_packets: DEFAULT_MAX_PACKETS_PER_PAYLOAD,
        }
    }
}

/// Decodes a long-polling payload (an HTTP POST body).
///
/// # Errors
/// A [`DecodeError`] for a body over the limits, not UTF-8, or with an
/// invalid packet; the whole payload is then rejected.
pub fn decode_payload(body: &[u8], limits: PayloadLimits) -> Result<Vec<Packet>, DecodeError> {
    if body.len() > limits.max_payload {
        return Err(DecodeError::PayloadTooLarge(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|_| DecodeError::InvalidUtf8)?;
    let mut packets = Vec::new();
    for part in text.split('\x1e') {
        if packets.len() == limits.max_packets {
            return Err(DecodeError::TooManyPackets);
        }
        if let Some(b64) = part.strip_prefix('b') {
            let data = BASE64.decode(b64).map_err(|_| DecodeError::InvalidBase64)?;
            packets.push(Packet::Binary(Bytes::from(data)));
        } else {
            packets.push(decode_text(part)?);
        }
    }
    Ok(packets)
}

/// Appends packets to a long-polling payload (an HTTP GET response body).
#[derive(Debug, Default, Clone)]
pub struct PayloadEncoder {
    buf: String,
}

impl PayloadEncoder {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    fn separate(&mut self) {
        if !self.buf.is_empty() {
            self.buf.push('\x1e');
        }
    }

    /// Appends an already encoded text packet (type digit and data).
    pub fn push_encoded_text(&mut self, packet: &str) {
        self.separate();
        self.buf.push_str(packet);
    }

    /// Appends a binary message as `b` + base64.
    pub fn push_binary(&mut self, data: &[u8]) {
        self.separate();
        self.buf.push('b');
        BASE64.encode_string(data, &mut self.buf);
    }

    /// Appends any packet.
    pub fn push(&mut self, packet: &Packet) {
        match packet {
            Packet::Text(t, data) => {
                self.separate();
                self.buf.push(t.as_char());
                self.buf.push_str(data);
            }
            Packet::Binary(b) => self.push_binary(b),
        }
    }

    /// Bytes encoded so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The payload text.
    pub fn finish(self) -> String {
        self.buf
    }
}

/// Length of `data` once encoded in a payload as `b` + base64.
pub fn encoded_binary_len(data_len: usize) -> usize {
    1 + data_len.div_ceil(3) * 4
}

/// The data of the open packet (`0{…}`) that starts every session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    /// The session id.
    pub sid: String,
    /// Transports the client may upgrade to (`["websocket"]` on polling, `[]` on WebSocket).
    pub upgrades: Vec<String>,
    /// Milliseconds between two server pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong before closing.
    pub ping_timeout: u64,
    /// Most bytes in one payload or message.
    pub max_payload: u64,
}

impl Handshake {
    /// The open packet, encoded (`0{"sid":…}`).
    pub fn encode(&self) -> String {
        // Serializing a struct of strings and integers cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("0{json}")
    }
}

/// The transports of Engine.IO v4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    Websocket,
}

impl Transport {
    /// The name used in the `transport` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Polling => "polling",
            Self::Websocket => "websocket",
        }
    }

    /// Parses the `transport` query parameter.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "polling" => Some(Self::Polling),
            "websocket" => Some(Self::Websocket),
            _ => None,
        }
    }
}

/// Error codes of an HTTP 400 answer (`{"code":n,"message":…}`), as the
/// reference server numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `transport` missing or unknown.
    UnknownTransport = 0,
    /// `sid` unknown (or the session is closed).
    UnknownSid = 1,
    /// The request method is not allowed here.
    BadHandshakeMethod = 2,
    /// The request is bad (wrong `EIO`, wrong transport for the session).
    BadRequest = 3,
    /// The request was refused.
    Forbidden = 4,
    /// The `EIO` version is not supported.
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    /// The message of this code.
    pub fn message(self) -> &'static str {
        match self {
            Self::UnknownTransport => "Transport unknown",
            Self::UnknownSid => "Session ID unknown",
            Self::BadHandshakeMethod => "Bad handshake method",
            Self::BadRequest => "Bad request",
            Self::Forbidden => "Forbidden",
            Self::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The JSON body of the 400 answer.
    pub fn body(self) -> String {
        format!(
            "{{\"code\":{},\"message\":\"{}\"}}",
            self as u8,
            self.message()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_text_packets() {
        assert_eq!(
            decode_text("4hello").unwrap(),
            Packet::Text(PacketType::Message, "hello".into())
        );
        assert_eq!(
            decode_text("2probe").unwrap(),
            Packet::Text(PacketType::Ping, "probe".into())
        );
        assert_eq!(
            decode_text("6").unwrap(),
            Packet::Text(PacketType::Noop, String::new())
        );
        assert_eq!(decode_text(""), Err(DecodeError::Empty));
        assert_eq!(decode_text("abc"), Err(DecodeError::UnknownType));
        assert_eq!(decode_text("7"), Err(DecodeError::UnknownType));
        // Multi-byte text after the digit stays intact.
        assert_eq!(
            decode_text("4é🌍").unwrap(),
            Packet::message("é🌍".to_string())
        );
    }

    #[test]
    fn decodes_payloads_with_text_and_binary() {
        let p = decode_payload(b"4hello\x1ebAQIDBA==", PayloadLimits::default()).unwrap();
        assert_eq!(
            p,
            vec![
                Packet::message("hello"),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))
            ]
        );
        let p = decode_payload(b"4test1\x1e4test2\x1e4test3", PayloadLimits::default()).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(
            decode_payload(b"abc", PayloadLimits::default()),
            Err(DecodeError::UnknownType)
        );
        assert_eq!(
            decode_payload(b"b!!", PayloadLimits::default()),
            Err(DecodeError::InvalidBase64)
        );
        assert_eq!(
            decode_payload(b"4\xff", PayloadLimits::default()),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            decode_payload(b"", PayloadLimits::default()),
            Err(DecodeError::Empty)
        );
    }

    #[test]
    fn payload_limits_are_enforced() {
        let limits = PayloadLimits {
            max_payload: 8,
            max_packets: 2,
        };
        assert_eq!(
            decode_payload(b"4123456789", limits),
            Err(DecodeError::PayloadTooLarge(10))
        );
        assert_eq!(
            decode_payload(b"3\x1e3\x1e3", limits),
            Err(DecodeError::TooManyPackets)
        );
        assert_eq!(decode_payload(b"3\x1e3", limits).unwrap().len(), 2);
    }

    #[test]
    fn encodes_payloads() {
        let mut e = PayloadEncoder::new();
        assert!(e.is_empty());
        e.push(&Packet::message("hello"));
        e.push_binary(&[1, 2, 3, 4]);
        e.push_encoded_text("2");
        assert_eq!(e.len(), "4hello\x1ebAQIDBA==\x1e2".len());
        assert_eq!(e.finish(), "4hello\x1ebAQIDBA==\x1e2");
        assert_eq!(encoded_binary_len(4), "bAQIDBA==".len());
        assert_eq!(encoded_binary_len(3), "bAQID".len());
        assert_eq!(encoded_binary_len(0), 1);
    }

    #[test]
    fn handshake_has_exactly_the_v4_keys() {
        let h = Handshake {
            sid: "abc".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 300,
            ping_timeout: 200,
            max_payload: 1_000_000,
        };
        assert_eq!(
            h.encode(),
            r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#
        );
        assert_eq!(
            ErrorCode::UnknownSid.body(),
            r#"{"code":1,"message":"Session ID unknown"}"#
        );
        assert_eq!(Transport::parse("websocket"), Some(Transport::Websocket));
        assert_eq!(Transport::parse("abc"), None);
        assert_eq!(Transport::Polling.as_str(), "polling");
        assert_eq!(
            Packet::Text(PacketType::Pong, "probe".into()).encode_text(),
            Some("3probe".into())
        );
    }
}
