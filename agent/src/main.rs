//! The `edgealert` command: the host agent and the tools rule authors use.

mod aws;
mod cli;
mod commands;
mod kinesis;
mod logging;
mod notify;
mod pipeline;
mod reload;
mod run;
mod sd_notify;
mod settings;
mod slack;
mod status;

use std::process::ExitCode;

use clap::Parser;

pub use cli::ConfArgs;
use cli::{Cli, Command};

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
