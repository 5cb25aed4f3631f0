//! JSON log lines on stdout, one object per event, for CloudWatch Logs Insights.

use tracing_subscriber::EnvFilter;

/// Environment variable with a `tracing` filter, such as `info` or `edgealert=debug`.
pub const ENV_LOG: &str = "EDGEALERT_LOG";

/// Installs the JSON subscriber. The default level is `info` for edgealert's own targets
/// and `warn` for dependencies, so the HTTP client never logs a request URL, which would
/// contain the webhook secret.
pub fn init() {
    let filter = EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| {
        EnvFilter::new("warn,edgealert=info,edgealert_lambda=info,bootstrap=info")
    });
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .init();
}
