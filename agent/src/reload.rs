//! Configuration reload on SIGHUP and on changes to the configuration directory.
//!
//! A new configuration is validated completely before it is swapped in. On any error the
//! running configuration stays active and one error names the file and key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::signal::unix::{SignalKind, signal};

use crate::run::{RELOAD_REJECTED, Shared};

/// Time to wait for more changes after the first one, so an editor's several writes or a
/// directory sync reload once.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Reloads until the task is aborted.
pub async fn watch(dir: PathBuf, shared: Arc<Shared>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let file_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| !event.kind.is_access()) {
            let _ = file_tx.try_send(());
        }
    });
    let _watcher = match watcher {
        Ok(mut watcher) => match watcher.watch(&dir, RecursiveMode::Recursive) {
            Ok(()) => Some(watcher),
            Err(error) => {
                tracing::warn!(conf = %dir.display(), error = %error, "Cannot watch the configuration directory; reload with SIGHUP.");
                None
            }
        },
        Err(error) => {
            tracing::warn!(error = %error, "Cannot create a file watcher; reload with SIGHUP.");
            None
        }
    };
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(error) => {
            tracing::warn!(error = %error, "Cannot handle SIGHUP.");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hangup.recv() => tracing::info!("SIGHUP received; reloading the configuration."),
            Some(()) = rx.recv() => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        reload(&dir, &shared).await;
    }
}

async fn reload(dir: &std::path::Path, shared: &Shared) {
    let load_dir = dir.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || crate::settings::load_all(&load_dir)).await;
    let (config, settings) = match loaded {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(errors)) => {
            let message = errors.to_string();
            tracing::error!(conf = %dir.display(), errors = %message, "Configuration reload rejected; the running configuration stays active.");
            shared.record_error(format!("{RELOAD_REJECTED}{message}"));
            return;
        }
        Err(error) => {
            tracing::error!(error = %error, "Configuration reload failed.");
            return;
        }
    };
    let missing: Vec<String> = crate::notify::required_descriptors(&config)
        .into_iter()
        .filter(|descriptor| !shared.notifier.descriptors().contains(descriptor))
        .map(|descriptor| format!("slack:{descriptor}"))
        .chain(
            crate::settings::file_descriptors(&config)
                .into_iter()
                .filter(|descriptor| !shared.settings.file_outputs.contains_key(descriptor))
                .map(|descriptor| format!("file:{descriptor}")),
        )
        .collect();
    if !missing.is_empty() {
        let message = format!(
            "rules send to {}, which had no webhook secret or file path when the agent started; add it and restart the agent",
            missing.join(", ")
        );
        tracing::error!(conf = %dir.display(), errors = %message, "Configuration reload rejected; the running configuration stays active.");
        shared.record_error(format!("{RELOAD_REJECTED}{message}"));
        return;
    }
    if settings != shared.settings {
        tracing::warn!(
            file = %dir.join(crate::settings::FILE_NAME).display(),
            "Changes to agent.json take effect at the next start; the running agent keeps its files, sinks and limits."
        );
    }
    shared.clear_reload_error();
    if config.digest == shared.digest() {
        return;
    }
    for warning in &config.warnings {
        tracing::warn!(warning = %warning, "Configuration warning.");
    }
    let digest = config.digest.clone();
    shared.install(config);
    shared.update_status(|status| status.config_digest = digest.clone());
    tracing::info!(config_digest = %digest, "Configuration reloaded.");
}
