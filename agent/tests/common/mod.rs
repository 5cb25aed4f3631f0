//! Helpers shared by the integration tests of the `edgealert` binary.

// Each test crate uses only some of the helpers.
#![allow(dead_code)]

pub mod agent;
pub mod faults;
pub mod kinesis;
pub mod matrix;
pub mod webhook;

use std::path::{Path, PathBuf};

/// Returns the repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Writes a webhook URL to `dir/slack-security.url` with mode 0600 and returns the path.
pub fn write_secret(dir: &Path, url: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("slack-security.url");
    std::fs::write(&path, url).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}
