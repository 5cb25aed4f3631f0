//! Alert deduplication and digests: whether a rule match notifies now, is suppressed as a
//! repeat, or is summarised later.
//!
//! The agent and the Lambda share this state machine, so it does no I/O, reads no clock and
//! has no async code. Every method that depends on time takes `now` in seconds since the Unix
//! epoch, and the caller persists a [`DedupState`] with serde between runs.
//!
//! # Decisions
//!
//! [`DedupState::observe`] checks, in this order:
//!
//! 1. An alert of a staged rule is [`Decision::Staged`]. It never notifies, is not counted
//!    and leaves the state unchanged, so its alert id is not remembered either.
//! 2. An alert id already seen within the replay window is [`Decision::Duplicate`]: a retry
//!    or a second delivery of a record that was already decided. It is not counted. The
//!    replay window ([`DedupLimits::replay_window_seconds`], default
//!    [`DEFAULT_REPLAY_WINDOW_SECONDS`]) runs from the first time the id was seen. After it,
//!    a repeat of the id counts as a new alert, also when the key's dedup window is longer.
//! 3. Without dedup settings, every other alert is [`Decision::Notify`].
//! 4. With dedup settings, alerts are grouped by [`Alert::dedup_key`] in fixed windows. The
//!    first alert of a key opens a window of `window_seconds` that starts at that alert's
//!    time and does not slide. The first `threshold` alerts in the window are
//!    [`Decision::Notify`]. Later ones are [`Decision::Suppressed`], whose `count` is the
//!    number suppressed in this window so far, this alert included. The first alert at or
//!    after the window's end opens a new window. A window keeps the settings it was opened
//!    with, so a changed `window_seconds` or `threshold` applies from the key's next window.
//!
//! A churn pair (osquery re-logging a process as `removed` and `added` because a volatile
//! column changed) gets new alert ids, and so does a counter-0 re-dump (osqueryd restarting
//! with a fresh database and logging every row as `added`). The reason is that the id covers
//! `counter`, `unixTime` and every column. Only the dedup key recognises these rows. They are
//! suppressed while the key's window is open if the rule's dedup keys identify the row, such
//! as host, pid and port for `netcat_listener`. Without dedup settings they notify again.
//!
//! # Digests
//!
//! A window covers `[start, start + window_seconds)`, widened by the clock tolerance below.
//! [`DedupState::due_digests`] closes every window that has ended and returns one [`Digest`]
//! for each closed window that suppressed at least one alert, sorted by `first_seen` and then
//! `dedup_key`. Windows that suppressed nothing are dropped silently. A window closed by
//! [`DedupState::observe`] (the key's next alert arrives at or after the end), by
//! [`DedupState::prune`] or by eviction keeps its digest in the state until the next
//! `due_digests` call. So every suppressed alert is in exactly one digest, unless more than
//! [`DedupLimits::max_windows`] digests wait at once (see below).
//!
//! # Clock changes
//!
//! A window counts alerts dated from [`CLOCK_SKEW_TOLERANCE_SECONDS`] before its start up to
//! its end, so a small NTP step causes no extra notification. An alert dated earlier (the
//! clock was set back further) closes the window, keeping its digest, and opens a new one at
//! the new time. The key then notifies again, up to `threshold` times, and is suppressed no
//! longer than the new window lasts. `due_digests` and `prune` close such windows too. An
//! alert id stays a duplicate when the clock moves back. `prune` re-dates ids dated more than
//! the tolerance after `now` to `now`, so they expire one replay window later on the new
//! clock. A clock set forward ends windows and replay windows early. All time arithmetic
//! saturates, so no value of `now` panics.
//!
//! # Memory bounds
//!
//! [`DedupState::prune`] drops alert ids whose replay window has passed and closes ended
//! windows. Call it, and `due_digests`, periodically (for example every minute). Hard caps
//! hold between calls:
//!
//! - Remembering a new alert id when [`DedupLimits::max_alert_ids`] are stored evicts the
//!   oldest one, by first-seen time. An evicted id that arrives again is no longer a
//!   duplicate: it notifies without dedup settings, and is counted in its key's window with
//!   them. [`DedupState::evicted_alert_ids`] counts the evicted ids that were still inside
//!   their replay window.
//! - Opening a window when [`DedupLimits::max_windows`] are open evicts the one with the
//!   oldest start. Its digest, if it suppressed anything, is returned early by the next
//!   `due_digests` call, and the key's next alert opens a new window and notifies.
//!   [`DedupState::evicted_windows`] counts the evicted windows that had not ended yet.
//! - At most `max_windows` closed digests wait for `due_digests`. Beyond that the one with
//!   the oldest `first_seen` is dropped and counted in [`DedupState::dropped_digests`].
//!
//! # Persistence
//!
//! A [`DedupState`] serializes as format version [`STATE_FORMAT_VERSION`]:
//!
//! ```json
//! {"version": 1,
//!  "limits": {"replay_window_seconds": 86400, "max_alert_ids": 50000, "max_windows": 10000},
//!  "evicted_alert_ids": 0, "evicted_windows": 0, "dropped_digests": 0,
//!  "alert_ids": [["821f3ef2bfce7529b71692688e071a34", 1741947131]],
//!  "windows": {"netcat_listener|web-07|48213|4444": {"rule": "netcat_listener", "host": "web-07",
//!    "start": 1741947131, "window_seconds": 86400, "threshold": 1, "notified": 1,
//!    "suppressed": 0, "first_seen": 1741947131, "last_seen": 1741947131}},
//!  "ready": []}
//! ```
//!
//! `alert_ids` lists `[fingerprint, first seen]` pairs, oldest first. The fingerprint of an
//! id of 32 lowercase hex digits (every id [`Alert::new`] builds) is the id itself. Any other
//! id is stored as the first 128 bits of its SHA-256. `ready` lists the digests waiting for
//! `due_digests`. Deserializing a document of another version fails with
//! [`DedupStateError::UnsupportedVersion`].
//!
//! # Example
//!
//! ```
//! use rules_core::config::{Config, Source};
//! use rules_core::dedup::{Decision, DedupState};
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf");
//! let config = Config::load(std::path::Path::new(dir)).expect("the shipped configuration loads");
//! let source = Source::new("file", "osquery");
//! let listening = |unix_time: u64, counter: u64| {
//!     format!(r#"{{"name":"pack_detection_listening_processes","hostIdentifier":"web-07","calendarTime":"","unixTime":{unix_time},"epoch":0,"counter":{counter},"numerics":false,"columns":{{"name":"nc","path":"/usr/bin/nc.openbsd","cmdline":"nc -lvnp 4444","pid":"48213","uid":"1000","address":"0.0.0.0","port":"4444","protocol":"6","family":"2"}},"action":"added"}}"#)
//! };
//! let alert_of = |line: String| {
//!     let classified = config.classify(&source, line.as_bytes()).unwrap();
//!     let event = classified.events()[0];
//!     config.rules.evaluate(&event).remove(0)
//! };
//! let first = alert_of(listening(1741943561, 1));
//! // osqueryd restarts with a fresh database and logs the same listener again, as counter 0.
//! let redump = alert_of(listening(1741947161, 0));
//! assert_ne!(first.alert_id, redump.alert_id);
//! assert_eq!(first.dedup_key, redump.dedup_key);
//!
//! let settings = config.rules.get(&first.rule).unwrap().spec.dedup.clone();
//! let mut state = DedupState::default();
//! assert_eq!(state.observe(&first, settings.as_ref(), 1741943562), Decision::Notify);
//! assert_eq!(state.observe(&first, settings.as_ref(), 1741943600), Decision::Duplicate);
//! let decision = state.observe(&redump, settings.as_ref(), 1741947162);
//! assert_eq!(decision, Decision::Suppressed { count: 1 });
//!
//! // The rule's window is 86400 seconds from the first alert.
//! assert!(state.due_digests(1741943562 + 86399).is_empty());
//! let digests = state.due_digests(1741943562 + 86400);
//! assert_eq!(digests.len(), 1);
//! assert_eq!(digests[0].count, 1);
//! assert_eq!(digests[0].last_seen, 1741947162);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::alert::Alert;
use crate::rule::DedupSettings;

