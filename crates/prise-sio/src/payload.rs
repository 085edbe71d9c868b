//! Event arguments (JSON values plus binary attachments) and packets encoded
//! once for many sockets.

use bytes::Bytes;
use prise_proto::socketio::{encode_event_into, placeholder, placeholder_index};
use serde_json::Value;

use crate::engine::Frame;

/// The arguments of an event or an ack: JSON values, where each
/// `{"_placeholder":true,"num":n}` stands for `attachments[n]`.
///
/// ```
/// use prise_sio::Payload;
/// let mut p = Payload::new(vec![serde_json::json!("photo")]);
/// let bin = p.push_binary(bytes::Bytes::from_static(b"\x89PNG"));
/// p.args.push(serde_json::json!({ "data": bin }));
/// assert_eq!(p.binary(&p.args[1]["data"]).map(|b| b.len()), Some(4));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    /// The arguments, in order.
    pub args: Vec<Value>,
    /// The binary attachments the placeholders point to.
    pub attachments: Vec<Bytes>,
}

impl Payload {
    /// Arguments without attachments.
    pub fn new(args: Vec<Value>) -> Self {
        Self {
            args,
            attachments: Vec::new(),
        }
    }

    /// One argument.
    pub fn one(arg: Value) -> Self {
        Self::new(vec![arg])
    }

    /// Adds an attachment and returns the placeholder to put where it belongs.
    pub fn push_binary(&mut self, data: Bytes) -> Value {
        self.attachments.push(data);
        placeholder(self.attachments.len() - 1)
    }

    /// The attachment a placeholder value points to.
    pub fn binary(&self, v: &Value) -> Option<&Bytes> {
        let n = placeholder_index(v)?;
        self.attachments.get(usize::try_from(n).ok()?)
    }
}

/// An event encoded once (JSON serialized, Engine.IO framed) for one
/// namespace, to queue on many sockets without serializing again: see
/// [`crate::Socket::emit_encoded`]. Cloning the frames only bumps reference
/// counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPacket {
    nsp: String,
    frames: Vec<Frame>,
}

impl EncodedPacket {
    /// Encodes `event` with `payload` for the namespace `nsp`.
    pub fn event(nsp: &str, event: &str, payload: &Payload) -> Self {
        Self {
            nsp: nsp.to_owned(),
            frames: encode_frames(nsp, None, Some(event), payload),
        }
    }

    /// The namespace it was encoded for.
    pub fn namespace(&self) -> &str {
        &self.nsp
    }

    pub(crate) fn frames(&self) -> &[Frame] {
        &self.frames
    }
}

/// Encodes an event (`name = Some`) or an ack into Engine.IO frames: one text
/// message, then one binary message per attachment.
pub(crate) fn encode_frames(
    nsp: &str,
    id: Option<u64>,
    name: Option<&str>,
    payload: &Payload,
) -> Vec<Frame> {
    let mut text = String::with_capacity(32);
    text.push('4');
    encode_event_into(
        &mut text,
        nsp,
        id,
        name,
        &payload.args,
        payload.attachments.len(),
    );
    let mut frames = Vec::with_capacity(1 + payload.attachments.len());
    frames.push(Frame::text(text));
    frames.extend(payload.attachments.iter().cloned().map(Frame::Binary));
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_text_and_binary_frames() {
        let p = Payload::new(vec![json!(1), json!("2")]);
        assert_eq!(
            encode_frames("/", None, Some("m"), &p),
            vec![Frame::from_static("42[\"m\",1,\"2\"]")]
        );
        let mut p = Payload::default();
        let ph = p.push_binary(Bytes::from_static(&[1, 2]));
        p.args.push(json!({ "d": ph }));
        let frames = encode_frames("/c", Some(7), None, &p);
        assert_eq!(
            frames,
            vec![
                Frame::from_static(r#"461-/c,7[{"d":{"_placeholder":true,"num":0}}]"#),
                Frame::Binary(Bytes::from_static(&[1, 2]))
            ]
        );
        let e = EncodedPacket::event("/c", "x", &Payload::one(json!(null)));
        assert_eq!(e.namespace(), "/c");
        assert_eq!(e.frames(), &[Frame::from_static(r#"42/c,["x",null]"#)]);
    }
}
