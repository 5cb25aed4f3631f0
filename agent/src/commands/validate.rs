//! `edgealert validate`: checks a configuration directory and classifies real log lines.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use rules_core::{Config, Source, testing};

pub use crate::cli::ValidateArgs as Args;

/// Validates; exit status 1 when a log line does not classify.
pub fn run(args: &Args) -> Result<ExitCode> {
    let (config, settings) = crate::settings::load_all(&args.conf.dir)
        .with_context(|| format!("cannot load configuration from {}", args.conf.dir.display()))?;
    if args.secrets {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let webhooks = runtime.block_on(crate::notify::load_webhooks(&config, &settings.slack))?;
        let names: Vec<String> = webhooks
            .keys()
            .map(|descriptor| format!("slack:{descriptor}"))
            .collect();
        println!(
            "webhook secrets loaded: {}",
            if names.is_empty() {
                "none needed".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    let test_events = if args.no_tests {
        "test events not checked".to_owned()
    } else {
        let tests_dir = config.dir.join("rules").join("tests");
        let cases = testing::load_tests(&tests_dir, &config)
            .with_context(|| format!("invalid test events in {}", tests_dir.display()))?;
        format!("{} test events", cases.len())
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "configuration {} is valid: {} log types, {} sources, {} rules, {test_events}; digest {}",
        config.dir.display(),
        config.schemas.len(),
        config.sources.len(),
        config.rules.rules().len(),
        config.digest
    )?;
    if args.logs.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let source = Source::parse(&args.source).with_context(|| {
        format!(
            "invalid --source {:?}: expected service:resource",
            args.source
        )
    })?;
    if config.source(&source).is_none() {
        anyhow::bail!("source {source} is not declared in sources.json");
    }
    let mut failures = 0usize;
    for path in &args.logs {
        failures += classify_file(&mut out, &config, &source, path)?;
    }
    writeln!(out, "{failures} lines not classified")?;
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn classify_file(
    out: &mut impl Write,
    config: &Config,
    source: &Source,
    path: &Path,
) -> Result<usize> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut number = 0usize;
    let mut failures = 0usize;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        match config.classify(source, &line) {
            Ok(classified) => {
                let rows = classified.events().len();
                writeln!(
                    out,
                    "{}:{number}: {} ({rows} rows)",
                    path.display(),
                    classified.log_type()
                )?;
            }
            Err(error) => {
                failures += 1;
                writeln!(out, "{}:{number}: not classified: {error}", path.display())?;
            }
        }
    }
    Ok(failures)
}
