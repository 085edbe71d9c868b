//! The signature of a hook call: `X-Prise-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of the exact body bytes with the hook secret. A backend
//! recomputes it over the body it received and compares in constant time.

use aws_lc_rs::hmac;

/// The header that carries the signature.
pub(crate) const SIGNATURE_HEADER: &str = "x-prise-signature";

/// A hook secret, ready to sign.
pub(crate) struct Signer(hmac::Key);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer for `secret`.
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The header value for `body`: `sha256=` and 64 lowercase hex digits.
    pub(crate) fn header(&self, body: &[u8]) -> String {
        let tag = hmac::sign(&self.0, body);
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256=");
        for b in tag.as_ref() {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_4231_vector() {
        // RFC 4231, test case 2.
        let s = Signer::new(b"Jefe");
        assert_eq!(
            s.header(b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