/// Format version written by [`DedupState`]'s `Serialize` and the only one it reads.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// Default time an alert id is remembered, in seconds: 24 hours.
pub const DEFAULT_REPLAY_WINDOW_SECONDS: u64 = 86_400;

/// Default cap on remembered alert ids.
///
/// Each id takes an estimated 100 bytes of memory: a 32-byte entry in a hash map and another
/// in an ordered set, plus table and tree overhead. That is about 5 MB at the cap.
pub const DEFAULT_MAX_ALERT_IDS: usize = 50_000;

/// Default cap on open windows, and separately on digests waiting for
/// [`DedupState::due_digests`].
pub const DEFAULT_MAX_WINDOWS: usize = 10_000;

/// Margin, in seconds, by which an alert may be dated before its key's window start and still
/// count as inside the window. It keeps a small clock correction from notifying again.
pub const CLOCK_SKEW_TOLERANCE_SECONDS: u64 = 300;

/// Outcome of [`DedupState::observe`] for one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the alert now.
    Notify,
    /// Do not send the alert. It is counted in its key's window and reported in that
    /// window's digest.
    Suppressed {
        /// Alerts suppressed in the key's current window so far, this one included.
        count: u64,
    },
    /// Do not send the alert: its alert id was seen within the replay window. Not counted.
    Duplicate,
    /// Do not send the alert: its rule is staged. Not counted.
    Staged,
}

