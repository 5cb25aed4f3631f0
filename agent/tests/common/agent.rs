//! A running `edgealert run` in a temporary directory, with a local webhook receiver.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_edgealert");

pub struct Agent {
    dir: tempfile::TempDir,
    pub webhook: super::webhook::Webhook,
    child: Option<Child>,
    log_mark: usize,
}

impl Agent {
    pub fn new() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        super::copy_dir(&super::repo().join("conf"), &dir.path().join("conf"));
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let webhook = super::webhook::Webhook::start();
        let secret = super::write_secret(dir.path(), &webhook.url("/services/T0/B0/SECRETPATH"));
        let settings = serde_json::json!({
            "slack": {"webhooks": {"security": {"file": secret}}},
            "files": [dir.path().join("logs/osqueryd.results.log")],
            "state_dir": dir.path().join("state"),
            "records_file": dir.path().join("records.jsonl"),
            "stat_interval_ms": 200,
            "checkpoint_interval_ms": 50,
        });
        std::fs::write(dir.path().join("conf/agent.json"), settings.to_string()).unwrap();
        Agent {
            dir,
            webhook,
            child: None,
            log_mark: 0,
        }
    }

    /// Edits `conf/agent.json` before the next start.
    pub fn configure(&self, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = self.path("conf/agent.json");
        let mut value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut value);
        std::fs::write(&path, value.to_string()).unwrap();
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    /// Starts the agent with extra environment variables.
    pub fn start_with_env(&mut self, env: &[(String, String)]) {
        self.log_mark = self.log().len();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("agent.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--conf"])
            .arg(self.path("conf"))
            .args(["--log-format", "text"])
            .envs(
                env.iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until the current run logged its start, after which it handles SIGTERM.
    pub fn wait_started(&self) {
        let mark = self.log_mark;
        self.wait_for("the agent to start", |agent| {
            agent
                .log()
                .get(mark..)
                .is_some_and(|log| log.contains("Agent started."))
        });
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
    }

    pub fn stop(&mut self) {
        self.wait_started();
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self.child.take().unwrap().wait().unwrap();
        assert!(
            status.success(),
            "agent exited with {status}: {}",
            self.log()
        );
    }

    pub fn kill(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.child.take().unwrap().wait().unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }

    /// Counts messages waiting in the outbox.
    pub fn outbox_files(&self) -> usize {
        count_json(&self.path("state/outbox"))
    }

    /// Counts messages in the dead letters.
    pub fn dead_letters(&self) -> usize {
        count_json(&self.path("state/outbox/dead-letter"))
    }

    pub fn records(&self) -> Vec<String> {
        let text = std::fs::read(self.path("records.jsonl")).unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn append(&self, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("logs/osqueryd.results.log"))
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    pub fn wait_for(&self, what: &str, mut condition: impl FnMut(&Agent) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if condition(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("timed out waiting for {what}; agent log:\n{}", self.log());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn count_json(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
                .count()
        })
        .unwrap_or(0)
}
