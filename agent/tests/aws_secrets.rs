//! Webhook secrets from AWS Secrets Manager and KMS, against moto's server mode on
//! 127.0.0.1 through the real AWS SDK. `scripts/test` installs moto and runs these tests
//! with `--ignored`, passing the `moto_server` path in `EDGEALERT_MOTO_SERVER`.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::agent::{Agent, BIN};

struct Moto {
    child: Child,
    env: Vec<(String, String)>,
}

impl Moto {
    fn start() -> Moto {
        let binary = std::env::var("EDGEALERT_MOTO_SERVER").expect(
            "EDGEALERT_MOTO_SERVER must name a moto_server binary; scripts/test installs one",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let env = [
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
        ];
        Moto {
            child,
            env: env
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        }
    }

    async fn sdk(&self) -> aws_config::SdkConfig {
        // The SDK crates are built without a default HTTP client; moto is plain HTTP.
        let mut loader = aws_config::from_env()
            .http_client(aws_smithy_http_client::Builder::new().build_http());
        for (name, value) in &self.env {
            match name.as_str() {
                "AWS_ENDPOINT_URL" => loader = loader.endpoint_url(value),
                "AWS_REGION" => loader = loader.region(aws_config::Region::new(value.clone())),
                _ => {}
            }
        }
        let credentials =
            aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "test");
        loader.credentials_provider(credentials).load().await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stores `url` in Secrets Manager as `{"url": ...}` and returns the secret name.
async fn put_secret(sdk: &aws_config::SdkConfig, url: &str) -> String {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let value = serde_json::json!({"url": url}).to_string();
    client
        .create_secret()
        .name("edgealert/slack-security")
        .secret_string(value)
        .send()
        .await
        .unwrap();
    "edgealert/slack-security".to_owned()
}

/// Encrypts `url` under a new KMS key for `descriptor` and returns the base64 ciphertext.
async fn encrypt(sdk: &aws_config::SdkConfig, url: &str, descriptor: &str) -> String {
    let client = aws_sdk_kms::Client::new(sdk);
    let key = client.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    let output = client
        .encrypt()
        .key_id(key_id)
        .plaintext(aws_sdk_kms::primitives::Blob::new(url.as_bytes()))
        .encryption_context("edgealert:descriptor", descriptor)
        .send()
        .await
        .unwrap();
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        output.ciphertext_blob().unwrap().as_ref(),
    )
}

/// Declares the outputs `security` and `ops` and sends netcat alerts to both.
fn two_outputs(agent: &Agent, secret_id: &str) {
    std::fs::write(
        agent.path("conf/outputs.json"),
        r#"{"slack": ["security", "ops"]}"#,
    )
    .unwrap();
    let rule = agent.path("conf/rules/netcat_listener.json");
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(
        &rule,
        text.replace(
            r#""outputs": ["slack:security"]"#,
            r#""outputs": ["slack:security", "slack:ops"]"#,
        ),
    )
    .unwrap();
    agent.configure(|settings| {
        settings["slack"]["webhooks"] = serde_json::json!({
            "security": {"secrets_manager": {"secret_id": secret_id, "key": "url"}},
            "ops": {"kms": {"ciphertext_file": "slack-ops.kms"}},
        });
    });
}

#[test]
#[ignore = "needs moto_server; scripts/test installs it and runs this test"]
fn secrets_from_secrets_manager_and_kms_deliver() {
    let moto = Moto::start();
    let mut agent = Agent::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sdk = runtime.block_on(moto.sdk());
    let secret_id = runtime.block_on(put_secret(
        &sdk,
        &agent.webhook.url("/services/SM/SECRETPATH"),
    ));
    let ciphertext = runtime.block_on(encrypt(
        &sdk,
        &agent.webhook.url("/services/KMS/SECRETPATH"),
        "ops",
    ));
    std::fs::write(agent.path("conf/slack-ops.kms"), ciphertext).unwrap();
    two_outputs(&agent, &secret_id);

    let validate = Command::new(BIN)
        .args(["validate", "--secrets", "--conf"])
        .arg(agent.path("conf"))
        .envs(
            moto.env
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&validate.stdout);
    assert!(
        validate.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&validate.stderr)
    );
    assert!(
        stdout.contains("webhook secrets loaded: slack:ops, slack:security"),
        "{stdout}"
    );

    agent.start_with_env(&moto.env);
    let line = std::fs::read_to_string(common::repo().join("tests/data/osquery/results_event.log"))
        .unwrap();
    agent.append(&format!("{}\n", line.lines().nth(10).unwrap()));
    agent.wait_for("both webhooks", |agent| agent.webhook.accepted().len() == 2);
    agent.stop();
    let mut paths: Vec<String> = agent
        .webhook
        .accepted()
        .iter()
        .map(|request| request.path.clone())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/services/KMS/SECRETPATH", "/services/SM/SECRETPATH"]
    );
    assert!(!agent.log().contains("SECRETPATH"));
}

#[test]
#[ignore = "needs moto_server; scripts/test installs it and runs this test"]
fn kms_ciphertext_for_other_descriptor_is_rejected() {
    let moto = Moto::start();
    let agent = Agent::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sdk = runtime.block_on(moto.sdk());
    let secret_id = runtime.block_on(put_secret(
        &sdk,
        &agent.webhook.url("/services/SM/SECRETPATH"),
    ));
    let ciphertext = runtime.block_on(encrypt(
        &sdk,
        &agent.webhook.url("/services/KMS/SECRETPATH"),
        "security",
    ));
    std::fs::write(agent.path("conf/slack-ops.kms"), ciphertext).unwrap();
    two_outputs(&agent, &secret_id);

    let output = Command::new(BIN)
        .args(["validate", "--secrets", "--conf"])
        .arg(agent.path("conf"))
        .envs(
            moto.env
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("webhook secret of slack:ops: cannot decrypt KMS ciphertext"),
        "{stderr}"
    );
    assert!(!stderr.contains("SECRETPATH"));
}

#[test]
#[ignore = "takes 20 s; scripts/test runs it"]
fn aws_secret_times_out_when_endpoint_is_silent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts connections and never answers.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let agent = Agent::new();
    std::fs::write(agent.path("conf/slack-security.kms"), "AQID").unwrap();
    agent.configure(|settings| {
        settings["slack"]["webhooks"]["security"] =
            serde_json::json!({"kms": {"ciphertext_file": "slack-security.kms"}});
    });
    let started = Instant::now();
    let output = Command::new(BIN)
        .args(["validate", "--secrets", "--conf"])
        .arg(agent.path("conf"))
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("webhook secret of slack:security: no answer from AWS within 20 s"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(40));
}
