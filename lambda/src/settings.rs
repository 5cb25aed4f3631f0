//! Settings of the Lambda, read from environment variables at cold start.
//!
//! The rules and schemas come from the configuration directory bundled with the function;
//! these variables only set where that directory is, where the webhook secrets are, and how
//! Slack delivery is paced.

use std::path::PathBuf;
use std::time::Duration;

/// Directory of the configuration; default `$LAMBDA_TASK_ROOT/conf`.
pub const ENV_CONF: &str = "EDGEALERT_CONF";
/// ARN or name of the Secrets Manager secret holding the Slack webhook URLs.
pub const ENV_SLACK_SECRET: &str = "EDGEALERT_SLACK_SECRET_ARN";
/// Slack webhook URLs given directly, for tests and local runs. Same format as the secret.
pub const ENV_SLACK_WEBHOOKS: &str = "EDGEALERT_SLACK_WEBHOOKS";
/// Minimum interval between messages to one webhook once the burst is used, in ms.
pub const ENV_MIN_INTERVAL_MS: &str = "EDGEALERT_SLACK_MIN_INTERVAL_MS";
/// Messages one webhook may receive back to back before the interval applies.
pub const ENV_BURST: &str = "EDGEALERT_SLACK_BURST";
/// Attempts per message for retryable failures before the message is dropped.
pub const ENV_MAX_ATTEMPTS: &str = "EDGEALERT_SLACK_MAX_ATTEMPTS";
/// Timeout of one webhook request, in ms.
pub const ENV_TIMEOUT_MS: &str = "EDGEALERT_SLACK_TIMEOUT_MS";
/// Longest `Retry-After` honoured, in seconds.
pub const ENV_MAX_RETRY_AFTER: &str = "EDGEALERT_SLACK_MAX_RETRY_AFTER_SECONDS";
/// Time kept free before the invocation deadline to return the response, in ms.
pub const ENV_DEADLINE_MARGIN_MS: &str = "EDGEALERT_DEADLINE_MARGIN_MS";
/// Environment variable: time that must be left before the deadline to start a request.
pub const ENV_MIN_REQUEST_MS: &str = "EDGEALERT_SLACK_MIN_REQUEST_MS";

/// Maximum value of any duration setting, in milliseconds: a day.
const MAX_SETTING_MS: u64 = 86_400_000;

/// Source of the webhook URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookSource {
    /// No source is configured; valid only when no rule notifies Slack from the Lambda.
    None,
    /// A Secrets Manager secret, by ARN or name.
    SecretsManager(String),
    /// The value of [`ENV_SLACK_WEBHOOKS`]. Kept out of `Debug` output.
    Inline(InlineSecret),
}

/// Secret text taken from an environment variable. `Debug` prints no part of it.
#[derive(Clone, PartialEq, Eq)]
pub struct InlineSecret(pub String);

impl std::fmt::Debug for InlineSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InlineSecret(<redacted>)")
    }
}

/// Pacing of Slack delivery; the defaults are the agent's (`agent.json` `slack`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Minimum interval between messages to one webhook once the burst is used.
    pub min_interval: Duration,
    /// Messages one webhook may receive back to back.
    pub burst: u32,
    /// Attempts per message for retryable failures.
    pub max_attempts: u32,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Longest `Retry-After` honoured, in seconds.
    pub max_retry_after_seconds: u64,
    /// Time kept free before the invocation deadline.
    pub deadline_margin: Duration,
    /// Time that must be left before the deadline (after the margin) to start a request. A
    /// request cut off by the deadline may still have been posted, and its retry posts the
    /// message again, so a request starts only when a slow Slack response still fits.
    pub min_request_time: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            min_interval: Duration::from_millis(1_000),
            burst: 3,
            max_attempts: 8,
            timeout: Duration::from_millis(10_000),
            max_retry_after_seconds: 300,
            deadline_margin: Duration::from_millis(1_000),
            min_request_time: Duration::from_millis(2_000),
        }
    }
}

/// Everything the Lambda reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The configuration directory.
    pub conf_dir: PathBuf,
    /// Source of the Slack webhook URLs.
    pub webhooks: WebhookSource,
    /// Slack delivery pacing.
    pub delivery: Delivery,
}

