//! The forwarder task: batching, PutRecords, retries, spooling and in-order acks.
//!
//! One PutRecords call is in flight at a time, so records of a partition key reach the
//! stream in order except when an entry that failed inside a response is retried after
//! entries that succeeded. Only failed entries are retried, never the whole request.
//!
//! The queue of records is logically the spool (oldest) followed by memory (newest). The
//! sender always takes from the front; spilling moves the front of memory to the back of
//! the spool, which keeps the order.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::operation::put_records::{PutRecordsError, PutRecordsOutput};
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_smithy_types::Blob;
use rules_core::kinesis::{MAX_REQUEST_BYTES, MAX_REQUEST_RECORDS};
use tailer::Position;
use tokio::sync::mpsc;

use super::packer::{KRecord, Packer};
use super::spool::{Spool, SpoolPos};
use super::{KinesisSettings, KinesisStatus};
use crate::pipeline::OutRecord;

/// A processed batch handed to the forwarder.
#[derive(Debug)]
pub struct ForwardBatch {
    /// Records to forward, in order.
    pub records: Vec<OutRecord>,
    /// Tail positions to acknowledge once every record is accepted or spooled.
    pub acks: Vec<Position>,
}

/// Callback that acknowledges positions to the tailer.
pub type AckFn = Box<dyn Fn(Vec<Position>) + Send>;

/// Shared view of the forwarder for the status report.
pub type StatusHandle = Arc<Mutex<KinesisStatus>>;

/// Bytes a spool frame adds to a record's key and data, with margin.
const SPOOL_FRAME_EXTRA: usize = 16;

/// Error codes that an administrator must fix; retrying soon does not help.
const CONFIG_ERRORS: &[&str] = &[
    "ResourceNotFoundException",
    "AccessDeniedException",
    "AccessDeniedExceptionException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "ValidationException",
    "InvalidArgumentException",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSNotFoundException",
    "KMSInvalidStateException",
    "KMSOptInRequired",
];

/// Error codes that mean "slow down".
const THROTTLE_ERRORS: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "KMSThrottlingException",
];

/// Source of the records of the call in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    Memory,
    Spool,
}

/// A record read from the spool and not yet accepted.
struct WindowItem {
    key: String,
    entries: u32,
    data: Vec<u8>,
    next: SpoolPos,
    accepted: bool,
}

struct BatchState {
    seq: u64,
    outstanding: u64,
    acks: Vec<Position>,
}

type CallResult = Result<PutRecordsOutput, aws_sdk_kinesis::error::SdkError<PutRecordsError>>;

/// The PutRecords call in flight: where its records came from, how many, and the call.
type Inflight = (
    From,
    usize,
    std::pin::Pin<Box<dyn Future<Output = CallResult> + Send>>,
);

/// The forwarder.
pub struct Sender {
    client: aws_sdk_kinesis::Client,
    stream: String,
    settings: KinesisSettings,
    packer: Packer,
    memory: VecDeque<KRecord>,
    memory_bytes: usize,
    spool: Spool,
    window: VecDeque<WindowItem>,
    batches: VecDeque<BatchState>,
    next_seq: u64,
    ack: AckFn,
    status: StatusHandle,
    shutdown: Arc<AtomicBool>,
    attempt: u32,
    budget_bytes: usize,
    retry_at: Option<Instant>,
    failing_since: Option<Instant>,
    last_logged_error: Option<String>,
    spool_failing: bool,
    spill_retry_at: Option<Instant>,
    shutdown_signal: Arc<tokio::sync::Notify>,
    shutdown_timeout: Duration,
}

