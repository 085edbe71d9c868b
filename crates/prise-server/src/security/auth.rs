//! Token authentication: JWT (HS256 with a secret, RS256/ES256 with a PEM
//! public key or a JWKS file), the claims prise reads, and room patterns.
//!
//! Every transport calls [`Authenticator::verify`] with the token the client
//! sent (TCP `AUTH token`, WebSocket `{"type":"auth","token"}` or
//! `/ws?token=`, Socket.IO `auth.token`) and keeps the returned [`Claims`]:
//! [`Claims::may_join`] and [`Claims::may_publish`] gate rooms, and
//! [`Claims::expires_at`] is when the connection must end unless the client
//! sent a fresh token.
//!
//! Claims (JSON): `sub` (required, the user id), `exp` (required, seconds
//! since the Unix epoch), `name` (display name, default `sub`), `rooms` (list
//! of patterns where `*` matches any run of characters; absent means every
//! room), `publish` (may publish; default true).

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use prise_proto::message::User;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest token accepted, in bytes: larger ones are refused unread.
pub const MAX_TOKEN: usize = 8 * 1024;
/// Most room patterns read from one token.
pub const MAX_ROOM_PATTERNS: usize = 256;

/// Why a token was refused. [`AuthError::code`] is the protocol code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The server has no key configured.
    #[error("token authentication is not configured on this server")]
    NotConfigured,
    /// The token is not a well-formed JWT (or too long).
    #[error("malformed token")]
    Malformed,
    /// The signature does not verify with the configured key.
    #[error("bad token signature")]
    BadSignature,
    /// The token's algorithm or key id does not match a configured key.
    #[error("token algorithm or key id not accepted")]
    BadAlgorithm,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// A claim is missing or invalid (`sub`, `exp`, `iss`, `aud`, `nbf`, `rooms`).
    #[error("invalid claims: {0}")]
    BadClaims(String),
    /// A refreshed token names another subject than the session's.
    #[error("a refreshed token must have the same subject")]
    SubjectChanged,
}

impl AuthError {
    /// The protocol error code: `AUTH_EXPIRED` for an expired token,
    /// `AUTH_FAILED` otherwise.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Expired => "AUTH_EXPIRED",
            _ => "AUTH_FAILED",
        }
    }
}

/// Why the key configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key could not be parsed.
    #[error("invalid key in {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What an accepted token says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// Subject: the user id.
    pub sub: String,
    /// Display name (defaults to `sub`).
    #[serde(default)]
    pub name: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Room patterns (`*` matches any run of characters); `None`: every room.
    #[serde(default)]
    pub rooms: Option<Vec<String>>,
    /// May publish (default true).
    #[serde(default = "yes")]
    pub publish: bool,
}

fn yes() -> bool {
    true
}

impl Claims {
    /// The user these claims describe.
    pub fn user(&self) -> User {
        User {
            id: self.sub.clone(),
            name: self.name.clone().unwrap_or_else(|| self.sub.clone()),
        }
    }

    /// May the holder join (and read history and presence of) `room`?
    pub fn may_join(&self, room: &str) -> bool {
        match &self.rooms {
            None => true,
            Some(patterns) => patterns.iter().any(|p| glob_match(p, room)),
        }
    }

    /// May the holder publish in `room`?
    pub fn may_publish(&self, room: &str) -> bool {
        self.publish && self.may_join(room)
    }

    /// When the token stops being valid.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.exp)
    }

    /// Time left before expiry, from `now` (zero when past).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at()
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }
}

/// Matches `text` against `pattern`, where `*` matches any run of
/// characters (see [`prise_proto::glob`]).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    prise_proto::glob::matches(pattern, text)
}

