//! The TCP line protocol: netcat-friendly, one UTF-8 command per line.
//!
//! ```text
//! client                         server
//!                                HELLO prise/0.1.0 line/1 sid=… (HELP for commands)
//! NICK alice                 →   OK alice
//! JOIN general               →   OK general offset=41 members=2 epoch=…
//! SAY general hello          →   OK 42
//!                                MSG general 42 alice hello      (to every member)
//! EMIT general move {"x":1}   →   OK 43
//!                                EVENT general 43 alice move {"x":1}
//! PING x                     →   PONG x
//! QUIT                       →   BYE
//! ```
//!
//! Commands are case-insensitive; lines end in `\n` or `\r\n`; a line longer
//! than the cap is answered `ERR LINE_TOO_LONG …` and skipped up to its end,
//! so the connection stays usable.

use bytes::{Buf, BytesMut};

use crate::framing;

pub mod encode;
use crate::message::Offset;

/// The protocol's name and version, sent in the greeting.
pub const PROTOCOL: &str = "line/1";

/// Why a line could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line is longer than the cap; it is being skipped.
    #[error("line longer than {0} bytes")]
    TooLong(usize),
    /// The line is not valid UTF-8.
    #[error("line is not valid UTF-8")]
    BadUtf8,
}

/// Splits a byte stream into command lines with a cap on their length.
///
/// Built on [`crate::framing::NewlineDecoder`], with the line protocol's
/// policy on top: an over-long line is reported once and then discarded up
/// to its `\n` as it arrives, without buffering it, so the connection stays
/// usable and memory per connection stays at most the cap.
#[derive(Debug, Clone)]
pub struct CommandLineDecoder {
    lines: framing::NewlineDecoder,
    discarding: bool,
}

impl CommandLineDecoder {
    /// A decoder for lines of at most `max` bytes (terminator excluded).
    pub fn new(max: usize) -> Self {
        Self {
            lines: framing::NewlineDecoder::new(max),
            discarding: false,
        }
    }

    /// Takes the next line out of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed. A `\r` before the `\n`
    /// is removed.
    ///
    /// # Errors
    /// [`LineError::TooLong`] once per over-long line (its bytes are dropped
    /// as they arrive), [`LineError::BadUtf8`] for a line that is not UTF-8.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<String>, LineError> {
        let max = self.lines.max_len();
        if self.discarding {
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    buf.advance(i + 1);
                    self.discarding = false;
                }
                None => {
                    buf.clear();
                    return Ok(None);
                }
            }
        }
        let before = buf.len();
        match self.lines.decode(buf) {
            Ok(Some(line)) => String::from_utf8(line.to_vec())
                .map(Some)
                .map_err(|_| LineError::BadUtf8),
            Ok(None) => Ok(None),
            Err(_) => {
                if buf.len() == before {
                    // The over-long line is still in `buf`: drop it up to its
                    // `\n`, or all of it and skip its rest as it arrives.
                    match buf.iter().position(|&b| b == b'\n') {
                        Some(i) => buf.advance(i + 1),
                        None => {
                            buf.clear();
                            self.discarding = true;
                        }
                    }
                }
                // Start scanning afresh: the buffer changed under the decoder.
                self.lines = framing::NewlineDecoder::new(max);
                Err(LineError::TooLong(max))
            }
        }
    }
}