impl Decision {
    /// Returns true when the alert should be sent now.
    pub fn notifies(self) -> bool {
        self == Decision::Notify
    }
}

/// Summary of the alerts suppressed in one window of one dedup key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Rule name.
    pub rule: String,
    /// Host of the window's first alert. Alerts of other hosts share the window when the
    /// rule's dedup keys leave out `hostIdentifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Dedup key of the window.
    pub dedup_key: String,
    /// Number of suppressed alerts.
    pub count: u64,
    /// Length of the window, in seconds.
    pub window_seconds: u64,
    /// Time of the window's earliest alert, notified or suppressed, in seconds since the
    /// Unix epoch.
    pub first_seen: u64,
    /// Time of the window's latest alert, in seconds since the Unix epoch.
    pub last_seen: u64,
}

/// Replay window and memory caps of a [`DedupState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupLimits {
    /// How long an alert id is remembered after it was first seen, in seconds.
    pub replay_window_seconds: u64,
    /// Maximum number of remembered alert ids. A value of 0 is raised to 1.
    pub max_alert_ids: usize,
    /// Maximum number of open windows, and separately of digests waiting for
    /// [`DedupState::due_digests`]. A value of 0 is raised to 1.
    pub max_windows: usize,
}

impl Default for DedupLimits {
    fn default() -> Self {
        DedupLimits {
            replay_window_seconds: DEFAULT_REPLAY_WINDOW_SECONDS,
            max_alert_ids: DEFAULT_MAX_ALERT_IDS,
            max_windows: DEFAULT_MAX_WINDOWS,
        }
    }
}

impl DedupLimits {
    fn clamped(self) -> Self {
        DedupLimits {
            max_alert_ids: self.max_alert_ids.max(1),
            max_windows: self.max_windows.max(1),
            ..self
        }
    }
}

