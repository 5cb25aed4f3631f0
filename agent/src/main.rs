//! The `edgealert` command: the host agent and the tools rule authors use.

mod aws;
mod commands;
mod kinesis;
mod logging;
mod notify;
mod pipeline;
mod reload;
mod run;
mod settings;
mod slack;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Default configuration directory on hosts.
pub const DEFAULT_CONF_DIR: &str = "/etc/edgealert";

/// Detects threats in osquery logs on the host and forwards every record.
#[derive(Debug, Parser)]
#[command(name = "edgealert", version, about, long_about = None)]
struct Cli {
    /// Log format: `auto` (text on a terminal, journald-friendly under systemd), `text` or `json`.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Auto)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs rule test events and reports, per event, what was expected and what fired.
    Test(commands::test::Args),
    /// Validates the configuration directory and optionally classifies real log lines.
    Validate(commands::validate::Args),
    /// Classifies and evaluates every line of log files and prints alerts as JSON lines.
    Replay(commands::replay::Args),
    /// Runs the agent: follows the osquery logs until SIGTERM or SIGINT.
    Run(run::Args),
    /// Shows what the running agent is doing.
    Status(status::Args),
}

/// Options shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfArgs {
    /// Configuration directory (schemas, sources, outputs, rules).
    #[arg(long = "conf", value_name = "DIR", env = "EDGEALERT_CONF", default_value = DEFAULT_CONF_DIR)]
    pub dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => commands::test::run(&args),
        Command::Validate(args) => commands::validate::run(&args),
        Command::Replay(args) => commands::replay::run(&args),
        Command::Run(args) => {
            logging::init(cli.log_format);
            run::run(&args)
        }
        Command::Status(args) => status::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
