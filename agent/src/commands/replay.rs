//! `edgealert replay`: classifies and evaluates log files once, printing alerts.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use rules_core::{Config, Source};

use crate::ConfArgs;

/// Arguments of `edgealert replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    conf: ConfArgs,
    /// Evaluate only; do not forward records (the only mode until forwarding exists).
    #[arg(long)]
    no_forward: bool,
    /// Source the log lines come from, as service:resource from sources.json.
    #[arg(long, value_name = "SERVICE:RESOURCE", default_value = "file:osquery")]
    source: String,
    /// osquery log files to replay.
    #[arg(value_name = "LOG", required = true)]
    logs: Vec<PathBuf>,
}

#[derive(Debug, Default)]
struct Summary {
    lines: u64,
    records: u64,
    rows: u64,
    alerts: u64,
    failures: BTreeMap<&'static str, u64>,
}

/// Replays the files; exit status 0 even when lines fail to classify (they are counted).
pub fn run(args: &Args) -> Result<ExitCode> {
    if !args.no_forward {
        anyhow::bail!("replay forwards nothing yet: pass --no-forward");
    }
    let config = super::load_config(&args.conf)?;
    let source = Source::parse(&args.source).with_context(|| {
        format!(
            "invalid --source {:?}: expected service:resource",
            args.source
        )
    })?;
    if config.source(&source).is_none() {
        anyhow::bail!("source {source} is not declared in sources.json");
    }
    let mut summary = Summary::default();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for path in &args.logs {
        replay_file(&mut out, &config, &source, path, &mut summary)?;
    }
    out.flush()?;
    let failures: Vec<String> = summary
        .failures
        .iter()
        .map(|(reason, count)| format!("{reason}={count}"))
        .collect();
    eprintln!(
        "replayed {} lines: {} records, {} rows, {} alerts, {} failures{}",
        summary.lines,
        summary.records,
        summary.rows,
        summary.alerts,
        summary.failures.values().sum::<u64>(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(" ({})", failures.join(", "))
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn replay_file(
    out: &mut impl Write,
    config: &Config,
    source: &Source,
    path: &Path,
    summary: &mut Summary,
) -> Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            return Ok(());
        }
        summary.lines += 1;
        let classified = match config.classify(source, &line) {
            Ok(classified) => classified,
            Err(error) => {
                *summary.failures.entry(error.reason()).or_default() += 1;
                continue;
            }
        };
        summary.records += 1;
        for event in classified.events() {
            summary.rows += 1;
            for alert in config.rules.evaluate(&event) {
                summary.alerts += 1;
                serde_json::to_writer(&mut *out, &alert)?;
                out.write_all(b"\n")?;
            }
        }
    }
}