/// Error from deserializing a [`DedupState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DedupStateError {
    /// The document has a format version this build does not read.
    #[error(
        "unsupported dedup state version {found}: this build reads version {expected}; \
         delete the saved state to start with an empty one",
        expected = STATE_FORMAT_VERSION
    )]
    UnsupportedVersion {
        /// Version found in the document.
        found: u64,
    },
    /// An entry of `alert_ids` is not 32 hex digits.
    #[error("invalid alert id fingerprint {value:?} in dedup state: expected 32 hex digits")]
    InvalidFingerprint {
        /// The invalid entry.
        value: String,
    },
    /// An entry of `alert_ids` appears twice.
    #[error("alert id fingerprint {value} appears twice in dedup state")]
    DuplicateFingerprint {
        /// The repeated entry.
        value: String,
    },
}

/// Grouping state of one dedup key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Window {
    rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    /// Time of the alert that opened the window. The window ends `window_seconds` later.
    start: u64,
    window_seconds: u64,
    threshold: u32,
    notified: u32,
    suppressed: u64,
    first_seen: u64,
    last_seen: u64,
}

impl Window {
    fn end(&self) -> u64 {
        self.start.saturating_add(self.window_seconds)
    }

    fn contains(&self, now: u64) -> bool {
        now < self.end() && now.saturating_add(CLOCK_SKEW_TOLERANCE_SECONDS) >= self.start
    }

    /// Counts one alert at `now` in this window.
    fn record(&mut self, now: u64) -> Decision {
        self.first_seen = self.first_seen.min(now);
        self.last_seen = self.last_seen.max(now);
        if self.notified < self.threshold {
            self.notified += 1;
            Decision::Notify
        } else {
            self.suppressed += 1;
            Decision::Suppressed {
                count: self.suppressed,
            }
        }
    }

    fn into_digest(self, dedup_key: String) -> Digest {
        Digest {
            rule: self.rule,
            host: self.host,
            dedup_key,
            count: self.suppressed,
            window_seconds: self.window_seconds,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
        }
    }
}

/// Remembered alert ids, open dedup windows and digests waiting for
/// [`DedupState::due_digests`]. The [module documentation](self) describes its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupState {
    limits: DedupLimits,
    /// First-seen time of each remembered alert id, by fingerprint.
    alert_ids: HashMap<u128, u64>,
    /// The same entries as `alert_ids`, ordered oldest first for pruning and eviction.
    alert_ids_by_time: BTreeSet<(u64, u128)>,
    /// Open windows by dedup key. A BTreeMap, so that closing order is deterministic.
    windows: BTreeMap<String, Window>,
    /// `(start, dedup key)` of every open window, ordered for eviction.
    windows_by_start: BTreeSet<(u64, String)>,
    /// Digests of closed windows, waiting for `due_digests`.
    ready: Vec<Digest>,
    /// Alert ids evicted by the `max_alert_ids` cap before their replay window ended.
    pub evicted_alert_ids: u64,
    /// Windows evicted by the `max_windows` cap before they ended.
    pub evicted_windows: u64,
    /// Digests dropped because more than `max_windows` were waiting for `due_digests`.
    pub dropped_digests: u64,
}

impl Default for DedupState {
    fn default() -> Self {
        DedupState::new(DedupLimits::default())
    }
}

impl DedupState {
    /// Creates an empty state with `limits`.
    pub fn new(limits: DedupLimits) -> Self {
        DedupState {
            limits: limits.clamped(),
            alert_ids: HashMap::new(),
            alert_ids_by_time: BTreeSet::new(),
            windows: BTreeMap::new(),
            windows_by_start: BTreeSet::new(),
            ready: Vec::new(),
            evicted_alert_ids: 0,
            evicted_windows: 0,
            dropped_digests: 0,
        }
    }

    /// Returns the limits in effect.
    pub fn limits(&self) -> DedupLimits {
        self.limits
    }

