//! Signed JSON Web Tokens for the authentication tests.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

/// A signing key.
#[derive(Debug, Clone, Copy)]
pub enum JwtKey<'a> {
    /// HS256 with a shared secret.
    Hs256(&'a [u8]),
    /// RS256 with an RSA private key in PEM.
    Rs256(&'a [u8]),
    /// ES256 with a P-256 private key in PEM.
    Es256(&'a [u8]),
}

/// Signs `claims` with `key`; `kid` goes in the header when given.
///
/// # Panics
/// When the key does not parse.
pub fn jwt(key: JwtKey<'_>, kid: Option<&str>, claims: &Value) -> String {
    let (alg, key) = match key {
        JwtKey::Hs256(secret) => (Algorithm::HS256, EncodingKey::from_secret(secret)),
        JwtKey::Rs256(pem) => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(pem).expect("an RSA key in PEM"),
        ),
        JwtKey::Es256(pem) => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(pem).expect("an EC key in PEM"),
        ),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).expect("a signed token")
}

/// HS256 with `secret`, the common case.
pub fn hs256(secret: &str, claims: &Value) -> String {
    jwt(JwtKey::Hs256(secret.as_bytes()), None, claims)
}

/// Seconds since the Unix epoch, for `exp`.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}
