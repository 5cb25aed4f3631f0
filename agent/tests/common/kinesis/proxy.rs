//! An HTTP/1.1 proxy on 127.0.0.1 in front of the Kinesis emulator that injects the faults
//! a producer meets on the real service: partial `PutRecords` failures, throttling, server
//! errors, slow responses, refused connections and requests that never get a response.
//!
//! Faults apply to the writes, `PutRecords` and `PutRecord`. Every other operation
//! (`CreateStream`, `ListShards`, `GetRecords` …) is forwarded unchanged in every mode
//! except [`Mode::Refuse`] and [`Mode::Hang`], so a test can set up and read back streams
//! through the proxy while it fails writes.
//!
//! When the proxy removes entries from a `PutRecords` body, the SigV4 signature of the
//! request no longer matches it. kinesalite 3.3.3 only checks that an `Authorization` header
//! with `Credential`, `Signature` and `SignedHeaders` is present, never the signature itself,
//! so the proxy forwards the original headers with a corrected `Content-Length`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufReader;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{self, Message};

/// What the proxy does with the requests it receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Forwards every request unchanged.
    Pass,
    /// Fails `fraction` of the entries of each `PutRecords` request, picked by
    /// [`failure_picks`]. The picked entries are removed from the request forwarded to the
    /// emulator, and failure entries take their places in the response. Their error codes
    /// alternate between `ProvisionedThroughputExceededException` and `InternalFailure`,
    /// starting with the first for an even seed. A request
    /// that the emulator rejects as a whole, such as one of 501 entries, and `PutRecord`
    /// are forwarded unchanged.
    PartialFailure { fraction: f64, seed: u64 },
    /// Responds to each write with 400 `ProvisionedThroughputExceededException`.
    Throttle,
    /// Responds to each write with this status and an `InternalFailure` body.
    ServerError(u16),
    /// Waits this long before forwarding each write. The write is forwarded even when the
    /// client has given up by then, as a slow service may still store the records.
    Delay(Duration),
    /// Closes the listener so that new connections are refused, and closes the open
    /// ones. [`FaultProxy::resume`] listens again on the same port.
    Refuse,
    /// Reads every request, whatever its operation, and never responds to it.
    Hang,
}

/// Counters of what the proxy has seen since it started.
#[derive(Debug, Clone, Default)]
pub struct ProxyStats {
    /// Requests by operation, the part of `X-Amz-Target` after the dot (`PutRecords`).
    pub requests: BTreeMap<String, u64>,
    /// `PutRecords` entries sent to the emulator.
    pub entries_forwarded: u64,
    /// `PutRecords` entries that the proxy failed with a failure entry in the response.
    pub entries_failed: u64,
    /// The indexes failed in each `PutRecords` request handled in
    /// [`Mode::PartialFailure`], in the order the requests arrived.
    pub failed_indexes: Vec<Vec<usize>>,
}

impl ProxyStats {
    /// Returns how many requests of `operation` arrived.
    pub fn requests(&self, operation: &str) -> u64 {
        self.requests.get(operation).copied().unwrap_or(0)
    }
}

/// Picks the entries that [`Mode::PartialFailure`] fails in a `PutRecords` request of
/// `count` entries: `fraction * count`, rounded to the nearest integer, distinct indexes in
/// ascending order. The picks depend only on the arguments, so a test can predict them.
pub fn failure_picks(count: usize, fraction: f64, seed: u64) -> Vec<usize> {
    assert!(
        (0.0..=1.0).contains(&fraction),
        "invalid failure fraction {fraction}: expected 0.0 to 1.0"
    );
    let picked = (count as f64 * fraction).round() as usize;
    let mut indexes: Vec<usize> = (0..count).collect();
    let mut random = SplitMix64(seed);
    // A partial Fisher-Yates shuffle: the first `picked` slots end up a uniform sample.
    for slot in 0..picked {
        let offset = random.next() % (count - slot) as u64;
        indexes.swap(slot, slot + offset as usize);
    }
    let mut picks = indexes[..picked].to_vec();
    picks.sort_unstable();
    picks
}

/// The SplitMix64 generator, written out so that the picks never change with a crate version.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

struct State {
    default_mode: Mode,
    /// Modes that each apply to a number of writes before `default_mode` applies again.
    script: VecDeque<(Mode, usize)>,
    stats: ProxyStats,
    /// Whether the listener should be open: false after `Mode::Refuse` and after drop.
    accepting: bool,
    /// Whether the listener is open. The accept thread updates it.
    listening: bool,
    bind_error: Option<String>,
    stopped: bool,
    /// Clones of the open client connections, so that refusing or stopping can close them.
    connections: HashMap<u64, TcpStream>,
    next_connection: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    upstream: SocketAddr,
    port: u16,
    responses: AtomicU64,
}

