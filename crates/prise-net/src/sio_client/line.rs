//! The line format of `prise connect sio://`, without I/O: `event
//! json-args`, an event name and zero or more JSON values separated by
//! white space.
//!
//! ```text
//! join "lobby"
//! publish {"room":"lobby","content":"hi"}
//! ping
//! ```
//!
//! Received events are printed the same way, and acks as `ack json-args`,
//! so what one `prise connect sio://` prints another can send.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

/// Why an input line is not `event json-args`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line has no event name.
    #[error("a line needs an event name")]
    NoEvent,
    /// The arguments are not JSON values.
    #[error("arguments are not JSON: {0}")]
    BadJson(String),
}

/// Parses `event json-args`.
///
/// # Errors
/// A line without a name, or with arguments that are not JSON.
pub fn parse(line: &str) -> Result<(String, Vec<Value>), LineError> {
    let line = line.trim();
    let (name, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    if name.is_empty() {
        return Err(LineError::NoEvent);
    }
    let args = serde_json::Deserializer::from_str(rest)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LineError::BadJson(e.to_string()))?;
    Ok((name.to_owned(), args))
}

/// Formats a received event (or, with name `ack`, an ack) as one line.
pub fn format(name: &str, args: &[Value]) -> String {
    let mut out = name.to_owned();
    for a in args {
        out.push(' ');
        out.push_str(&a.to_string());
    }
    out
}

/// Replaces the placeholders of a binary packet by `{"base64": …}` of the
/// attachment they stand for.
pub fn inline_attachments(v: &mut Value, attachments: &[Bytes]) {
    if let Some(n) = prise_proto::socketio::placeholder_index(v) {
        let data = usize::try_from(n)
            .ok()
            .and_then(|n| attachments.get(n))
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
            .unwrap_or_default();
        *v = serde_json::json!({ "base64": data });
        return;
    }
    match v {
        Value::Array(a) => a
            .iter_mut()
            .for_each(|x| inline_attachments(x, attachments)),
        Value::Object(o) => o
            .values_mut()
            .for_each(|x| inline_attachments(x, attachments)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_round_trip() {
        let (name, args) = parse(r#"publish {"room":"a","content":"hi there"} 2 "x""#).unwrap();
        assert_eq!(name, "publish");
        assert_eq!(
            args,
            [
                json!({"room":"a","content":"hi there"}),
                json!(2),
                json!("x")
            ]
        );
        assert_eq!(
            format(&name, &args),
            r#"publish {"content":"hi there","room":"a"} 2 "x""#
        );
        assert_eq!(parse("ping").unwrap(), ("ping".to_owned(), vec![]));
        assert_eq!(parse("  "), Err(LineError::NoEvent));
        assert!(matches!(parse("say hello"), Err(LineError::BadJson(_))));
    }

    #[test]
    fn attachments_are_inlined() {
        let mut v =
            json!(["up", {"_placeholder": true, "num": 0}, {"_placeholder": true, "num": 5}]);
        inline_attachments(&mut v, &[Bytes::from_static(b"hi")]);
        assert_eq!(v, json!(["up", {"base64": "aGk="}, {"base64": ""}]));
    }
}