impl Sender {
    /// Creates the forwarder; `spool_dir` is the spool directory.
    #[allow(clippy::too_many_arguments)]
    pub async fn new(
        settings: KinesisSettings,
        packer: Packer,
        spool_dir: PathBuf,
        ack: AckFn,
        status: StatusHandle,
        shutdown: Arc<AtomicBool>,
        shutdown_signal: Arc<tokio::sync::Notify>,
        shutdown_timeout: Duration,
    ) -> anyhow::Result<Sender> {
        let sdk = crate::aws::load(settings.region.as_deref(), settings.endpoint.as_deref()).await;
        let config = aws_sdk_kinesis::config::Builder::from(&sdk)
            .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_kinesis::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_millis(settings.request_timeout_ms))
                    .build(),
            )
            .build();
        let client = aws_sdk_kinesis::Client::from_conf(config);
        let spool = Spool::open(&spool_dir, settings.spool_max_bytes)?;
        if !spool.is_empty() {
            tracing::info!(
                records = spool.records(),
                bytes = spool.bytes(),
                "Spool holds records from an earlier run; sending them first."
            );
        }
        {
            let mut status = status.lock().unwrap_or_else(|poison| poison.into_inner());
            status.stream = settings.stream.clone();
            status.format = format!("{:?}", settings.format).to_lowercase();
        }
        Ok(Sender {
            client,
            stream: settings.stream.clone(),
            packer,
            memory: VecDeque::new(),
            memory_bytes: 0,
            spool,
            window: VecDeque::new(),
            batches: VecDeque::new(),
            next_seq: 0,
            ack,
            status,
            shutdown,
            attempt: 0,
            budget_bytes: MAX_REQUEST_BYTES,
            retry_at: None,
            failing_since: None,
            last_logged_error: None,
            spool_failing: false,
            spill_retry_at: None,
            shutdown_signal,
            shutdown_timeout,
            settings,
        })
    }

    /// Runs until the batch channel closes and every record is accepted or spooled.
    pub async fn run(mut self, mut batches: mpsc::Receiver<ForwardBatch>) {
        let mut closed = false;
        let mut inflight: Option<Inflight> = None;
        let mut shutdown_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if self.shutdown.load(Ordering::SeqCst) && shutdown_at.is_none() {
                shutdown_at = Some(now);
            }
            // At shutdown no new call starts and everything not in flight moves to the spool,
            // so the tailer's final checkpoint can cover it. A call in flight may return
            // until nine tenths of the timeout; then it is abandoned and its records are
            // spooled too, at the risk of a duplicate should it still succeed. At the full
            // timeout the forwarder stops, whatever is left.
            let elapsed = shutdown_at.map(|at| now.duration_since(at));
            let spill_now = elapsed.is_some();
            let abandon_now =
                elapsed.is_some_and(|elapsed| elapsed >= self.shutdown_timeout * 9 / 10);
            let stop_now = elapsed.is_some_and(|elapsed| elapsed >= self.shutdown_timeout);

            let mut ready = Vec::new();
            if closed || shutdown_at.is_some() {
                self.packer.flush_all(&mut ready);
            } else {
                self.packer.flush_due(now, &mut ready);
            }
            self.enqueue(ready);
            if abandon_now && inflight.take().is_some() {
                tracing::warn!(
                    "Shutdown abandoned a PutRecords call that did not return in time; its records go to the spool and may reach the stream twice."
                );
            }
            match &inflight {
                None => self.maybe_spill(spill_now, 0),
                // Records of the call in flight stay in memory until it returns, because
                // the call may still succeed; spooling them could deliver them twice.
                Some((From::Memory, count, _)) if spill_now => self.maybe_spill(true, *count),
                Some(_) if spill_now => self.maybe_spill(true, 0),
                Some(_) => {}
            }
            self.release_acks();
            self.publish_status();

            if closed
                && inflight.is_none()
                && self.memory.is_empty()
                && self.packer.next_due().is_none()
            {
                break;
            }
            if stop_now {
                if !self.memory.is_empty() {
                    tracing::warn!(
                        records = self.memory.len(),
                        "Shutdown timeout passed with records neither sent nor spooled; their lines will be read again at start."
                    );
                }
                break;
            }

            if inflight.is_none() && !spill_now && self.retry_at.is_none_or(|at| at <= now) {
                inflight = self.start_call();
            }

            let paused = self.paused();
            let mut wake = self.next_wake(now, inflight.is_some());
            if let Some(at) = shutdown_at {
                let next = if !abandon_now {
                    at + self.shutdown_timeout * 9 / 10
                } else {
                    at + self.shutdown_timeout
                };
                wake = wake.min(next.max(now));
            }
            tokio::select! {
                batch = batches.recv(), if !closed && !paused => match batch {
                    Some(batch) => self.accept(batch),
                    None => closed = true,
                },
                result = async { inflight.as_mut().expect("guarded by the branch condition").2.as_mut().await }, if inflight.is_some() => {
                    let (from, count, _) = inflight.take().expect("guarded by the branch condition");
                    self.finish_call(from, count, result);
                }
                () = tokio::time::sleep_until(wake.into()) => {}
                () = self.shutdown_signal.notified(), if shutdown_at.is_none() => {}
            }
        }
        self.publish_status();
    }

    /// True when memory is full and the spool cannot take the oldest record in memory,
    /// because it is at its byte cap or its last write failed (a full disk, say). No new
    /// batch is accepted then, and the tailer stops reading.
    fn paused(&self) -> bool {
        self.memory_bytes >= self.buffer_limit()
            && (self.spool_failing
                || self
                    .memory
                    .front()
                    .is_some_and(|record| !self.spool.has_room(record.size() + SPOOL_FRAME_EXTRA)))
    }

    fn buffer_limit(&self) -> usize {
        usize::try_from(self.settings.max_buffer_bytes).unwrap_or(usize::MAX)
    }

    fn next_wake(&self, now: Instant, inflight: bool) -> Instant {
        // An idle forwarder wakes rarely; a new batch or the shutdown signal wakes it
        // sooner. Work in memory or the spool is retried at least every 100 ms.
        let idle = self.memory.is_empty() && self.spool.is_empty() && self.window.is_empty();
        let mut wake = now + Duration::from_millis(if idle { 5_000 } else { 100 });
        if let Some(due) = self.packer.next_due() {
            wake = wake.min(due);
        }
        if !inflight && let Some(at) = self.retry_at {
            wake = wake.min(at.max(now));
        }
        wake
    }

    fn accept(&mut self, batch: ForwardBatch) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.batches.push_back(BatchState {
            seq,
            outstanding: 0,
            acks: batch.acks,
        });
        self.packer.start_batch();
        let mut ready = Vec::new();
        for record in batch.records {
            self.packer.add(seq, record, &mut ready);
        }
        self.enqueue(ready);
        self.release_acks();
    }

    fn enqueue(&mut self, records: Vec<KRecord>) {
        for record in records {
            for seq in record.first_batch..=record.last_batch {
                if let Some(batch) = self.batch_mut(seq) {
                    batch.outstanding += 1;
                }
            }
            self.memory_bytes += record.size();
            self.memory.push_back(record);
        }
    }

    fn batch_mut(&mut self, seq: u64) -> Option<&mut BatchState> {
        let front = self.batches.front()?.seq;
        let index = usize::try_from(seq.checked_sub(front)?).ok()?;
        self.batches.get_mut(index)
    }

    /// Marks a record's batches as one record closer to done.
    fn settle(&mut self, record: &KRecord) {
        for seq in record.first_batch..=record.last_batch {
            if let Some(batch) = self.batch_mut(seq) {
                batch.outstanding = batch.outstanding.saturating_sub(1);
            }
        }
    }

    fn release_acks(&mut self) {
        let lowest_open = self.packer.lowest_open_batch();
        while let Some(front) = self.batches.front() {
            let sealed = lowest_open.is_none_or(|low| low > front.seq);
            if front.outstanding > 0 || !sealed {
                break;
            }
            if let Some(batch) = self.batches.pop_front()
                && !batch.acks.is_empty()
            {
                (self.ack)(batch.acks);
            }
        }
    }

    /// Moves records from memory to the spool when memory is over its limit, when Kinesis
    /// has failed for longer than `spool_after_ms`, or at shutdown.
    /// The first `skip` records in memory, those of a call in flight, stay in memory.
    fn maybe_spill(&mut self, force: bool, skip: usize) {
        if self.memory.len() <= skip {
            return;
        }
        let failing_long = self.failing_since.is_some_and(|since| {
            since.elapsed() >= Duration::from_millis(self.settings.spool_after_ms)
        });
        if !(force || failing_long || self.memory_bytes > self.buffer_limit()) {
            return;
        }
        if !force && self.spill_retry_at.is_some_and(|at| at > Instant::now()) {
            return;
        }
        let mut moved = Vec::new();
        let mut payload = 0;
        for record in self.memory.iter().skip(skip) {
            if !self
                .spool
                .has_room(payload + record.size() + SPOOL_FRAME_EXTRA)
            {
                break;
            }
            payload += record.size() + SPOOL_FRAME_EXTRA;
            moved.push(record);
        }
        if moved.is_empty() {
            return;
        }
        let count = moved.len();
        let result = self.spool.append(
            moved
                .iter()
                .map(|record| (record.key.as_str(), record.entries, record.data.as_slice())),
        );
        match result {
            Ok(()) => {
                self.spool_failing = false;
                self.spill_retry_at = None;
                tracing::info!(
                    records = count,
                    spool_records = self.spool.records(),
                    spool_bytes = self.spool.bytes(),
                    "Moved records to the on-disk spool while Kinesis is unavailable."
                );
                for record in self.memory.drain(skip..skip + count).collect::<Vec<_>>() {
                    self.memory_bytes -= record.size();
                    self.settle(&record);
                }
            }
            Err(error) => {
                self.spool_failing = true;
                self.spill_retry_at = Some(Instant::now() + Duration::from_secs(1));
                self.note_error(format!("spool write failed: {error}"), false);
            }
        }
    }

    fn start_call(&mut self) -> Option<Inflight> {
        let budget = self.budget_bytes;
        let mut entries = Vec::new();
        let from;
        if !self.spool.is_empty() || !self.window.is_empty() {
            from = From::Spool;
            if self.window.is_empty() {
                match self.spool.read(MAX_REQUEST_RECORDS, budget) {
                    Ok(read) => self
                        .window
                        .extend(read.into_iter().map(|record| WindowItem {
                            key: record.key,
                            entries: record.entries,
                            data: record.data,
                            next: record.next,
                            accepted: false,
                        })),
                    Err(error) => {
                        self.note_error(format!("spool read failed: {error}"), false);
                        self.retry_at = Some(Instant::now() + Duration::from_secs(1));
                        return None;
                    }
                }
            }
            let mut bytes = 0;
            for item in self.window.iter().filter(|item| !item.accepted) {
                let size = item.key.len() + item.data.len();
                if !entries.is_empty()
                    && (bytes + size > budget || entries.len() >= MAX_REQUEST_RECORDS)
                {
                    break;
                }
                bytes += size;
                entries.push(entry(&item.key, &item.data));
            }
        } else {
            from = From::Memory;
            let mut bytes = 0;
            for record in &self.memory {
                if !entries.is_empty()
                    && (bytes + record.size() > budget || entries.len() >= MAX_REQUEST_RECORDS)
                {
                    break;
                }
                bytes += record.size();
                entries.push(entry(&record.key, &record.data));
            }
        }
        if entries.is_empty() {
            return None;
        }
        let count = entries.len();
        let mut request = self.client.put_records().set_records(Some(entries));
        request = if self.stream.starts_with("arn:") {
            request.stream_arn(&self.stream)
        } else {
            request.stream_name(&self.stream)
        };
        self.with_status(|status| status.requests += 1);
        Some((from, count, Box::pin(request.send())))
    }

    fn finish_call(&mut self, from: From, count: usize, result: CallResult) {
        match result {
            Ok(output) => {
                let results = output.records();
                let mut accepted = vec![false; count];
                let mut throttled = 0u64;
                let mut failed = 0u64;
                let mut codes: std::collections::BTreeMap<&str, u64> = Default::default();
                for (index, slot) in accepted.iter_mut().enumerate() {
                    match results.get(index) {
                        Some(result) if result.error_code().is_none() => *slot = true,
                        Some(result) => {
                            failed += 1;
                            let code = result.error_code().unwrap_or("unknown");
                            *codes.entry(code).or_default() += 1;
                            if THROTTLE_ERRORS.contains(&code) {
                                throttled += 1;
                            }
                        }
                        // A response shorter than the request leaves the rest unconfirmed.
                        None => failed += 1,
                    }
                }
                let (records, entries, bytes, units) = match from {
                    From::Memory => self.take_accepted_memory(&accepted),
                    From::Spool => self.take_accepted_window(&accepted),
                };
                self.with_status(|status| {
                    status.records_sent += records;
                    status.entries_sent += entries;
                    status.bytes_sent += bytes;
                    status.payload_units += units;
                    status.entries_retried += failed;
                    status.throttled += throttled;
                    status.last_success_unix_ms = Some(unix_ms());
                });
                let short = results.len() < count;
                let summary: Vec<String> = codes
                    .iter()
                    .map(|(code, count)| format!("{code} ×{count}"))
                    .collect();
                if records == 0 {
                    // Nothing got through: for spooling and the status, this call failed.
                    self.failing_since.get_or_insert_with(Instant::now);
                    let message = if short {
                        format!(
                            "the response lists {} results for {count} records; all are sent again",
                            results.len()
                        )
                    } else {
                        format!("every entry of the call failed: {}", summary.join(", "))
                    };
                    self.note_error(message, false);
                } else {
                    self.failing_since = None;
                }
                if failed == 0 {
                    self.attempt = 0;
                    self.retry_at = None;
                    self.budget_bytes = (self.budget_bytes + self.budget_bytes / 4 + 64 * 1024)
                        .min(MAX_REQUEST_BYTES);
                    if self.last_logged_error.take().is_some() {
                        tracing::info!(stream = %self.stream, "Kinesis accepts records again.");
                        self.with_status(|status| {
                            status.last_error = None;
                            status.config_error = false;
                        });
                    }
                } else {
                    if throttled > 0 {
                        self.budget_bytes = (self.budget_bytes / 2).max(1);
                    }
                    self.attempt = self.attempt.saturating_add(1);
                    self.retry_at = Some(Instant::now() + self.backoff());
                }
            }
            Err(error) => {
                let (code, message) = describe(&error);
                let throttle = code
                    .as_deref()
                    .is_some_and(|code| THROTTLE_ERRORS.contains(&code));
                let config = code
                    .as_deref()
                    .is_some_and(|code| CONFIG_ERRORS.contains(&code));
                if throttle {
                    self.budget_bytes = (self.budget_bytes / 2).max(1);
                    self.with_status(|status| status.throttled += 1);
                } else {
                    self.with_status(|status| status.request_errors += 1);
                }
                self.failing_since.get_or_insert_with(Instant::now);
                self.attempt = self.attempt.saturating_add(1);
                let delay = if config {
                    Duration::from_millis(self.settings.max_backoff_ms)
                } else {
                    self.backoff()
                };
                self.retry_at = Some(Instant::now() + delay);
                self.note_error(message, config);
                if from == From::Spool {
                    // The window stays; nothing to rewind.
                }
            }
        }
    }

    fn take_accepted_memory(&mut self, accepted: &[bool]) -> (u64, u64, u64, u64) {
        let mut kept = VecDeque::with_capacity(self.memory.len());
        let (mut records, mut entries, mut bytes, mut units) = (0, 0, 0, 0);
        for (index, record) in std::mem::take(&mut self.memory).into_iter().enumerate() {
            if accepted.get(index).copied().unwrap_or(false) {
                records += 1;
                entries += u64::from(record.entries);
                bytes += record.size() as u64;
                units += payload_units(record.size());
                self.memory_bytes -= record.size();
                self.settle(&record);
            } else {
                kept.push_back(record);
            }
        }
        self.memory = kept;
        (records, entries, bytes, units)
    }

    fn take_accepted_window(&mut self, accepted: &[bool]) -> (u64, u64, u64, u64) {
        let (mut records, mut entries, mut bytes, mut units) = (0, 0, 0, 0);
        let mut results = accepted.iter();
        for item in self.window.iter_mut().filter(|item| !item.accepted) {
            match results.next() {
                Some(true) => {
                    item.accepted = true;
                    records += 1;
                    entries += u64::from(item.entries);
                    bytes += (item.key.len() + item.data.len()) as u64;
                    units += payload_units(item.key.len() + item.data.len());
                }
                Some(false) => {}
                None => break,
            }
        }
        let mut committed = None;
        let mut count = 0;
        while self.window.front().is_some_and(|item| item.accepted) {
            if let Some(item) = self.window.pop_front() {
                committed = Some(item.next);
                count += 1;
            }
        }
        if let Some(next) = committed
            && let Err(error) = self.spool.commit(next, count)
        {
            self.note_error(format!("spool head write failed: {error}"), false);
        }
        (records, entries, bytes, units)
    }

    fn backoff(&self) -> Duration {
        let cap = self.settings.max_backoff_ms.max(1);
        let exp = 100u64.saturating_mul(1u64 << self.attempt.min(16));
        Duration::from_millis(fastrand::u64(0..=exp.min(cap)))
    }

    fn note_error(&mut self, message: String, config: bool) {
        if self.last_logged_error.as_deref() != Some(message.as_str()) {
            if config {
                tracing::error!(stream = %self.stream, error = %message, "Kinesis refused the records for a reason an administrator must fix; retrying slowly and spooling meanwhile.");
            } else {
                tracing::warn!(stream = %self.stream, error = %message, "Forwarding to Kinesis failed; retrying with backoff.");
            }
            self.last_logged_error = Some(message.clone());
        }
        self.with_status(|status| {
            status.last_error = Some(message);
            status.config_error = config;
        });
    }

    fn with_status(&self, update: impl FnOnce(&mut KinesisStatus)) {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        update(&mut status);
    }

    fn publish_status(&self) {
        let paused = self.paused();
        let counters = self.packer.counters;
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if paused && !status.paused {
            tracing::warn!(
                spool_bytes = self.spool.bytes(),
                "The spool is full; reading pauses until Kinesis accepts records again."
            );
        }
        status.paused = paused;
        status.buffered_records = self.memory.len() as u64;
        status.buffered_bytes = self.memory_bytes as u64;
        status.spool_records = self.spool.records();
        status.spool_bytes = self.spool.bytes();
        status.spool_torn_frames = self.spool.torn_frames;
        status.spool_damaged_bytes = self.spool.damaged_bytes;
        status.lines_split = counters.lines_split;
        status.dead_lettered = counters.dead_lettered;
        status.dead_letter_failures = counters.dead_letter_failures;
    }
}

