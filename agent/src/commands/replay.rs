//! `edgealert replay`: runs the agent's pipeline once over log files and prints alerts.
//!
//! Lines are framed by the same tailer as `edgealert run` (long lines, glued fragments and
//! invalid UTF-8 are handled the same way) and evaluated by the same pipeline, so replay
//! shows what the agent would decide for these files.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use rules_core::Source;
use tailer::{StartAt, Tailer, TailerConfig};

use crate::ConfArgs;
use crate::pipeline::{self, Counters, Pipeline};

/// Arguments of `edgealert replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    conf: ConfArgs,
    /// Evaluate only; replay never forwards records (required, so that nobody expects it
    /// to fill the stream; `edgealert run` forwards, with checkpoints).
    #[arg(long)]
    no_forward: bool,
    /// Source the log lines come from, as service:resource from sources.json.
    #[arg(long, value_name = "SERVICE:RESOURCE", default_value = "file:osquery")]
    source: String,
    /// Maximum line length in bytes; longer lines are skipped and counted.
    #[arg(long, value_name = "BYTES", default_value_t = TailerConfig::DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
    /// osquery log files to replay.
    #[arg(value_name = "LOG", required = true)]
    logs: Vec<PathBuf>,
}

/// Replays the files; exit status 0 even when lines fail to classify, because they are
/// counted in the summary.
pub fn run(args: &Args) -> Result<ExitCode> {
    if !args.no_forward {
        anyhow::bail!(
            "replay evaluates only and forwards nothing: pass --no-forward. To forward old logs, add them to `files` in agent.json and let `edgealert run` read them"
        );
    }
    let config = Arc::new(super::load_config(&args.conf)?);
    let source = Source::parse(&args.source).with_context(|| {
        format!(
            "invalid --source {:?}: expected service:resource",
            args.source
        )
    })?;
    if config.source(&source).is_none() {
        anyhow::bail!("source {source} is not declared in sources.json");
    }
    let mut pipeline = Pipeline::new(config, source, pipeline::local_host());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for path in &args.logs {
        replay_file(&mut out, &mut pipeline, path, args.max_line_bytes)?;
    }
    out.flush()?;
    eprintln!("{}", summary(&pipeline.counters));
    Ok(ExitCode::SUCCESS)
}

/// Reads one file to its end through a tailer that keeps its checkpoint in a temporary
/// directory, so replay never touches the agent's state.
fn replay_file(
    out: &mut impl Write,
    pipeline: &mut Pipeline,
    path: &PathBuf,
    max_line_bytes: usize,
) -> Result<()> {
    let path =
        std::fs::canonicalize(path).with_context(|| format!("cannot open {}", path.display()))?;
    let state = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut config = TailerConfig::new(vec![path.clone()], state.path().join("checkpoints.json"));
    config.start_at = StartAt::Beginning;
    config.max_line_bytes = max_line_bytes;
    // The pipeline recovers glued records from the lines it fails to parse.
    config.recover_glued_records = false;
    let mut tailer =
        Tailer::open(config).with_context(|| format!("cannot read {}", path.display()))?;
    loop {
        let events = tailer
            .poll()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if events.is_empty() && !tailer.has_more() {
            break;
        }
        let processed = pipeline.process(events);
        for alert in &processed.alerts {
            serde_json::to_writer(&mut *out, alert)?;
            out.write_all(b"\n")?;
        }
        for position in &processed.acks {
            tailer.ack(position);
        }
    }
    let unterminated: u64 = tailer
        .status()
        .iter()
        .filter_map(|file| file.lag_bytes)
        .sum();
    if unterminated > 0 {
        pipeline.count_internal("unterminated_line");
    }
    Ok(())
}

fn summary(counters: &Counters) -> String {
    let failures: u64 = counters.internal_events.values().sum();
    let mut text = format!(
        "replayed {} lines: {} records, {} rows, {} alerts, {failures} failures",
        counters.lines, counters.records, counters.rows, counters.alerts
    );
    if failures > 0 {
        let reasons: Vec<String> = counters
            .internal_events
            .iter()
            .map(|(reason, count)| format!("{reason}={count}"))
            .collect();
        text.push_str(&format!(" ({})", reasons.join(", ")));
    }
    text
}
