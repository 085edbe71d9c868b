//! Negotiation of permessage-deflate (RFC 7692 §5 and §7.1), without I/O.
//!
//! The server reads the client's `Sec-WebSocket-Extensions` offers, accepts
//! the first one it can honour and declines the others by leaving them out of
//! its answer. The client offers one configuration and checks the answer. Both
//! sides end with a [`Negotiated`]: what this endpoint's compressor may do and
//! whether its inflater must forget the window after each message.

use std::fmt::Write as _;

/// The extension token of RFC 7692.
pub const EXTENSION_NAME: &str = "permessage-deflate";
/// Smallest LZ77 window (2^8 bytes) a peer may ask for.
pub const MIN_WINDOW_BITS: u8 = 8;
/// Largest LZ77 window (2^15 bytes), the default.
pub const MAX_WINDOW_BITS: u8 = 15;
/// Default compression level: fast, since a hub compresses every message it sends.
pub const DEFAULT_LEVEL: u8 = 1;

/// What this endpoint is willing to use when permessage-deflate is enabled.
///
/// Memory: a negotiated connection holds a compressor (about
/// `2^(window_bits + 2)` bytes of window plus 128 KiB of hash tables) and an
/// inflater (up to 32 KiB of window). A connection that did not negotiate the
/// extension holds none of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// zlib level 0–9 (values above 9 are treated as 9).
    pub level: u8,
    /// Largest window this endpoint's compressor uses, 8–15. A smaller window
    /// saves memory on every connection at the cost of ratio.
    pub max_window_bits: u8,
    /// Reset this endpoint's compressor after each message (and say so in the
    /// handshake), trading ratio for no window kept between messages.
    pub no_context_takeover: bool,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            level: DEFAULT_LEVEL,
            max_window_bits: MAX_WINDOW_BITS,
            no_context_takeover: false,
        }
    }
}

impl DeflateConfig {
    fn window_bits(&self) -> u8 {
        self.max_window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
    }
}

/// The parameters agreed for one connection, seen from this endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// zlib level of this endpoint's compressor.
    pub level: u8,
    /// Largest window this endpoint's compressor may use (8–15).
    pub send_window_bits: u8,
    /// This endpoint resets its compressor after each message.
    pub send_no_context_takeover: bool,
    /// The peer resets its compressor after each message, so this endpoint's
    /// inflater does too.
    pub recv_no_context_takeover: bool,
}

/// Why the server's answer to our offer is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// The header does not follow the extension grammar.
    #[error("malformed sec-websocket-extensions header")]
    Malformed,
    /// The server answered with an extension that was not offered.
    #[error("server chose an extension that was not offered")]
    NotOffered,
    /// A permessage-deflate parameter is unknown, repeated or out of range.
    #[error("invalid permessage-deflate parameter")]
    BadParameter,
}

/// One extension of a header: its name and its parameters, values unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Extension {
    name: String,
    params: Vec<(String, Option<String>)>,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Splits `s` on `sep` outside double quotes.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return is_token(v).then(|| v.to_owned());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    is_token(&out).then_some(out)
}

/// Parses every extension of one or more `Sec-WebSocket-Extensions` values.
fn parse_extensions<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Extension>, NegotiationError> {
    let mut out = Vec::new();
    for value in values {
        for item in split_outside_quotes(value, ',') {
            if item.trim().is_empty() {
                // `1#element` allows empty list elements.
                continue;
            }
            let mut parts = split_outside_quotes(item, ';').into_iter();
            let name = parts.next().unwrap_or_default().trim();
            if !is_token(name) {
                return Err(NegotiationError::Malformed);
            }
            let mut params = Vec::new();
            for p in parts {
                let (k, v) = match p.split_once('=') {
                    Some((k, v)) => (
                        k.trim(),
                        Some(unquote(v.trim()).ok_or(NegotiationError::Malformed)?),
                    ),
                    None => (p.trim(), None),
                };
                if !is_token(k) {
                    return Err(NegotiationError::Malformed);
                }
                params.push((k.to_ascii_lowercase(), v));
            }
            out.push(Extension {
                name: name.to_ascii_lowercase(),
                params,
            });
        }
    }
    Ok(out)
}