impl Shared {
    /// Locks the state. A thread that panicked while holding the lock leaves a consistent
    /// state, and ignoring the poison keeps `Drop` from panicking during a failed test.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `done` holds, for at most five seconds.
    fn wait_for(&self, what: &str, done: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut state = self.lock();
        while !done(&state) {
            if let Some(error) = &state.bind_error {
                panic!(
                    "fault proxy failed to listen again on 127.0.0.1:{}: {error}",
                    self.port
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "fault proxy timed out waiting to {what}");
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Closes the open client connections, which also ends their reads.
    fn close_connections(state: &mut State) {
        for connection in state.connections.values() {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }

    /// Wakes the accept thread, which is blocked in `accept`, by connecting to it.
    fn wake_listener(&self) {
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }

    /// Counts a request and returns the mode that applies to it. Writes take one step of
    /// the script; other operations only see whether the proxy hangs.
    fn mode_for(&self, operation: &str) -> Mode {
        let mut state = self.lock();
        *state
            .stats
            .requests
            .entry(operation.to_owned())
            .or_default() += 1;
        if !is_write(operation) {
            let current = state
                .script
                .front()
                .map_or(&state.default_mode, |step| &step.0);
            return if *current == Mode::Hang {
                Mode::Hang
            } else {
                Mode::Pass
            };
        }
        let Some((mode, remaining)) = state.script.front_mut() else {
            return state.default_mode.clone();
        };
        let mode = mode.clone();
        *remaining -= 1;
        if *remaining == 0 {
            state.script.pop_front();
        }
        mode
    }

    fn request_id(&self) -> String {
        let number = self.responses.fetch_add(1, Ordering::Relaxed);
        format!("edgealert-fault-proxy-{number}")
    }
}

/// Stops the proxy when the last clone of a [`FaultProxy`] is dropped.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.stopped = true;
        state.accepting = false;
        Shared::close_connections(&mut state);
        drop(state);
        self.0.changed.notify_all();
        self.0.wake_listener();
    }
}

/// The running proxy. Clones control the same proxy, which stops when the last is dropped.
#[derive(Clone)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    _guard: Arc<StopGuard>,
}

impl FaultProxy {
    /// Starts the proxy on a free port of 127.0.0.1 in [`Mode::Pass`], forwarding to
    /// `upstream`, an `http://127.0.0.1:<port>` endpoint such as [`super::Emulator::endpoint`].
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream = loopback_address(upstream);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = State {
            default_mode: Mode::Pass,
            script: VecDeque::new(),
            stats: ProxyStats::default(),
            accepting: true,
            listening: true,
            bind_error: None,
            stopped: false,
            connections: HashMap::new(),
            next_connection: 0,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
            upstream,
            port,
            responses: AtomicU64::new(0),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || accept_loop(&accepting, listener));
        FaultProxy {
            _guard: Arc::new(StopGuard(Arc::clone(&shared))),
            shared,
        }
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// Returns `http://127.0.0.1:<port>`, the endpoint URL to give the SDK.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.port)
    }

    /// Sets the mode that applies once the script, if any, has run out. [`Mode::Refuse`]
    /// closes the listener as [`FaultProxy::refuse`] does, and any other mode reopens it.
    pub fn set_mode(&self, mode: Mode) {
        if mode == Mode::Refuse {
            self.refuse();
            return;
        }
        validate(&mode);
        self.shared.lock().default_mode = mode;
        self.listen_again();
    }

    /// Appends steps to the script: each mode applies to its number of writes, in order,
    /// before the mode set by [`FaultProxy::set_mode`] applies again.
    ///
    /// # Panics
    ///
    /// On [`Mode::Refuse`], which concerns the listener rather than single requests.
    pub fn script(&self, steps: impl IntoIterator<Item = (Mode, usize)>) {
        let steps: Vec<(Mode, usize)> = steps.into_iter().filter(|step| step.1 > 0).collect();
        for (mode, _) in &steps {
            assert!(
                *mode != Mode::Refuse,
                "Mode::Refuse cannot be scripted per request: call refuse() and resume()"
            );
            validate(mode);
        }
        self.shared.lock().script.extend(steps);
    }