/// One verification key with the algorithms it accepts.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// Where the keys come from.
#[derive(Debug, Clone, Default)]
pub struct KeySource {
    /// An HS256 shared secret.
    pub secret: Option<String>,
    /// A PEM public key (RSA → RS256, EC P-256 → ES256).
    pub public_key: Option<PathBuf>,
    /// A JWKS file (`{"keys":[…]}`): RSA, EC and oct keys, chosen by `kid`.
    pub jwks: Option<PathBuf>,
    /// Accepted `iss` values (empty: not checked).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (empty: not checked).
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Checks tokens. Cheap to share (`Arc`) and to call from any task.
pub struct Authenticator {
    keys: Vec<Key>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: u64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &Path, message: impl ToString) -> KeyError {
    KeyError::Invalid {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

impl Authenticator {
    /// Loads the keys. With no source at all, every token is refused with
    /// [`AuthError::NotConfigured`].
    ///
    /// # Errors
    /// A key file that cannot be read or parsed.
    pub fn load(source: &KeySource) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        if let Some(secret) = &source.secret {
            keys.push(Key {
                kid: None,
                key: DecodingKey::from_secret(secret.as_bytes()),
                algorithms: vec![Algorithm::HS256],
            });
        }
        if let Some(path) = &source.public_key {
            let pem = read(path)?;
            let key = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                Key {
                    kid: None,
                    key: k,
                    algorithms: vec![Algorithm::RS256],
                }
            } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                Key {
                    kid: None,
                    key: k,
                    algorithms: vec![Algorithm::ES256],
                }
            } else {
                return Err(invalid(path, "not an RSA or EC public key in PEM"));
            };
            keys.push(key);
        }
        if let Some(path) = &source.jwks {
            let text = read(path)?;
            let set: JwkSet = serde_json::from_slice(&text).map_err(|e| invalid(path, e))?;
            for jwk in &set.keys {
                let algorithms = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => vec![Algorithm::RS256],
                    AlgorithmParameters::EllipticCurve(_) => vec![Algorithm::ES256],
                    AlgorithmParameters::OctetKey(_) => vec![Algorithm::HS256],
                    _ => continue,
                };
                let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(path, e))?;
                keys.push(Key {
                    kid: jwk.common.key_id.clone(),
                    key,
                    algorithms,
                });
            }
            if keys.is_empty() {
                return Err(invalid(path, "no usable key (RSA, EC P-256 or oct)"));
            }
        }
        Ok(Self {
            keys,
            issuers: source.issuers.clone(),
            audiences: source.audiences.clone(),
            leeway: source.leeway.as_secs(),
        })
    }

    /// Whether any key is configured.
    pub fn is_configured(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Verifies a token: signature, algorithm, `exp` (and `nbf`, `iss`,
    /// `aud` when configured), and prise's claims.
    ///
    /// # Errors
    /// An [`AuthError`] saying why the token is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if self.keys.is_empty() {
            return Err(AuthError::NotConfigured);
        }
        if token.len() > MAX_TOKEN {
            return Err(AuthError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let mut last = AuthError::BadAlgorithm;
        for k in &self.keys {
            if !k.algorithms.contains(&header.alg) {
                continue;
            }
            if let (Some(want), Some(got)) = (&k.kid, &header.kid)
                && want != got
            {
                continue;
            }
            let mut v = Validation::new(header.alg);
            v.algorithms = k.algorithms.clone();
            v.leeway = self.leeway;
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp", "sub"]);
            if self.issuers.is_empty() {
                v.iss = None;
            } else {
                v.set_issuer(&self.issuers);
                v.required_spec_claims.insert("iss".into());
            }
            if self.audiences.is_empty() {
                v.validate_aud = false;
            } else {
                v.set_audience(&self.audiences);
                v.required_spec_claims.insert("aud".into());
            }
            match jsonwebtoken::decode::<Claims>(token, &k.key, &v) {
                Ok(data) => return check_claims(data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    let err = match e.kind() {
                        K::InvalidSignature => AuthError::BadSignature,
                        K::ExpiredSignature => return Err(AuthError::Expired),
                        K::InvalidAlgorithm | K::MissingAlgorithm => AuthError::BadAlgorithm,
                        K::MissingRequiredClaim(c) => {
                            AuthError::BadClaims(format!("missing claim {c}"))
                        }
                        K::InvalidIssuer => AuthError::BadClaims("issuer not accepted".into()),
                        K::InvalidAudience => AuthError::BadClaims("audience not accepted".into()),
                        K::ImmatureSignature => AuthError::BadClaims("token not yet valid".into()),
                        K::Json(_) | K::InvalidClaimFormat(_) => {
                            AuthError::BadClaims("claims have the wrong shape".into())
                        }
                        _ => AuthError::Malformed,
                    };
                    // A signature failure with one key may verify with the
                    // next (key rotation without kid); remember the failure.
                    last = err;
                }
            }
        }
        Err(last)
    }

    /// Verifies a fresh token for a session authenticated as `current`: the
    /// subject must stay the same.
    ///
    /// # Errors
    /// As [`Authenticator::verify`], or [`AuthError::SubjectChanged`].
    pub fn refresh(&self, current: &Claims, token: &str) -> Result<Claims, AuthError> {
        let claims = self.verify(token)?;
        if claims.sub != current.sub {
            return Err(AuthError::SubjectChanged);
        }
        Ok(claims)
    }
}

fn check_claims(c: Claims) -> Result<Claims, AuthError> {
    let limits = prise_proto::limits::Limits::default();
    if prise_proto::limits::check_name(&c.sub, limits.max_name).is_err() {
        return Err(AuthError::BadClaims(
            "sub must be 1-64 bytes without whitespace".into(),
        ));
    }
    if let Some(n) = &c.name
        && prise_proto::limits::check_name(n, limits.max_name).is_err()
    {
        return Err(AuthError::BadClaims(
            "name must be 1-64 bytes without whitespace".into(),
        ));
    }
    if c.rooms
        .as_ref()
        .is_some_and(|r| r.len() > MAX_ROOM_PATTERNS)
    {
        return Err(AuthError::BadClaims(format!(
            "more than {MAX_ROOM_PATTERNS} room patterns"
        )));
    }
    Ok(c)
}

/// Who a connection is, as far as authentication goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Identity {
    /// Not authenticated; allowed only when the listener accepts anonymous
    /// clients.
    #[default]
    Anonymous,
    /// Authenticated with a token.
    Token(Claims),
    /// Admitted by the backend's `connect` hook; its `join` and `publish`
    /// hooks, not a token, decide what it may do.
    Backend(BackendUser),
}

