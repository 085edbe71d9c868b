//! Socket.IO protocol v5 packets, without I/O.
//!
//! A Socket.IO packet rides in one Engine.IO message. Its text form is
//!
//! ```text
//! <type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]
//! 2["hello",1]                       EVENT on "/"
//! 2/chat,12["hello",1]               EVENT on "/chat" asking for ack 12
//! 451-["up",{"_placeholder":true,"num":0}]  BINARY_EVENT, one attachment follows
//! 44/x,{"message":"Invalid namespace"}      CONNECT_ERROR
//! ```
//!
//! A binary packet is followed by as many Engine.IO binary messages as it
//! announces; each `{"_placeholder":true,"num":n}` in its data stands for the
//! n-th of them. [`Decoder`] reassembles them; [`PacketLimits`] caps what a peer
//! may announce.

use bytes::Bytes;
use serde_json::Value;

/// Default cap on the attachments of one binary packet.
pub const DEFAULT_MAX_ATTACHMENTS: usize = 64;
/// Default cap on the total bytes of the attachments of one binary packet.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: usize = 10 << 20;
/// Default cap on the length of a namespace name.
pub const DEFAULT_MAX_NAMESPACE_LEN: usize = 256;
/// Longest ack id accepted, in decimal digits (ids fit in a `u64`; the
/// official clients count from 0 upwards).
pub const MAX_ACK_ID_DIGITS: usize = 19;

/// The packet types of Socket.IO v5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// `0`: connect to a namespace (client: auth payload; server: `{sid}`).
    Connect,
    /// `1`: leave a namespace (either side).
    Disconnect,
    /// `2`: an event: `["name", args…]`.
    Event,
    /// `3`: the answer to an event that asked for one: `[args…]`.
    Ack,
    /// `4`: connection to a namespace refused: `{message, data?}`.
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an ack with binary attachments.
    BinaryAck,
}

impl PacketKind {
    /// The ASCII digit of this type.
    pub fn as_char(self) -> char {
        (b'0' + self as u8) as char
    }

    /// Parses a type digit.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// True for the two types that carry attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// One Socket.IO packet (its attachments, if any, travel beside it).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The type.
    pub kind: PacketKind,
    /// The namespace, `/` by default.
    pub nsp: String,
    /// The ack id, when the sender asks for (or answers) an acknowledgement.
    pub id: Option<u64>,
    /// The JSON data.
    pub data: Option<Value>,
    /// How many binary attachments follow (binary types only).
    pub attachments: usize,
}

impl Packet {
    /// Encodes the packet text (attachments are sent separately).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode_header(&mut out, self.kind, &self.nsp, self.id, self.attachments);
        if let Some(data) = &self.data {
            // Serializing a `Value` into a String cannot fail.
            out.push_str(&serde_json::to_string(data).unwrap_or_default());
        }
        out
    }
}