    /// Closes the listener and every open connection, and returns once new connections
    /// to the port are refused.
    pub fn refuse(&self) {
        let mut state = self.shared.lock();
        state.accepting = false;
        Shared::close_connections(&mut state);
        drop(state);
        self.shared.wake_listener();
        self.shared
            .wait_for("close its listener", |state| !state.listening);
    }

    /// Listens again on the same port in [`Mode::Pass`], and returns once it accepts.
    pub fn resume(&self) {
        self.set_mode(Mode::Pass);
    }

    /// Returns a copy of the counters.
    pub fn stats(&self) -> ProxyStats {
        self.shared.lock().stats.clone()
    }

    fn listen_again(&self) {
        self.shared.lock().accepting = true;
        self.shared.changed.notify_all();
        self.shared
            .wait_for("listen again", |state| state.listening);
    }
}

fn validate(mode: &Mode) {
    match mode {
        Mode::PartialFailure { fraction, .. } => assert!(
            (0.0..=1.0).contains(fraction),
            "invalid failure fraction {fraction}: expected 0.0 to 1.0"
        ),
        Mode::ServerError(status) => assert!(
            (500..600).contains(status),
            "invalid server error status {status}: expected 500 to 599"
        ),
        _ => {}
    }
}

/// Resolves `http://127.0.0.1:<port>` and checks that it is a loopback address, because
/// tests send traffic nowhere else.
fn loopback_address(endpoint: &str) -> SocketAddr {
    let authority = endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("invalid upstream endpoint {endpoint:?}: expected http://"))
        .trim_end_matches('/');
    let address = authority
        .to_socket_addrs()
        .unwrap_or_else(|error| panic!("invalid upstream endpoint {endpoint:?}: {error}"))
        .next()
        .unwrap_or_else(|| panic!("upstream endpoint {endpoint:?} resolves to no address"));
    assert!(
        address.ip().is_loopback(),
        "upstream endpoint {endpoint:?} is not a loopback address"
    );
    address
}

fn is_write(operation: &str) -> bool {
    operation == "PutRecords" || operation == "PutRecord"
}

/// Accepts connections until the proxy stops, closing the listener while it refuses.
fn accept_loop(shared: &Arc<Shared>, mut listener: TcpListener) {
    loop {
        for connection in listener.incoming() {
            let mut state = shared.lock();
            if !state.accepting {
                break;
            }
            let Ok(connection) = connection else {
                continue;
            };
            let Ok(clone) = connection.try_clone() else {
                continue;
            };
            let id = state.next_connection;
            state.next_connection += 1;
            state.connections.insert(id, clone);
            drop(state);
            let serving = Arc::clone(shared);
            std::thread::spawn(move || serve(&serving, connection, id));
        }
        drop(listener);

        let mut state = shared.lock();
        state.listening = false;
        shared.changed.notify_all();
        while !state.accepting && !state.stopped {
            state = shared.wait(state);
        }
        if state.stopped {
            return;
        }
        drop(state);

        listener = match bind_again(shared.port) {
            Ok(listener) => listener,
            Err(error) => {
                shared.lock().bind_error = Some(error.to_string());
                shared.changed.notify_all();
                return;
            }
        };
        shared.lock().listening = true;
        shared.changed.notify_all();
    }
}

