//! The webhook secret from AWS Secrets Manager, against moto's server mode on 127.0.0.1,
//! read by the real `bootstrap` through the AWS SDK. `scripts/test` installs moto and runs
//! these tests with `--ignored`, passing the `moto_server` path in `EDGEALERT_MOTO_SERVER`.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::runtime_api::{Bootstrap, Invocation, RuntimeApi};
use common::webhook::Webhook;
use common::*;

struct Moto {
    child: Child,
    endpoint: String,
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
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
        ]
    }

    /// Creates a secret and returns its ARN.
    async fn create_secret(&self, name: &str, value: &str) -> String {
        let credentials = aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "test",
        );
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let sdk = aws_config::from_env()
            .http_client(http)
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .load()
            .await;
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        let output = client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
        output.arn().unwrap().to_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bootstrap_env(moto: &Moto, secret: &str) -> Vec<(&'static str, String)> {
    let mut env = moto.env();
    env.push(("EDGEALERT_CONF", repo().join("conf").display().to_string()));
    env.push(("EDGEALERT_SLACK_SECRET_ARN", secret.to_owned()));
    env
}

#[tokio::test]
#[ignore = "needs moto_server; scripts/test runs it with EDGEALERT_MOTO_SERVER"]
async fn webhook_url_comes_from_secrets_manager() {
    let moto = Moto::start();
    let webhook = Webhook::start();
    let url = webhook.url("/services/T0EDGE/B0ALERT/sEcReTtOkEn42");
    let arn = moto
        .create_secret(
            "edgealert/slack-webhooks",
            &format!(r#"{{"security": "{url}"}}"#),
        )
        .await;
    let api = RuntimeApi::start();
    let bootstrap = Bootstrap::start(&api, &bootstrap_env(&moto, &arn));

    let event = serde_json::to_vec(&kinesis_event_json(
        STREAM_ARN,
        &numbered(vec![netcat_process_line()]),
    ))
    .unwrap();
    let request_id = api.invoke(&event, Duration::from_secs(30));
    let result = tokio::task::spawn_blocking({
        let api = api.clone();
        move || api.result(&request_id, Duration::from_secs(60))
    })
    .await
    .unwrap();

    let output = bootstrap.output();
    assert_eq!(
        result,
        Some(Invocation::Response(
            serde_json::json!({"batchItemFailures": []})
        )),
        "{output}"
    );
    assert_eq!(webhook.accepted().len(), 1, "{output}");
    assert!(!output.contains("sEcReTtOkEn42"), "{output}");
}

#[tokio::test]
#[ignore = "needs moto_server; scripts/test runs it with EDGEALERT_MOTO_SERVER"]
async fn missing_secret_fails_init() {
    let moto = Moto::start();
    let api = RuntimeApi::start();
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:edgealert/absent-AbCdEf";
    let mut bootstrap = Bootstrap::start(&api, &bootstrap_env(&moto, arn));

    let init_error = tokio::task::spawn_blocking({
        let api = api.clone();
        move || api.init_error(Duration::from_secs(60))
    })
    .await
    .unwrap();

    let output = bootstrap.output();
    let init_error = init_error.unwrap_or_else(|| panic!("no init error: {output}"));
    assert_eq!(bootstrap.wait_exit(Duration::from_secs(30)), Some(1));
    assert_eq!(
        init_error.body["errorType"],
        "Edgealert.InvalidWebhookSecret"
    );
    let message = init_error.body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("cannot read Secrets Manager secret"),
        "{message}"
    );
    assert!(message.contains("edgealert/absent"), "{message}");
}