/// PUT payload units of a record of `size` bytes: 25 KiB each, rounded up.
fn payload_units(size: usize) -> u64 {
    (size as u64).div_ceil(25 * 1024).max(1)
}

fn entry(key: &str, data: &[u8]) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .partition_key(key)
        .data(Blob::new(data.to_vec()))
        .build()
        .expect("key and data are always set")
}

/// Returns the error code, if the service sent one, and a one-line description without
/// credentials or signatures.
fn describe(error: &aws_sdk_kinesis::error::SdkError<PutRecordsError>) -> (Option<String>, String) {
    use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_owned);
            let message = service.err().message().unwrap_or("no message");
            let status = service.raw().status().as_u16();
            (
                code.clone(),
                format!(
                    "{} (HTTP {status}): {message}",
                    code.as_deref().unwrap_or("unknown error")
                ),
            )
        }
        SdkError::TimeoutError(_) => (None, "the call timed out".to_owned()),
        SdkError::DispatchFailure(failure) => {
            let kind = if failure.is_io() {
                "network error"
            } else if failure.is_timeout() {
                "connect timeout"
            } else if failure.is_user() {
                "request could not be built"
            } else {
                "dispatch failure"
            };
            let detail = std::error::Error::source(error)
                .map(|source| source.to_string())
                .unwrap_or_default();
            (None, format!("{kind}: {detail}"))
        }
        SdkError::ResponseError(_) => (None, "the response could not be read".to_owned()),
        SdkError::ConstructionFailure(_) => {
            let detail = std::error::Error::source(error)
                .map(|source| source.to_string())
                .unwrap_or_default();
            (None, format!("the request could not be built: {detail}"))
        }
        _ => (None, "unknown SDK error".to_owned()),
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}