    /// Replaces the limits, evicting the oldest ids, windows and waiting digests at once if
    /// the new caps are lower than the current counts. Evictions here are all counted.
    pub fn set_limits(&mut self, limits: DedupLimits) {
        self.limits = limits.clamped();
        self.enforce_caps();
    }

    /// Returns the number of remembered alert ids.
    pub fn alert_id_count(&self) -> usize {
        self.alert_ids.len()
    }

    /// Returns the number of open windows.
    pub fn window_count(&self) -> usize {
        self.windows.len()
    }

    /// Returns the number of digests waiting for [`DedupState::due_digests`].
    pub fn waiting_digest_count(&self) -> usize {
        self.ready.len()
    }

    /// Decides whether `alert` notifies at `now` (seconds since the Unix epoch) and records
    /// it. `settings` are the dedup settings of the alert's rule, if it has any.
    pub fn observe(
        &mut self,
        alert: &Alert,
        settings: Option<&DedupSettings>,
        now: u64,
    ) -> Decision {
        if alert.staged {
            return Decision::Staged;
        }
        let fingerprint = fingerprint(&alert.alert_id);
        if self.is_remembered(fingerprint, now) {
            return Decision::Duplicate;
        }
        self.remember(fingerprint, now);
        match settings {
            None => Decision::Notify,
            Some(settings) => self.count_in_window(alert, settings, now),
        }
    }

    /// Closes every window that ended by `now` and returns the digests of the closed windows
    /// that suppressed alerts, with those closed earlier by `observe`, `prune` or eviction.
    ///
    /// The digests are sorted by `first_seen`, then `dedup_key`, `last_seen` and `count`.
    /// Each is returned once. The key's next alert opens a new window.
    pub fn due_digests(&mut self, now: u64) -> Vec<Digest> {
        self.close_ended_windows(now);
        let mut digests = std::mem::take(&mut self.ready);
        digests.sort_by(|a, b| {
            (a.first_seen, &a.dedup_key, a.last_seen, a.count).cmp(&(
                b.first_seen,
                &b.dedup_key,
                b.last_seen,
                b.count,
            ))
        });
        digests
    }

    /// Forgets alert ids whose replay window has passed at `now` and closes ended windows,
    /// keeping their digests for the next [`DedupState::due_digests`] call.
    ///
    /// Ids dated more than [`CLOCK_SKEW_TOLERANCE_SECONDS`] after `now` (the clock was set
    /// back) are re-dated to `now`.
    pub fn prune(&mut self, now: u64) {
        self.close_ended_windows(now);

        let replay = self.limits.replay_window_seconds;
        while let Some(&(seen, fingerprint)) = self.alert_ids_by_time.first() {
            if now < seen.saturating_add(replay) {
                break;
            }
            self.alert_ids_by_time.pop_first();
            self.alert_ids.remove(&fingerprint);
        }

        let future_start = (
            now.saturating_add(CLOCK_SKEW_TOLERANCE_SECONDS)
                .saturating_add(1),
            0,
        );
        let future: Vec<(u64, u128)> = self
            .alert_ids_by_time
            .range(future_start..)
            .copied()
            .collect();
        for (seen, fingerprint) in future {
            self.alert_ids_by_time.remove(&(seen, fingerprint));
            self.alert_ids_by_time.insert((now, fingerprint));
            self.alert_ids.insert(fingerprint, now);
        }
    }

    fn is_remembered(&self, fingerprint: u128, now: u64) -> bool {
        self.alert_ids
            .get(&fingerprint)
            .is_some_and(|&seen| now < seen.saturating_add(self.limits.replay_window_seconds))
    }

    /// Stores `fingerprint` as first seen at `now`, replacing an expired entry of the same id.
    fn remember(&mut self, fingerprint: u128, now: u64) {
        match self.alert_ids.get(&fingerprint) {
            Some(&old) => {
                self.alert_ids_by_time.remove(&(old, fingerprint));
            }
            None => {
                while self.alert_ids.len() >= self.limits.max_alert_ids {
                    self.evict_oldest_alert_id(Some(now));
                }
            }
        }
        self.alert_ids.insert(fingerprint, now);
        self.alert_ids_by_time.insert((now, fingerprint));
    }

