//! `edgealert run`: the host service.
//!
//! Threads and tasks, joined by bounded channels:
//!
//! - the tail thread owns the [`Tailer`]: it reads when inotify or the safety-net timer wakes
//!   it, sends batches to the pipeline, applies acknowledgements and writes checkpoints;
//! - the pipeline thread classifies and evaluates each batch, writes alerts and records to
//!   the sinks, and only then acknowledges the batch, so a checkpoint never moves past a
//!   line whose alerts and record were not written;
//! - tokio tasks handle signals, configuration reload and the status file.
//!
//! Memory is bounded by the tailer's `max_unacked_bytes`: when sinks are slow, acks stop,
//! the tailer stops reading and the log file on disk is the buffer.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rules_core::Config;
use tailer::{Position, TailEvent, Tailer, TailerConfig};

use crate::kinesis::packer::Packer;
use crate::kinesis::sender::{ForwardBatch, Sender as Forwarder, StatusHandle};
use crate::notify::Notifier;
use crate::pipeline::{Pipeline, Processed};
use crate::settings::{self, AgentSettings};
use crate::slack::outbox::Message;
use crate::status::{self, StatusFile};

/// Arguments of `edgealert run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub conf: crate::ConfArgs,
    /// State directory for checkpoints, status and local outputs (overrides agent.json).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Messages to the tail thread.
enum TailMessage {
    /// A file may have changed.
    Wake,
    /// The sinks accepted these positions.
    Ack(Vec<Position>),
}

/// State shared between the threads, the tasks and the status writer.
pub(crate) struct Shared {
    /// Agent settings the process started with; changes apply at the next start.
    pub(crate) settings: AgentSettings,
    config: RwLock<Arc<Config>>,
    config_generation: std::sync::atomic::AtomicU64,
    shutdown: AtomicBool,
    /// The same flag as `shutdown`, shareable with the forwarder task.
    shutdown_flag: Arc<AtomicBool>,
    /// Wakes the forwarder task at shutdown.
    shutdown_signal: Arc<tokio::sync::Notify>,
    status: Mutex<StatusFile>,
    /// Slack delivery, for the status report.
    pub(crate) notifier: Arc<Notifier>,
    /// Kinesis forwarding, for the status report.
    kinesis: Option<StatusHandle>,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(args: &Args) -> Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(service(args))
}

