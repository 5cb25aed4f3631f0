//! The status file (`STATE_DIR/status.json`) and `edgealert status`.
//!
//! The running agent rewrites the file atomically every second; `edgealert status` reads it,
//! so reporting needs no open port.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::pipeline::Counters;
use crate::run::Shared;

/// Consecutive failed status writes.
static WRITE_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// File name of the status file in the state directory.
pub const FILE_NAME: &str = "status.json";

/// Report of the running agent about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusFile {
    /// Process id of the agent.
    pub pid: u32,
    /// Agent version.
    pub version: String,
    /// Start time, seconds since the Unix epoch.
    pub started_at: u64,
    /// Time of this snapshot, seconds since the Unix epoch.
    pub updated_at: u64,
    /// Configuration directory.
    pub config_dir: PathBuf,
    /// SHA-256 digest of the active configuration.
    pub config_digest: String,
    /// Configured paths to follow, present or not.
    #[serde(default)]
    pub followed: Vec<PathBuf>,
    /// Followed files.
    pub files: Vec<FileReport>,
    /// Pipeline counters.
    pub counters: Counters,
    /// Sinks by role and destination.
    pub sinks: Vec<(String, String)>,
    /// Slack delivery: outbox, dead letters and counters per webhook.
    #[serde(default)]
    pub slack: crate::notify::SlackReport,
    /// Kinesis forwarding, when configured.
    #[serde(default)]
    pub kinesis: Option<crate::kinesis::KinesisStatus>,
    /// Most recent error, if any.
    pub last_error: Option<String>,
}

/// One followed file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileReport {
    /// The configured path.
    pub followed_path: PathBuf,
    /// The path the file is read from (a rotated file keeps its new name).
    pub path: PathBuf,
    /// `live`, `rotated`, `archive` or `finished`.
    pub role: String,
    /// Bytes read.
    pub read_offset: u64,
    /// Bytes acknowledged by every sink (the checkpoint).
    pub acked_offset: u64,
    /// Current size, when known.
    pub size: Option<u64>,
    /// Bytes written by osquery but not yet read.
    pub lag_bytes: Option<u64>,
    /// Lines read from this file.
    pub lines: u64,
    /// Problems found in this file.
    pub problems: u64,
}

impl StatusFile {
    /// Creates the status of an agent starting now.
    pub fn new(config: &rules_core::Config, sinks: &[(String, String)]) -> StatusFile {
        let now = unix_now();
        StatusFile {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: now,
            updated_at: now,
            config_dir: config.dir.clone(),
            config_digest: config.digest.clone(),
            followed: Vec::new(),
            files: Vec::new(),
            counters: Counters::default(),
            sinks: sinks.to_vec(),
            slack: crate::notify::SlackReport::default(),
            kinesis: None,
            last_error: None,
        }
    }

    /// Replaces the file reports with the tailer's status.
    pub fn set_files(&mut self, files: &[tailer::FileStatus]) {
        self.files = files
            .iter()
            .map(|file| FileReport {
                followed_path: file.followed_path.clone(),
                path: file.path.clone(),
                role: format!("{:?}", file.role).to_lowercase(),
                read_offset: file.read_offset,
                acked_offset: file.acked_offset,
                size: file.size,
                lag_bytes: file.lag_bytes,
                lines: file.counters.lines,
                problems: file.counters.problems,
            })
            .collect();
    }
}

/// Interval after which an unchanged status is written again, so `edgealert status` can tell
/// a running agent from a stopped one by the age of `updated_at`.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// Age of `updated_at` after which `edgealert status` reports the agent as not running.
const STALE_SECONDS: u64 = 15;

/// Writes the status file every second while it changes, and every [`KEEPALIVE`]
/// otherwise, until the task is aborted.
pub async fn write_periodically(state_dir: PathBuf, shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    let mut last_content = Vec::new();
    let mut last_write = tokio::time::Instant::now();
    loop {
        interval.tick().await;
        let report = shared.notifier.report();
        shared.update_status(|status| status.slack = report);
        let Some(mut status) = shared.status_snapshot() else {
            continue;
        };
        status.updated_at = 0;
        let content = serde_json::to_vec(&status).unwrap_or_default();
        if content != last_content || last_write.elapsed() >= KEEPALIVE {
            write_now(&state_dir, &shared);
            last_content = content;
            last_write = tokio::time::Instant::now();
        }
    }
}