/// Writes `<type>[<n>-][<nsp>,][<id>]` into `out`.
pub fn encode_header(
    out: &mut String,
    kind: PacketKind,
    nsp: &str,
    id: Option<u64>,
    attachments: usize,
) {
    use std::fmt::Write as _;
    out.push(kind.as_char());
    if kind.is_binary() {
        // Writing into a String cannot fail.
        let _ = write!(out, "{attachments}-");
    }
    if nsp != "/" && !nsp.is_empty() {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
}

/// Encodes an event (`["name", args…]`) or, with `name = None`, an ack
/// (`[args…]`), choosing the binary type when `attachments > 0`.
///
/// The arguments are serialized one by one into the output, so no JSON array
/// is built in between.
pub fn encode_event(
    nsp: &str,
    id: Option<u64>,
    name: Option<&str>,
    args: &[Value],
    attachments: usize,
) -> String {
    let mut out = String::new();
    encode_event_into(&mut out, nsp, id, name, args, attachments);
    out
}

/// Like [`encode_event`], appending to `out` (so a caller can put the
/// Engine.IO type digit in front without a second copy).
pub fn encode_event_into(
    out: &mut String,
    nsp: &str,
    id: Option<u64>,
    name: Option<&str>,
    args: &[Value],
    attachments: usize,
) {
    let kind = match (name.is_some(), attachments > 0) {
        (true, false) => PacketKind::Event,
        (true, true) => PacketKind::BinaryEvent,
        (false, false) => PacketKind::Ack,
        (false, true) => PacketKind::BinaryAck,
    };
    encode_header(out, kind, nsp, id, attachments);
    let mut json = std::mem::take(out).into_bytes();
    json.push(b'[');
    let mut first = true;
    if let Some(name) = name {
        // Serializing a str or a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut json, name);
        first = false;
    }
    for arg in args {
        if !first {
            json.push(b',');
        }
        first = false;
        let _ = serde_json::to_writer(&mut json, arg);
    }
    json.push(b']');
    // `out` was a String and serde_json writes UTF-8, so this cannot fail.
    *out = String::from_utf8(json).unwrap_or_default();
}

/// Why a text or binary message is not a valid Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The packet is empty.
    #[error("empty packet")]
    Empty,
    /// Unknown type digit.
    #[error("unknown packet type")]
    UnknownType,
    /// The attachment count is missing, malformed or over the cap.
    #[error("illegal attachments")]
    IllegalAttachments,
    /// The namespace is longer than the cap.
    #[error("namespace too long")]
    NamespaceTooLong,
    /// The ack id is too long.
    #[error("invalid ack id")]
    InvalidAckId,
    /// The data is not JSON, or not the shape the type requires.
    #[error("invalid payload")]
    InvalidPayload,
    /// A placeholder points to no attachment.
    #[error("invalid placeholder")]
    InvalidPlaceholder,
    /// A text packet arrived while attachments were expected.
    #[error("text packet while reassembling attachments")]
    UnexpectedText,
    /// A binary message arrived with no binary packet waiting for it.
    #[error("binary message without a binary packet")]
    UnexpectedBinary,
    /// The attachments of one packet are larger than the cap.
    #[error("attachments too large")]
    AttachmentsTooLarge,
}

/// Caps on what a peer may put in one Socket.IO packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketLimits {
    /// Most attachments announced by one packet (default [`DEFAULT_MAX_ATTACHMENTS`]).
    pub max_attachments: usize,
    /// Most bytes in all attachments of one packet (default [`DEFAULT_MAX_ATTACHMENT_BYTES`]).
    pub max_attachment_bytes: usize,
    /// Longest namespace name (default [`DEFAULT_MAX_NAMESPACE_LEN`]).
    pub max_namespace_len: usize,
}

impl Default for PacketLimits {
    fn default() -> Self {
        Self {
            max_attachments: DEFAULT_MAX_ATTACHMENTS,
            max_attachment_bytes: DEFAULT_MAX_ATTACHMENT_BYTES,
            max_namespace_len: DEFAULT_MAX_NAMESPACE_LEN,
        }
    }
}

/// Decodes the text of one packet. Placeholders are checked against the
/// announced attachment count.
///
/// # Errors
/// A [`DecodeError`] naming the first problem found.
pub fn decode(text: &str, limits: &PacketLimits) -> Result<Packet, DecodeError> {
    let bytes = text.as_bytes();
    let kind = PacketKind::from_byte(*bytes.first().ok_or(DecodeError::Empty)?)
        .ok_or(DecodeError::UnknownType)?;
    let mut i = 1;
    let mut attachments = 0;
    if kind.is_binary() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 4 || bytes.get(i) != Some(&b'-') {
            return Err(DecodeError::IllegalAttachments);
        }
        // At most 4 ASCII digits: the parse cannot fail or overflow.
        attachments = text[start..i].parse::<usize>().unwrap_or(usize::MAX);
        if attachments > limits.max_attachments {
            return Err(DecodeError::IllegalAttachments);
        }
        i += 1;
    }
    let mut nsp = "/";
    if bytes.get(i) == Some(&b'/') {
        let start = i;
        while i < bytes.len() && bytes[i] != b',' {
            i += 1;
        }
        nsp = &text[start..i];
        if nsp.len() > limits.max_namespace_len {
            return Err(DecodeError::NamespaceTooLong);
        }
        if i < bytes.len() {
            i += 1; // the comma
        }
    }
    let mut id = None;
    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        if i - start > MAX_ACK_ID_DIGITS {
            return Err(DecodeError::InvalidAckId);
        }
        id = Some(
            text[start..i]
                .parse::<u64>()
                .map_err(|_| DecodeError::InvalidAckId)?,
        );
    }
    let rest = &text[i..];
    let data = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Value>(rest).map_err(|_| DecodeError::InvalidPayload)?)
    };
    let valid = match (&kind, &data) {
        (_, None) => !matches!(
            kind,
            PacketKind::Event | PacketKind::BinaryEvent | PacketKind::Ack | PacketKind::BinaryAck
        ),
        (PacketKind::Connect, Some(d)) => d.is_object(),
        (PacketKind::Disconnect, Some(_)) => false,
        (PacketKind::ConnectError, Some(d)) => d.is_object() || d.is_string(),
        (PacketKind::Event | PacketKind::BinaryEvent, Some(d)) => d
            .as_array()
            .and_then(|a| a.first())
            .is_some_and(Value::is_string),
        (PacketKind::Ack | PacketKind::BinaryAck, Some(d)) => d.is_array(),
    };
    if !valid {
        return Err(DecodeError::InvalidPayload);
    }
    if let Some(d) = &data {
        check_placeholders(d, attachments)?;
    }
    Ok(Packet {
        kind,
        nsp: nsp.to_owned(),
        id,
        data,
        attachments,
    })
}

