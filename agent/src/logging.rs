//! Log output through `tracing`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub use crate::cli::LogFormat;

/// Installs the global subscriber, filtered by `$RUST_LOG` (default `info`). Logs go to
/// standard error.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Auto if under_journald => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Auto => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    if let Err(error) = result {
        eprintln!("warning: logging is not available: {error}");
    }
}