/// A client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PING [token]` → `PONG [token]`.
    Ping(Option<String>),
    /// `TIME` → `TIME <RFC 3339>`.
    Time,
    /// `NICK name`: choose a display name.
    Nick(String),
    /// `AUTH token`: authenticate with a token.
    Auth(String),
    /// `JOIN room [SINCE offset]`.
    Join {
        /// Room name.
        room: String,
        /// Replay messages after this offset.
        since: Option<Offset>,
    },
    /// `LEAVE room`.
    Leave(String),
    /// `SAY room text` → `OK offset`.
    Say {
        /// Room name.
        room: String,
        /// The message text (rest of the line).
        text: String,
    },
    /// `EMIT room event json` → `OK offset`: publish a named event. The
    /// event is one word, or a JSON string when it holds spaces
    /// (`EMIT a "chat message" "hi"`).
    Emit {
        /// Room name.
        room: String,
        /// Event name.
        event: String,
        /// The event's data (the rest of the line, JSON).
        data: serde_json::Value,
    },
    /// `RPC method [json]` → `OK json` (the backend's result) or
    /// `ERR code message`: a request the backend's `rpc` hook answers. The
    /// method is one word or a JSON string; the data defaults to `null`.
    Rpc {
        /// What is asked.
        method: String,
        /// Its argument (the rest of the line, JSON).
        data: serde_json::Value,
    },
    /// `TYPING room [on|off]`.
    Typing {
        /// Room name.
        room: String,
        /// Typing or stopped.
        on: bool,
    },
    /// `WHO room [after] [limit]`: a page of a room's members, sorted by
    /// name, after the cursor `after` (from a previous answer's `NEXT`).
    Who {
        /// Room name.
        room: String,
        /// The cursor to continue after.
        after: Option<String>,
        /// How many at most (the server's default when absent; capped).
        limit: Option<usize>,
    },
    /// `HISTORY room [n]`: the last n messages, oldest first.
    History {
        /// Room name.
        room: String,
        /// How many (the server's default when absent).
        count: Option<usize>,
    },
    /// `ROOMS`: rooms with members.
    Rooms,
    /// `HELP`.
    Help,
    /// `QUIT` → `BYE`, then close.
    Quit,
}

/// Why a command line was refused; [`ParseError::code`] gives the `ERR` code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is empty (ignored by servers).
    #[error("empty line")]
    Empty,
    /// The verb is not a command.
    #[error("unknown command {0}, try HELP")]
    Unknown(String),
    /// A required argument is missing or malformed.
    #[error("usage: {0}")]
    Usage(&'static str),
}

impl ParseError {
    /// The `ERR` code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty | Self::Usage(_) => "BAD_REQUEST",
            Self::Unknown(_) => "UNKNOWN_COMMAND",
        }
    }
}

/// The help text, one line per command (sent as `HELP …` lines).
pub const HELP: &[&str] = &[
    "PING [x]                 -> PONG [x]",
    "TIME                     -> server time (RFC 3339)",
    "NICK name                -> choose your name",
    "AUTH token               -> authenticate with a token",
    "JOIN room [SINCE n]      -> join; replay messages after offset n",
    "LEAVE room               -> leave a room",
    "SAY room text            -> publish; answered OK offset",
    "EMIT room event json     -> publish a named event; answered OK offset",
    "RPC method [json]        -> ask the backend; answered OK json",
    "TYPING room [on|off]     -> tell the room you are typing",
    "WHO room [after] [n]     -> n members after a cursor; NEXT line if more",
    "HISTORY room [n]         -> last n messages, oldest first",
    "ROOMS                    -> rooms with members",
    "QUIT                     -> BYE, then close",
];

/// Reads the event word of `EMIT`: a bare word, or a JSON string.
fn split_event(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start_matches([' ', '\t']);
    if s.starts_with('"') {
        let mut it = serde_json::Deserializer::from_str(s).into_iter::<String>();
        let name = it.next()?.ok()?;
        let rest = &s[it.byte_offset()..];
        if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
            return None;
        }
        Some((name, rest.trim_start_matches([' ', '\t'])))
    } else {
        let (word, rest) = split_word(s);
        Some((word.to_owned(), rest))
    }
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i + 1..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

