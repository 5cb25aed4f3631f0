//! Error types of configuration loading and record classification.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a configuration file.
///
/// Every error names the file, the JSON path inside it (`$` for the document root) and a
/// message stating what is wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {path}: {message}", file.display())]
pub struct ConfigError {
    /// File the error was found in.
    pub file: PathBuf,
    /// JSON path of the offending value, such as `$.condition.all[2].regex`.
    pub path: String,
    /// Description of what is wrong and what is allowed instead.
    pub message: String,
}

impl ConfigError {
    /// Creates an error for `file` at JSON `path`.
    pub fn new(
        file: impl Into<PathBuf>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.into(),
            path: path.into(),
            message: message.into(),
        }
    }
}

/// All problems found while loading a configuration directory.
///
/// Loading collects every error it can find before failing, so an administrator fixes a
/// broken directory in one pass. A configuration with any error is never used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        let noun = if count == 1 { "error" } else { "errors" };
        write!(f, "invalid configuration ({count} {noun})")?;
        for error in &self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

/// Collector of configuration errors for one file.
#[derive(Debug)]
pub(crate) struct Diagnostics<'a> {
    file: &'a std::path::Path,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Diagnostics<'a> {
    pub(crate) fn new(file: &'a std::path::Path, errors: &'a mut Vec<ConfigError>) -> Self {
        Diagnostics { file, errors }
    }

    pub(crate) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(self.file, path, message.into()));
    }

    pub(crate) fn file(&self) -> &std::path::Path {
        self.file
    }
}

impl Diagnostics<'_> {
    pub(crate) fn count(&self) -> usize {
        self.errors.len()
    }
}
