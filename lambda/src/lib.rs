//! The central edgealert Lambda: the same rules as the agents, over the Kinesis stream.
//!
//! The `bootstrap` binary loads the bundled configuration directory at cold start and fails
//! the init phase when it is invalid. Each invocation decodes a batch of Kinesis records
//! (packed, compat, or osquery's own `aws_kinesis` logger), classifies and evaluates every
//! line with `rules-core`, writes one audit log line per alert, and posts to Slack the alerts
//! that no agent notified. `docs/lambda.md` describes deployment and operation.

pub mod handler;
pub mod logging;
pub mod notify;
pub mod records;
pub mod runtime_api;
pub mod secrets;
pub mod settings;

pub use handler::{BatchResponse, Handler, Report};
