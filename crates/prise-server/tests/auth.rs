//! Token authentication on every transport: bad signatures, expired tokens
//! and rooms outside the claims are refused with the documented answers, and
//! a connection is closed when its token expires unless it sent a fresh one.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;

const SECRET: &str = "test-secret-0123456789";
const AUTH: &[&str] = &["--jwt-secret", SECRET, "--anonymous", "deny"];

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn token(sub: &str, ttl: i64, rooms: Option<&[&str]>, publish: bool) -> String {
    let exp = (now() as i64 + ttl) as u64;
    let mut c = json!({"sub": sub, "name": sub, "exp": exp, "publish": publish});
    if let Some(r) = rooms {
        c["rooms"] = json!(r);
    }
    sign(SECRET, c)
}

async fn ws_url(server: &TestServer, query: &str) -> Ws {
    let stream = TcpStream::connect(server.bound.http).await.unwrap();
    let url = format!("ws://{}/ws{query}", server.bound.http);
    let (ws, _) = prise_ws::connect(stream, &url, &Default::default(), Default::default())
        .await
        .expect("ws handshake");
    ws
}

/// Lines until the server closes.
async fn rest(c: &mut LineClient) -> Vec<String> {
    let mut v = Vec::new();
    while let Some(l) = c.line().await {
        v.push(l);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_refuses_bad_signature_expired_token_and_rooms_outside_claims() {
    let server = spawn_server(AUTH).await;

    let mut anon = LineClient::connect(&server).await;
    assert!(anon.greeting.contains("auth=required"), "{}", anon.greeting);
    assert_eq!(anon.ask("PING", "PONG").await, "PONG");
    assert!(
        anon.ask("JOIN general", "ERR")
            .await
            .starts_with("ERR AUTH_REQUIRED")
    );

    let mut bad = LineClient::connect(&server).await;
    let forged = sign(
        "another-secret",
        json!({"sub": "mallory", "exp": now() + 60}),
    );
    bad.send(&format!("AUTH {forged}")).await;
    assert_eq!(
        rest(&mut bad).await,
        [
            "ERR AUTH_FAILED bad token signature",
            "BYE authentication failed"
        ]
    );

    let mut old = LineClient::connect(&server).await;
    old.send(&format!("AUTH {}", token("alice", -120, None, true)))
        .await;
    assert_eq!(
        rest(&mut old).await,
        [
            "ERR AUTH_EXPIRED token expired",
            "BYE authentication failed"
        ]
    );

    let mut alice = LineClient::connect(&server).await;
    let t = token("alice", 300, Some(&["team-*"]), true);
    assert!(
        alice
            .ask(&format!("AUTH {t}"), "OK")
            .await
            .starts_with("OK alice exp=")
    );
    assert!(
        alice
            .ask("JOIN general", "ERR")
            .await
            .starts_with("ERR FORBIDDEN")
    );
    assert!(
        alice
            .ask("HISTORY general", "ERR")
            .await
            .starts_with("ERR FORBIDDEN")
    );
    assert!(
        alice
            .ask("NICK mallory", "ERR")
            .await
            .starts_with("ERR FORBIDDEN")
    );
    assert!(
        alice
            .ask("JOIN team-a", "OK")
            .await
            .starts_with("OK team-a offset=0 members=1")
    );
    assert_eq!(alice.ask("SAY team-a hi", "OK").await, "OK 1");

    let mut reader = LineClient::connect(&server).await;
    let t = token("rita", 300, Some(&["team-a"]), false);
    reader.ask(&format!("AUTH {t}"), "OK").await;
    reader.ask("JOIN team-a", "OK").await;
    assert!(
        reader
            .ask("SAY team-a hello", "ERR")
            .await
            .starts_with("ERR FORBIDDEN")
    );
    // A refreshed token must keep the subject.
    reader
        .send(&format!("AUTH {}", token("alice", 300, None, true)))
        .await;
    let lines = rest(&mut reader).await;
    assert!(lines[0].starts_with("ERR AUTH_FAILED"), "{lines:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_refuses_bad_signature_expired_token_and_rooms_outside_claims() {
    let server = spawn_server(AUTH).await;

    let mut anon = ws_connect(&server).await;
    ws_send(
        &mut anon,
        json!({"type": "join", "room": "general", "id": 1}),
    )
    .await;
    let e = ws_until(&mut anon, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_i64()),
        (Some("AUTH_REQUIRED"), Some(1))
    );

    let mut bad = ws_connect(&server).await;
    let forged = sign(
        "another-secret",
        json!({"sub": "mallory", "exp": now() + 60}),
    );
    ws_send(&mut bad, json!({"type": "auth", "token": forged})).await;
    let a = ws_until(&mut bad, "auth_failed").await;
    assert_eq!(a["code"], "AUTH_FAILED");
    assert_eq!(a["message"], "bad token signature");
    assert_eq!(ws_close_code(&mut bad).await, Some(4001));

    let mut old = ws_url(
        &server,
        &format!("?token={}", token("alice", -120, None, true)),
    )
    .await;
    let a = ws_until(&mut old, "auth_failed").await;
    assert_eq!(a["code"], "AUTH_EXPIRED");
    assert_eq!(ws_close_code(&mut old).await, Some(4001));

    let t = token("alice", 300, Some(&["team-*"]), true);
    let mut alice = ws_url(&server, &format!("?token={t}")).await;
    let ok = ws_until(&mut alice, "auth_success").await;
    assert_eq!(ok["user"]["id"], "alice");
    ws_send(
        &mut alice,
        json!({"type": "join", "room": "general", "id": 2}),
    )
    .await;
    let e = ws_until(&mut alice, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_i64()),
        (Some("FORBIDDEN"), Some(2))
    );
    ws_send(&mut alice, json!({"type": "presence", "room": "general"})).await;
    assert_eq!(ws_until(&mut alice, "error").await["code"], "FORBIDDEN");
    ws_send(
        &mut alice,
        json!({"type": "join", "room": "team-b", "id": 3}),
    )
    .await;
    assert_eq!(ws_until(&mut alice, "ack").await["room"], "team-b");
    ws_send(
        &mut alice,
        json!({"type": "message", "room": "team-b", "content": "x", "id": 4}),
    )
    .await;
    assert_eq!(ws_until(&mut alice, "ack").await["offset"], 1);

    let mut reader = ws_connect(&server).await;
    let t = token("rita", 300, Some(&["team-b"]), false);
    ws_send(&mut reader, json!({"type": "auth", "token": t})).await;
    ws_until(&mut reader, "auth_success").await;
    ws_send(&mut reader, json!({"type": "join", "room": "team-b"})).await;
    ws_until(&mut reader, "ack").await;
    ws_send(
        &mut reader,
        json!({"type": "message", "room": "team-b", "content": "x"}),
    )
    .await;
    assert_eq!(ws_until(&mut reader, "error").await["code"], "FORBIDDEN");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_close_when_the_token_expires_unless_refreshed() {
    let server = spawn_server(AUTH).await;
    // Tokens valid for 2 s (exp has one-second granularity).
    let short = token("alice", 2, None, true);

    let mut tcp = LineClient::connect(&server).await;
    tcp.ask(&format!("AUTH {short}"), "OK").await;
    tcp.ask("JOIN general", "OK").await;

    let mut refreshed = LineClient::connect(&server).await;
    refreshed.ask(&format!("AUTH {short}"), "OK").await;
    let fresh = token("alice", 300, None, true);
    assert!(
        refreshed
            .ask(&format!("AUTH {fresh}"), "OK")
            .await
            .starts_with("OK alice exp=")
    );

    let mut ws = ws_url(&server, &format!("?token={short}")).await;
    ws_until(&mut ws, "auth_success").await;

    // The expiring connections are closed with the documented answers
    // (each wait is bounded by WAIT).
    assert_eq!(
        rest(&mut tcp).await,
        [
            "ERR AUTH_EXPIRED token expired; reconnect with a fresh token",
            "BYE authentication expired"
        ]
    );
    assert_eq!(ws_close_code(&mut ws).await, Some(4001));
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
    let mut tcp = LineClient::connect(&server).await;
    assert_eq!(
        rest(&mut tcp).await,
        [
            "ERR AUTH_REQUIRED no AUTH in time",
            "BYE authentication timeout"
        ]
    );
    let mut ws = ws_connect(&server).await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4001));
    // A client that stays silent keeps nothing open.
    let m = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert!(m.is_none() || matches!(m, Some(Err(_))));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_public_keys_and_jwks_verify() {
    use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
    let dir = tempfile::tempdir().unwrap();
    let kp = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let pubkey = dir.path().join("ec.pem");
    std::fs::write(&pubkey, kp.public_key_pem()).unwrap();
    let server = spawn_server(&[
        "--jwt-public-key",
        pubkey.to_str().unwrap(),
        "--anonymous",
        "deny",
    ])
    .await;
    let claims = json!({"sub": "eve", "exp": now() + 60});
    let es = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let mut c = LineClient::connect(&server).await;
    assert!(
        c.ask(&format!("AUTH {es}"), "OK")
            .await
            .starts_with("OK eve")
    );
    // An HS256 token signed with the public key as secret (algorithm
    // confusion) is refused.
    let confused = sign(&kp.public_key_pem(), claims.clone());
    let mut m = LineClient::connect(&server).await;
    m.send(&format!("AUTH {confused}")).await;
    let lines = rest(&mut m).await;
    assert!(lines[0].starts_with("ERR AUTH_FAILED"), "{lines:?}");
    server.stop().await;

    // JWKS with an oct key chosen by kid.
    let jwks = dir.path().join("jwks.json");
    use base64::Engine as _;
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    std::fs::write(
        &jwks,
        json!({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": k}]}).to_string(),
    )
    .unwrap();
    let server = spawn_server(&["--jwks", jwks.to_str().unwrap(), "--anonymous", "deny"]).await;
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some("k1".into());
    let t = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mut c = LineClient::connect(&server).await;
    assert!(
        c.ask(&format!("AUTH {t}"), "OK")
            .await
            .starts_with("OK eve")
    );
    server.stop().await;
}