    /// Evicts the oldest id. With `now`, only an id still inside its replay window is
    /// counted as evicted. Without it every id is counted.
    fn evict_oldest_alert_id(&mut self, now: Option<u64>) {
        let Some((seen, fingerprint)) = self.alert_ids_by_time.pop_first() else {
            return;
        };
        self.alert_ids.remove(&fingerprint);
        let live =
            now.is_none_or(|now| now < seen.saturating_add(self.limits.replay_window_seconds));
        if live {
            self.evicted_alert_ids += 1;
        }
    }

    fn count_in_window(&mut self, alert: &Alert, settings: &DedupSettings, now: u64) -> Decision {
        let key = alert.dedup_key.as_str();
        if self
            .windows
            .get(key)
            .is_some_and(|window| !window.contains(now))
        {
            self.close_window(key);
        }
        if let Some(window) = self.windows.get_mut(key) {
            return window.record(now);
        }

        while self.windows.len() >= self.limits.max_windows {
            self.evict_oldest_window(Some(now));
        }
        let mut window = Window {
            rule: alert.rule.clone(),
            host: alert.host.clone(),
            start: now,
            window_seconds: settings.window_seconds,
            threshold: settings.threshold,
            notified: 0,
            suppressed: 0,
            first_seen: now,
            last_seen: now,
        };
        let decision = window.record(now);
        self.windows_by_start.insert((now, key.to_owned()));
        self.windows.insert(key.to_owned(), window);
        decision
    }

    /// Evicts the window with the oldest start, keeping its digest. With `now`, only a
    /// window that has not ended is counted as evicted. Without it every window is counted.
    fn evict_oldest_window(&mut self, now: Option<u64>) {
        let Some((_, key)) = self.windows_by_start.first().cloned() else {
            return;
        };
        let live = match (now, self.windows.get(&key)) {
            (Some(now), Some(window)) => window.contains(now),
            _ => true,
        };
        if live {
            self.evicted_windows += 1;
        }
        self.close_window(&key);
    }