async fn service(args: &Args) -> Result<std::process::ExitCode> {
    let shutdown_signals = ShutdownSignals::install()?;
    let (config, settings) = settings::load_all(&args.conf.dir)
        .with_context(|| format!("cannot load configuration from {}", args.conf.dir.display()))?;
    for warning in &config.warnings {
        tracing::warn!(warning = %warning, "Configuration warning.");
    }
    let config = Arc::new(config);
    let state_dir = settings::state_dir(args.state_dir.as_deref(), &settings)?;
    create_private_dir(&state_dir)?;
    let host = crate::pipeline::local_host();

    let tailer =
        Tailer::open(tailer_config(&settings, &state_dir)).context("cannot start the tailer")?;
    let webhooks = crate::notify::load_webhooks(&config, &settings.slack).await?;
    let notifies = !webhooks.is_empty();
    let notifier = Arc::new(Notifier::start(&state_dir, webhooks, &settings.slack)?);
    let sinks = Sinks::open(&settings, &state_dir, Arc::clone(&notifier))?;
    let kinesis_status = settings.kinesis.as_ref().map(|_| StatusHandle::default());
    let shared = Arc::new(Shared {
        kinesis: kinesis_status.clone(),
        notifier: Arc::clone(&notifier),
        settings: settings.clone(),
        config: RwLock::new(Arc::clone(&config)),
        config_generation: Default::default(),
        shutdown: AtomicBool::new(false),
        shutdown_flag: Arc::new(AtomicBool::new(false)),
        shutdown_signal: Arc::new(tokio::sync::Notify::new()),
        status: Mutex::new(StatusFile {
            followed: settings.files.clone(),
            ..StatusFile::new(&config, &sinks.describe())
        }),
    });
    tracing::info!(
        conf = %args.conf.dir.display(),
        state_dir = %state_dir.display(),
        config_digest = %config.digest,
        files = settings.files.len(),
        "Agent started."
    );

    let (tail_tx, tail_rx) = std::sync::mpsc::channel::<TailMessage>();
    let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel::<Vec<TailEvent>>(4);
    let wake_tx = tail_tx.clone();
    let _watcher = tailer::Watcher::new(&settings.files, move || {
        let _ = wake_tx.send(TailMessage::Wake);
    })
    .context("cannot watch the log directories")?;

    let mut pipeline = Pipeline::new(config, settings.source(), host.clone());
    let (forward_tx, forwarder_task) = match (&settings.kinesis, kinesis_status) {
        (Some(kinesis), Some(status)) => {
            pipeline.set_key_field(kinesis.partition_key.field());
            let dead_letters = kinesis
                .dead_letter_dir
                .clone()
                .unwrap_or_else(|| state_dir.join("dead-letter"));
            let packer = Packer::new(kinesis, &host, notifies, dead_letters);
            let ack_tx = tail_tx.clone();
            let forwarder = Forwarder::new(
                kinesis.clone(),
                packer,
                state_dir.join("spool"),
                Box::new(move |positions| {
                    let _ = ack_tx.send(TailMessage::Ack(positions));
                }),
                status,
                Arc::clone(&shared.shutdown_flag),
                Arc::clone(&shared.shutdown_signal),
                Duration::from_millis(settings.shutdown_timeout_ms),
            )
            .await
            .context("cannot start Kinesis forwarding")?;
            let (tx, rx) = tokio::sync::mpsc::channel::<ForwardBatch>(4);
            tracing::info!(stream = %kinesis.stream, format = ?kinesis.format, "Forwarding records to Kinesis.");
            (Some(tx), Some(tokio::spawn(forwarder.run(rx))))
        }
        _ => (None, None),
    };
    let tail_thread = spawn_tail_thread(tailer, &settings, Arc::clone(&shared), tail_rx, batch_tx)?;
    let pipeline_thread = spawn_pipeline_thread(
        pipeline,
        sinks,
        Arc::clone(&shared),
        batch_rx,
        Delivery {
            acks: tail_tx.clone(),
            forward: forward_tx,
        },
    )?;

    let status_task = tokio::spawn(status::write_periodically(
        state_dir.clone(),
        Arc::clone(&shared),
    ));
    let digest_task = tokio::spawn(queue_digests_periodically(Arc::clone(&shared)));
    let reload_task = tokio::spawn(crate::reload::watch(
        args.conf.dir.clone(),
        Arc::clone(&shared),
    ));

    shutdown_signals.wait().await;
    tracing::info!("Shutdown requested; flushing sinks and writing the final checkpoint.");
    shared.shutdown.store(true, Ordering::SeqCst);
    shared.shutdown_flag.store(true, Ordering::SeqCst);
    shared.shutdown_signal.notify_one();
    let _ = tail_tx.send(TailMessage::Wake);
    drop(tail_tx);

    let joined =
        tokio::task::spawn_blocking(move || (tail_thread.join(), pipeline_thread.join())).await?;
    if let Some(task) = forwarder_task
        && task.await.is_err()
    {
        tracing::error!("The Kinesis forwarder stopped abnormally.");
    }
    reload_task.abort();
    digest_task.abort();
    status_task.abort();
    status::write_now(&state_dir, &shared);
    match joined {
        (Ok(Ok(())), Ok(())) => {
            tracing::info!("Agent stopped.");
            Ok(std::process::ExitCode::SUCCESS)
        }
        (Ok(Err(error)), _) => Err(error.context("the tail thread failed")),
        _ => anyhow::bail!("a worker thread panicked"),
    }
}

