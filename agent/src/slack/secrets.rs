//! Webhook URLs of Slack outputs: secrets that never reach logs, errors or status.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the webhook URL of one Slack descriptor comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretSource {
    /// A file that only its owner can read and write (mode 0600 or 0400).
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A systemd credential (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY`.
    Credential(String),
}

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

/// Why a secret could not be loaded. Messages name the descriptor and the source, never
/// the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook secret of slack:{descriptor}: {problem}")]
pub struct SecretError {
    /// The Slack descriptor, such as `security`.
    pub descriptor: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

/// Name of the systemd credential used when `agent.json` names no source for a descriptor.
pub fn default_credential(descriptor: &str) -> String {
    format!("slack-{descriptor}")
}

/// Loads the webhook URL of every descriptor in `descriptors`, from `sources` or, when a
/// descriptor has no entry there, from the systemd credential `slack-<descriptor>`.
pub fn load_all(
    descriptors: &[String],
    sources: &BTreeMap<String, SecretSource>,
) -> Result<BTreeMap<String, WebhookUrl>, Vec<SecretError>> {
    let mut urls = BTreeMap::new();
    let mut errors = Vec::new();
    for descriptor in descriptors {
        let source = sources
            .get(descriptor)
            .cloned()
            .unwrap_or_else(|| SecretSource::Credential(default_credential(descriptor)));
        match load(descriptor, &source) {
            Ok(url) => {
                urls.insert(descriptor.clone(), url);
            }
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(urls)
    } else {
        Err(errors)
    }
}

/// Loads and checks one webhook URL.
pub fn load(descriptor: &str, source: &SecretSource) -> Result<WebhookUrl, SecretError> {
    let error = |problem: String| SecretError {
        descriptor: descriptor.to_owned(),
        problem,
    };
    let text = match source {
        SecretSource::File(path) => read_private_file(path).map_err(error)?,
        SecretSource::Env(name) => std::env::var(name).map_err(|_| {
            error(format!(
                "environment variable {name} is not set or not valid UTF-8"
            ))
        })?,
        SecretSource::Credential(name) => {
            if name.is_empty() || name.contains('/') || name == ".." || name == "." {
                return Err(error(format!(
                    "invalid credential name {name:?}: use a plain name such as slack-{descriptor}"
                )));
            }
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                error(format!(
                    "no source configured and $CREDENTIALS_DIRECTORY is not set: add \"slack\": {{\"{descriptor}\": {{\"file\": \"/etc/edgealert/slack-{descriptor}.url\"}}}} to agent.json, or load the systemd credential {name}"
                ))
            })?;
            let path = Path::new(&dir).join(name);
            std::fs::read_to_string(&path).map_err(|io| {
                error(format!(
                    "cannot read systemd credential {}: {io}",
                    path.display()
                ))
            })?
        }
    };
    check_url(text.trim()).map_err(error)
}

fn read_private_file(path: &Path) -> Result<String, String> {
    let metadata =
        std::fs::metadata(path).map_err(|io| format!("cannot read {}: {io}", path.display()))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o022 != 0 || mode & 0o004 != 0 {
        return Err(format!(
            "{} has mode {mode:04o}; it must not be group- or world-writable or world-readable: run chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|io| format!("cannot read {}: {io}", path.display()))
}

/// Accepts one `https://` URL, and `http://` only to a loopback address for local receivers.
fn check_url(text: &str) -> Result<WebhookUrl, String> {
    if text.is_empty() {
        return Err("the value is empty".to_owned());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            "the value contains whitespace or control characters: store exactly one URL".to_owned(),
        );
    }
    let parsed =
        reqwest::Url::parse(text).map_err(|_| "the value is not a valid URL".to_owned())?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
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

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://hooks.slack.example/services/T000/B000/SECRETSECRET";

    fn write(dir: &Path, mode: u32, text: &str) -> PathBuf {
        let path = dir.join("url");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn load_reads_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 0o600, &format!("{URL}\n"));
        let url = load("security", &SecretSource::File(path)).unwrap();
        assert_eq!(url.expose(), URL);
    }

    #[test]
    fn load_rejects_world_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 0o644, URL);
        let error = load("security", &SecretSource::File(path.clone())).unwrap_err();
        assert_eq!(error.descriptor, "security");
        assert_eq!(
            error.problem,
            format!(
                "{} has mode 0644; it must not be group- or world-writable or world-readable: run chmod 600 {}",
                path.display(),
                path.display()
            )
        );
    }

    #[test]
    fn load_rejects_group_writable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 0o620, URL);
        let error = load("security", &SecretSource::File(path)).unwrap_err();
        assert!(error.problem.contains("has mode 0620"), "{}", error.problem);
    }

    #[test]
    fn load_rejects_plain_http_to_remote_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            0o600,
            "http://hooks.slack.example/services/SECRETSECRET",
        );
        let error = load("security", &SecretSource::File(path)).unwrap_err();
        assert_eq!(
            error.problem,
            "the URL must use https (http is accepted only for a loopback address)"
        );
        assert!(!error.to_string().contains("SECRETSECRET"));
    }

    #[test]
    fn load_accepts_http_to_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 0o600, "http://127.0.0.1:9/hook");
        assert!(load("security", &SecretSource::File(path)).is_ok());
    }

    #[test]
    fn load_rejects_malformed_value_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 0o600, "notaurl-SECRETSECRET");
        let error = load("security", &SecretSource::File(path)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "webhook secret of slack:security: the value is not a valid URL"
        );
    }

    #[test]
    fn load_reports_missing_env() {
        let error = load(
            "ops",
            &SecretSource::Env("EDGEALERT_TEST_UNSET_VARIABLE".into()),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "webhook secret of slack:ops: environment variable EDGEALERT_TEST_UNSET_VARIABLE is not set or not valid UTF-8"
        );
    }

    #[test]
    fn load_rejects_two_urls_in_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            0o600,
            "http://127.0.0.1:9/a\nhttps://hooks.example/SECRETSECRET\n",
        );
        let error = load("security", &SecretSource::File(path)).unwrap_err();
        assert_eq!(
            error.problem,
            "the value contains whitespace or control characters: store exactly one URL"
        );
    }

    #[test]
    fn load_rejects_credential_path() {
        let error = load("security", &SecretSource::Credential("../other".into())).unwrap_err();
        assert_eq!(
            error.problem,
            "invalid credential name \"../other\": use a plain name such as slack-security"
        );
    }

    #[test]
    fn webhook_url_debug_is_redacted() {
        let url = check_url(URL).unwrap();
        assert_eq!(format!("{url:?}"), "WebhookUrl(<redacted>)");
    }
}
