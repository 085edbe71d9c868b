//! The access log: one line per request, as text or as a JSON object.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// What the log says about one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The client's address.
    pub client: String,
    /// Request method (`CONNECT` for tunnels).
    pub method: String,
    /// The request target as the client sent it (empty when unparsable).
    pub target: String,
    /// Status answered to the client.
    pub status: u16,
    /// Bytes sent to the client after the response head (tunnels: from the target).
    pub bytes: u64,
    /// Bytes of request body from the client (tunnels: to the target).
    pub bytes_up: u64,
    /// Time from the end of the request head to the end of the response.
    pub duration_ms: f64,
}

impl Entry {
    /// An entry with the duration taken from `elapsed`.
    pub fn duration(mut self, elapsed: Duration) -> Self {
        self.duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
        self
    }

    /// The text form: `client method target status bytes duration`.
    pub fn text(&self) -> String {
        let target = if self.target.is_empty() {
            "-"
        } else {
            &self.target
        };
        format!(
            "{} {} {} {} {} {:.3}ms",
            self.client, self.method, target, self.status, self.bytes, self.duration_ms
        )
    }
}

/// Where entries go: a writer shared by every connection, one whole line
/// per write.
pub struct AccessLog {
    json: bool,
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("json", &self.json)
            .finish()
    }
}

impl AccessLog {
    /// A log writing to `out`, as JSON lines when `json`.
    pub fn new(out: Box<dyn Write + Send>, json: bool) -> Self {
        Self {
            json,
            out: Mutex::new(out),
        }
    }

    /// Writes one entry. A log that cannot be written is not worth failing
    /// the request for; the error is traced.
    pub fn write(&self, entry: &Entry) {
        let mut line = if self.json {
            serde_json::to_string(entry).unwrap_or_default()
        } else {
            entry.text()
        };
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            tracing::debug!(error = %e, "cannot write the access log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_in_both_forms() {
        let e = Entry {
            client: "127.0.0.1:5000".into(),
            method: "GET".into(),
            target: "http://127.0.0.1:8000/a".into(),
            status: 200,
            bytes: 12,
            bytes_up: 0,
            duration_ms: 0.0,
        }
        .duration(Duration::from_micros(1500));
        assert_eq!(
            e.text(),
            "127.0.0.1:5000 GET http://127.0.0.1:8000/a 200 12 1.500ms"
        );
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.5);
    }
}