fn tailer_config(settings: &AgentSettings, state_dir: &Path) -> TailerConfig {
    let mut config = TailerConfig::new(settings.files.clone(), state_dir.join("checkpoints.json"));
    config.start_at = match settings.start_at {
        settings::StartAt::Beginning => tailer::StartAt::Beginning,
        settings::StartAt::End => tailer::StartAt::End,
    };
    config.max_line_bytes = usize::try_from(settings.max_line_bytes).unwrap_or(usize::MAX);
    config.max_unacked_bytes = usize::try_from(settings.max_unacked_bytes).unwrap_or(usize::MAX);
    // The pipeline recovers glued records from the lines it fails to parse.
    config.recover_glued_records = false;
    config
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create state directory {}", dir.display()))
}

/// SIGTERM and SIGINT handlers, installed before the agent reports that it started.
struct ShutdownSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<ShutdownSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

fn spawn_tail_thread(
    mut tailer: Tailer,
    settings: &AgentSettings,
    shared: Arc<Shared>,
    inbox: Receiver<TailMessage>,
    batches: std::sync::mpsc::SyncSender<Vec<TailEvent>>,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let stat_interval = Duration::from_millis(settings.stat_interval_ms);
    let checkpoint_interval = Duration::from_millis(settings.checkpoint_interval_ms);
    let shutdown_timeout = Duration::from_millis(settings.shutdown_timeout_ms);
    std::thread::Builder::new()
        .name("tail".into())
        .spawn(move || {
            let mut loop_state = TailLoop { checkpoint_failures: 0, last_checkpoint: Instant::now(), dirty: false, shutdown_deadline: None };
            let result = loop_state.run(&mut tailer, &shared, &inbox, &batches, stat_interval, checkpoint_interval, shutdown_timeout);
            if let Err(error) = tailer.write_checkpoint() {
                tracing::error!(error = %error, "Final checkpoint write failed; lines since the last checkpoint will be read again.");
            }
            update_file_status(&tailer, &shared);
            result
        })
        .context("cannot start the tail thread")
}

/// Prefix of the status error of a rejected reload.
pub(crate) const RELOAD_REJECTED: &str = "reload rejected: ";

/// Number of consecutive checkpoint failures between two error logs.
const CHECKPOINT_FAILURE_LOG_EVERY: u64 = 60;

struct TailLoop {
    checkpoint_failures: u64,
    last_checkpoint: Instant,
    dirty: bool,
    shutdown_deadline: Option<Instant>,
}

