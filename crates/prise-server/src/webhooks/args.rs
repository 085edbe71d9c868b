//! The webhook flags of `prise serve`.

use std::path::PathBuf;
use std::time::Duration;

/// Webhook flags of `prise serve` (each also a `PRISE_*` variable).
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct WebhookArgs {
    /// URL (http:// or https://) the hub POSTs its events to, as JSON arrays:
    /// room_occupied, room_vacated, member_joined, member_left, session_closed.
    #[arg(long, env = "PRISE_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Secret that signs each POST like hooks (default: the hook secret).
    #[arg(long, env = "PRISE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// File holding the webhook secret (trailing newline ignored).
    #[arg(long, env = "PRISE_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Time the receiver has to answer one POST; past it the batch is retried.
    #[arg(long, env = "PRISE_WEBHOOK_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Duration,
    /// How long delivered events stay readable at GET /api/events.
    #[arg(long, env = "PRISE_WEBHOOK_RETAIN", default_value = "24h", value_parser = humantime::parse_duration)]
    pub webhook_retain: Duration,
}

impl Default for WebhookArgs {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_secret: None,
            webhook_secret_file: None,
            webhook_timeout: Duration::from_secs(5),
            webhook_retain: Duration::from_secs(24 * 3600),
        }
    }
}

impl WebhookArgs {
    /// The secret, from the flag or its file.
    ///
    /// # Errors
    /// An unreadable secret file.
    pub(crate) fn secret(&self) -> Result<Option<String>, crate::hooks::HookError> {
        crate::hooks::read_secret(
            self.webhook_secret.as_deref(),
            self.webhook_secret_file.as_deref(),
        )
    }
}
