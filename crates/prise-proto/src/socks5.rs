//! The client side of SOCKS5 (RFC 1928) with username/password
//! authentication (RFC 1929), without I/O.
//!
//! ```text
//! client                                   proxy
//!   05 n methods…  (00 none, 02 user/pass) ─▶
//!                                      ◀── 05 method (ff: none acceptable)
//!   01 ulen user plen pass    (method 02)  ─▶
//!                                      ◀── 01 status (00: accepted)
//!   05 01 00 atyp addr port   (CONNECT)    ─▶
//!                                      ◀── 05 rep 00 atyp bnd.addr bnd.port
//! ```
//!
//! Host names travel as names (address type 3): the proxy resolves them,
//! so a name that only the proxy's side knows still works. Every answer has
//! a size known from its first bytes, at most [`MAX_REPLY`], so a driver
//! can read exactly that much and leave the tunnel's first bytes alone
//! (`prise_net::proxy_client` does).

use std::net::IpAddr;

/// The protocol version byte.
pub const VERSION: u8 = 5;
/// Method: no authentication.
pub const METHOD_NONE: u8 = 0x00;
/// Method: username/password (RFC 1929).
pub const METHOD_PASSWORD: u8 = 0x02;
/// Method answer: none of the offered methods is acceptable.
pub const METHOD_UNACCEPTABLE: u8 = 0xff;
/// Longest reply to CONNECT: 4 header bytes, a 255-byte name with its
/// length byte, 2 port bytes.
pub const MAX_REPLY: usize = 4 + 1 + 255 + 2;

/// Why a SOCKS5 exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Socks5Error {
    /// The proxy answered with another protocol or version.
    #[error("not a socks5 answer (version {0})")]
    BadVersion(u8),
    /// The proxy accepts none of the offered authentication methods.
    #[error(
        "the proxy accepts none of our authentication methods (it may need a user and password)"
    )]
    NoAcceptableMethod,
    /// The proxy chose a method that was not offered.
    #[error("the proxy chose authentication method {0}, which was not offered")]
    UnexpectedMethod(u8),
    /// The proxy rejected the user name and password.
    #[error("the proxy rejected the user name and password")]
    AuthRejected,
    /// The proxy refused the CONNECT (the reply code, RFC 1928 §6).
    #[error("{}", reply_text(*.0))]
    Refused(u8),
    /// An unknown address type in the reply.
    #[error("unknown address type {0} in the reply")]
    BadAddressType(u8),
    /// A user name, password or host name over 255 bytes, or empty.
    #[error("{0} must be 1 to 255 bytes")]
    TooLong(&'static str),
}

/// The meaning of a CONNECT reply code (RFC 1928 §6).
pub fn reply_text(code: u8) -> String {
    match code {
        0x01 => "general socks server failure".into(),
        0x02 => "connection not allowed by ruleset".into(),
        0x03 => "network unreachable".into(),
        0x04 => "host unreachable".into(),
        0x05 => "connection refused".into(),
        0x06 => "TTL expired".into(),
        0x07 => "command not supported".into(),
        0x08 => "address type not supported".into(),
        other => format!("reply code {other}"),
    }
}

/// The greeting: the methods offered, password first when there is one.
pub fn greeting(with_password: bool) -> Vec<u8> {
    if with_password {
        vec![VERSION, 2, METHOD_PASSWORD, METHOD_NONE]
    } else {
        vec![VERSION, 1, METHOD_NONE]
    }
}

/// Checks the two-byte method choice and returns the method.
///
/// # Errors
/// Another version, no acceptable method, or a method not offered.
pub fn method_choice(answer: [u8; 2], with_password: bool) -> Result<u8, Socks5Error> {
    match answer {
        [VERSION, METHOD_UNACCEPTABLE] => Err(Socks5Error::NoAcceptableMethod),
        [VERSION, METHOD_NONE] => Ok(METHOD_NONE),
        [VERSION, METHOD_PASSWORD] if with_password => Ok(METHOD_PASSWORD),
        [VERSION, m] => Err(Socks5Error::UnexpectedMethod(m)),
        [v, _] => Err(Socks5Error::BadVersion(v)),
    }
}

/// The RFC 1929 request: version 1, user, password.
///
/// # Errors
/// A user or password empty or over 255 bytes.
pub fn password_request(user: &str, pass: &str) -> Result<Vec<u8>, Socks5Error> {
    let mut out = vec![1];
    for (what, field) in [("the user name", user), ("the password", pass)] {
        let len = u8::try_from(field.len()).map_err(|_| Socks5Error::TooLong(what))?;
        if len == 0 {
            return Err(Socks5Error::TooLong(what));
        }
        out.push(len);
        out.extend_from_slice(field.as_bytes());
    }
    Ok(out)
}

/// Checks the two-byte RFC 1929 status.
///
/// # Errors
/// [`Socks5Error::AuthRejected`] for any status but 0.
pub fn password_status(answer: [u8; 2]) -> Result<(), Socks5Error> {
    match answer {
        [1, 0] => Ok(()),
        [1, _] => Err(Socks5Error::AuthRejected),
        [v, _] => Err(Socks5Error::BadVersion(v)),
    }
}

