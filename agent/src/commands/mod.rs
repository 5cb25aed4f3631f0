//! Subcommands of `edgealert`.

pub mod replay;
pub mod test;
pub mod validate;

use anyhow::{Context, Result};
use rules_core::Config;

use crate::ConfArgs;

/// Loads the configuration directory, printing every error and warning on failure.
pub fn load_config(args: &ConfArgs) -> Result<Config> {
    let config = Config::load(&args.dir)
        .with_context(|| format!("cannot load configuration from {}", args.dir.display()))?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(config)
}