impl Command {
    /// Parses one line (without its terminator).
    ///
    /// # Errors
    /// A [`ParseError`] for an empty line, an unknown verb or bad arguments.
    pub fn parse(line: &str) -> Result<Command, ParseError> {
        let (verb, rest) = split_word(line);
        if verb.is_empty() {
            return Err(ParseError::Empty);
        }
        let verb = verb.to_ascii_uppercase();
        let rest_trimmed = rest.trim_end();
        let one = |usage: &'static str| -> Result<String, ParseError> {
            let (arg, tail) = split_word(rest_trimmed);
            if arg.is_empty() || !tail.is_empty() {
                return Err(ParseError::Usage(usage));
            }
            Ok(arg.to_owned())
        };
        match verb.as_str() {
            "PING" => Ok(Command::Ping(
                (!rest_trimmed.is_empty()).then(|| rest_trimmed.to_owned()),
            )),
            "TIME" => Ok(Command::Time),
            "NICK" => one("NICK name").map(Command::Nick),
            "AUTH" => one("AUTH token").map(Command::Auth),
            "JOIN" => {
                const USAGE: &str = "JOIN room [SINCE offset]";
                let (room, tail) = split_word(rest_trimmed);
                if room.is_empty() {
                    return Err(ParseError::Usage(USAGE));
                }
                let since = if tail.is_empty() {
                    None
                } else {
                    let (kw, n) = split_word(tail);
                    if !kw.eq_ignore_ascii_case("SINCE") {
                        return Err(ParseError::Usage(USAGE));
                    }
                    Some(Offset(n.parse().map_err(|_| ParseError::Usage(USAGE))?))
                };
                Ok(Command::Join {
                    room: room.to_owned(),
                    since,
                })
            }
            "LEAVE" => one("LEAVE room").map(Command::Leave),
            "SAY" => {
                let (room, text) = split_word(rest);
                if room.is_empty() || text.is_empty() {
                    return Err(ParseError::Usage("SAY room text"));
                }
                Ok(Command::Say {
                    room: room.to_owned(),
                    text: text.to_owned(),
                })
            }
            "EMIT" => {
                const USAGE: &str = "EMIT room event json";
                let (room, tail) = split_word(rest_trimmed);
                let (event, data) = split_event(tail).ok_or(ParseError::Usage(USAGE))?;
                if room.is_empty() || event.is_empty() || data.is_empty() {
                    return Err(ParseError::Usage(USAGE));
                }
                let data = serde_json::from_str(data).map_err(|_| ParseError::Usage(USAGE))?;
                Ok(Command::Emit {
                    room: room.to_owned(),
                    event,
                    data,
                })
            }
            "RPC" => {
                const USAGE: &str = "RPC method [json]";
                let (method, data) = split_event(rest_trimmed).ok_or(ParseError::Usage(USAGE))?;
                if method.is_empty() {
                    return Err(ParseError::Usage(USAGE));
                }
                let data = if data.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::from_str(data).map_err(|_| ParseError::Usage(USAGE))?
                };
                Ok(Command::Rpc { method, data })
            }
            "TYPING" => {
                const USAGE: &str = "TYPING room [on|off]";
                let (room, tail) = split_word(rest_trimmed);
                if room.is_empty() {
                    return Err(ParseError::Usage(USAGE));
                }
                let on = match tail.to_ascii_lowercase().as_str() {
                    "" | "on" => true,
                    "off" => false,
                    _ => return Err(ParseError::Usage(USAGE)),
                };
                Ok(Command::Typing {
                    room: room.to_owned(),
                    on,
                })
            }
            "WHO" => {
                const USAGE: &str = "WHO room [after] [limit]";
                let (room, tail) = split_word(rest_trimmed);
                let (first, tail) = split_word(tail);
                let (second, tail) = split_word(tail);
                if room.is_empty() || !tail.is_empty() {
                    return Err(ParseError::Usage(USAGE));
                }
                let number = |s: &str| s.parse::<usize>().map_err(|_| ParseError::Usage(USAGE));
                // A cursor always holds a non-digit (its encoded line feed
                // never encodes to digits), so a lone number is the limit.
                let (after, limit) = match (first, second) {
                    ("", _) => (None, None),
                    (n, "") if n.bytes().all(|b| b.is_ascii_digit()) => (None, Some(number(n)?)),
                    (c, "") => (Some(c.to_owned()), None),
                    (c, n) => (Some(c.to_owned()), Some(number(n)?)),
                };
                Ok(Command::Who {
                    room: room.to_owned(),
                    after,
                    limit,
                })
            }
            "HISTORY" => {
                const USAGE: &str = "HISTORY room [n]";
                let (room, tail) = split_word(rest_trimmed);
                if room.is_empty() {
                    return Err(ParseError::Usage(USAGE));
                }
                let count = if tail.is_empty() {
                    None
                } else {
                    Some(tail.parse().map_err(|_| ParseError::Usage(USAGE))?)
                };
                Ok(Command::History {
                    room: room.to_owned(),
                    count,
                })
            }
            "ROOMS" => Ok(Command::Rooms),
            "HELP" => Ok(Command::Help),
            "QUIT" => Ok(Command::Quit),
            _ => {
                // Keep at most 32 bytes, cut on a character boundary.
                Err(ParseError::Unknown(
                    crate::limits::clip(&verb, 32).to_owned(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    #[test]
    fn long_unknown_verbs_are_cut_on_a_char_boundary() {
        // Found by fuzzing: a 3-byte character across byte 32 used to panic.
        let verb = format!("{}\u{5E1A}x", "N".repeat(31));
        match Command::parse(&verb) {
            Err(ParseError::Unknown(v)) => assert_eq!(v, "N".repeat(31)),
            other => panic!("{other:?}"),
        }
    }

    fn decode_all(
        d: &mut CommandLineDecoder,
        buf: &mut BytesMut,
    ) -> Vec<Result<String, LineError>> {
        let mut out = Vec::new();
        loop {
            match d.decode(buf) {
                Ok(Some(l)) => out.push(Ok(l)),
                Ok(None) => return out,
                Err(e) => out.push(Err(e)),
            }
        }
    }

    #[test]
    fn lines_split_on_lf_and_crlf() {
        let mut d = CommandLineDecoder::new(16);
        let mut b = BytesMut::from(&b"PING\r\nTIME\nJO"[..]);
        assert_eq!(
            decode_all(&mut d, &mut b),
            vec![Ok("PING".into()), Ok("TIME".into())]
        );
        b.extend_from_slice(b"IN x\n");
        assert_eq!(decode_all(&mut d, &mut b), vec![Ok("JOIN x".into())]);
        assert!(b.is_empty());
    }

    #[test]
    fn over_long_lines_are_reported_once_and_skipped() {
        let mut d = CommandLineDecoder::new(4);
        let mut b = BytesMut::from(&b"abcdefgh"[..]);
        assert_eq!(decode_all(&mut d, &mut b), vec![Err(LineError::TooLong(4))]);
        assert!(b.is_empty(), "discarded bytes are not kept");
        b.extend_from_slice(b"ijkl\nPING\n");
        assert_eq!(decode_all(&mut d, &mut b), vec![Ok("PING".into())]);
        // A complete over-long line in one read.
        let mut b = BytesMut::from(&b"abcdefgh\nok\n"[..]);
        assert_eq!(
            decode_all(&mut d, &mut b),
            vec![Err(LineError::TooLong(4)), Ok("ok".into())]
        );
        // A long line with its newline far past the cap, then a good one.
        let mut b = BytesMut::from(&b"abcdefghijklmnop\nPING\n"[..]);
        assert_eq!(
            decode_all(&mut d, &mut b),
            vec![Err(LineError::TooLong(4)), Ok("PING".into())]
        );
        // Exactly at the cap, with CRLF, is fine.
        let mut b = BytesMut::from(&b"abcd\r\n"[..]);
        assert_eq!(decode_all(&mut d, &mut b), vec![Ok("abcd".into())]);
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        let mut d = CommandLineDecoder::new(16);
        let mut b = BytesMut::from(&b"\xff\xfe\nPING\n"[..]);
        assert_eq!(
            decode_all(&mut d, &mut b),
            vec![Err(LineError::BadUtf8), Ok("PING".into())]
        );
    }

    #[test]
    fn commands_parse_case_insensitively() {
        assert_eq!(Command::parse("ping"), Ok(Command::Ping(None)));
        assert_eq!(
            Command::parse("PING  hello there "),
            Ok(Command::Ping(Some("hello there".into())))
        );
        assert_eq!(Command::parse("time"), Ok(Command::Time));
        assert_eq!(
            Command::parse("join general since 4"),
            Ok(Command::Join {
                room: "general".into(),
                since: Some(Offset(4))
            })
        );
        assert_eq!(
            Command::parse("JOIN general"),
            Ok(Command::Join {
                room: "general".into(),
                since: None
            })
        );
        assert_eq!(
            Command::parse("SAY general hello  world"),
            Ok(Command::Say {
                room: "general".into(),
                text: "hello  world".into()
            })
        );
        assert_eq!(
            Command::parse("history general 5"),
            Ok(Command::History {
                room: "general".into(),
                count: Some(5)
            })
        );
        assert_eq!(
            Command::parse("typing general off"),
            Ok(Command::Typing {
                room: "general".into(),
                on: false
            })
        );
        assert_eq!(Command::parse("quit"), Ok(Command::Quit));
        assert_eq!(Command::parse("rooms"), Ok(Command::Rooms));
        assert_eq!(
            Command::parse("Who general"),
            Ok(Command::Who {
                room: "general".into(),
                after: None,
                limit: None
            })
        );
        assert_eq!(
            Command::parse("WHO general 50"),
            Ok(Command::Who {
                room: "general".into(),
                after: None,
                limit: Some(50)
            })
        );
        assert_eq!(
            Command::parse("WHO general YWxpY2UKMQ 20"),
            Ok(Command::Who {
                room: "general".into(),
                after: Some("YWxpY2UKMQ".into()),
                limit: Some(20)
            })
        );
        assert_eq!(
            Command::parse("WHO general YWxpY2UKMQ"),
            Ok(Command::Who {
                room: "general".into(),
                after: Some("YWxpY2UKMQ".into()),
                limit: None
            })
        );
    }

    #[test]
    fn emit_reads_a_word_or_a_quoted_event() {
        assert_eq!(
            Command::parse(r#"EMIT /game:a move {"x": 1}"#),
            Ok(Command::Emit {
                room: "/game:a".into(),
                event: "move".into(),
                data: serde_json::json!({"x": 1}),
            })
        );
        assert_eq!(
            Command::parse(r#"emit a "chat message" "hi there""#),
            Ok(Command::Emit {
                room: "a".into(),
                event: "chat message".into(),
                data: "hi there".into(),
            })
        );
        for bad in [
            "EMIT a move",
            "EMIT a move not-json",
            r#"EMIT a "unterminated 1"#,
            r#"EMIT a "x"1"#,
            "EMIT",
        ] {
            assert_eq!(
                Command::parse(bad).unwrap_err().code(),
                "BAD_REQUEST",
                "{bad}"
            );
        }
    }

    #[test]
    fn rpc_takes_a_method_and_optional_json() {
        assert_eq!(
            Command::parse(r#"RPC placeOrder {"item": 3}"#),
            Ok(Command::Rpc {
                method: "placeOrder".into(),
                data: serde_json::json!({"item": 3})
            })
        );
        assert_eq!(
            Command::parse(r#"rpc "make move""#),
            Ok(Command::Rpc {
                method: "make move".into(),
                data: serde_json::Value::Null
            })
        );
        for bad in ["RPC", "RPC m not-json", r#"RPC "open"#] {
            assert_eq!(
                Command::parse(bad).unwrap_err().code(),
                "BAD_REQUEST",
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_commands_get_codes() {
        assert_eq!(Command::parse(""), Err(ParseError::Empty));
        let e = Command::parse("FROB x").unwrap_err();
        assert_eq!(e.code(), "UNKNOWN_COMMAND");
        assert_eq!(e.to_string(), "unknown command FROB, try HELP");
        assert_eq!(
            Command::parse("SAY general").unwrap_err().code(),
            "BAD_REQUEST"
        );
        assert!(Command::parse("JOIN a SINCE x").is_err());
        assert!(Command::parse("JOIN a AFTER 3").is_err());
        assert!(Command::parse("NICK a b").is_err());
        assert!(Command::parse("HISTORY a -1").is_err());
        assert!(Command::parse("WHO").is_err());
        assert!(Command::parse("WHO a c x").is_err());
        assert!(Command::parse("WHO a c 1 2").is_err());
        assert!(Command::parse("WHO a 99999999999999999999999999").is_err());
    }

    #[test]
    fn pushes_are_one_line() {
        let m = Message {
            id: "x".into(),
            room_id: "r".into(),
            user_id: "u".into(),
            user_name: "bob".into(),
            content: "two\nlines".into(),
            timestamp: 0,
            offset: Offset(7),
            event: crate::message::MESSAGE_EVENT.into(),
            args: false,
            seq: 0,
        };
        let mut s = String::new();
        encode::message(&mut s, &m);
        encode::error(&mut s, "NO_ROOM", "no\nroom");
        assert_eq!(s, "MSG r 7 bob two\\nlines\nERR NO_ROOM no room\n");
    }
}
