//! Slack webhook URLs: read once at cold start, never logged.
//!
//! The secret (or [`crate::settings::ENV_SLACK_WEBHOOKS`]) contains either one URL, used for
//! every Slack descriptor, or a JSON object from descriptor to URL:
//! `{"security": "https://hooks.slack.com/services/..."}`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::settings::WebhookSource;

/// Time allowed for reading the secret from Secrets Manager.
const SECRET_TIMEOUT: Duration = Duration::from_secs(10);

/// A webhook URL. `Debug` prints no part of it, and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Returns the URL, for the HTTP client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookUrl(<redacted>)")
    }
}

/// Loads the URL of every descriptor in `required` from `source`. Errors name the
/// descriptors and the secret, never a URL.
pub async fn load(
    source: &WebhookSource,
    required: &BTreeSet<String>,
) -> Result<BTreeMap<String, WebhookUrl>, String> {
    if required.is_empty() {
        return Ok(BTreeMap::new());
    }
    let text = match source {
        WebhookSource::None => {
            return Err(format!(
                "rules notify Slack outputs {} from the Lambda, but no webhook secret is configured: set {} to the ARN of a Secrets Manager secret",
                list(required),
                crate::settings::ENV_SLACK_SECRET
            ));
        }
        WebhookSource::Inline(secret) => secret.0.clone(),
        WebhookSource::SecretsManager(secret_id) => {
            match tokio::time::timeout(SECRET_TIMEOUT, read_secret(secret_id)).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(format!(
                        "no answer from Secrets Manager within {} s for secret {secret_id}: check the function's network access",
                        SECRET_TIMEOUT.as_secs()
                    ));
                }
            }
        }
    };
    parse(&text, required)
}

/// Parses the secret text: one URL, or a JSON object of descriptor to URL.
pub fn parse(
    text: &str,
    required: &BTreeSet<String>,
) -> Result<BTreeMap<String, WebhookUrl>, String> {
    let text = text.trim();
    let mut urls = BTreeMap::new();
    if !text.starts_with('{') {
        let url = check_url(text).map_err(|problem| format!("webhook secret: {problem}"))?;
        for descriptor in required {
            urls.insert(descriptor.clone(), url.clone());
        }
        return Ok(urls);
    }
    let object: BTreeMap<String, serde_json::Value> = serde_json::from_str(text).map_err(|_| {
        "webhook secret is not a JSON object of descriptor to URL, such as {\"security\": \"https://hooks.slack.com/...\"}".to_owned()
    })?;
    let mut problems = Vec::new();
    for descriptor in required {
        match object.get(descriptor).and_then(serde_json::Value::as_str) {
            None => problems.push(format!(
                "slack:{descriptor}: missing: add the member {descriptor:?} with the webhook URL"
            )),
            Some(value) => match check_url(value.trim()) {
                Ok(url) => {
                    urls.insert(descriptor.clone(), url);
                }
                Err(problem) => problems.push(format!("slack:{descriptor}: {problem}")),
            },
        }
    }
    if problems.is_empty() {
        Ok(urls)
    } else {
        Err(format!("webhook secret: {}", problems.join("; ")))
    }
}

async fn read_secret(secret_id: &str) -> Result<String, String> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|error| {
            let detail = match error.as_service_error() {
                Some(service) => format!(
                    "{}: {}",
                    aws_sdk_secretsmanager::error::ProvideErrorMetadata::code(service)
                        .unwrap_or("error"),
                    aws_sdk_secretsmanager::error::ProvideErrorMetadata::message(service)
                        .unwrap_or("no message")
                ),
                None => innermost_cause(&error),
            };
            format!("cannot read Secrets Manager secret {secret_id}: {detail}")
        })?;
    output
        .secret_string()
        .map(str::to_owned)
        .ok_or_else(|| format!("Secrets Manager secret {secret_id} has no SecretString"))
}

/// Loads the AWS SDK configuration from the default chain, with an HTTPS client on
/// rustls with ring: the one TLS stack of the workspace.
pub async fn sdk_config() -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}

fn innermost_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Accepts one `https://` URL, and `http://` only to a loopback address for local
/// receivers. Messages never repeat the value.
pub fn check_url(text: &str) -> Result<WebhookUrl, String> {
    if text.is_empty() {
        return Err("the URL is empty".to_owned());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the URL contains whitespace or control characters".to_owned());
    }
    let parsed =
        reqwest::Url::parse(text).map_err(|_| "the value is not a valid URL".to_owned())?;
    let loopback = match parsed.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(WebhookUrl(text.to_owned())),
        "http" if loopback => Ok(WebhookUrl(text.to_owned())),
        _ => {
            Err("the URL must use https (http is accepted only for a loopback address)".to_owned())
        }
    }
}

fn list(descriptors: &BTreeSet<String>) -> String {
    descriptors
        .iter()
        .map(|descriptor| format!("slack:{descriptor}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://hooks.slack.example/services/T000/B000/SECRETSECRET";

    fn required(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn parse_uses_one_url_for_every_descriptor() {
        let urls = parse(URL, &required(&["security", "ops"])).unwrap();
        assert_eq!(urls.len(), 2);
        assert_eq!(urls["ops"].expose(), URL);
    }

    #[test]
    fn parse_reads_a_json_object() {
        let text = format!(r#"{{"security": "{URL}", "unused": 1}}"#);
        let urls = parse(&text, &required(&["security"])).unwrap();
        assert_eq!(urls["security"].expose(), URL);
    }

    #[test]
    fn parse_names_missing_descriptors_without_urls() {
        let text =
            format!(r#"{{"security": "{URL}", "ops": "http://hooks.example/x/SECRETSECRET"}}"#);
        let error = parse(&text, &required(&["security", "ops", "audit"])).unwrap_err();
        assert!(error.contains("slack:audit: missing"), "{error}");
        assert!(
            error.contains("slack:ops: the URL must use https"),
            "{error}"
        );
        assert!(!error.contains("SECRETSECRET"), "{error}");
    }

    #[test]
    fn parse_rejects_invalid_json_without_echoing_it() {
        let error = parse("{\"security\": SECRETSECRET", &required(&["security"])).unwrap_err();
        assert!(!error.contains("SECRETSECRET"), "{error}");
    }

    #[test]
    fn check_url_accepts_loopback_http_only() {
        assert!(check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(check_url("http://[::1]:9/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        assert!(check_url("http://10.0.0.1/hook").is_err());
        assert!(check_url("ftp://hooks.example/hook").is_err());
        assert!(check_url("https://hooks.example/a b").is_err());
        assert!(check_url("").is_err());
    }

    #[test]
    fn webhook_url_debug_is_redacted() {
        let url = check_url(URL).unwrap();
        assert_eq!(format!("{url:?}"), "WebhookUrl(<redacted>)");
    }

    #[tokio::test]
    async fn load_needs_a_source_only_for_required_descriptors() {
        assert!(
            load(&WebhookSource::None, &BTreeSet::new())
                .await
                .unwrap()
                .is_empty()
        );
        let error = load(&WebhookSource::None, &required(&["security"]))
            .await
            .unwrap_err();
        assert!(error.contains("slack:security"), "{error}");
        assert!(error.contains("EDGEALERT_SLACK_SECRET_ARN"), "{error}");
    }
}
