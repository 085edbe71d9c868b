//! The HTTP side of hooks: a POST to one backend endpoint over a small pool
//! of kept-alive HTTP/1.1 connections (plain or TLS with the system's
//! roots). The caller bounds the whole call in time; this bounds the answer
//! in size.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;

/// Largest answer read from a backend, in bytes.
pub(crate) const MAX_ANSWER: usize = 1 << 20;

/// Why a call got no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// No connection to the backend.
    #[error("cannot reach the backend: {0}")]
    Connect(String),
    /// The exchange broke off.
    #[error("the backend connection failed: {0}")]
    Http(String),
    /// An answer other than 2xx.
    #[error("the backend answered HTTP {0}")]
    Status(u16),
    /// An answer larger than [`MAX_ANSWER`] or not a JSON object.
    #[error("the backend's answer is not a JSON object: {0}")]
    Answer(String),
    /// No answer within the hook timeout.
    #[error("the backend did not answer in time")]
    Timeout,
    /// Too many calls in flight, or the backend failing: not tried.
    #[error("the backend is failing: not called for a while")]
    CircuitOpen,
}

/// One backend URL and its idle connections.
pub(crate) struct Endpoint {
    uri: Uri,
    host: String,
    port: u16,
    authority: HeaderValue,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    max_idle: usize,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("uri", &self.uri).finish()
    }
}

const AGENT: &str = concat!("prise/", env!("CARGO_PKG_VERSION"));

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("no system root certificates found for https hooks".into());
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// An HTTP/1.1 client connection over `io`, driven by a task of its own
/// that ends when the connection closes or its sender is dropped.
async fn handshake<S>(io: S) -> Result<SendRequest<Full<Bytes>>, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Failure::Connect(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

impl Endpoint {
    /// An endpoint for `url` keeping up to `max_idle` idle connections.
    ///
    /// # Errors
    /// A URL that is not `http://` or `https://` with a host, or https
    /// without system roots.
    pub(crate) fn new(url: &str, max_idle: usize) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let secure = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{url}: a hook URL starts with http:// or https://")),
        };
        let Some(host) = uri.host() else {
            return Err(format!("{url}: no host"));
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let authority = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .ok_or_else(|| format!("{url}: bad host"))?;
        let tls = if secure {
            let name = rustls_pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("{url}: {e}"))?;
            Some((tls_connector()?, name))
        } else {
            None
        };
        Ok(Self {
            uri,
            host,
            port,
            authority,
            tls,
            idle: Mutex::new(Vec::new()),
            max_idle,
        })
    }

    /// The URL.
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    async fn dial(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| Failure::Connect(e.to_string()))?;
                handshake(tls).await
            }
        }
    }

    fn pooled(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn give_back(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(sender);
        }
    }

    /// POSTs `body` (JSON) with `headers`; the answer's body on a 2xx.
    ///
    /// # Errors
    /// [`Failure`]: no connection, a broken exchange, a non-2xx status or an
    /// answer larger than [`MAX_ANSWER`].
    pub(crate) async fn post(
        &self,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Bytes, Failure> {
        let mut sender = match self.pooled() {
            Some(s) => s,
            None => self.dial().await?,
        };
        if sender.ready().await.is_err() {
            // A kept-alive connection the backend closed meanwhile.
            sender = self.dial().await?;
        }
        let path = self
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.authority.clone())
            .header(USER_AGENT, AGENT)
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, body.len());
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| Failure::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Failure::Http(e.to_string()))?;
        let status = resp.status();
        let answer = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| Failure::Answer(e.to_string()))?
            .to_bytes();
        self.give_back(sender);
        if !status.is_success() {
            return Err(Failure::Status(status.as_u16()));
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(Endpoint::new("http://127.0.0.1:9/hooks", 1).is_ok());
        assert!(Endpoint::new("ftp://x/", 1).is_err());
        assert!(Endpoint::new("/relative", 1).is_err());
        let e = Endpoint::new("http://[::1]:8080/h?x=1", 1).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 8080));
    }
}