/// If `v` is a placeholder (`{"_placeholder":true,"num":n}`), its `n`.
pub fn placeholder_index(v: &Value) -> Option<u64> {
    let obj = v.as_object()?;
    if obj.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    obj.get("num").and_then(Value::as_u64)
}

/// A placeholder for the attachment number `n`.
pub fn placeholder(n: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": n })
}

fn check_placeholders(v: &Value, attachments: usize) -> Result<(), DecodeError> {
    match v {
        Value::Object(obj) => {
            if obj.get("_placeholder") == Some(&Value::Bool(true)) {
                return match obj.get("num").and_then(Value::as_u64) {
                    Some(n) if (n as usize) < attachments => Ok(()),
                    _ => Err(DecodeError::InvalidPlaceholder),
                };
            }
            obj.values()
                .try_for_each(|x| check_placeholders(x, attachments))
        }
        Value::Array(a) => a
            .iter()
            .try_for_each(|x| check_placeholders(x, attachments)),
        _ => Ok(()),
    }
}

/// A complete packet and its attachments, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The packet.
    pub packet: Packet,
    /// Its binary attachments (empty for text packets).
    pub attachments: Vec<Bytes>,
}

/// Reassembles binary packets: feed it every Engine.IO message in order.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: PacketLimits,
    pending: Option<(Packet, Vec<Bytes>, usize)>,
}

impl Decoder {
    /// A decoder with these caps.
    pub fn new(limits: PacketLimits) -> Self {
        Self {
            limits,
            pending: None,
        }
    }

    /// True while a binary packet waits for attachments.
    pub fn is_reassembling(&self) -> bool {
        self.pending.is_some()
    }

    /// Feeds a text message. `Ok(None)` means a binary packet now waits for
    /// its attachments.
    ///
    /// # Errors
    /// A [`DecodeError`]; the connection should then be closed.
    pub fn feed_text(&mut self, text: &str) -> Result<Option<Decoded>, DecodeError> {
        if self.pending.is_some() {
            return Err(DecodeError::UnexpectedText);
        }
        let packet = decode(text, &self.limits)?;
        if packet.kind.is_binary() && packet.attachments > 0 {
            let n = packet.attachments;
            self.pending = Some((packet, Vec::with_capacity(n), 0));
            return Ok(None);
        }
        Ok(Some(Decoded {
            packet,
            attachments: Vec::new(),
        }))
    }