impl TailLoop {
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        tailer: &mut Tailer,
        shared: &Shared,
        inbox: &Receiver<TailMessage>,
        batches: &std::sync::mpsc::SyncSender<Vec<TailEvent>>,
        stat_interval: Duration,
        checkpoint_interval: Duration,
        shutdown_timeout: Duration,
    ) -> Result<()> {
        let mut pending_read = true;
        loop {
            // An idle agent wakes only for the safety-net check; acknowledged but not yet
            // checkpointed lines shorten the wait to the checkpoint interval.
            let timeout = if pending_read {
                Duration::ZERO
            } else if self.dirty {
                stat_interval.min(checkpoint_interval)
            } else {
                stat_interval
            };
            match inbox.recv_timeout(timeout) {
                Ok(message) => self.apply(tailer, message),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            while let Ok(message) = inbox.try_recv() {
                self.apply(tailer, message);
            }
            self.maybe_checkpoint(tailer, shared, checkpoint_interval);
            update_file_status(tailer, shared);

            if shared.shutdown.load(Ordering::SeqCst) {
                let deadline = *self
                    .shutdown_deadline
                    .get_or_insert_with(|| Instant::now() + shutdown_timeout);
                if tailer.unacked_bytes() == 0 {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        unacked_bytes = tailer.unacked_bytes(),
                        "Shutdown deadline passed with unacknowledged lines; they will be read again at start."
                    );
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let events = match tailer.poll() {
                Ok(events) => events,
                Err(error) => {
                    tracing::error!(error = %error, "Reading the log files failed; retrying.");
                    shared.record_error(format!("tailer: {error}"));
                    pending_read = false;
                    continue;
                }
            };
            pending_read = tailer.has_more();
            if !events.is_empty() && batches.send(events).is_err() {
                return Ok(());
            }
        }
    }

    fn apply(&mut self, tailer: &mut Tailer, message: TailMessage) {
        if let TailMessage::Ack(positions) = message {
            for position in &positions {
                tailer.ack(position);
            }
            self.dirty = true;
        }
    }

    fn maybe_checkpoint(&mut self, tailer: &mut Tailer, shared: &Shared, interval: Duration) {
        if !self.dirty || self.last_checkpoint.elapsed() < interval {
            return;
        }
        self.last_checkpoint = Instant::now();
        match tailer.write_checkpoint() {
            Ok(()) => {
                self.dirty = false;
                if self.checkpoint_failures > 0 {
                    tracing::info!(
                        failures = self.checkpoint_failures,
                        "Checkpoint writes succeed again."
                    );
                    self.checkpoint_failures = 0;
                }
            }
            Err(error) => {
                // Logged on the first failure and then every 60th, because a read-only or
                // full state directory fails on every interval.
                if self
                    .checkpoint_failures
                    .is_multiple_of(CHECKPOINT_FAILURE_LOG_EVERY)
                {
                    tracing::error!(error = %error, failures = self.checkpoint_failures + 1, "Checkpoint write failed; lines since the last checkpoint will be read again after a restart.");
                }
                self.checkpoint_failures += 1;
                shared.record_error(format!("checkpoint write failed: {error}"));
            }
        }
    }
}

fn update_file_status(tailer: &Tailer, shared: &Shared) {
    if let Ok(mut status) = shared.status.lock() {
        status.set_files(&tailer.status());
    }
}

fn spawn_pipeline_thread(
    mut pipeline: Pipeline,
    mut sinks: Sinks,
    shared: Arc<Shared>,
    batches: Receiver<Vec<TailEvent>>,
    delivery: Delivery,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let mut generation = 0u64;
            while let Ok(batch) = batches.recv() {
                let current = shared.config_generation.load(Ordering::SeqCst);
                if current != generation {
                    if let Ok(config) = shared.config.read() {
                        pipeline.set_config(Arc::clone(&config));
                    }
                    generation = current;
                }
                let processed = pipeline.process(batch);
                let messages =
                    sinks
                        .notifier
                        .prepare(pipeline.config(), &processed.alerts, unix_now());
                deliver(&mut sinks, processed, &messages, &delivery, &shared);
                if let Ok(mut status) = shared.status.lock() {
                    status.counters = pipeline.counters.clone();
                    status.config_digest = pipeline.config().digest.clone();
                }
            }
        })
        .context("cannot start the pipeline thread")
}

/// Where a processed batch goes after the local sinks.
struct Delivery {
    /// Acknowledgements to the tail thread.
    acks: Sender<TailMessage>,
    /// The Kinesis forwarder, which acknowledges once the records are accepted or spooled.
    forward: Option<tokio::sync::mpsc::Sender<ForwardBatch>>,
}

/// Writes a batch to the sinks, retrying until it succeeds, then hands it to the forwarder
/// or acknowledges it.
fn deliver(
    sinks: &mut Sinks,
    processed: Processed,
    messages: &[Message],
    delivery: &Delivery,
    shared: &Shared,
) {
    // The outbox commit and the local sinks retry separately, so a failing sink does not
    // queue messages again that Slack has already received.
    if !retry(shared, || sinks.notifier.commit(messages)) {
        return;
    }
    if !retry(shared, || sinks.write(&processed)) {
        return;
    }
    match &delivery.forward {
        Some(forward) => {
            let batch = ForwardBatch {
                records: processed.records,
                acks: processed.acks,
            };
            if forward.blocking_send(batch).is_err() {
                tracing::error!("The Kinesis forwarder is gone; the batch stays unacknowledged.");
            }
        }
        None => {
            let _ = delivery.acks.send(TailMessage::Ack(processed.acks));
        }
    }
}