/// A user the backend's `connect` hook admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUser {
    /// Who.
    pub user: User,
    /// What the backend said of them (`user.info`), given back in later hooks.
    pub info: Option<serde_json::Value>,
    /// When the session ends unless the `refresh` hook extends it, Unix seconds.
    pub expires_at: Option<u64>,
}

/// What a connection may do, given its identity and the listener's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Not authenticated and the listener refuses anonymous clients.
    AuthRequired,
    /// The token does not allow this room or action.
    Forbidden,
}

impl Denied {
    /// The protocol error code.
    pub fn code(self) -> &'static str {
        match self {
            Self::AuthRequired => "AUTH_REQUIRED",
            Self::Forbidden => "FORBIDDEN",
        }
    }

    /// A message for the error answer.
    pub fn message(self, room: &str) -> String {
        match self {
            Self::AuthRequired => "authenticate first (AUTH token)".to_owned(),
            Self::Forbidden => format!("your token does not allow room {room}"),
        }
    }
}

impl Identity {
    /// May this identity join (or read) `room`?
    ///
    /// # Errors
    /// [`Denied`] saying why not.
    pub fn check_join(&self, anonymous_ok: bool, room: &str) -> Result<(), Denied> {
        match self {
            Self::Anonymous if anonymous_ok => Ok(()),
            Self::Anonymous => Err(Denied::AuthRequired),
            Self::Token(c) if c.may_join(room) => Ok(()),
            Self::Token(_) => Err(Denied::Forbidden),
            Self::Backend(_) => Ok(()),
        }
    }

    /// May this identity publish in `room`?
    ///
    /// # Errors
    /// [`Denied`] saying why not.
    pub fn check_publish(&self, anonymous_ok: bool, room: &str) -> Result<(), Denied> {
        match self {
            Self::Anonymous if anonymous_ok => Ok(()),
            Self::Anonymous => Err(Denied::AuthRequired),
            Self::Token(c) if c.may_publish(room) => Ok(()),
            Self::Token(_) => Err(Denied::Forbidden),
            Self::Backend(_) => Ok(()),
        }
    }

    /// Is the connection allowed to do anything beyond authenticating?
    pub fn is_allowed(&self, anonymous_ok: bool) -> bool {
        anonymous_ok || !matches!(self, Self::Anonymous)
    }

    /// The claims, when authenticated with a token.
    pub fn claims(&self) -> Option<&Claims> {
        match self {
            Self::Token(c) => Some(c),
            Self::Anonymous | Self::Backend(_) => None,
        }
    }

    /// The user, when authenticated (by a token or the backend).
    pub fn user(&self) -> Option<User> {
        match self {
            Self::Token(c) => Some(c.user()),
            Self::Backend(b) => Some(b.user.clone()),
            Self::Anonymous => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_gate_rooms_and_publishing() {
        let c = Claims {
            sub: "u1".into(),
            name: None,
            exp: 0,
            rooms: Some(vec!["team-*".into()]),
            publish: false,
        };
        assert!(c.may_join("team-x"));
        assert!(!c.may_join("general"));
        assert!(!c.may_publish("team-x"));
        assert_eq!(c.user().name, "u1");
        let id = Identity::Token(c);
        assert_eq!(id.check_join(false, "general"), Err(Denied::Forbidden));
        assert_eq!(
            Identity::Anonymous.check_join(false, "general"),
            Err(Denied::AuthRequired)
        );
        assert_eq!(Identity::Anonymous.check_join(true, "general"), Ok(()));
    }

    #[test]
    fn unconfigured_refuses() {
        let a = Authenticator::load(&KeySource::default()).unwrap();
        assert_eq!(a.verify("x.y.z"), Err(AuthError::NotConfigured));
    }

    #[test]
    fn hs256_round_trip_and_failures() {
        let a = Authenticator::load(&KeySource {
            secret: Some("s3cret".into()),
            ..KeySource::default()
        })
        .unwrap();
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        let sign = |secret: &str, claims: serde_json::Value| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        };
        let ok = sign(
            "s3cret",
            serde_json::json!({"sub":"alice","exp":exp,"rooms":["a-*"]}),
        );
        let c = a.verify(&ok).unwrap();
        assert_eq!(c.sub, "alice");
        assert!(c.may_publish("a-1"));
        let bad = sign("other", serde_json::json!({"sub":"alice","exp":exp}));
        assert_eq!(a.verify(&bad), Err(AuthError::BadSignature));
        let old = sign("s3cret", serde_json::json!({"sub":"alice","exp":exp - 120}));
        assert_eq!(a.verify(&old), Err(AuthError::Expired));
        assert_eq!(a.verify("garbage"), Err(AuthError::Malformed));
        let no_sub = sign("s3cret", serde_json::json!({"exp":exp}));
        assert!(matches!(a.verify(&no_sub), Err(AuthError::BadClaims(_))));
        let other = sign("s3cret", serde_json::json!({"sub":"bob","exp":exp}));
        assert_eq!(a.refresh(&c, &other), Err(AuthError::SubjectChanged));
    }
}