/// The CONNECT request for `host:port`: an IP literal as an address, any
/// other host as a name for the proxy to resolve.
///
/// # Errors
/// A host name over 255 bytes, or empty.
pub fn connect_request(host: &str, port: u16) -> Result<Vec<u8>, Socks5Error> {
    let mut out = vec![VERSION, 0x01, 0x00];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            out.push(0x01);
            out.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            out.push(0x04);
            out.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let len =
                u8::try_from(host.len()).map_err(|_| Socks5Error::TooLong("the host name"))?;
            if len == 0 {
                return Err(Socks5Error::TooLong("the host name"));
            }
            out.push(0x03);
            out.push(len);
            out.extend_from_slice(host.as_bytes());
        }
    }
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

/// How much of a CONNECT reply is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyProgress {
    /// The reply is this many bytes in all (at most [`MAX_REPLY`]); read up to it.
    Need(usize),
    /// The proxy connected; the reply was this long.
    Done(usize),
}

/// Decodes a CONNECT reply from its first bytes.
///
/// # Errors
/// Another version, a refusal, or an unknown address type.
pub fn connect_reply(buf: &[u8]) -> Result<ReplyProgress, Socks5Error> {
    if buf.len() < 4 {
        return Ok(ReplyProgress::Need(5));
    }
    if buf[0] != VERSION {
        return Err(Socks5Error::BadVersion(buf[0]));
    }
    if buf[1] != 0 {
        return Err(Socks5Error::Refused(buf[1]));
    }
    let total = match buf[3] {
        0x01 => 4 + 4 + 2,
        0x04 => 4 + 16 + 2,
        0x03 => match buf.get(4) {
            Some(&len) => 4 + 1 + usize::from(len) + 2,
            None => return Ok(ReplyProgress::Need(5)),
        },
        other => return Err(Socks5Error::BadAddressType(other)),
    };
    if buf.len() < total {
        Ok(ReplyProgress::Need(total))
    } else {
        Ok(ReplyProgress::Done(total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_encoded_as_the_rfc_says() {
        assert_eq!(greeting(false), [5, 1, 0]);
        assert_eq!(greeting(true), [5, 2, 2, 0]);
        assert_eq!(
            password_request("u", "pw").unwrap(),
            [1, 1, b'u', 2, b'p', b'w']
        );
        assert_eq!(
            connect_request("127.0.0.1", 80).unwrap(),
            [5, 1, 0, 1, 127, 0, 0, 1, 0, 80]
        );
        assert_eq!(
            connect_request("ab.c", 443).unwrap(),
            [5, 1, 0, 3, 4, b'a', b'b', b'.', b'c', 1, 187]
        );
        let v6 = connect_request("::1", 1).unwrap();
        assert_eq!((v6[3], v6.len()), (4, 4 + 16 + 2));
        assert_eq!(
            connect_request(&"x".repeat(256), 1),
            Err(Socks5Error::TooLong("the host name"))
        );
        assert!(password_request("", "p").is_err());
    }

    #[test]
    fn answers_are_checked() {
        assert_eq!(method_choice([5, 0], false), Ok(METHOD_NONE));
        assert_eq!(method_choice([5, 2], true), Ok(METHOD_PASSWORD));
        assert_eq!(
            method_choice([5, 2], false),
            Err(Socks5Error::UnexpectedMethod(2))
        );
        assert_eq!(
            method_choice([5, 0xff], true),
            Err(Socks5Error::NoAcceptableMethod)
        );
        assert_eq!(
            method_choice([b'H', b'T'], false),
            Err(Socks5Error::BadVersion(b'H'))
        );
        assert_eq!(password_status([1, 0]), Ok(()));
        assert_eq!(password_status([1, 1]), Err(Socks5Error::AuthRejected));
    }

    #[test]
    fn replies_are_sized_from_their_first_bytes() {
        assert_eq!(connect_reply(&[]), Ok(ReplyProgress::Need(5)));
        assert_eq!(connect_reply(&[5, 0, 0, 1, 0]), Ok(ReplyProgress::Need(10)));
        assert_eq!(
            connect_reply(&[5, 0, 0, 1, 1, 2, 3, 4, 0, 9]),
            Ok(ReplyProgress::Done(10))
        );
        assert_eq!(
            connect_reply(&[5, 0, 0, 3, 255]),
            Ok(ReplyProgress::Need(MAX_REPLY))
        );
        assert_eq!(connect_reply(&[5, 0, 0, 4, 0]), Ok(ReplyProgress::Need(22)));
        assert_eq!(
            connect_reply(&[5, 5, 0, 1, 0]),
            Err(Socks5Error::Refused(5))
        );
        assert_eq!(
            connect_reply(&[5, 0, 0, 9, 0]),
            Err(Socks5Error::BadAddressType(9))
        );
        assert_eq!(
            connect_reply(&[4, 0, 0, 1, 0]),
            Err(Socks5Error::BadVersion(4))
        );
        assert_eq!(Socks5Error::Refused(5).to_string(), "connection refused");
    }
}
