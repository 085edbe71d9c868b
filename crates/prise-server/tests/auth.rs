//! Token authentication on every transport: bad signatures, expired tokens
//! and rooms outside the claims are refused with the documented answers, and
//! a connection is closed when its token expires unless it sent a fresh one.

use prise_testkit::jwt::{JwtKey, hs256, jwt, now};
use prise_testkit::server::*;
use prise_testkit::*;
use serde_json::json;

const SECRET: &str = "test-secret-0123456789";
const AUTH: &[&str] = &["--jwt-secret", SECRET, "--anonymous", "deny"];

fn token(sub: &str, ttl: i64, rooms: Option<&[&str]>, publish: bool) -> String {
    let exp = (now() as i64 + ttl) as u64;
    let mut c = json!({"sub": sub, "name": sub, "exp": exp, "publish": publish});
    if let Some(r) = rooms {
        c["rooms"] = json!(r);
    }
    hs256(SECRET, &c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_refuses_bad_signature_expired_token_and_rooms_outside_claims() {
    let server = spawn_server(AUTH).await;

    let mut anon = server.line().await;
    assert!(
        anon.greeting().contains("auth=required"),
        "{}",
        anon.greeting()
    );
    assert_eq!(anon.ask("PING", "PONG").await, "PONG");
    anon.expect("JOIN general", "ERR AUTH_REQUIRED").await;

    let mut bad = server.line().await;
    let forged = hs256(
        "another-secret",
        &json!({"sub": "mallory", "exp": now() + 60}),
    );
    bad.send(&format!("AUTH {forged}")).await;
    assert_eq!(
        bad.rest().await,
        [
            "ERR AUTH_FAILED bad token signature",
            "BYE authentication failed"
        ]
    );

    let mut old = server.line().await;
    old.send(&format!("AUTH {}", token("alice", -120, None, true)))
        .await;
    assert_eq!(
        old.rest().await,
        [
            "ERR AUTH_EXPIRED token expired",
            "BYE authentication failed"
        ]
    );

    let mut alice = server.line().await;
    let t = token("alice", 300, Some(&["team-*"]), true);
    alice.expect(&format!("AUTH {t}"), "OK alice exp=").await;
    alice.expect("JOIN general", "ERR FORBIDDEN").await;
    alice.expect("HISTORY general", "ERR FORBIDDEN").await;
    alice.expect("NICK mallory", "ERR FORBIDDEN").await;
    alice
        .expect("JOIN team-a", "OK team-a offset=0 members=1")
        .await;
    assert_eq!(alice.ask("SAY team-a hi", "OK").await, "OK 1");

    let mut reader = server.line().await;
    let t = token("rita", 300, Some(&["team-a"]), false);
    reader.ask(&format!("AUTH {t}"), "OK").await;
    reader.ask("JOIN team-a", "OK").await;
    reader.expect("SAY team-a hello", "ERR FORBIDDEN").await;
    // A refreshed token must keep the subject.
    reader
        .send(&format!("AUTH {}", token("alice", 300, None, true)))
        .await;
    let lines = reader.rest().await;
    assert!(lines[0].starts_with("ERR AUTH_FAILED"), "{lines:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_refuses_bad_signature_expired_token_and_rooms_outside_claims() {
    let server = spawn_server(AUTH).await;

    let mut anon = server.ws().await;
    anon.send_json(json!({"type": "join", "room": "general", "id": 1}))
        .await;
    let e = anon.until("error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_i64()),
        (Some("AUTH_REQUIRED"), Some(1))
    );

    let mut bad = server.ws().await;
    let forged = hs256(
        "another-secret",
        &json!({"sub": "mallory", "exp": now() + 60}),
    );
    bad.send_json(json!({"type": "auth", "token": forged}))
        .await;
    let a = bad.until("auth_failed").await;
    assert_eq!(a["code"], "AUTH_FAILED");
    assert_eq!(a["message"], "bad token signature");
    assert_eq!(bad.close_code().await, Some(4001));

    let mut old = server
        .ws_query(&format!("?token={}", token("alice", -120, None, true)))
        .await;
    let a = old.until("auth_failed").await;
    assert_eq!(a["code"], "AUTH_EXPIRED");
    assert_eq!(old.close_code().await, Some(4001));

    let t = token("alice", 300, Some(&["team-*"]), true);
    let mut alice = server.ws_query(&format!("?token={t}")).await;
    let ok = alice.until("auth_success").await;
    assert_eq!(ok["user"]["id"], "alice");
    alice
        .send_json(json!({"type": "join", "room": "general", "id": 2}))
        .await;
    let e = alice.until("error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_i64()),
        (Some("FORBIDDEN"), Some(2))
    );
    alice
        .send_json(json!({"type": "presence", "room": "general"}))
        .await;
    assert_eq!(alice.until("error").await["code"], "FORBIDDEN");
    alice
        .send_json(json!({"type": "join", "room": "team-b", "id": 3}))
        .await;
    assert_eq!(alice.until("ack").await["room"], "team-b");
    alice
        .send_json(json!({"type": "message", "room": "team-b", "content": "x", "id": 4}))
        .await;
    assert_eq!(alice.until("ack").await["offset"], 1);

    let mut reader = server.ws().await;
    let t = token("rita", 300, Some(&["team-b"]), false);
    reader.send_json(json!({"type": "auth", "token": t})).await;
    reader.until("auth_success").await;
    reader
        .send_json(json!({"type": "join", "room": "team-b"}))
        .await;
    reader.until("ack").await;
    reader
        .send_json(json!({"type": "message", "room": "team-b", "content": "x"}))
        .await;
    assert_eq!(reader.until("error").await["code"], "FORBIDDEN");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_close_when_the_token_expires_unless_refreshed() {
    let server = spawn_server(AUTH).await;
    // Tokens valid for 2 s (exp has one-second granularity).
    let short = token("alice", 2, None, true);

    let mut tcp = server.line().await;
    tcp.ask(&format!("AUTH {short}"), "OK").await;
    tcp.ask("JOIN general", "OK").await;

    let mut refreshed = server.line().await;
    refreshed.ask(&format!("AUTH {short}"), "OK").await;
    let fresh = token("alice", 300, None, true);
    refreshed
        .expect(&format!("AUTH {fresh}"), "OK alice exp=")
        .await;

    let mut ws = server.ws_query(&format!("?token={short}")).await;
    ws.until("auth_success").await;

    // The expiring connections are closed with the documented answers
    // (each wait is bounded by WAIT).
    assert_eq!(
        tcp.rest().await,
        [
            "ERR AUTH_EXPIRED token expired; reconnect with a fresh token",
            "BYE authentication expired"
        ]
    );
    assert_eq!(ws.close_code().await, Some(4001));
    // The refreshed one, past the same expiry, still works.
    assert_eq!(refreshed.ask("PING after", "PONG").await, "PONG after");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_are_dropped_after_the_auth_timeout() {
    let server = spawn_server(&[
        "--jwt-secret",
        SECRET,
        "--anonymous",
        "deny",
        "--auth-timeout",
        "300ms",
    ])
    .await;
    let mut tcp = server.line().await;
    assert_eq!(
        tcp.rest().await,
        [
            "ERR AUTH_REQUIRED no AUTH in time",
            "BYE authentication timeout"
        ]
    );
    let mut ws = server.ws().await;
    assert_eq!(ws.close_code().await, Some(4001));
    // A client that stays silent keeps nothing open.
    let m = ws.next_item().await;
    assert!(m.is_none() || matches!(m, Some(Err(_))));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_public_keys_and_jwks_verify() {
    use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
    let dir = TestDir::new();
    let kp = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    dir.write("ec.pem", kp.public_key_pem());
    let server = spawn_server(&[
        "--jwt-public-key",
        &dir.arg("ec.pem"),
        "--anonymous",
        "deny",
    ])
    .await;
    let claims = json!({"sub": "eve", "exp": now() + 60});
    let es = jwt(JwtKey::Es256(kp.serialize_pem().as_bytes()), None, &claims);
    let mut c = server.line().await;
    c.expect(&format!("AUTH {es}"), "OK eve").await;
    // An HS256 token signed with the public key as secret (algorithm
    // confusion) is refused.
    let confused = hs256(&kp.public_key_pem(), &claims);
    let mut m = server.line().await;
    m.send(&format!("AUTH {confused}")).await;
    let lines = m.rest().await;
    assert!(lines[0].starts_with("ERR AUTH_FAILED"), "{lines:?}");
    server.stop().await;

    // JWKS with an oct key chosen by kid.
    use base64::Engine as _;
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    dir.write(
        "jwks.json",
        json!({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": k}]}).to_string(),
    );
    let server = spawn_server(&["--jwks", &dir.arg("jwks.json"), "--anonymous", "deny"]).await;
    let t = jwt(JwtKey::Hs256(SECRET.as_bytes()), Some("k1"), &claims);
    let mut c = server.line().await;
    c.expect(&format!("AUTH {t}"), "OK eve").await;
    server.stop().await;
}
