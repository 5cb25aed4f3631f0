//! The detection core shared by the edgealert agent and the central Lambda.
//!
//! Both link this crate so that a record gets the same verdict on the host and in the cloud.
//! It has no async runtime and no network code. The data flow through it is:
//!
//! 1. [`config::Config::load`] reads a configuration directory (log schemas, sources,
//!    outputs, rules) and validates all of it, or returns every error with its file and
//!    JSON path.
//! 2. [`config::Config::classify`] parses a raw log line and matches it against the log
//!    schemas its source may carry.
//! 3. [`config::Classified::events`] explodes osquery batch and snapshot records into one
//!    event per row.
//! 4. [`rule::RuleSet::evaluate`] runs the rules indexed for the event's log type and query
//!    name and returns an [`alert::Alert`] with a deterministic id for every match.
//!
//! ```
//! use rules_core::config::{Config, Source};
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf");
//! let config = Config::load(std::path::Path::new(dir)).expect("the shipped configuration loads");
//! let line = br#"{"name":"pack_detection_listening_processes","hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":1741943561,"epoch":0,"counter":1,"numerics":false,"columns":{"name":"nc","path":"/usr/bin/nc.openbsd","cmdline":"nc -lvnp 4444","pid":"48213","uid":"1000","address":"0.0.0.0","port":"4444","protocol":"6","family":"2"},"action":"added"}"#;
//! let classified = config.classify(&Source::new("file", "osquery"), line).unwrap();
//! assert_eq!(classified.log_type(), "osquery:differential");
//! let alerts: Vec<_> = classified.events().iter().flat_map(|event| config.rules.evaluate(event)).collect();
//! assert!(alerts.iter().any(|alert| alert.rule == "netcat_listener"));
//! ```

pub mod alert;
pub mod condition;
pub mod config;
pub mod dedup;
pub mod error;
pub mod glob;
pub mod jsonschema;
pub mod kinesis;
pub mod record;
pub mod rule;
pub mod schema;
pub mod slack;
pub mod testing;

pub use alert::Alert;
pub use config::{Classified, ClassifyError, Config, Source};
pub use error::{ConfigError, ConfigErrors};
pub use record::{Event, Record};
pub use rule::{Rule, RuleSet};
