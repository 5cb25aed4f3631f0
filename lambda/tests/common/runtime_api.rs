//! A local Lambda Runtime API on 127.0.0.1, for running the real `bootstrap` binary.
//!
//! It implements the four endpoints a custom runtime uses:
//!
//! - `GET /2018-06-01/runtime/invocation/next` blocks until the test queues an event, then
//!   returns it with the `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms` and
//!   `Lambda-Runtime-Invoked-Function-Arn` headers;
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `.../{id}/error` record the
//!   result of an invocation;
//! - `POST /2018-06-01/runtime/init/error` records a failed cold start.
//!
//! Every response closes the connection, so each request arrives on a new one.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The function ARN sent with every invocation.
pub const FUNCTION_ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:edgealert";

/// The result of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// `POST .../response` with its body.
    Response(serde_json::Value),
    /// `POST .../error` with its body and `Lambda-Runtime-Function-Error-Type` header.
    Error {
        /// The body.
        body: serde_json::Value,
        /// The error type header.
        error_type: Option<String>,
    },
}

/// A posted init error.
#[derive(Debug, Clone)]
pub struct InitError {
    /// The body.
    pub body: serde_json::Value,
    /// The `Lambda-Runtime-Function-Error-Type` header.
    pub error_type: Option<String>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, Vec<u8>, u64)>,
    results: BTreeMap<String, Invocation>,
    init_error: Option<InitError>,
    first_next_at: Option<Instant>,
    next_calls: usize,
}

/// The running server; it stops when the test process ends.
#[derive(Clone)]
pub struct RuntimeApi {
    /// `127.0.0.1:<port>`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl RuntimeApi {
    /// Starts the server on a free port.
    pub fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || handle(stream, &shared));
            }
        });
        RuntimeApi { address, state }
    }

    /// Queues an invocation whose deadline is `timeout` from now; returns its request id.
    pub fn invoke(&self, event: &[u8], timeout: Duration) -> String {
        let (lock, condvar) = &*self.state;
        let mut state = lock.lock().unwrap();
        let request_id = format!(
            "8476a536-e9f4-11e8-9739-{:012}",
            state.queue.len() + state.results.len()
        );
        let deadline_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + timeout.as_millis() as u64;
        state
            .queue
            .push_back((request_id.clone(), event.to_vec(), deadline_ms));
        condvar.notify_all();
        request_id
    }

    /// Waits up to `timeout` for the result of `request_id`.
    pub fn result(&self, request_id: &str, timeout: Duration) -> Option<Invocation> {
        self.wait(timeout, |state| state.results.get(request_id).cloned())
    }

    /// Waits up to `timeout` for an init error.
    pub fn init_error(&self, timeout: Duration) -> Option<InitError> {
        self.wait(timeout, |state| state.init_error.clone())
    }

    /// Waits up to `timeout` for the first `next` request and returns when it arrived.
    pub fn first_next(&self, timeout: Duration) -> Option<Instant> {
        self.wait(timeout, |state| state.first_next_at)
    }

    fn wait<T>(&self, timeout: Duration, mut found: impl FnMut(&State) -> Option<T>) -> Option<T> {
        let (lock, condvar) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut state = lock.lock().unwrap();
        loop {
            if let Some(value) = found(&state) {
                return Some(value);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = condvar.wait_timeout(state, left).unwrap().0;
        }
    }
}

struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header == "\r\n" || header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0usize);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn handle(stream: TcpStream, shared: &(Mutex<State>, Condvar)) {
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    let mut stream = reader.into_inner();
    let (lock, condvar) = shared;
    const PREFIX: &str = "/2018-06-01/runtime/";
    let Some(route) = request.path.strip_prefix(PREFIX) else {
        respond(&mut stream, 404, &[], b"{}");
        return;
    };
    let parse = |body: &[u8]| serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let error_type = request
        .headers
        .get("lambda-runtime-function-error-type")
        .cloned();
    if request.method == "GET" && route == "invocation/next" {
        let mut state = lock.lock().unwrap();
        state.next_calls += 1;
        state.first_next_at.get_or_insert_with(Instant::now);
        condvar.notify_all();
        let (request_id, event, deadline_ms) = loop {
            if let Some(next) = state.queue.pop_front() {
                break next;
            }
            state = condvar.wait(state).unwrap();
        };
        drop(state);
        let headers = [
            ("Lambda-Runtime-Aws-Request-Id", request_id),
            ("Lambda-Runtime-Deadline-Ms", deadline_ms.to_string()),
            (
                "Lambda-Runtime-Invoked-Function-Arn",
                FUNCTION_ARN.to_owned(),
            ),
            (
                "Lambda-Runtime-Trace-Id",
                "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
                    .to_owned(),
            ),
        ];
        respond(&mut stream, 200, &headers, &event);
    } else if request.method == "POST" && route == "init/error" {
        let mut state = lock.lock().unwrap();
        state.init_error = Some(InitError {
            body: parse(&request.body),
            error_type,
        });
        condvar.notify_all();
        drop(state);
        respond(&mut stream, 202, &[], br#"{"status":"OK"}"#);
    } else if let Some(rest) = route
        .strip_prefix("invocation/")
        .filter(|_| request.method == "POST")
    {
        let result = if let Some(id) = rest.strip_suffix("/response") {
            Some((id, Invocation::Response(parse(&request.body))))
        } else {
            rest.strip_suffix("/error").map(|id| {
                (
                    id,
                    Invocation::Error {
                        body: parse(&request.body),
                        error_type,
                    },
                )
            })
        };
        match result {
            Some((id, invocation)) => {
                let mut state = lock.lock().unwrap();
                state.results.insert(id.to_owned(), invocation);
                condvar.notify_all();
                drop(state);
                respond(&mut stream, 202, &[], br#"{"status":"OK"}"#);
            }
            None => respond(&mut stream, 404, &[], b"{}"),
        }
    } else {
        respond(&mut stream, 404, &[], b"{}");
    }
}

fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// Path of the `bootstrap` under test: `EDGEALERT_LAMBDA_BOOTSTRAP` (the deployment build
/// of `scripts/build-lambda`) or the binary cargo built for these tests.
pub fn bootstrap_path() -> PathBuf {
    std::env::var_os("EDGEALERT_LAMBDA_BOOTSTRAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_bootstrap")))
}

/// A running `bootstrap` process with its output collected in files.
pub struct Bootstrap {
    child: Child,
    /// File with the process's stdout.
    pub stdout: tempfile::NamedTempFile,
    /// File with the process's stderr.
    pub stderr: tempfile::NamedTempFile,
    /// When the process was spawned.
    pub spawned_at: Instant,
}

impl Bootstrap {
    /// Starts the binary against `api` with the Lambda environment plus `env`.
    pub fn start(api: &RuntimeApi, env: &[(&str, String)]) -> Bootstrap {
        let stdout = tempfile::NamedTempFile::new().unwrap();
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new(bootstrap_path());
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &api.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "edgealert")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/edgealert")
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/12/04/[$LATEST]0123456789abcdef",
            )
            .env("AWS_REGION", "eu-west-1")
            .env("LAMBDA_TASK_ROOT", "/nonexistent-task-root")
            .stdin(Stdio::null())
            .stdout(stdout.reopen().unwrap())
            .stderr(stderr.reopen().unwrap());
        for (name, value) in env {
            command.env(name, value);
        }
        let spawned_at = Instant::now();
        let child = command.spawn().unwrap();
        Bootstrap {
            child,
            stdout,
            stderr,
            spawned_at,
        }
    }

    /// Waits up to `timeout` for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Returns everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        let stdout = std::fs::read_to_string(self.stdout.path()).unwrap();
        let stderr = std::fs::read_to_string(self.stderr.path()).unwrap();
        format!("{stdout}{stderr}")
    }

    /// Returns the JSON log lines of stdout.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.stdout.path())
            .unwrap()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
