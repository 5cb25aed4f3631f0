//! Webhook URLs of Slack outputs: secrets that never reach logs, errors or status.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Source of the webhook URL of one Slack descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretSource {
    /// A file that only its owner can read and write (mode 0600 or 0400).
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A systemd credential (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY`.
    Credential(String),
    /// A secret in AWS Secrets Manager, read through the default AWS credential chain. Its
    /// `SecretString` is the URL, or a JSON object whose member `key` is the URL.
    SecretsManager {
        /// Secret name or ARN.
        secret_id: String,
        /// Member of a JSON secret that contains the URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// A KMS-encrypted URL shipped in the configuration directory: a file with the base64
    /// `CiphertextBlob`, encrypted with the encryption context
    /// `edgealert:descriptor=<descriptor>`, so only hosts allowed to decrypt can read it.
    Kms {
        /// The ciphertext file, relative to the configuration directory unless absolute.
        ciphertext_file: PathBuf,
    },
}

/// Time allowed for reading one secret from Secrets Manager or KMS.
const AWS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Encryption context key that names the descriptor a KMS-encrypted URL belongs to.
pub const KMS_CONTEXT_KEY: &str = "edgealert:descriptor";

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

/// Failure to load a secret. Messages name the descriptor and the source, never the
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook secret of slack:{descriptor}: {problem}")]
pub struct SecretError {
    /// The Slack descriptor, such as `security`.
    pub descriptor: String,
    /// Description of what is wrong and how to fix it.
    pub problem: String,
}

/// Name of the systemd credential used when `agent.json` names no source for a descriptor.
pub fn default_credential(descriptor: &str) -> String {
    format!("slack-{descriptor}")
}

/// Loads the webhook URL of every descriptor in `descriptors`, from `sources` or, when a
/// descriptor has no entry there, from the systemd credential `slack-<descriptor>`.
/// `conf_dir` resolves relative KMS ciphertext files. AWS clients are created only when a
/// source needs them.
pub async fn load_all(
    descriptors: &[String],
    sources: &BTreeMap<String, SecretSource>,
    conf_dir: &Path,
) -> Result<BTreeMap<String, WebhookUrl>, Vec<SecretError>> {
    let mut urls = BTreeMap::new();
    let mut errors = Vec::new();
    let mut aws: Option<aws_config::SdkConfig> = None;
    for descriptor in descriptors {
        let source = sources
            .get(descriptor)
            .cloned()
            .unwrap_or_else(|| SecretSource::Credential(default_credential(descriptor)));
        let loaded = match &source {
            SecretSource::SecretsManager { .. } | SecretSource::Kms { .. } => {
                if aws.is_none() {
                    aws = Some(crate::aws::load(None, None).await);
                }
                match &aws {
                    Some(sdk) => {
                        let request = load_aws(descriptor, &source, sdk, conf_dir);
                        match tokio::time::timeout(AWS_TIMEOUT, request).await {
                            Ok(loaded) => loaded,
                            Err(_) => Err(SecretError {
                                descriptor: descriptor.clone(),
                                problem: format!(
                                    "no answer from AWS within {} s: check network access to Secrets Manager or KMS",
                                    AWS_TIMEOUT.as_secs()
                                ),
                            }),
                        }
                    }
                    None => continue,
                }
            }
            _ => load(descriptor, &source),
        };
        match loaded {
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
        SecretSource::SecretsManager { .. } | SecretSource::Kms { .. } => {
            return Err(error("AWS sources are loaded by load_all".to_owned()));
        }
        SecretSource::Credential(name) => {
            if name.is_empty() || name.contains('/') || name == ".." || name == "." {
                return Err(error(format!(
                    "invalid credential name {name:?}: use a plain name such as slack-{descriptor}"
                )));
            }
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                error(format!(
                    "no source configured and $CREDENTIALS_DIRECTORY is not set: add \"slack\": {{\"webhooks\": {{\"{descriptor}\": {{\"file\": \"/etc/edgealert/slack-{descriptor}.url\"}}}}}} to agent.json, or load the systemd credential {name}"
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

/// Loads a URL from Secrets Manager or decrypts it with KMS.
async fn load_aws(
    descriptor: &str,
    source: &SecretSource,
    sdk: &aws_config::SdkConfig,
    conf_dir: &Path,
) -> Result<WebhookUrl, SecretError> {
    let error = |problem: String| SecretError {
        descriptor: descriptor.to_owned(),
        problem,
    };
    let text = match source {
        SecretSource::SecretsManager { secret_id, key } => {
            let client = aws_sdk_secretsmanager::Client::new(sdk);
            let output = client
                .get_secret_value()
                .secret_id(secret_id)
                .send()
                .await
                .map_err(|sdk_error| {
                    let detail = describe_sdk_error(&sdk_error);
                    error(format!(
                        "cannot read Secrets Manager secret {secret_id}: {detail}"
                    ))
                })?;
            let value = output.secret_string().ok_or_else(|| {
                error(format!(
                    "Secrets Manager secret {secret_id} has no SecretString"
                ))
            })?;
            match key {
                None if value.trim_start().starts_with('{') => {
                    return Err(error(format!(
                        "Secrets Manager secret {secret_id} is a JSON object: set \"key\" to the member that contains the URL"
                    )));
                }
                None => value.to_owned(),
                Some(key) => json_member(value, key)
                    .ok_or_else(|| error(format!("Secrets Manager secret {secret_id} is not a JSON object with a string member {key:?}")))?,
            }
        }
        SecretSource::Kms { ciphertext_file } => {
            let path = conf_dir.join(ciphertext_file);
            let encoded = std::fs::read_to_string(&path).map_err(|io| {
                error(format!(
                    "cannot read KMS ciphertext {}: {io}",
                    path.display()
                ))
            })?;
            if encoded.trim().is_empty() {
                return Err(error(format!("KMS ciphertext {} is empty", path.display())));
            }
            let ciphertext =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded.trim())
                    .map_err(|_| {
                        error(format!("KMS ciphertext {} is not base64", path.display()))
                    })?;
            let client = aws_sdk_kms::Client::new(sdk);
            let output = client
                .decrypt()
                .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(ciphertext))
                .encryption_context(KMS_CONTEXT_KEY, descriptor)
                .send()
                .await
                .map_err(|sdk_error| {
                    let detail = describe_sdk_error(&sdk_error);
                    error(format!(
                        "cannot decrypt KMS ciphertext {}: {detail}",
                        path.display()
                    ))
                })?;
            let plaintext = output
                .plaintext()
                .ok_or_else(|| error("KMS returned no plaintext".to_owned()))?;
            String::from_utf8(plaintext.as_ref().to_vec())
                .map_err(|_| error("the decrypted value is not UTF-8".to_owned()))?
        }
        _ => return load(descriptor, source),
    };
    check_url(text.trim()).map_err(error)
}

/// Describes an AWS SDK error in one line: the service's error code and message, or the
/// innermost cause of a connection or timeout failure.
fn describe_sdk_error<E, R>(error: &aws_sdk_kms::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_kms::error::SdkError;
    match error {
        SdkError::ServiceError(service) => {
            let meta = service.err();
            format!(
                "{}: {}",
                meta.code().unwrap_or("error"),
                meta.message().unwrap_or("no message")
            )
        }
        SdkError::TimeoutError(_) => "the request timed out".to_owned(),
        other => {
            let mut cause: &dyn std::error::Error = other;
            while let Some(next) = cause.source() {
                cause = next;
            }
            cause.to_string()
        }
    }
}

fn json_member(text: &str, key: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.get(key)?.as_str().map(str::to_owned)
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