impl Settings {
    /// Reads the settings through `lookup` (usually `std::env::var`), so tests can pass
    /// their own environment. Returns every invalid variable in one message.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let conf_dir = match lookup(ENV_CONF).filter(|value| !value.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => default_conf_dir(lookup("LAMBDA_TASK_ROOT")),
        };
        let webhooks = match (lookup(ENV_SLACK_SECRET), lookup(ENV_SLACK_WEBHOOKS)) {
            (Some(secret), _) if !secret.is_empty() => WebhookSource::SecretsManager(secret),
            (_, Some(inline)) if !inline.is_empty() => WebhookSource::Inline(InlineSecret(inline)),
            _ => WebhookSource::None,
        };
        let mut errors = Vec::new();
        let defaults = Delivery::default();
        let mut number = |name: &str, default: u64, max: u64| -> u64 {
            match lookup(name) {
                None => default,
                Some(text) => match text.trim().parse::<u64>() {
                    Ok(value) if value <= max => value,
                    Ok(_) => {
                        errors.push(format!(
                            "{name}={text:?} is over the maximum {max}; unset it to use {default}"
                        ));
                        default
                    }
                    Err(_) => {
                        errors.push(format!(
                            "{name}={text:?} is not a whole number; unset it to use {default}"
                        ));
                        default
                    }
                },
            }
        };
        let day_ms = MAX_SETTING_MS;
        let min_interval_ms = number(ENV_MIN_INTERVAL_MS, millis(defaults.min_interval), day_ms);
        let burst = number(ENV_BURST, u64::from(defaults.burst), u64::from(u32::MAX));
        let max_attempts = number(
            ENV_MAX_ATTEMPTS,
            u64::from(defaults.max_attempts),
            u64::from(u32::MAX),
        );
        let timeout_ms = number(ENV_TIMEOUT_MS, millis(defaults.timeout), day_ms);
        let max_retry_after_seconds = number(
            ENV_MAX_RETRY_AFTER,
            defaults.max_retry_after_seconds,
            day_ms / 1000,
        );
        let margin_ms = number(
            ENV_DEADLINE_MARGIN_MS,
            millis(defaults.deadline_margin),
            day_ms,
        );
        let min_request_ms = number(
            ENV_MIN_REQUEST_MS,
            millis(defaults.min_request_time),
            day_ms,
        );
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(Settings {
            conf_dir,
            webhooks,
            delivery: Delivery {
                min_interval: Duration::from_millis(min_interval_ms),
                burst: u32::try_from(burst).unwrap_or(u32::MAX).max(1),
                max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX).max(1),
                timeout: Duration::from_millis(timeout_ms.max(1)),
                max_retry_after_seconds,
                deadline_margin: Duration::from_millis(margin_ms),
                min_request_time: Duration::from_millis(min_request_ms),
            },
        })
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Settings, String> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }
}

/// Returns `$LAMBDA_TASK_ROOT/conf`, or `conf` next to the running binary outside Lambda.
fn default_conf_dir(task_root: Option<String>) -> PathBuf {
    if let Some(root) = task_root.filter(|root| !root.is_empty()) {
        return PathBuf::from(root).join("conf");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("conf")))
        .unwrap_or_else(|| PathBuf::from("conf"))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        Settings::from_lookup(|name| env.get(name).cloned())
    }

    #[test]
    fn conf_dir_defaults_to_task_root() {
        let settings = settings(&[("LAMBDA_TASK_ROOT", "/var/task")]).unwrap();
        assert_eq!(settings.conf_dir, PathBuf::from("/var/task/conf"));
        assert_eq!(settings.webhooks, WebhookSource::None);
        assert_eq!(settings.delivery, Delivery::default());
    }

    #[test]
    fn conf_dir_and_secret_come_from_env() {
        let settings = settings(&[
            ("LAMBDA_TASK_ROOT", "/var/task"),
            (ENV_CONF, "/opt/conf"),
            (
                ENV_SLACK_SECRET,
                "arn:aws:secretsmanager:eu-west-1:1:secret:slack",
            ),
            (ENV_SLACK_WEBHOOKS, "https://ignored.example/"),
        ])
        .unwrap();
        assert_eq!(settings.conf_dir, PathBuf::from("/opt/conf"));
        assert_eq!(
            settings.webhooks,
            WebhookSource::SecretsManager("arn:aws:secretsmanager:eu-west-1:1:secret:slack".into())
        );
    }

    #[test]
    fn invalid_numbers_are_all_reported() {
        let error = settings(&[(ENV_BURST, "three"), (ENV_TIMEOUT_MS, "-1")]).unwrap_err();
        assert!(error.contains("EDGEALERT_SLACK_BURST=\"three\""), "{error}");
        assert!(
            error.contains("EDGEALERT_SLACK_TIMEOUT_MS=\"-1\""),
            "{error}"
        );
    }

    #[test]
    fn values_over_a_day_are_rejected() {
        let error = settings(&[(ENV_MAX_RETRY_AFTER, "18446744073709551615")]).unwrap_err();
        assert_eq!(
            error,
            "EDGEALERT_SLACK_MAX_RETRY_AFTER_SECONDS=\"18446744073709551615\" is over the maximum 86400; unset it to use 300"
        );
        assert!(settings(&[(ENV_MAX_RETRY_AFTER, "86400")]).is_ok());
    }

    #[test]
    fn inline_secret_debug_is_redacted() {
        let settings =
            settings(&[(ENV_SLACK_WEBHOOKS, "https://hooks.example/T/B/SECRET")]).unwrap();
        let text = format!("{settings:?}");
        assert!(!text.contains("SECRET"), "{text}");
    }
}
