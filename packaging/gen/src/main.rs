//! Generates the man pages and shell completions of `edgealert` for the packages.
//!
//! It compiles the agent's command-line definition (`agent/src/cli.rs`) itself, so the pages
//! and completions describe exactly the options the binary parses.
//!
//! Usage: `edgealert-gen OUT_DIR` writes `OUT_DIR/man/edgealert.1`, one
//! `OUT_DIR/man/edgealert-<command>.1` per subcommand, and `OUT_DIR/completions/` with
//! `edgealert.bash`, `_edgealert` (zsh) and `edgealert.fish`.

#[path = "../../../agent/src/cli.rs"]
#[allow(dead_code)] // The agent reads the fields; here only the definition matters.
mod cli;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

/// The agent's manifest: `#[command(about)]` takes the agent package's description, which
/// this crate reads from there instead of from its own manifest.
const AGENT_MANIFEST: &str = include_str!("../../../agent/Cargo.toml");

/// Shells that get a completion script, with the script's file name.
const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "edgealert.bash"),
    (Shell::Zsh, "_edgealert"),
    (Shell::Fish, "edgealert.fish"),
];

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out_dir), None) = (args.next(), args.next()) else {
        anyhow::bail!("usage: edgealert-gen OUT_DIR");
    };
    let written = generate(Path::new(&out_dir))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Returns the `edgealert` command as the agent binary builds it.
fn agent_command() -> Result<clap::Command> {
    let description = package_description(AGENT_MANIFEST)
        .context("no description = \"...\" line in agent/Cargo.toml")?;
    Ok(cli::Cli::command().about(description))
}

/// Extracts the `description` of the `[package]` table from a manifest's text. It reads the
/// single-line form only, which is the form agent/Cargo.toml uses.
fn package_description(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        let Some(value) = line
            .strip_prefix("description")
            .and_then(|rest| rest.trim_start().strip_prefix('='))
        else {
            continue;
        };
        let quoted = value.trim().strip_prefix('"')?.strip_suffix('"')?;
        return Some(quoted.replace("\\\"", "\""));
    }
    None
}

/// Writes the man pages and completion scripts under `out_dir` and returns their paths.
fn generate(out_dir: &Path) -> Result<Vec<PathBuf>> {
    let command = agent_command()?;
    let man_dir = out_dir.join("man");
    let completions_dir = out_dir.join("completions");
    for dir in [&man_dir, &completions_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    clap_mangen::generate_to(command.clone(), &man_dir)
        .with_context(|| format!("cannot write man pages to {}", man_dir.display()))?;
    let mut written = Vec::new();
    for entry in std::fs::read_dir(&man_dir)? {
        written.push(entry?.path());
    }

    for (shell, file_name) in SHELLS {
        let path = completions_dir.join(file_name);
        let mut file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        clap_complete::generate(shell, &mut command.clone(), "edgealert", &mut file);
        written.push(path);
    }
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_comes_from_agent_manifest() {
        let description = package_description(AGENT_MANIFEST).unwrap();
        assert!(
            description.starts_with("osquery edge agent:"),
            "{description}"
        );
    }

    #[test]
    fn description_ignores_other_tables() {
        let manifest = "[dependencies]\ndescription = \"no\"\n[package]\nname = \"x\"\ndescription = \"yes \\\"quoted\\\"\"\n";
        assert_eq!(
            package_description(manifest).as_deref(),
            Some("yes \"quoted\"")
        );
    }

    #[test]
    fn description_missing_is_none() {
        assert_eq!(package_description("[package]\nname = \"x\"\n"), None);
    }

    #[test]
    fn generate_writes_page_per_command() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|path| {
                let relative = path.strip_prefix(dir.path()).unwrap();
                relative.to_string_lossy().into_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "completions/_edgealert",
                "completions/edgealert.bash",
                "completions/edgealert.fish",
                "man/edgealert-replay.1",
                "man/edgealert-run.1",
                "man/edgealert-status.1",
                "man/edgealert-test.1",
                "man/edgealert-validate.1",
                "man/edgealert.1",
            ]
        );
    }

    #[test]
    fn man_page_names_options_and_description() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let page = std::fs::read_to_string(dir.path().join("man/edgealert.1")).unwrap();
        assert!(page.contains("osquery edge agent:"), "{page}");
        assert!(page.contains("log\\-format"), "{page}");
        let run = std::fs::read_to_string(dir.path().join("man/edgealert-run.1")).unwrap();
        assert!(run.contains("state\\-dir"), "{run}");
        assert!(run.contains("EDGEALERT_CONF"), "{run}");
    }

    #[test]
    fn bash_completion_offers_subcommands() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let script =
            std::fs::read_to_string(dir.path().join("completions/edgealert.bash")).unwrap();
        for command in ["run", "validate", "test", "replay", "status"] {
            assert!(script.contains(command), "{command} missing");
        }
        assert!(script.contains("complete -F _edgealert"), "{script}");
    }
}
