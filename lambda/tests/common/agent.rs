//! A real `edgealert run` that forwards one log file to kinesalite and alerts a local webhook.
//! The binary is `EDGEALERT_AGENT_BIN` (`target/debug/edgealert`, which scripts/test and
//! scripts/faults build), since cargo builds only this crate's binaries for these tests.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::kinesis::Emulator;
use super::webhook::Webhook;

/// Stream the agent forwards to; `sources.json` of the shipped configuration declares it as
/// `kinesis:edgealert`.
pub const STREAM: &str = "edgealert";

/// An `edgealert run` forwarding one log file to kinesalite, killed on drop.
pub struct Agent {
    child: Child,
    /// The agent's directory: `conf/`, `state/`, the log file and `agent.log`.
    pub dir: tempfile::TempDir,
}

impl Agent {
    /// Starts the agent with `conf`, a webhook for `slack:security`, and settings merged
    /// with `extra` (such as `{"kinesis": {"format": "compat"}}`).
    pub fn start(
        conf: &Path,
        emulator: &Emulator,
        extra: serde_json::Value,
        webhook: &Webhook,
    ) -> Agent {
        let binary = std::env::var_os("EDGEALERT_AGENT_BIN")
            .map(PathBuf::from)
            .expect("EDGEALERT_AGENT_BIN must name the edgealert binary; scripts/test sets it");

        let dir = tempfile::tempdir().unwrap();
        super::copy_dir(conf, &dir.path().join("conf"));
        let secret = dir.path().join("slack-security.url");
        std::fs::write(&secret, webhook.url("/services/T0/B0/AGENTSECRET")).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();

        let log = dir.path().join("osqueryd.results.log");
        std::fs::write(&log, b"").unwrap();
        let mut settings = serde_json::json!({
            "slack": {"webhooks": {"security": {"file": secret}}},
            "files": [log],
            "state_dir": dir.path().join("state"),
            "kinesis": {
                "stream": STREAM,
                "endpoint": emulator.endpoint(),
                "region": "us-east-1",
                "linger_ms": 50,
            },
        });
        merge(&mut settings, extra);
        std::fs::write(dir.path().join("conf/agent.json"), settings.to_string()).unwrap();
        let child = Command::new(binary)
            .args(["run", "--conf"])
            .arg(dir.path().join("conf"))
            .env("AWS_ACCESS_KEY_ID", "AKIAEDGEALERTTEST")
            .env("AWS_SECRET_ACCESS_KEY", "edgealert-test-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/edgealert-test")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/edgealert-test")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
            .spawn()
            .unwrap();
        Agent { child, dir }
    }

    /// Appends `lines`, each with a newline, in one write.
    pub fn append(&self, lines: &[Vec<u8>]) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("osqueryd.results.log"))
            .unwrap();
        let mut buffer = Vec::new();
        for line in lines {
            buffer.extend_from_slice(line);
            buffer.push(b'\n');
        }
        file.write_all(&buffer).unwrap();
    }

    /// Returns what the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Merges `extra` into `settings`, object by object.
fn merge(settings: &mut serde_json::Value, extra: serde_json::Value) {
    match (settings, extra) {
        (serde_json::Value::Object(settings), serde_json::Value::Object(extra)) => {
            for (key, value) in extra {
                merge(
                    settings.entry(key).or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
        (settings, extra) => *settings = extra,
    }
}