/// permessage-deflate parameters as written in one offer or answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: the parameter without a value (allowed only in an offer).
    client_max_window_bits: Option<Option<u8>>,
}

/// A window-bits value: decimal 8–15 without leading zeros (RFC 7692 §7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse()
        .ok()
        .filter(|b| (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(b))
}

/// Reads the parameters of one permessage-deflate element; `None` when one is
/// unknown, repeated or has an invalid value.
fn parse_params(params: &[(String, Option<String>)]) -> Option<Params> {
    let mut p = Params::default();
    let mut seen = [false; 4];
    for (k, v) in params {
        let slot = match k.as_str() {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
        match (slot, v) {
            (0, None) => p.server_no_context_takeover = true,
            (1, None) => p.client_no_context_takeover = true,
            (2, Some(v)) => p.server_max_window_bits = Some(window_bits(v)?),
            (3, None) => p.client_max_window_bits = Some(None),
            (3, Some(v)) => p.client_max_window_bits = Some(Some(window_bits(v)?)),
            _ => return None,
        }
    }
    Some(p)
}

/// Server side: picks the first acceptable permessage-deflate offer among the
/// request's `Sec-WebSocket-Extensions` values.
///
/// Returns the value of the answer's `Sec-WebSocket-Extensions` header and the
/// agreed parameters, or `None` when no offer is acceptable (the connection
/// then runs without compression). Offers of other extensions, offers with
/// unknown or invalid parameters and a malformed header are declined, never an
/// error: RFC 7692 lets a server decline any offer.
pub fn accept_offer<'a>(
    values: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<(String, Negotiated)> {
    let offers = parse_extensions(values).ok()?;
    let offer = offers
        .iter()
        .filter(|e| e.name == EXTENSION_NAME)
        .find_map(|e| parse_params(&e.params))?;
    let mut answer = String::from(EXTENSION_NAME);
    let send_no_context_takeover = offer.server_no_context_takeover || config.no_context_takeover;
    if send_no_context_takeover {
        answer.push_str("; server_no_context_takeover");
    }
    if offer.client_no_context_takeover {
        answer.push_str("; client_no_context_takeover");
    }
    let mut send_window_bits = config.window_bits();
    if let Some(bits) = offer.server_max_window_bits {
        // Accepting the offer means echoing the parameter with a value no larger.
        send_window_bits = send_window_bits.min(bits);
        let _ = write!(answer, "; server_max_window_bits={send_window_bits}");
    }
    Some((
        answer,
        Negotiated {
            level: config.level,
            send_window_bits,
            send_no_context_takeover,
            recv_no_context_takeover: offer.client_no_context_takeover,
        },
    ))
}

/// Client side: the value of the `Sec-WebSocket-Extensions` header to offer.
pub fn offer(config: &DeflateConfig) -> String {
    let mut offer = String::from(EXTENSION_NAME);
    if config.no_context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    let bits = config.window_bits();
    if bits < MAX_WINDOW_BITS {
        let _ = write!(offer, "; client_max_window_bits={bits}");
    } else {
        // Lets the server ask for a smaller window from our compressor.
        offer.push_str("; client_max_window_bits");
    }
    offer
}

/// Client side: checks the server's answer to [`offer`].
///
/// Returns `Ok(None)` when the server did not accept the extension.
///
/// # Errors
/// A [`NegotiationError`] when the answer names an extension that was not
/// offered, repeats or invents a parameter, or gives an invalid value; the
/// client must then fail the connection (RFC 6455 §4.1, RFC 7692 §5.1).
pub fn check_answer<'a>(
    values: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Result<Option<Negotiated>, NegotiationError> {
    let answers = parse_extensions(values)?;
    let answer = match answers.as_slice() {
        [] => return Ok(None),
        [one] if one.name == EXTENSION_NAME => one,
        _ => return Err(NegotiationError::NotOffered),
    };
    let p = parse_params(&answer.params).ok_or(NegotiationError::BadParameter)?;
    let mut send_window_bits = config.window_bits();
    match p.client_max_window_bits {
        None => {}
        // The answer must carry a value, no larger than what we offered.
        Some(None) => return Err(NegotiationError::BadParameter),
        Some(Some(bits)) if bits > send_window_bits => {
            return Err(NegotiationError::BadParameter);
        }
        Some(Some(bits)) => send_window_bits = bits,
    }
    Ok(Some(Negotiated {
        level: config.level,
        send_window_bits,
        send_no_context_takeover: p.client_no_context_takeover || config.no_context_takeover,
        recv_no_context_takeover: p.server_no_context_takeover,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(values: &[&str]) -> Option<(String, Negotiated)> {
        accept_offer(values.iter().copied(), &DeflateConfig::default())
    }

    #[test]
    fn accepts_a_browser_offer() {
        let (answer, n) = server(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(answer, "permessage-deflate");
        assert_eq!(n.send_window_bits, 15);
        assert!(!n.send_no_context_takeover && !n.recv_no_context_takeover);
    }

    #[test]
    fn honours_every_parameter() {
        let (answer, n) = server(&[
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9; client_max_window_bits=10",
        ])
        .unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9"
        );
        assert_eq!(n.send_window_bits, 9);
        assert!(n.send_no_context_takeover && n.recv_no_context_takeover);
        // Quoted values are unquoted first.
        let (answer, _) = server(&["permessage-deflate; server_max_window_bits=\"8\""]).unwrap();
        assert_eq!(answer, "permessage-deflate; server_max_window_bits=8");
    }

    #[test]
    fn picks_the_first_acceptable_of_several_offers() {
        // The first offer has an unknown parameter, the second a bad value.
        let (answer, n) = server(&[
            "x-webkit-deflate-frame, permessage-deflate; foo=1, \
             permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_no_context_takeover, permessage-deflate",
        ])
        .unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
        assert!(n.send_no_context_takeover);
    }

    #[test]
    fn declines_invalid_offers() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=015",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "permessage-deflate; server_max_window_bits=\"1\"5\"",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(server(&[bad]), None, "{bad}");
        }
    }

    #[test]
    fn server_config_is_applied() {
        let config = DeflateConfig {
            level: 6,
            max_window_bits: 10,
            no_context_takeover: true,
        };
        let (answer, n) = accept_offer(["permessage-deflate"], &config).unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
        assert_eq!(n.send_window_bits, 10);
        assert_eq!(n.level, 6);
    }

    #[test]
    fn client_offers_and_checks_the_answer() {
        let config = DeflateConfig::default();
        assert_eq!(offer(&config), "permessage-deflate; client_max_window_bits");
        let small = DeflateConfig {
            max_window_bits: 9,
            no_context_takeover: true,
            ..config
        };
        assert_eq!(
            offer(&small),
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=9"
        );

        assert_eq!(check_answer([], &config), Ok(None));
        let n = check_answer(
            ["permessage-deflate; server_no_context_takeover; client_max_window_bits=8"],
            &config,
        )
        .unwrap()
        .unwrap();
        assert_eq!(n.send_window_bits, 8);
        assert!(n.recv_no_context_takeover && !n.send_no_context_takeover);
        let n = check_answer(["permessage-deflate; client_no_context_takeover"], &config)
            .unwrap()
            .unwrap();
        assert!(n.send_no_context_takeover);

        for (bad, err) in [
            ("x-foo", NegotiationError::NotOffered),
            (
                "permessage-deflate, permessage-deflate",
                NegotiationError::NotOffered,
            ),
            (
                "permessage-deflate; client_max_window_bits",
                NegotiationError::BadParameter,
            ),
            ("permessage-deflate; foo", NegotiationError::BadParameter),
            ("permessage-deflate;", NegotiationError::Malformed),
        ] {
            assert_eq!(check_answer([bad], &config), Err(err), "{bad}");
        }
        // A window larger than the one offered is refused.
        assert_eq!(
            check_answer(["permessage-deflate; client_max_window_bits=10"], &small),
            Err(NegotiationError::BadParameter)
        );
    }
}