    fn close_ended_windows(&mut self, now: u64) {
        let ended: Vec<String> = self
            .windows
            .iter()
            .filter(|(_, window)| !window.contains(now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in ended {
            self.close_window(&key);
        }
    }

    /// Removes the window of `key` and keeps its digest if it suppressed anything.
    fn close_window(&mut self, key: &str) {
        let Some(window) = self.windows.remove(key) else {
            return;
        };
        self.windows_by_start
            .remove(&(window.start, key.to_owned()));
        if window.suppressed > 0 {
            self.push_ready(window.into_digest(key.to_owned()));
        }
    }

    fn push_ready(&mut self, digest: Digest) {
        while self.ready.len() >= self.limits.max_windows {
            self.drop_oldest_ready();
        }
        self.ready.push(digest);
    }

    fn drop_oldest_ready(&mut self) {
        let oldest = self
            .ready
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| {
                (a.first_seen, &a.dedup_key).cmp(&(b.first_seen, &b.dedup_key))
            })
            .map(|(index, _)| index);
        if let Some(index) = oldest {
            self.ready.remove(index);
            self.dropped_digests += 1;
        }
    }

    fn enforce_caps(&mut self) {
        while self.alert_ids.len() > self.limits.max_alert_ids {
            self.evict_oldest_alert_id(None);
        }
        while self.windows.len() > self.limits.max_windows {
            self.evict_oldest_window(None);
        }
        while self.ready.len() > self.limits.max_windows {
            self.drop_oldest_ready();
        }
    }
}

/// Returns the 128-bit fingerprint of an alert id: the id itself when it is 32 lowercase hex
/// digits, otherwise the first 128 bits of its SHA-256.
fn fingerprint(alert_id: &str) -> u128 {
    if let Some(value) = parse_fingerprint(alert_id) {
        return value;
    }
    let digest = Sha256::digest(alert_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}

/// Parses 32 lowercase hex digits. `u128::from_str_radix` alone would also take a sign and
/// upper case, which would give one id two spellings.
fn parse_fingerprint(text: &str) -> Option<u128> {
    let valid = text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !valid {
        return None;
    }
    u128::from_str_radix(text, 16).ok()
}

/// The persisted form of a [`DedupState`], as written.
#[derive(Serialize)]
struct StateFileRef<'a> {
    version: u32,
    limits: DedupLimits,
    evicted_alert_ids: u64,
    evicted_windows: u64,
    dropped_digests: u64,
    alert_ids: Vec<(String, u64)>,
    windows: &'a BTreeMap<String, Window>,
    ready: &'a [Digest],
}

/// The persisted form of a [`DedupState`], as read. Every field but `version` has a default.
#[derive(Deserialize)]
struct StateFile {
    version: u64,
    #[serde(default)]
    limits: DedupLimits,
    #[serde(default)]
    evicted_alert_ids: u64,
    #[serde(default)]
    evicted_windows: u64,
    #[serde(default)]
    dropped_digests: u64,
    #[serde(default)]
    alert_ids: Vec<(String, u64)>,
    #[serde(default)]
    windows: BTreeMap<String, Window>,
    #[serde(default)]
    ready: Vec<Digest>,
}

impl Serialize for DedupState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let alert_ids = self
            .alert_ids_by_time
            .iter()
            .map(|&(seen, fingerprint)| (format!("{fingerprint:032x}"), seen))
            .collect();
        StateFileRef {
            version: STATE_FORMAT_VERSION,
            limits: self.limits,
            evicted_alert_ids: self.evicted_alert_ids,
            evicted_windows: self.evicted_windows,
            dropped_digests: self.dropped_digests,
            alert_ids,
            windows: &self.windows,
            ready: &self.ready,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DedupState {
    /// Reads the document into a `serde_json::Value` first, so that the version is checked
    /// before the fields of another version's layout can fail to parse.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let document = serde_json::Value::deserialize(deserializer)?;
        let version = document.get("version").and_then(serde_json::Value::as_u64);
        if let Some(found) = version
            && found != u64::from(STATE_FORMAT_VERSION)
        {
            return Err(D::Error::custom(DedupStateError::UnsupportedVersion {
                found,
            }));
        }
        let file = StateFile::deserialize(document).map_err(D::Error::custom)?;
        DedupState::try_from(file).map_err(D::Error::custom)
    }
}

impl TryFrom<StateFile> for DedupState {
    type Error = DedupStateError;

    fn try_from(file: StateFile) -> Result<Self, Self::Error> {
        if file.version != u64::from(STATE_FORMAT_VERSION) {
            return Err(DedupStateError::UnsupportedVersion {
                found: file.version,
            });
        }
        let mut state = DedupState::new(file.limits);
        state.evicted_alert_ids = file.evicted_alert_ids;
        state.evicted_windows = file.evicted_windows;
        state.dropped_digests = file.dropped_digests;
        for (text, seen) in file.alert_ids {
            let Some(fingerprint) = parse_fingerprint(&text) else {
                return Err(DedupStateError::InvalidFingerprint { value: text });
            };
            if state.alert_ids.insert(fingerprint, seen).is_some() {
                return Err(DedupStateError::DuplicateFingerprint { value: text });
            }
            state.alert_ids_by_time.insert((seen, fingerprint));
        }
        for (key, window) in &file.windows {
            state.windows_by_start.insert((window.start, key.clone()));
        }
        state.windows = file.windows;
        state.ready = file.ready;
        state.enforce_caps();
        Ok(state)
    }
}
