//! `edgealert test`: runs rule test events through the real classifier and rules.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use rules_core::testing::{self, TestCase};

pub use crate::cli::TestArgs as Args;

/// Runs the tests; exit status 1 when any event or coverage check fails.
pub fn run(args: &Args) -> Result<ExitCode> {
    let config = super::load_config(&args.conf)?;
    for rule in &args.rules {
        if config.rules.get(rule).is_none() {
            anyhow::bail!(
                "unknown rule {rule:?}; run `edgealert validate` to list the loaded rules"
            );
        }
    }
    let tests_dir = args
        .tests
        .clone()
        .unwrap_or_else(|| config.dir.join("rules").join("tests"));
    let cases = testing::load_tests(&tests_dir, &config)
        .with_context(|| format!("invalid test events in {}", tests_dir.display()))?;
    let selected = testing::select_cases(&cases, &args.rules);

    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed) = (0usize, 0usize);
    for case in &selected {
        let outcome = testing::run_case(&config, case);
        print_outcome(&mut out, &tests_dir, case, &outcome)?;
        if outcome.passed() {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    let gaps = testing::coverage_gaps(&config, &cases, &args.rules);
    for gap in &gaps {
        writeln!(
            out,
            "FAIL  rule {} needs at least one positive and one negative test (has {} positive, {} negative in rules/tests/{}/)",
            gap.rule, gap.positives, gap.negatives, gap.rule
        )?;
        failed += 1;
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_outcome(
    out: &mut impl Write,
    base: &std::path::Path,
    case: &TestCase,
    outcome: &testing::TestOutcome,
) -> Result<()> {
    let verdict = if outcome.passed() { "PASS" } else { "FAIL" };
    writeln!(
        out,
        "{verdict}  {}  expected {} fired {}  {}",
        case.label(base),
        list(&outcome.expected),
        list(&outcome.fired),
        case.event.description
    )?;
    if let Some(failure) = &outcome.failure {
        writeln!(out, "      {failure}")?;
    }
    Ok(())
}

fn list(names: &BTreeSet<String>) -> String {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    format!("[{}]", names.join(", "))
}