/// Writes the status file once, atomically.
pub fn write_now(state_dir: &Path, shared: &Shared) {
    let Some(mut status) = shared.status_snapshot() else {
        return;
    };
    status.updated_at = unix_now();
    match write_atomically(&state_dir.join(FILE_NAME), &status) {
        Ok(()) => {
            WRITE_FAILURES.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        Err(error) => {
            // Logged on the first failure and then every 60th: the writer runs every second.
            let failures = WRITE_FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if failures.is_multiple_of(60) {
                tracing::warn!(error = %format!("{error:#}"), failures = failures + 1, "Writing the status file failed; edgealert status shows stale data.");
            }
        }
    }
}

fn write_atomically(path: &Path, status: &StatusFile) -> Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    serde_json::to_writer_pretty(&mut file, status)?;
    file.write_all(b"\n")?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|duration| duration.as_secs())
        .unwrap_or_default()
}

/// Arguments of `edgealert status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    conf: crate::ConfArgs,
    /// State directory of the agent (default: as `run` resolves it).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Print the raw status JSON.
    #[arg(long)]
    json: bool,
}

/// Prints the running agent's status; exit 1 when no agent is running.
pub fn run(args: &Args) -> Result<ExitCode> {
    let settings = crate::settings::AgentSettings::load(&args.conf.dir).unwrap_or_default();
    let state_dir = crate::settings::state_dir(args.state_dir.as_deref(), &settings)?;
    let path = state_dir.join(FILE_NAME);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "no status at {}: is the agent running with this state directory?",
            path.display()
        )
    })?;
    let status: StatusFile = serde_json::from_slice(&bytes)
        .with_context(|| format!("invalid status file {}", path.display()))?;
    let running =
        process_alive(status.pid) && unix_now().saturating_sub(status.updated_at) <= STALE_SECONDS;
    if args.json {
        println!("{}", String::from_utf8_lossy(&bytes).trim_end());
    } else {
        print_status(&status, running);
    }
    Ok(if running {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn print_status(status: &StatusFile, running: bool) {
    let state = if running {
        "running"
    } else {
        "NOT RUNNING (last report shown)"
    };
    println!("edgealert {} pid {}: {state}", status.version, status.pid);
    println!(
        "config: {} digest {}",
        status.config_dir.display(),
        status.config_digest
    );
    println!(
        "updated: {}s ago",
        unix_now().saturating_sub(status.updated_at)
    );
    for path in &status.followed {
        if !status.files.iter().any(|file| &file.followed_path == path) {
            println!("file {}: not present; waiting for it", path.display());
        }
    }
    for file in &status.files {
        let lag = file.lag_bytes.map_or("?".to_owned(), |lag| lag.to_string());
        println!(
            "file {} ({}, {}): read {} acked {} lag {} bytes, {} lines, {} problems",
            file.followed_path.display(),
            file.role,
            file.path.display(),
            file.read_offset,
            file.acked_offset,
            lag,
            file.lines,
            file.problems
        );
    }
    let counters = &status.counters;
    println!(
        "records: {} lines, {} records, {} rows, {} alerts, {} extra keys, {} bytes possibly lost",
        counters.lines,
        counters.records,
        counters.rows,
        counters.alerts,
        counters.extra_keys,
        counters.possibly_lost_bytes
    );
    for (reason, count) in &counters.internal_events {
        println!("internal event {reason}: {count}");
    }
    for (role, destination) in &status.sinks {
        println!("sink {role}: {destination}");
    }
    println!(
        "slack: {} queued, {} dead letters",
        status.slack.outbox, status.slack.dead_letters
    );
    for (descriptor, webhook) in &status.slack.webhooks {
        let error = webhook.last_error.as_deref().unwrap_or("none");
        println!(
            "webhook slack:{descriptor}: {} sent, {} rate-limited, {} retries, {} dead-lettered, last error: {error}",
            webhook.sent, webhook.rate_limited, webhook.retries, webhook.dead_lettered
        );
    }
    if let Some(kinesis) = &status.kinesis {
        println!(
            "kinesis {} ({}): {} records ({} lines, {} bytes) sent in {} calls, {} entries retried, {} throttled, {} call errors",
            kinesis.stream,
            kinesis.format,
            kinesis.records_sent,
            kinesis.entries_sent,
            kinesis.bytes_sent,
            kinesis.requests,
            kinesis.entries_retried,
            kinesis.throttled,
            kinesis.request_errors
        );
        println!(
            "kinesis buffer: {} records ({} bytes) in memory, {} records ({} bytes) in the spool, {} damaged spool frames, {} lines split, {} dead-lettered{}",
            kinesis.buffered_records,
            kinesis.buffered_bytes,
            kinesis.spool_records,
            kinesis.spool_bytes,
            kinesis.spool_torn_frames,
            kinesis.lines_split,
            kinesis.dead_lettered,
            if kinesis.paused {
                "; SPOOL FULL, reading paused"
            } else {
                ""
            }
        );
        if let Some(error) = &kinesis.last_error {
            let kind = if kinesis.config_error {
                "needs an administrator"
            } else {
                "retrying"
            };
            println!("kinesis last error ({kind}): {error}");
        }
    }
    if let Some(error) = &status.last_error {
        println!("last error: {error}");
    }
}
