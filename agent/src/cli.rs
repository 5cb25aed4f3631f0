//! The command-line definition of `edgealert`.
//!
//! This file depends only on `std`, `clap` and `tailer`, because `packaging/gen` compiles it
//! too, to generate the man pages and shell completions from the same definition.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Default configuration directory on hosts.
pub const DEFAULT_CONF_DIR: &str = "/etc/edgealert";

/// Detects threats in osquery logs on the host and forwards every record.
#[derive(Debug, Parser)]
#[command(name = "edgealert", version, about, long_about = None)]
pub struct Cli {
    /// Log format: `auto` (text on a terminal, journald-friendly under systemd), `text` or `json`.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs rule test events and reports, per event, what was expected and what fired.
    Test(TestArgs),
    /// Validates the configuration directory and optionally classifies real log lines.
    Validate(ValidateArgs),
    /// Classifies and evaluates every line of log files and prints alerts as JSON lines.
    Replay(ReplayArgs),
    /// Runs the agent: follows the osquery logs until SIGTERM or SIGINT.
    Run(RunArgs),
    /// Shows what the running agent is doing.
    Status(StatusArgs),
}

/// Log format chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text with colours on a terminal; without timestamps and colours under systemd
    /// (`$JOURNAL_STREAM` set), because journald adds its own.
    Auto,
    /// Text.
    Text,
    /// One JSON object per event.
    Json,
}

/// Options shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfArgs {
    /// Configuration directory (schemas, sources, outputs, rules).
    #[arg(long = "conf", value_name = "DIR", env = "EDGEALERT_CONF", default_value = DEFAULT_CONF_DIR)]
    pub dir: PathBuf,
}

/// Arguments of `edgealert test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub conf: ConfArgs,
    /// Test only these rules (default: all).
    #[arg(value_name = "RULE")]
    pub rules: Vec<String>,
    /// Directory of test event files (default: DIR/rules/tests).
    #[arg(long, value_name = "DIR")]
    pub tests: Option<PathBuf>,
}

/// Arguments of `edgealert validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub conf: ConfArgs,
    /// osquery log files whose lines are classified one by one.
    #[arg(long = "log", value_name = "FILE", num_args = 1..)]
    pub logs: Vec<PathBuf>,
    /// Also load the Slack webhook secrets the rules need, as `edgealert run` does.
    #[arg(long)]
    pub secrets: bool,
    /// Skip the rule test events in rules/tests/. `edgealert run` does not read them, so the
    /// service's start check uses this: a stale test event never stops the agent.
    #[arg(long)]
    pub no_tests: bool,
    /// Source the log lines come from, as service:resource from sources.json.
    #[arg(long, value_name = "SERVICE:RESOURCE", default_value = "file:osquery")]
    pub source: String,
}

/// Arguments of `edgealert replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub conf: ConfArgs,
    /// Evaluate only; replay never forwards records (required, so that nobody expects it
    /// to fill the stream; `edgealert run` forwards, with checkpoints).
    #[arg(long)]
    pub no_forward: bool,
    /// Source the log lines come from, as service:resource from sources.json.
    #[arg(long, value_name = "SERVICE:RESOURCE", default_value = "file:osquery")]
    pub source: String,
    /// Maximum line length in bytes; longer lines are skipped and counted.
    #[arg(long, value_name = "BYTES", default_value_t = tailer::TailerConfig::DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
    /// osquery log files to replay.
    #[arg(value_name = "LOG", required = true)]
    pub logs: Vec<PathBuf>,
}

/// Arguments of `edgealert run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub conf: ConfArgs,
    /// State directory for checkpoints, status and local outputs (overrides agent.json).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Arguments of `edgealert status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conf: ConfArgs,
    /// State directory of the agent (default: as `run` resolves it).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print the raw status JSON.
    #[arg(long)]
    pub json: bool,
}