    /// Feeds a binary message (one attachment).
    ///
    /// # Errors
    /// A [`DecodeError`] when no packet waits for it or the total is over the cap.
    pub fn feed_binary(&mut self, data: Bytes) -> Result<Option<Decoded>, DecodeError> {
        let (_, atts, total) = self.pending.as_mut().ok_or(DecodeError::UnexpectedBinary)?;
        *total += data.len();
        if *total > self.limits.max_attachment_bytes {
            self.pending = None;
            return Err(DecodeError::AttachmentsTooLarge);
        }
        atts.push(data);
        let done = self
            .pending
            .as_ref()
            .is_some_and(|(p, a, _)| a.len() == p.attachments);
        if !done {
            return Ok(None);
        }
        // `done` was computed from `pending`, which is Some here.
        Ok(self.pending.take().map(|(packet, attachments, _)| Decoded {
            packet,
            attachments,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(text: &str) -> Result<Packet, DecodeError> {
        decode(text, &PacketLimits::default())
    }

    #[test]
    fn decodes_connect_packets() {
        let p = d("0").unwrap();
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.data),
            (PacketKind::Connect, "/", None)
        );
        let p = d(r#"0{"token":"123"}"#).unwrap();
        assert_eq!(p.data, Some(json!({"token":"123"})));
        let p = d("0/custom,").unwrap();
        assert_eq!(p.nsp, "/custom");
        let p = d("0/random").unwrap();
        assert_eq!(p.nsp, "/random");
        let p = d(r#"0/custom,{"token":"abc"}"#).unwrap();
        assert_eq!(
            (p.nsp.as_str(), p.data),
            ("/custom", Some(json!({"token":"abc"})))
        );
        assert_eq!(d("0[1]"), Err(DecodeError::InvalidPayload));
        assert_eq!(d(r#"1{"a":1}"#), Err(DecodeError::InvalidPayload));
        assert_eq!(d("1/custom,").unwrap().kind, PacketKind::Disconnect);
    }

    #[test]
    fn decodes_events_and_acks() {
        let p = d(r#"2["message",1,"2",{"3":[true]}]"#).unwrap();
        assert_eq!(p.kind, PacketKind::Event);
        assert_eq!(p.id, None);
        let p = d(r#"2/chat,456["m"]"#).unwrap();
        assert_eq!((p.nsp.as_str(), p.id), ("/chat", Some(456)));
        let p = d(r#"3456[1,"2"]"#).unwrap();
        assert_eq!((p.kind, p.id), (PacketKind::Ack, Some(456)));
        assert_eq!(d("abc"), Err(DecodeError::UnknownType));
        assert_eq!(d("2{}"), Err(DecodeError::InvalidPayload));
        assert_eq!(d("2[]"), Err(DecodeError::InvalidPayload));
        assert_eq!(d("2[1]"), Err(DecodeError::InvalidPayload));
        assert_eq!(d("2"), Err(DecodeError::InvalidPayload));
        assert_eq!(d(r#"2abc["m"]"#), Err(DecodeError::InvalidPayload));
        assert_eq!(
            d(r#"299999999999999999999["m"]"#),
            Err(DecodeError::InvalidAckId)
        );
        assert_eq!(d(""), Err(DecodeError::Empty));
        assert_eq!(d("3{}"), Err(DecodeError::InvalidPayload));
    }

    #[test]
    fn decodes_binary_packets_and_checks_placeholders() {
        let p = d(r#"52-789["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
            .unwrap();
        assert_eq!(
            (p.kind, p.attachments, p.id),
            (PacketKind::BinaryEvent, 2, Some(789))
        );
        assert_eq!(
            d(r#"51-["m",{"_placeholder":true,"num":1}]"#),
            Err(DecodeError::InvalidPlaceholder)
        );
        assert_eq!(d(r#"5x-["m"]"#), Err(DecodeError::IllegalAttachments));
        assert_eq!(d(r#"51["m"]"#), Err(DecodeError::IllegalAttachments));
        assert_eq!(d(r#"565-["m"]"#), Err(DecodeError::IllegalAttachments));
        let p = d(r#"61-/x,3[{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.id),
            (PacketKind::BinaryAck, "/x", Some(3))
        );
    }

    #[test]
    fn limits_namespace_length() {
        let limits = PacketLimits {
            max_namespace_len: 4,
            ..PacketLimits::default()
        };
        assert_eq!(
            decode("0/abcdef,", &limits),
            Err(DecodeError::NamespaceTooLong)
        );
    }

    #[test]
    fn encodes_packets() {
        let p = Packet {
            kind: PacketKind::Connect,
            nsp: "/custom".into(),
            id: None,
            data: Some(json!({"sid":"x"})),
            attachments: 0,
        };
        assert_eq!(p.encode(), r#"0/custom,{"sid":"x"}"#);
        let p = Packet {
            kind: PacketKind::ConnectError,
            nsp: "/random".into(),
            id: None,
            data: Some(json!({"message":"Invalid namespace"})),
            attachments: 0,
        };
        assert_eq!(p.encode(), r#"4/random,{"message":"Invalid namespace"}"#);
        assert_eq!(
            encode_event("/", None, Some("auth"), &[json!({})], 0),
            r#"2["auth",{}]"#
        );
        assert_eq!(
            encode_event("/", Some(456), None, &[json!(1), json!("2")], 0),
            r#"3456[1,"2"]"#
        );
        assert_eq!(
            encode_event("/", Some(789), None, &[placeholder(0), placeholder(1)], 2),
            r#"62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(
            encode_event("/c", None, Some("e"), &[], 1),
            r#"51-/c,["e"]"#
        );
        assert_eq!(encode_event("/", None, None, &[], 0), "3[]");
    }

    #[test]
    fn decoder_reassembles_attachments() {
        let mut dec = Decoder::new(PacketLimits::default());
        assert_eq!(
            dec.feed_text(
                r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
            ),
            Ok(None)
        );
        assert!(dec.is_reassembling());
        assert_eq!(dec.feed_binary(Bytes::from_static(&[1, 2, 3])), Ok(None));
        let done = dec
            .feed_binary(Bytes::from_static(&[4, 5, 6]))
            .unwrap()
            .unwrap();
        assert_eq!(done.attachments.len(), 2);
        assert_eq!(&done.attachments[1][..], &[4, 5, 6]);
        assert!(!dec.is_reassembling());
        assert_eq!(
            dec.feed_binary(Bytes::from_static(&[1])),
            Err(DecodeError::UnexpectedBinary)
        );
        // Zero attachments: complete at once.
        assert!(dec.feed_text(r#"50-["m"]"#).unwrap().is_some());
        // Text in the middle of a binary packet is an error.
        dec.feed_text(r#"51-["m",{"_placeholder":true,"num":0}]"#)
            .unwrap();
        assert_eq!(dec.feed_text("2[\"m\"]"), Err(DecodeError::UnexpectedText));
    }

    #[test]
    fn decoder_caps_attachment_bytes() {
        let mut dec = Decoder::new(PacketLimits {
            max_attachment_bytes: 4,
            ..PacketLimits::default()
        });
        dec.feed_text(r#"52-["m"]"#).unwrap();
        assert_eq!(dec.feed_binary(Bytes::from_static(&[0; 3])), Ok(None));
        assert_eq!(
            dec.feed_binary(Bytes::from_static(&[0; 3])),
            Err(DecodeError::AttachmentsTooLarge)
        );
        assert!(!dec.is_reassembling());
        assert_eq!(placeholder_index(&placeholder(3)), Some(3));
        assert_eq!(placeholder_index(&json!({"num":3})), None);
    }

    /// Deterministic pseudo-random inputs built from the characters that
    /// matter to the grammar: decoding never panics, and what decodes
    /// re-encodes to something that decodes to the same packet.
    #[test]
    fn arbitrary_input_never_panics_and_round_trips() {
        const ALPHABET: &[&str] = &[
            "0",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
            "9",
            "-",
            "/",
            ",",
            "[",
            "]",
            "{",
            "}",
            "\"",
            ":",
            "a",
            "é",
            "_placeholder",
            "num",
            "true",
            "null",
            " ",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let limits = PacketLimits {
            max_attachments: 4,
            max_attachment_bytes: 16,
            max_namespace_len: 8,
        };
        let mut decoded = 0;
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let text: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            if let Ok(p) = decode(&text, &limits) {
                decoded += 1;
                let again = decode(&p.encode(), &limits).expect("re-encoded packet decodes");
                assert_eq!(again, p, "{text}");
            }
            let mut dec = Decoder::new(limits);
            let _ = dec.feed_text(&text);
            let _ = dec.feed_binary(Bytes::from(text.into_bytes()));
        }
        assert!(decoded > 0);
    }
}