/// Runs `write` until it succeeds, backing off up to 5 s; returns false when shutdown
/// interrupts the retries, in which case the batch stays unacknowledged.
fn retry(shared: &Shared, mut write: impl FnMut() -> Result<()>) -> bool {
    let mut delay = Duration::from_millis(100);
    loop {
        match write() {
            Ok(()) => return true,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "Writing to a local sink failed; holding the batch and retrying.");
                shared.record_error(format!("sink: {error:#}"));
                if shared.shutdown.load(Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Local JSON-lines outputs: alerts, and optionally every record.
struct Sinks {
    notifier: Arc<Notifier>,
    /// `file:<descriptor>` outputs with their open files.
    file_outputs: BTreeMap<String, (PathBuf, File)>,
    alerts_path: PathBuf,
    alerts: File,
    alerts_stdout: bool,
    records: Option<(PathBuf, File)>,
}

impl Sinks {
    fn open(settings: &AgentSettings, state_dir: &Path, notifier: Arc<Notifier>) -> Result<Sinks> {
        let alerts_path = settings
            .alerts
            .file
            .clone()
            .unwrap_or_else(|| state_dir.join("alerts.jsonl"));
        let alerts = append(&alerts_path)?;
        let records = match &settings.records_file {
            Some(path) => Some((path.clone(), append(path)?)),
            None => None,
        };
        let mut file_outputs = BTreeMap::new();
        for (descriptor, path) in &settings.file_outputs {
            let file = append(path)
                .with_context(|| format!("cannot open the file:{descriptor} output"))?;
            file_outputs.insert(descriptor.clone(), (path.clone(), file));
        }
        Ok(Sinks {
            notifier,
            file_outputs,
            alerts_path,
            alerts,
            alerts_stdout: settings.alerts.stdout,
            records,
        })
    }

    fn describe(&self) -> Vec<(String, String)> {
        let mut sinks = vec![("alerts".to_owned(), self.alerts_path.display().to_string())];
        for (descriptor, (path, _)) in &self.file_outputs {
            sinks.push((format!("file:{descriptor}"), path.display().to_string()));
        }
        if let Some((path, _)) = &self.records {
            sinks.push(("records".to_owned(), path.display().to_string()));
        }
        sinks
    }

    fn write(&mut self, processed: &Processed) -> Result<()> {
        if let (Some((path, file)), false) = (&mut self.records, processed.records.is_empty()) {
            let mut buffer = Vec::new();
            for record in &processed.records {
                buffer.extend_from_slice(&record.bytes);
                buffer.push(b'\n');
            }
            file.write_all(&buffer)
                .with_context(|| format!("cannot write {}", path.display()))?;
            file.sync_data()
                .with_context(|| format!("cannot sync {}", path.display()))?;
        }
        if processed.alerts.is_empty() {
            return Ok(());
        }
        self.write_file_outputs(&processed.alerts)?;
        let mut buffer = Vec::new();
        for alert in &processed.alerts {
            serde_json::to_writer(&mut buffer, alert)?;
            buffer.push(b'\n');
        }
        self.alerts
            .write_all(&buffer)
            .with_context(|| format!("cannot write {}", self.alerts_path.display()))?;
        self.alerts
            .sync_data()
            .with_context(|| format!("cannot sync {}", self.alerts_path.display()))?;
        if self.alerts_stdout {
            std::io::stdout().lock().write_all(&buffer)?;
        }
        for alert in &processed.alerts {
            tracing::info!(rule = %alert.rule, alert_id = %alert.alert_id, host = alert.host.as_deref().unwrap_or("-"), "Rule matched.");
        }
        Ok(())
    }
}

impl Sinks {
    /// Appends each alert to the `file:` outputs its rule names, skipping staged and
    /// central-only rules as notifications do.
    fn write_file_outputs(&mut self, alerts: &[rules_core::Alert]) -> Result<()> {
        if self.file_outputs.is_empty() {
            return Ok(());
        }
        let mut buffers: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
        for alert in alerts
            .iter()
            .filter(|alert| !alert.staged && alert.tier != rules_core::rule::Tier::Central)
        {
            for descriptor in alert
                .outputs
                .iter()
                .filter_map(|output| output.strip_prefix("file:"))
            {
                let buffer = buffers.entry(descriptor).or_default();
                serde_json::to_writer(&mut *buffer, alert)?;
                buffer.push(b'\n');
            }
        }
        for (descriptor, buffer) in buffers {
            let Some((path, file)) = self.file_outputs.get_mut(descriptor) else {
                continue;
            };
            file.write_all(&buffer)
                .with_context(|| format!("cannot write {}", path.display()))?;
            file.sync_data()
                .with_context(|| format!("cannot sync {}", path.display()))?;
        }
        Ok(())
    }
}

fn append(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {} for appending", path.display()))
}

impl Shared {
    /// Returns the active configuration's digest.
    pub(crate) fn digest(&self) -> String {
        self.config
            .read()
            .map(|config| config.digest.clone())
            .unwrap_or_default()
    }

    /// Swaps in a validated configuration; the pipeline uses it from its next batch.
    pub(crate) fn install(&self, config: Config) {
        if let Ok(mut active) = self.config.write() {
            *active = Arc::new(config);
            self.config_generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Records the last error for `edgealert status`.
    pub(crate) fn record_error(&self, error: String) {
        if let Ok(mut status) = self.status.lock() {
            status.last_error = Some(error);
        }
    }

    /// Clears a rejected-reload error once the configuration directory is valid again.
    pub(crate) fn clear_reload_error(&self) {
        let Ok(mut status) = self.status.lock() else {
            return;
        };
        let rejected = status
            .last_error
            .as_deref()
            .is_some_and(|error| error.starts_with(RELOAD_REJECTED));
        if rejected {
            status.last_error = None;
            tracing::info!("Configuration directory is valid again.");
        }
    }

    /// Returns the forwarder's state for the status file.
    pub(crate) fn kinesis_report(&self) -> Option<crate::kinesis::KinesisStatus> {
        let handle = self.kinesis.as_ref()?;
        let status = handle.lock().unwrap_or_else(|poison| poison.into_inner());
        Some(status.clone())
    }

    /// Returns a copy of the status for the status file.
    pub(crate) fn status_snapshot(&self) -> Option<StatusFile> {
        let kinesis = self.kinesis_report();
        self.status.lock().ok().map(|status| StatusFile {
            kinesis,
            ..status.clone()
        })
    }

    /// Runs `update` on the status.
    pub(crate) fn update_status(&self, update: impl FnOnce(&mut StatusFile)) {
        if let Ok(mut status) = self.status.lock() {
            update(&mut status);
        }
    }
}

/// Queues the digests of ended dedup windows once a second.
async fn queue_digests_periodically(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        interval.tick().await;
        let config = match shared.config.read() {
            Ok(config) => Arc::clone(&config),
            Err(_) => return,
        };
        if let Err(error) = shared.notifier.queue_digests(&config, unix_now()) {
            tracing::error!(error = %format!("{error:#}"), "Queuing dedup digests failed; their counts are lost.");
            shared.record_error(format!("digest: {error:#}"));
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|duration| duration.as_secs())
        .unwrap_or_default()
}