/// Binds the port again. std sets SO_REUSEADDR on Unix, so connections of the old listener
/// in TIME_WAIT do not block it; another process that took the port meanwhile does.
fn bind_again(port: u16) -> std::io::Result<TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(("127.0.0.1", port)) {
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// Serves one client connection: reads requests one after another and responds to each
/// as the mode in force sets.
fn serve(shared: &Shared, connection: TcpStream, id: u64) {
    let mut upstream = Upstream::new(shared.upstream);
    let mut writer = connection;
    let _ = writer.set_nodelay(true);
    if let Ok(reader) = writer.try_clone() {
        let mut reader = BufReader::new(reader);
        while let Ok(Some(request)) = http::read_message(&mut reader) {
            if !shared.lock().accepting {
                break;
            }
            let operation = operation(&request);
            let mode = shared.mode_for(&operation);
            let Some(response) = respond(shared, &mut upstream, &request, &operation, mode) else {
                break;
            };
            if response.write_to(&mut writer).is_err() || request.closes_connection() {
                break;
            }
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
    shared.lock().connections.remove(&id);
}

/// Returns the operation named by `X-Amz-Target: Kinesis_20131202.<Operation>`.
fn operation(request: &Message) -> String {
    let target = request.header("x-amz-target").unwrap_or("");
    let name = target.split_once('.').map_or(target, |(_, name)| name);
    if name.is_empty() {
        "(no X-Amz-Target)".to_owned()
    } else {
        name.to_owned()
    }
}

/// Builds the response to one request, or returns `None` to close the connection without
/// one.
fn respond(
    shared: &Shared,
    upstream: &mut Upstream,
    request: &Message,
    operation: &str,
    mode: Mode,
) -> Option<Message> {
    let response = match mode {
        Mode::Hang => {
            let mut state = shared.lock();
            while !state.stopped {
                state = shared.wait(state);
            }
            return None;
        }
        // Refuse never reaches here: set_mode() turns it into closing the listener.
        Mode::Refuse => return None,
        Mode::Pass => forward(shared, upstream, request, operation),
        Mode::Delay(delay) => {
            std::thread::sleep(delay);
            forward(shared, upstream, request, operation)
        }
        Mode::Throttle => Message::json_response(
            400,
            &shared.request_id(),
            &json!({
                "__type": "ProvisionedThroughputExceededException",
                "message": "Rate exceeded",
            }),
        )
        .with_error_type("ProvisionedThroughputExceededException"),
        Mode::ServerError(status) => Message::json_response(
            status,
            &shared.request_id(),
            &json!({"__type": "InternalFailure", "message": "Internal service failure."}),
        )
        .with_error_type("InternalFailure"),
        Mode::PartialFailure { fraction, seed } if operation == "PutRecords" => {
            partial_failure(shared, upstream, request, fraction, seed)
        }
        Mode::PartialFailure { .. } => forward(shared, upstream, request, operation),
    };
    Some(response)
}

/// Forwards `request` unchanged, counting the entries of a `PutRecords` request.
fn forward(
    shared: &Shared,
    upstream: &mut Upstream,
    request: &Message,
    operation: &str,
) -> Message {
    if operation == "PutRecords" {
        let entries = serde_json::from_slice::<Value>(&request.body)
            .ok()
            .and_then(|body| body["Records"].as_array().map(Vec::len))
            .unwrap_or(0);
        shared.lock().stats.entries_forwarded += entries as u64;
    }
    upstream.send(shared, request)
}

/// Responds to a `PutRecords` request in [`Mode::PartialFailure`]: forwards the entries that
/// are not picked, and splices failure entries for the picked ones into the response at
/// their original indexes.
fn partial_failure(
    shared: &Shared,
    upstream: &mut Upstream,
    request: &Message,
    fraction: f64,
    seed: u64,
) -> Message {
    let Ok(mut body) = serde_json::from_slice::<Value>(&request.body) else {
        return forward(shared, upstream, request, "PutRecords");
    };
    let Some(entries) = body["Records"].as_array().cloned() else {
        return forward(shared, upstream, request, "PutRecords");
    };
    // The emulator rejects an invalid request as a whole, as the service does. Removing
    // entries could make it valid, so such a request goes to the emulator unchanged.
    if !is_valid_put_records(&entries, request.body.len()) {
        return forward(shared, upstream, request, "PutRecords");
    }
    let stream = body["StreamName"]
        .as_str()
        .or_else(|| body["StreamARN"].as_str())
        .unwrap_or("")
        .to_owned();
    let picks = failure_picks(entries.len(), fraction, seed);
    let mut picked = vec![false; entries.len()];
    for index in &picks {
        picked[*index] = true;
    }
    let failures: Vec<Value> = (0..picks.len())
        .map(|order| failure_entry(seed.wrapping_add(order as u64), &stream))
        .collect();

    let upstream_results = if picks.len() == entries.len() {
        // Every entry fails, so the emulator is not contacted at all.
        Vec::new()
    } else {
        let forwarded_entries: Vec<Value> = entries
            .iter()
            .zip(&picked)
            .filter(|(_, picked)| !**picked)
            .map(|(entry, _)| entry.clone())
            .collect();
        let forwarded_count = forwarded_entries.len();
        body["Records"] = Value::Array(forwarded_entries);
        let forwarded = Message {
            body: body.to_string().into_bytes(),
            ..request.clone()
        };
        shared.lock().stats.entries_forwarded += forwarded_count as u64;
        let response = upstream.send(shared, &forwarded);
        match upstream_result(&response, forwarded_count) {
            Ok(result) => result,
            Err(()) => return response,
        }
    };

    let mut failed_count = 0;
    let mut upstream_results = upstream_results.into_iter();
    let mut failures = failures.into_iter();
    let records: Vec<Value> = picked
        .iter()
        .map(|picked| {
            let entry = if *picked {
                failures.next()
            } else {
                upstream_results.next()
            };
            entry.unwrap_or(Value::Null)
        })
        .collect();
    for record in &records {
        failed_count += u64::from(record.get("ErrorCode").is_some());
    }

    let mut state = shared.lock();
    state.stats.entries_failed += picks.len() as u64;
    state.stats.failed_indexes.push(picks);
    drop(state);
    Message::json_response(
        200,
        &shared.request_id(),
        &json!({"FailedRecordCount": failed_count, "Records": records}),
    )
}

/// Checks the limits that kinesalite 3.3.3 enforces on a `PutRecords` request: 1 to 500
/// entries, partition keys of 1 to 256 characters, data of at most 1 MiB, and a body of at
/// most 7 MiB.
fn is_valid_put_records(entries: &[Value], body_bytes: usize) -> bool {
    let entry_valid = |entry: &Value| {
        let key_chars = entry["PartitionKey"]
            .as_str()
            .map(|key| key.chars().count());
        let data_bytes = entry["Data"].as_str().map(base64_decoded_len);
        matches!(key_chars, Some(1..=256)) && data_bytes.is_some_and(|bytes| bytes <= 1 << 20)
    };
    (1..=500).contains(&entries.len()) && body_bytes <= 7 << 20 && entries.iter().all(entry_valid)
}

/// Returns the number of bytes that padded base64 `text` decodes to.
fn base64_decoded_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|byte| *byte == b'=').count();
    (text.len() / 4 * 3).saturating_sub(padding)
}

/// Returns the result entries of a successful upstream `PutRecords` response with
/// `expected` entries, or `Err` for any other response, which goes to the client as is.
fn upstream_result(response: &Message, expected: usize) -> Result<Vec<Value>, ()> {
    if response.status() != Some(200) {
        return Err(());
    }
    let body: Value = serde_json::from_slice(&response.body).map_err(|_| ())?;
    let entries = body["Records"].as_array().ok_or(())?;
    if entries.len() != expected {
        return Err(());
    }
    Ok(entries.clone())
}

/// Builds the result entry of a failed record; `alternation` picks the error code.
fn failure_entry(alternation: u64, stream: &str) -> Value {
    if alternation.is_multiple_of(2) {
        // NOTE: the shard is always the first one; the proxy does not hash partition keys.
        json!({
            "ErrorCode": "ProvisionedThroughputExceededException",
            "ErrorMessage": format!(
                "Rate exceeded for shard shardId-000000000000 in stream {stream} \
                 under account 000000000000."
            ),
        })
    } else {
        json!({"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service failure."})
    }
}

/// One keep-alive connection to the emulator per client connection.
struct Upstream {
    address: SocketAddr,
    connection: Option<BufReader<TcpStream>>,
}

impl Upstream {
    fn new(address: SocketAddr) -> Upstream {
        Upstream {
            address,
            connection: None,
        }
    }

    /// Sends `request` and returns the response, or a 502 response when the emulator cannot
    /// be reached.
    fn send(&mut self, shared: &Shared, request: &Message) -> Message {
        let reused = self.connection.is_some();
        let mut result = self.try_send(request);
        // Node closes idle keep-alive connections after 5 s. A request that meets such a
        // closed connection got no byte of response, so sending it again is safe.
        if reused && matches!(result, Ok(None) | Err(_)) {
            self.connection = None;
            result = self.try_send(request);
        }
        match result {
            Ok(Some(response)) => {
                if response.closes_connection() {
                    self.connection = None;
                }
                response
            }
            Ok(None) | Err(_) => {
                self.connection = None;
                let error = match result {
                    Err(error) => error.to_string(),
                    _ => "connection closed without a response".to_owned(),
                };
                Message::json_response(
                    502,
                    &shared.request_id(),
                    &json!({
                        "__type": "InternalFailure",
                        "message": format!("fault proxy: emulator at {} failed: {error}", self.address),
                    }),
                )
            }
        }
    }

    fn try_send(&mut self, request: &Message) -> std::io::Result<Option<Message>> {
        if self.connection.is_none() {
            let connection = TcpStream::connect(self.address)?;
            connection.set_nodelay(true)?;
            self.connection = Some(BufReader::new(connection));
        }
        let reader = self.connection.as_mut().unwrap();
        request.write_to(reader.get_mut())?;
        http::read_message(reader)
    }
}
