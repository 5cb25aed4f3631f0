//! The fault matrix: each test drives the real agent, kinesalite behind the fault proxy and
//! the local webhook through one failure, accounts for every line it wrote, and appends one
//! JSON row to the file named by `EDGEALERT_FAULTS_OUT`.
//!
//! `scripts/faults` runs them one at a time and prints the table; `EDGEALERT_FAULTS_SCALE`
//! picks `short` (CI) or `full` (the numbers in docs/RELIABILITY.md). They need kinesalite
//! (`EDGEALERT_KINESALITE_JS`), and the spool-disk-full scenario needs permission to mount
//! a tmpfs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::faults::{
    Background, Delivered, Generator, MARKER, Report, Rng, Scale, Tally, World, append_bytes,
    checkpoint_offset, marker, netcat_line, occurrences, wait_until, worker_line,
};
use common::kinesis::Mode;
use common::webhook::Reply;
use serde_json::json;

/// Seed of every generator; a failing run repeats with the same lines.
const SEED: u64 = 0x0edc_a1e7;

/// The regression test of the agent defect that sends a delivered Slack alert again.
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it"]
fn matrix_kill_loop_loses_no_line() {
    let scale = Scale::from_env();
    let kills = scale.pick(10, 50);
    let mut report = Report::new("agent kill -9 at random moments");
    let mut world = World::new(json!({}), |_| {});
    let log = world.log_path();
    let state = world.agent.path("state");
    let mut rng = Rng::new(SEED ^ 1);
    let background = Background::start(
        Generator::new(log.clone(), SEED, 25),
        20,
        Duration::from_millis(10),
    );
    // Lines whose bytes the checkpoint did not cover at some kill; only these may arrive twice.
    let mut unacknowledged: BTreeSet<u64> = BTreeSet::new();
    for _ in 0..kills {
        world.start();
        sleep_ms(rng.range(50, 1200));
        world.agent.kill();
        // Lets the writer record a batch it wrote just before the kill.
        sleep_ms(40);
        let acked = checkpoint_offset(&state, &log);
        let written = background.progress.lock().unwrap().clone();
        unacknowledged.extend(
            written
                .iter()
                .filter(|line| line.offset + line.len > acked)
                .map(|line| line.id),
        );
    }
    let generator = background.stop();
    world.start();
    let ids = generator.ids();
    let delivered = world.wait_delivered(&ids, 120);
    world.wait_alerts(&generator.netcat_ids(), 60);
    // Time for a message sent twice to arrive.
    sleep_ms(1000);
    let alerts = common::faults::alert_deliveries(&world.agent);
    world.agent.stop();

    report.tally = Tally::of(&ids, &delivered);
    report.check_no_loss();
    let unexplained: Vec<&u64> = report
        .tally
        .duplicated_ids
        .iter()
        .filter(|id| !unacknowledged.contains(id))
        .take(10)
        .collect();
    report.check(
        unexplained.is_empty(),
        format!(
            "lines duplicated although the checkpoint covered them at every kill: {unexplained:?}"
        ),
    );
    report.alerts_resent_at_most(&generator.netcat_ids(), &alerts, kills as u64);
    report.note(format!(
        "{kills} kills; {} lines were unacknowledged at a kill; duplicates only of those",
        unacknowledged.len()
    ));
    report.finish();
}

/// Renames `NAME` to `NAME.1` after shifting `NAME.1`..`NAME.{keep-1}` up by one and
/// removing `NAME.{keep}`, as logrotate with `rotate keep` and `create` does.
fn rename_rotate(log: &Path, keep: u32) {
    let numbered = |index: u32| PathBuf::from(format!("{}.{index}", log.display()));
    let _ = std::fs::remove_file(numbered(keep));
    for index in (1..keep).rev() {
        let from = numbered(index);
        if from.exists() {
            std::fs::rename(&from, numbered(index + 1)).unwrap();
        }
    }
    if log.exists() {
        std::fs::rename(log, numbered(1)).unwrap();
    }
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it"]
fn matrix_rename_rotation_every_100_ms() {
    let scale = Scale::from_env();
    let run_for = Duration::from_secs(scale.pick(10, 60));
    let mut report = Report::new("rename rotation every 100 ms under load");
    let mut world = World::new(json!({}), |_| {});
    let log = world.log_path();
    world.start();
    let background = Background::start(
        Generator::new(log.clone(), SEED ^ 2, 200),
        20,
        Duration::from_millis(5),
    );
    let started = Instant::now();
    let mut rotations = 0;
    while started.elapsed() < run_for {
        sleep_ms(100);
        rename_rotate(&log, 5);
        rotations += 1;
    }
    let generator = background.stop();
    let ids = generator.ids();
    let delivered = world.wait_delivered(&ids, 120);
    let alerts = world.wait_alerts(&generator.netcat_ids(), 30);
    world.agent.stop();

    report.tally = Tally::of(&ids, &delivered);
    report.check_no_loss();
    report.check_no_duplicates();
    report.alerts(&generator.netcat_ids(), &alerts);
    report.note(format!(
        "{rotations} rotations in {} s, 5 rotated files kept",
        run_for.as_secs()
    ));
    report.finish();
}

/// Rotates like osqueryd 5.x with `--logger_rotate`: `.N.zst` archives shift up to
/// `.25.zst`, `.1` is compressed into `.2.zst`, and the live file is renamed to `.1`.
fn osquery_rotate(log: &Path) {
    let archive = |index: u32| PathBuf::from(format!("{}.{index}.zst", log.display()));
    let first = PathBuf::from(format!("{}.1", log.display()));
    let _ = std::fs::remove_file(archive(25));
    for index in (2..25).rev() {
        if archive(index).exists() {
            std::fs::rename(archive(index), archive(index + 1)).unwrap();
        }
    }
    if first.exists() {
        let compressed = zstd::encode_all(&std::fs::read(&first).unwrap()[..], 3).unwrap();
        let temporary = log.with_extension("zst.tmp");
        std::fs::write(&temporary, compressed).unwrap();
        std::fs::rename(&temporary, archive(2)).unwrap();
        std::fs::remove_file(&first).unwrap();
    }
    std::fs::rename(log, &first).unwrap();
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it"]
fn matrix_osquery_rotation_while_stopped() {
    let scale = Scale::from_env();
    let cycles = scale.pick(3, 10);
    let mut report = Report::new("osquery rotation (.1, .N.zst) while the agent is stopped");
    let mut world = World::new(json!({}), |_| {});
    let log = world.log_path();
    let mut generator = Generator::new(log.clone(), SEED ^ 3, 50);
    let mut rng = Rng::new(SEED ^ 3);
    let mut stopped_rotations = 0;
    for _ in 0..cycles {
        world.start();
        for _ in 0..10 {
            generator.write_batch(rng.range(20, 80) as usize);
            sleep_ms(30);
        }
        // One rotation while the agent runs.
        osquery_rotate(&log);
        generator.write_batch(50);
        sleep_ms(200);
        generator.write_batch(50);
        world.agent.stop();
        for _ in 0..rng.range(2, 5) {
            generator.write_batch(rng.range(50, 300) as usize);
            osquery_rotate(&log);
            stopped_rotations += 1;
        }
        generator.write_batch(40);
    }
    world.start();
    let ids = generator.ids();
    let delivered = world.wait_delivered(&ids, 120);
    let alerts = world.wait_alerts(&generator.netcat_ids(), 30);
    world.agent.stop();

    report.tally = Tally::of(&ids, &delivered);
    report.check_no_loss();
    report.check_no_duplicates();
    report.alerts(&generator.netcat_ids(), &alerts);
    let status = world.status();
    report.check(
        status["counters"]["internal_events"]
            .as_object()
            .is_none_or(|events| events.is_empty()),
        format!("internal events: {}", status["counters"]["internal_events"]),
    );
    report.note(format!(
        "{cycles} stops, {stopped_rotations} rotations while stopped, {cycles} while running"
    ));
    report.finish();
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it"]
fn matrix_copytruncate_losses_are_counted() {
    let scale = Scale::from_env();
    let rounds = scale.pick(4, 15);
    let mut report = Report::new("logrotate copytruncate");
    // A small unacknowledged limit and a slow stream keep the agent behind the writer, so
    // lines appended between the copy and the truncation are unread when they vanish.
    let mut world = World::new(json!({}), |settings| {
        settings["max_line_bytes"] = json!(2048);
        settings["max_unacked_bytes"] = json!(4096);
    });
    let log = world.log_path();
    let copy = PathBuf::from(format!("{}.1", log.display()));
    world.start();
    world
        .proxy
        .set_mode(Mode::Delay(Duration::from_millis(1000)));
    let mut generator = Generator::new(log.clone(), SEED ^ 4, 30);
    let mut window: Vec<(u64, u64)> = Vec::new();
    for _ in 0..rounds {
        // More than one read of the tailer (read_chunk_bytes, 256 KiB), after which the agent
        // waits for the slow stream to acknowledge what it read.
        generator.write_batch(1200);
        rename_rotate(&copy, 5);
        std::fs::copy(&log, &copy).unwrap();
        for _ in 0..8 {
            let ids = generator.write_batch(1);
            let line = generator.written.last().unwrap();
            window.push((ids[0], line.len));
        }
        // Longer than stat_interval_ms, so the agent observes the size the file reached.
        sleep_ms(500);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        generator.write_batch(10);
        world.proxy.set_mode(Mode::Pass);
        let expected: Vec<u64> = generator
            .ids()
            .into_iter()
            .filter(|id| !window.iter().any(|(lost, _)| lost == id))
            .collect();
        let delivered = world.wait_delivered(&expected, 60);
        let caught_up = expected.iter().all(|id| delivered.counts.contains_key(id));
        report.check(caught_up, "the agent did not catch up after a copytruncate");
        world
            .proxy
            .set_mode(Mode::Delay(Duration::from_millis(1000)));
    }
    world.proxy.set_mode(Mode::Pass);
    let ids = generator.ids();
    world.wait_idle(60);
    let delivered = world.delivered();
    let alerts = common::faults::alert_deliveries(&world.agent);
    world.agent.stop();

    let window_ids: BTreeSet<u64> = window.iter().map(|(id, _)| *id).collect();
    let truly_lost_bytes: u64 = window
        .iter()
        .filter(|(id, _)| !delivered.counts.contains_key(id))
        .map(|(_, len)| len)
        .sum();
    let truly_lost_lines = window
        .iter()
        .filter(|(id, _)| !delivered.counts.contains_key(id))
        .count();
    let status = world.status();
    let counted = status["counters"]["possibly_lost_bytes"]
        .as_u64()
        .unwrap_or(0);
    let truncated_events = delivered.internal_count("truncated");
    let outside: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| !window_ids.contains(id))
        .collect();
    let outside_tally = Tally::of(&outside, &delivered);
    report.tally = Tally::of(&ids, &delivered);
    report.check(
        outside_tally.lost == 0,
        format!(
            "{} lines outside the copy-to-truncate windows lost: {:?}",
            outside_tally.lost, outside_tally.lost_ids
        ),
    );
    report.check_no_duplicates();
    report.check(
        counted == truly_lost_bytes,
        format!("agent counted {counted} possibly lost bytes, {truly_lost_bytes} were lost"),
    );
    report.check(
        truncated_events == rounds,
        format!("{truncated_events} truncated events for {rounds} truncations"),
    );
    let expected_alerts: Vec<u64> = generator
        .netcat_ids()
        .into_iter()
        .filter(|id| delivered.counts.contains_key(id))
        .collect();
    report.alerts(&expected_alerts, &alerts);
    report.note(format!(
        "{rounds} truncations; {truly_lost_lines} lines ({truly_lost_bytes} bytes) appended between copy and truncate were lost; the agent counted {counted} bytes"
    ));
    report.finish();
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it"]
fn matrix_kinesis_unreachable_then_back() {
    let scale = Scale::from_env();
    let outage = Duration::from_secs(scale.pick(20, 300));
    let mut report = Report::new("Kinesis unreachable, then back");
    let mut world = World::new(json!({"spool_after_ms": 1000}), |_| {});
    world.start();
    let background = Background::start(
        Generator::new(world.log_path(), SEED ^ 5, 100),
        10,
        Duration::from_millis(20),
    );
    sleep_ms(2000);
    world.proxy.refuse();
    let down = Instant::now();
    let mut spooled = false;
    while down.elapsed() < outage {
        sleep_ms(500);
        spooled |= world.status()["kinesis"]["spool_records"].as_u64() > Some(0);
    }
    world.proxy.resume();
    sleep_ms(2000);
    let generator = background.stop();
    let ids = generator.ids();
    let delivered = world.wait_delivered(&ids, 180);
    let alerts = world.wait_alerts(&generator.netcat_ids(), 60);
    world.wait_idle(30);
    world.agent.stop();

    report.tally = Tally::of(&ids, &delivered);
    report.check_no_loss();
    report.check_no_duplicates();
    report.check(spooled, "nothing was spooled during the outage");
    for (key, order) in &delivered.order {
        let sorted = order.windows(2).all(|pair| pair[0] < pair[1]);
        report.check(sorted, format!("lines of {key} arrived out of order"));
    }
    report.alerts(&generator.netcat_ids(), &alerts);
    let status = world.status();
    report.note(format!(
        "{} s outage; {} call errors; spool drained in order per partition key",
        outage.as_secs(),
        status["kinesis"]["request_errors"]
    ));
    report.finish();
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it"]
fn matrix_kinesis_partial_failures_and_throttling() {
    let scale = Scale::from_env();
    let run_for = Duration::from_secs(scale.pick(15, 90));
    let mut report = Report::new("Kinesis 30 % partial failures and throttling");
    let mut world = World::new(json!({"packed_record_bytes": 8192}), |_| {});
    world.proxy.set_mode(Mode::PartialFailure {
        fraction: 0.3,
        seed: SEED,
    });
    world.start();
    let background = Background::start(
        Generator::new(world.log_path(), SEED ^ 6, 100),
        20,
        Duration::from_millis(10),
    );
    let started = Instant::now();
    while started.elapsed() < run_for {
        sleep_ms(1000);
        world.proxy.script([(Mode::Throttle, 2)]);
    }
    let generator = background.stop();
    let ids = generator.ids();
    let delivered = world.wait_delivered(&ids, 180);
    let alerts = world.wait_alerts(&generator.netcat_ids(), 60);
    world.wait_idle(30);
    world.agent.stop();

    report.tally = Tally::of(&ids, &delivered);
    report.check_no_loss();
    report.check_no_duplicates();
    report.alerts(&generator.netcat_ids(), &alerts);
    let stats = world.proxy.stats();
    let status = world.status();
    report.check(stats.entries_failed > 0, "the proxy failed no entry");
    report.check(
        status["kinesis"]["entries_retried"].as_u64() == Some(stats.entries_failed),
        format!(
            "agent retried {} entries, the proxy failed {}",
            status["kinesis"]["entries_retried"], stats.entries_failed
        ),
    );
    report.note(format!(
        "{} of {} entries failed, {} calls throttled",
        stats.entries_failed,
        stats.entries_failed + stats.entries_forwarded,
        status["kinesis"]["throttled"]
    ));
    report.finish();
}

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0700"))
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .map_err(|error| format!("cannot run mount: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "mounting a tmpfs failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Returns a worker line padded to about 1 KiB with text that does not compress.
fn padded_line(id: u64, rng: &mut Rng) -> String {
    let padding: String = (0..64)
        .map(|_| format!("{:016x}", rng.next_u64()))
        .collect();
    worker_line(id).replace(
        "\"name\":\"worker\"",
        &format!("\"name\":\"worker\",\"pad\":\"{padding}\""),
    )
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it"]
fn matrix_spool_disk_full_pauses_and_resumes() {
    let scale = Scale::from_env();
    let mut report = Report::new("spool disk full");
    let size = scale.pick(2u64 << 20, 8 << 20);
    let tmpfs = match Tmpfs::mount(size) {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            report.skip(&format!("{reason}; run as root to include this scenario"));
            return;
        }
    };
    let state = tmpfs.path().join("state");
    let mut world = World::new(
        json!({"format": "compat", "spool_after_ms": 200, "max_buffer_bytes": 5 << 20}),
        |settings| settings["state_dir"] = json!(state),
    );
    world.start();
    world.proxy.refuse();
    let mut generator = Generator::new(world.log_path(), SEED ^ 7, 0);
    let mut rng = Rng::new(SEED ^ 7);
    let mut netcat = Vec::new();
    // Memory (5 MiB) and the tmpfs together hold less than this.
    let total = (5 << 20) + size * 2;
    let mut bytes = 0u64;
    while bytes < total {
        let mut lines = Vec::new();
        for index in 0..100 {
            let id = generator.take_id();
            let text = if index == 0 {
                netcat.push(id);
                netcat_line(id)
            } else {
                padded_line(id, &mut rng)
            };
            bytes += text.len() as u64 + 1;
            lines.push((id, format!("{text}\n"), index == 0));
        }
        generator.append(lines);
        sleep_ms(20);
    }
    // Reading pauses either in the forwarder (memory full, spool not writable) or earlier,
    // in the pipeline, when the local alert and record files on the same disk cannot be
    // written. status.json may not be writable either, so the log is the report.
    let paused = wait_until(60, || {
        let log = world.agent.log();
        log.contains("The spool is full; reading pauses")
            || log.contains("Writing to a local sink failed; holding the batch")
    });
    report.check(paused, "the agent did not report that reading paused");
    let space_error = world.agent.log().contains("No space left on device");
    report.check(space_error, "the log does not name the full disk");
    let read_before = read_offset(&world.status());
    sleep_ms(3000);
    let read_after = read_offset(&world.status());
    let log_size = std::fs::metadata(world.log_path()).unwrap().len();
    report.check(
        read_after == read_before && read_after < log_size,
        format!(
            "reading went on while paused: offset {read_before} then {read_after} of {log_size}"
        ),
    );

    world.proxy.resume();
    let ids = generator.ids();
    let delivered = world.wait_delivered(&ids, 180);
    let alerts = world.wait_alerts(&netcat, 60);
    let idle = world.wait_idle(60);
    let status = world.status();
    world.agent.stop();

    report.tally = Tally::of(&ids, &delivered);
    report.check_no_loss();
    report.check(
        idle,
        "the agent did not return to idle after Kinesis came back",
    );
    report.check(
        status["kinesis"]["paused"] == false,
        "still paused after draining",
    );
    report.alerts(&netcat, &alerts);
    report.note(format!(
        "state directory on a {} MiB tmpfs, Kinesis refused meanwhile; {} duplicates",
        size >> 20,
        report.tally.duplicates
    ));
    report.finish();
}

fn read_offset(status: &serde_json::Value) -> u64 {
    status["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|file| file["read_offset"].as_u64())
        .sum()
}

/// Ids named by the dead-lettered messages in `STATE_DIR/outbox/dead-letter`.
fn dead_lettered_ids(state: &Path) -> Vec<u64> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(state.join("outbox/dead-letter"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.path().extension().is_some_and(|ext| ext == "json") {
            // The id occurs in the text and in the blocks of one message.
            let mut found = common::faults::ids_in(&std::fs::read(entry.path()).unwrap());
            found.sort_unstable();
            found.dedup();
            ids.extend(found);
        }
    }
    ids
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it"]
fn matrix_slack_429_storm_then_5xx_then_recovery() {
    let scale = Scale::from_env();
    let alert_count = scale.pick(12, 60);
    let (limited, failing) = scale.pick((4, 5), (12, 12));
    let interval = Duration::from_millis(250);
    let burst = 2;
    let mut report = Report::new("Slack 429 storm, then 5xx, then recovery");
    let mut world = World::new(json!({}), |settings| {
        settings["slack"]["min_interval_ms"] = json!(interval.as_millis() as u64);
        settings["slack"]["burst"] = json!(burst);
        settings["slack"]["max_attempts"] = json!(4);
    });
    let mut script: Vec<Reply> = (0..limited).map(|_| Reply::rate_limited(1)).collect();
    script.extend((0..failing).map(|index| Reply::status(500 + (index % 4) as u16, "failing")));
    world.agent.webhook.script(script);
    world.start();
    let mut generator = Generator::new(world.log_path(), SEED ^ 8, 0);
    let mut netcat = Vec::new();
    for _ in 0..alert_count {
        generator.write_batch(5);
        let id = generator.take_id();
        netcat.push(id);
        generator.append(vec![(id, format!("{}\n", netcat_line(id)), true)]);
    }
    let state = world.agent.path("state");
    let settled = wait_until(180, || {
        let delivered = common::faults::alert_deliveries(&world.agent);
        let dead = dead_lettered_ids(&state);
        netcat
            .iter()
            .all(|id| delivered.contains_key(id) || dead.contains(id))
    });
    report.check(settled, "not every alert was delivered or dead-lettered");
    let ids = generator.ids();
    let delivered = world.wait_delivered(&ids, 60);
    sleep_ms(1000);
    let alerts = common::faults::alert_deliveries(&world.agent);
    let dead = dead_lettered_ids(&state);
    world.agent.stop();

    report.tally = Tally::of(&ids, &delivered);
    report.check_no_loss();
    report.check_no_duplicates();
    report.alerts_expected = netcat.len() as u64;
    report.alerts_delivered = alerts.values().map(|count| u64::from(*count)).sum();
    for id in &netcat {
        let sent = alerts.get(id).copied().unwrap_or(0);
        let lettered = dead.iter().filter(|dead| *dead == id).count();
        report.check(
            sent + lettered as u32 == 1,
            format!("alert {id}: {sent} delivered, {lettered} dead-lettered"),
        );
    }
    let received = world.agent.webhook.received();
    let times: Vec<Instant> = received.iter().map(|request| request.at).collect();
    let tolerance = Duration::from_millis(30);
    let mut rate_violations = 0;
    for first in 0..times.len() {
        for last in first + 1..times.len() {
            let allowed = (last - first + 1).saturating_sub(burst) as u32;
            if times[last] - times[first] + tolerance < interval * allowed {
                rate_violations += 1;
            }
        }
    }
    report.check(
        rate_violations == 0,
        format!("{rate_violations} request pairs closer than burst {burst} and {interval:?} allow"),
    );
    let mut retry_after_violations = 0;
    for pair in received.windows(2) {
        if pair[0].status == 429 && pair[1].at - pair[0].at + tolerance < Duration::from_secs(1) {
            retry_after_violations += 1;
        }
    }
    report.check(
        retry_after_violations == 0,
        format!("{retry_after_violations} requests sent before Retry-After passed"),
    );
    report.note(format!(
        "{limited} answers 429 Retry-After 1, then {failing} 5xx, then 200; {} requests, {} dead-lettered; burst {burst}, then one per {} ms",
        received.len(),
        dead.len(),
        interval.as_millis()
    ));
    report.finish();
}

/// One hostile input: its bytes, the ids that must arrive in line or row entries, the
/// netcat ids that must alert, and the internal event it must cause.
struct Hostile {
    bytes: Vec<u8>,
    ids: Vec<u64>,
    netcat: Vec<u64>,
    internal: Option<&'static str>,
}

impl Hostile {
    fn line(text: String, ids: Vec<u64>) -> Hostile {
        Hostile {
            bytes: format!("{text}\n").into_bytes(),
            ids,
            netcat: Vec::new(),
            internal: None,
        }
    }
}

/// Returns a process row with a marker, as a JSON object with string values.
fn row(id: u64, netcat: bool) -> String {
    if netcat {
        format!(
            "{{\"address\":\"0.0.0.0\",\"cmdline\":\"nc -lk 9001 {}\",\"name\":\"nc\",\"path\":\"/bin/nc\",\"pid\":\"{}\",\"port\":\"9001\",\"protocol\":\"6\"}}",
            marker(id),
            100_000 + id
        )
    } else {
        format!(
            "{{\"cmdline\":\"sleep 60 {}\",\"name\":\"sleep\",\"path\":\"/bin/sleep\",\"pid\":\"{}\"}}",
            marker(id),
            1000 + id
        )
    }
}

const ENVELOPE: &str = "\"hostIdentifier\":\"web-1\",\"calendarTime\":\"Mon Mar  3 09:12:03 2025 UTC\",\"unixTime\":1741000000,\"epoch\":0,\"counter\":3";

/// Returns every format and hostile shape of input, each with a marker.
fn hostile_inputs(next: &mut impl FnMut() -> u64, scale: Scale) -> Vec<Hostile> {
    let mut inputs = Vec::new();

    // Differential event lines, osquery 5 with and without numerics, and an older one.
    let id = next();
    inputs.push(Hostile::line(worker_line(id), vec![id]));
    let (id, nc) = (next(), next());
    inputs.push(Hostile {
        netcat: vec![nc],
        ..Hostile::line(
            format!(
                "{{\"name\":\"pack_detection_listening_processes\",{ENVELOPE},\"numerics\":true,\"columns\":{{\"address\":\"\",\"cmdline\":\"nc -l 31337 {}\",\"name\":\"nc\",\"path\":\"/bin/nc\",\"pid\":{},\"port\":31337,\"inode\":18446744073709551615,\"delta\":-1,\"note\":\"{}\"}},\"action\":\"added\"}}",
                marker(nc),
                100_000 + nc,
                marker(id)
            ),
            vec![id, nc],
        )
    });
    let id = next();
    inputs.push(Hostile::line(
        format!("{{\"name\":\"pack_detection_processes\",\"hostIdentifier\":\"old-host\",\"calendarTime\":\"Mon Mar  3 09:12:03 2025 UTC\",\"unixTime\":\"1500000000\",\"epoch\":\"0\",\"counter\":\"1\",\"logNumericsAsNumbers\":\"false\",\"columns\":{{\"path\":\"\\/usr\\/bin\\/{}\",\"pid\":\"7\"}},\"action\":\"added\"}}", marker(id)),
        vec![id],
    ));
    // Decorations at the top level, overwriting an envelope key and changing the key order.
    let id = next();
    inputs.push(Hostile::line(
        format!("{{\"columns\":{{\"cmdline\":\"{}\",\"pid\":\"8\"}},\"action\":\"added\",\"name\":\"pack_detection_processes\",\"hostname\":\"web-1\",\"host_uuid\":\"8F3A2C1E\",{ENVELOPE},\"numerics\":false}}", marker(id)),
        vec![id],
    ));
    // Unknown keys at the top level and in nested objects.
    let id = next();
    inputs.push(Hostile::line(
        format!("{{\"name\":\"pack_detection_processes\",{ENVELOPE},\"numerics\":false,\"decorations\":{{\"hostname\":\"web-1\",\"rack\":{{\"row\":\"4\"}}}},\"futureKey\":[1,2,3],\"columns\":{{\"cmdline\":\"{}\",\"pid\":\"9\",\"new_column\":\"x\"}},\"action\":\"added\"}}", marker(id)),
        vec![id],
    ));
    // Escapes written by osquery itself: control bytes, and UTF-8 before 5.22.
    let id = next();
    inputs.push(Hostile::line(
        format!("{{\"name\":\"pack_detection_processes\",{ENVELOPE},\"numerics\":false,\"columns\":{{\"cmdline\":\"vim \\\\xC3\\\\xBC.txt \\\\x1B[0m {}\",\"pid\":\"10\"}},\"action\":\"added\"}}", marker(id)),
        vec![id],
    ));
    // Differential batch with a netcat row among the added ones.
    let (removed, added, nc) = (next(), next(), next());
    inputs.push(Hostile {
        netcat: vec![nc],
        ..Hostile::line(
            format!(
                "{{\"name\":\"pack_detection_listening_processes\",{ENVELOPE},\"numerics\":false,\"diffResults\":{{\"removed\":[{}],\"added\":[{},{}]}}}}",
                row(removed, false),
                row(added, false),
                row(nc, true)
            ),
            vec![removed, added, nc],
        )
    });
    // The same batch as osquery's aws_kinesis logger writes it: strings, escaped slashes,
    // an empty list as "".
    let (added, nc) = (next(), next());
    inputs.push(Hostile {
        netcat: vec![nc],
        ..Hostile::line(
            format!(
                "{{\"name\":\"pack_detection_listening_processes\",\"hostIdentifier\":\"web-2\",\"calendarTime\":\"Mon Mar  3 09:12:03 2025 UTC\",\"unixTime\":\"1741000000\",\"epoch\":\"0\",\"counter\":\"4\",\"numerics\":\"false\",\"diffResults\":{{\"removed\":\"\",\"added\":[{},{}]}},\"log_type\":\"result\"}}",
                row(added, false).replace('/', "\\/"),
                row(nc, true).replace('/', "\\/")
            ),
            vec![added, nc],
        )
    });
    // Snapshot, counter 0, with a netcat row; and the same row in the per-row format.
    let (plain, nc) = (next(), next());
    inputs.push(Hostile {
        netcat: vec![nc],
        ..Hostile::line(
            format!(
                "{{\"snapshot\":[{},{}],\"action\":\"snapshot\",\"name\":\"pack_snapshots_listening_processes\",\"hostIdentifier\":\"web-1\",\"calendarTime\":\"Mon Mar  3 09:12:03 2025 UTC\",\"unixTime\":1741000000,\"epoch\":0,\"counter\":0,\"numerics\":false}}",
                row(plain, false),
                row(nc, true)
            ),
            vec![plain, nc],
        )
    });
    let nc = next();
    inputs.push(Hostile {
        netcat: vec![nc],
        ..Hostile::line(
            format!(
                "{{\"name\":\"pack_snapshots_listening_processes\",{ENVELOPE},\"numerics\":false,\"columns\":{},\"action\":\"snapshot\"}}",
                row(nc, true)
            ),
            vec![nc],
        )
    });
    // A full-state dump after an osquery restart re-emits a listener with counter 0.
    let nc = next();
    inputs.push(Hostile {
        netcat: vec![nc],
        ..Hostile::line(
            netcat_line(nc).replace("\"counter\":1", "\"counter\":0"),
            vec![nc],
        )
    });
    // JSON status records of the tls and aws loggers, before and after 5.10.
    let (old, new) = (next(), next());
    inputs.push(Hostile::line(
        format!("{{\"hostIdentifier\":\"web-1\",\"calendarTime\":\"Mon Mar  3 09:12:03 2025 UTC\",\"unixTime\":\"1741000000\",\"severity\":\"0\",\"filename\":\"scheduler.cpp\",\"line\":\"83\",\"message\":\"Executing scheduled query {}\",\"version\":\"5.9.1\",\"log_type\":\"status\"}}", marker(old)),
        vec![old],
    ));
    inputs.push(Hostile::line(
        format!("{{\"hostIdentifier\":\"web-1\",\"calendarTime\":\"Mon Mar  3 09:12:03 2025 UTC\",\"unixTime\":1741000000,\"severity\":1,\"filename\":\"config.cpp\",\"line\":812,\"message\":\"Warning {}\",\"version\":\"5.23.0\",\"decorations\":{{\"hostname\":\"web-1\"}},\"log_type\":\"status\"}}", marker(new)),
        vec![new],
    ));
    // Raw invalid UTF-8 in a snapshot value, and a CRLF line end.
    let id = next();
    let mut bytes = b"{\"snapshot\":[{\"name\":\"".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, b'x']);
    bytes.extend_from_slice(
        format!("\",\"cmdline\":\"{}\"}}],\"action\":\"snapshot\",\"name\":\"pack_snapshots_processes\",{ENVELOPE},\"numerics\":false}}\n", marker(id)).as_bytes(),
    );
    inputs.push(Hostile {
        bytes,
        ids: vec![id],
        netcat: Vec::new(),
        internal: None,
    });
    let id = next();
    inputs.push(Hostile {
        bytes: format!("{}\r\n", worker_line(id)).into_bytes(),
        ids: vec![id],
        netcat: Vec::new(),
        internal: None,
    });
    // Lines that are not osquery records at all.
    let id = next();
    inputs.push(Hostile {
        internal: Some("invalid_json"),
        ..Hostile::line(format!("not json at all {}", marker(id)), vec![id])
    });
    let id = next();
    inputs.push(Hostile {
        internal: Some("not_an_object"),
        ..Hostile::line(format!("[\"{}\"]", marker(id)), vec![id])
    });
    inputs.push(Hostile {
        internal: Some("empty_line"),
        ..Hostile::line(String::new(), Vec::new())
    });
    let id = next();
    inputs.push(Hostile {
        internal: Some("no_matching_schema"),
        ..Hostile::line(format!("{{\"name\":\"{}\"}}", marker(id)), vec![id])
    });
    // A fragment left by an interrupted write, with the next record glued to it. The
    // fragment's marker arrives in the internal event's excerpt, not as a line.
    let (fragment, glued) = (next(), next());
    let mut bytes = format!(
        "{{\"name\":\"pack_detection_processes\",\"note\":\"{}",
        marker(fragment)
    )
    .into_bytes();
    bytes.extend_from_slice(format!("{}\n", worker_line(glued)).as_bytes());
    inputs.push(Hostile {
        bytes,
        ids: vec![glued],
        netcat: Vec::new(),
        internal: Some("glued_fragment"),
    });
    // A snapshot line larger than a Kinesis record, split into one record per row.
    let huge = scale.pick(3 << 20, 12 << 20);
    let mut rows = Vec::new();
    let mut text = String::from("{\"snapshot\":[");
    while text.len() < huge {
        let id = next();
        if !rows.is_empty() {
            text.push(',');
        }
        text.push_str(
            &row(id, false).replace("sleep 60", &format!("sleep 60 {}", "s".repeat(900))),
        );
        rows.push(id);
    }
    text.push_str(&format!("],\"action\":\"snapshot\",\"name\":\"pack_snapshots_processes\",{ENVELOPE},\"numerics\":false}}"));
    inputs.push(Hostile::line(text, rows));
    // A line longer than max_line_bytes: skipped and reported by its offset.
    let too_long = scale.pick(5 << 20, 20 << 20);
    inputs.push(Hostile {
        internal: Some("line_too_long"),
        ..Hostile::line(
            format!("{{\"name\":\"big\",\"pad\":\"{}\"}}", "x".repeat(too_long)),
            Vec::new(),
        )
    });
    inputs
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it"]
fn matrix_hostile_input_is_counted_and_forwarded() {
    let scale = Scale::from_env();
    let max_line = scale.pick(4u64 << 20, 16 << 20);
    let mut report = Report::new("hostile input");
    let mut world = World::new(json!({}), |settings| {
        settings["max_line_bytes"] = json!(max_line);
    });
    world.start();
    let mut generator = Generator::new(world.log_path(), SEED ^ 9, 0);
    let mut next_id = 1_000_000u64;
    let inputs = hostile_inputs(
        &mut || {
            next_id += 1;
            next_id
        },
        scale,
    );
    let mut ids = Vec::new();
    let mut netcat = Vec::new();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for input in &inputs {
        append_bytes(&world.log_path(), &input.bytes);
        ids.extend(&input.ids);
        netcat.extend(&input.netcat);
        if let Some(reason) = input.internal {
            *reasons.entry(reason).or_default() += 1;
        }
        // A plain line after each input shows that the tail goes on.
        ids.extend(generator.write_batch(1));
    }
    let delivered = world.wait_delivered(&ids, 120);
    let alerts = world.wait_alerts(&netcat, 30);
    world.wait_idle(30);
    let status = world.status();
    let log = world.agent.log();
    world.agent.stop();

    report.tally = Tally::of(&ids, &delivered);
    report.check_no_loss();
    report.check_no_duplicates();
    report.alerts(&netcat, &alerts);
    for (reason, expected) in &reasons {
        let events = delivered.internal_count(reason);
        report.check(
            events == *expected,
            format!("{events} internal events {reason}, expected {expected}"),
        );
        let counted = status["counters"]["internal_events"][reason]
            .as_u64()
            .unwrap_or(0);
        report.check(
            counted == *expected as u64,
            format!("status counts {counted} {reason}, expected {expected}"),
        );
    }
    let fragment_reported = delivered.internal.iter().any(|event| {
        event["reason"] == "glued_fragment"
            && event["excerpt"]
                .as_str()
                .is_some_and(|excerpt| excerpt.contains(MARKER))
    });
    report.check(
        fragment_reported,
        "the glued fragment's excerpt is not in its internal event",
    );
    let raw_kept = delivered.raw_contains(&[0xff, 0xfe, b'x']);
    report.check(raw_kept, "invalid UTF-8 was not forwarded byte for byte");
    report.check(
        status["kinesis"]["lines_split"].as_u64() >= Some(1),
        "the large snapshot line was not split",
    );
    report.check(!log.contains("panicked"), "the agent panicked");
    report.check(
        status["counters"]["extra_keys"].as_u64() > Some(0),
        "unknown keys were not counted",
    );
    report.note(format!(
        "{} inputs incl. a {} MiB snapshot line split into rows and a {} MiB line over max_line_bytes; internal events {:?}",
        inputs.len(),
        scale.pick(3, 12),
        scale.pick(5, 20),
        reasons
    ));
    report.finish();
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it"]
fn matrix_broken_configuration_keeps_the_old_one() {
    let mut report = Report::new("broken configuration pushed while running");
    let mut world = World::new(json!({}), |_| {});
    world.start();
    let background = Background::start(
        Generator::new(world.log_path(), SEED ^ 10, 20),
        5,
        Duration::from_millis(20),
    );
    sleep_ms(1000);
    let rejected = "Configuration reload rejected";
    let broken_rule = world.agent.path("conf/rules/zz_broken.json");
    std::fs::write(&broken_rule, "{\"name\": \"zz_broken\", \"description\": ").unwrap();
    report.check(
        wait_until(10, || world.agent.log().contains(rejected)),
        "the broken rule was not rejected",
    );
    sleep_ms(1500);
    let log = world.agent.log();
    report.check(
        occurrences(&log, rejected) == 1,
        format!(
            "{} rejections logged for one broken rule file",
            occurrences(&log, rejected)
        ),
    );
    report.check(
        log.contains("zz_broken.json"),
        "the error does not name the broken file",
    );
    let last_error = world.status()["last_error"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    report.check(
        last_error.starts_with("reload rejected") && last_error.contains("zz_broken.json"),
        format!("status last_error is {last_error:?}"),
    );
    let written_before = background.progress.lock().unwrap().len();
    sleep_ms(2000);

    // A broken agent.json is rejected the same way.
    let settings_path = world.agent.path("conf/agent.json");
    let settings = std::fs::read(&settings_path).unwrap();
    let mut broken: serde_json::Value = serde_json::from_slice(&settings).unwrap();
    broken["max_line_bytes"] = json!(10);
    std::fs::write(&settings_path, broken.to_string()).unwrap();
    report.check(
        wait_until(10, || occurrences(&world.agent.log(), rejected) >= 2),
        "the broken agent.json was not rejected",
    );
    sleep_ms(1500);
    let log = world.agent.log();
    report.check(
        occurrences(&log, rejected) == 2,
        format!(
            "{} rejections logged for two pushes",
            occurrences(&log, rejected)
        ),
    );
    std::fs::write(&settings_path, &settings).unwrap();
    std::fs::remove_file(&broken_rule).unwrap();
    report.check(
        wait_until(10, || {
            world
                .agent
                .log()
                .contains("Configuration directory is valid again.")
        }),
        "the repaired configuration was not taken back",
    );
    sleep_ms(500);
    let generator = background.stop();
    let ids = generator.ids();
    let netcat = generator.netcat_ids();
    let alerts_during: Vec<u64> = generator.written[written_before..]
        .iter()
        .filter(|line| line.netcat)
        .map(|line| line.id)
        .collect();
    let delivered = world.wait_delivered(&ids, 60);
    let alerts = world.wait_alerts(&netcat, 30);
    wait_until(10, || world.status()["last_error"].is_null());
    let status = world.status();
    world.agent.stop();

    report.tally = Tally::of(&ids, &delivered);
    report.check_no_loss();
    report.check_no_duplicates();
    report.alerts(&netcat, &alerts);
    report.check(
        !alerts_during.is_empty(),
        "no netcat line was written while the configuration was broken",
    );
    report.check(
        status["last_error"].is_null(),
        format!("last_error stays {}", status["last_error"]),
    );
    report.note(format!(
        "a truncated rule file, then an invalid agent.json; {} alerts raised while broken",
        alerts_during.len()
    ));
    report.finish();
}

/// Ids in the spool segments of `state` from the head on: records accepted by the spool
/// and not yet by Kinesis.
fn spooled(state: &Path) -> Delivered {
    let dir = state.join("spool");
    let head: serde_json::Value = std::fs::read(dir.join("head"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(json!({"segment": 0, "offset": 0}));
    let head_segment = head["segment"].as_u64().unwrap_or(0);
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let number = name.strip_suffix(".seg")?.parse().ok()?;
            Some((number, entry.path()))
        })
        .filter(|(number, _)| *number >= head_segment)
        .collect();
    segments.sort();
    let mut records = Vec::new();
    for (number, path) in segments {
        let bytes = std::fs::read(&path).unwrap();
        let mut at = if number == head_segment {
            head["offset"].as_u64().unwrap_or(0) as usize
        } else {
            0
        };
        // Frame: EA 5F, payload length (u32), CRC-32 (u32), then key length (u16), key,
        // entry count (u32) and the record's data.
        while at + 10 <= bytes.len() && bytes[at..at + 2] == [0xEA, 0x5F] {
            let len = u32::from_be_bytes(bytes[at + 2..at + 6].try_into().unwrap()) as usize;
            let payload = &bytes[at + 10..at + 10 + len];
            let key_len = u16::from_be_bytes([payload[0], payload[1]]) as usize;
            records.push(common::kinesis::StreamRecord {
                shard_id: "spool".into(),
                partition_key: String::from_utf8_lossy(&payload[2..2 + key_len]).into_owned(),
                sequence_number: String::new(),
                data: payload[6 + key_len..].to_vec(),
            });
            at += 10 + len;
        }
    }
    Delivered::from_records(&records)
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it"]
fn matrix_sigterm_under_load_flushes_in_time() {
    let scale = Scale::from_env();
    let rounds = scale.pick(2, 6);
    let shutdown_timeout = Duration::from_millis(3000);
    let mut report = Report::new("SIGTERM under load");
    let mut world = World::new(json!({"request_timeout_ms": 2000}), |settings| {
        settings["shutdown_timeout_ms"] = json!(shutdown_timeout.as_millis() as u64);
    });
    let log = world.log_path();
    let state = world.agent.path("state");
    let mut generator = Generator::new(log.clone(), SEED ^ 11, 100);
    let mut slowest = Duration::ZERO;
    let mut uncovered_total = 0;
    for round in 0..rounds {
        world.proxy.set_mode(Mode::Pass);
        world.start();
        // A slow stream leaves lines in flight when SIGTERM arrives.
        world
            .proxy
            .set_mode(Mode::Delay(Duration::from_millis(400 + 300 * round)));
        for _ in 0..20 {
            generator.write_batch(200);
            sleep_ms(25);
        }
        let started = Instant::now();
        world.agent.stop();
        let took = started.elapsed();
        slowest = slowest.max(took);
        report.check(
            took <= shutdown_timeout + Duration::from_millis(1500),
            format!(
                "round {round}: exit took {took:?}, shutdown_timeout_ms is {shutdown_timeout:?}"
            ),
        );

        // Every line the final checkpoint covers must be in the stream or the spool, and
        // lines there beyond the checkpoint will arrive twice.
        let acked = checkpoint_offset(&state, &log);
        let stream = world.delivered();
        let spool = spooled(&state);
        let forwarded = |id: &u64| stream.counts.contains_key(id) || spool.counts.contains_key(id);
        let covered_missing: Vec<u64> = generator
            .written
            .iter()
            .filter(|line| line.offset + line.len <= acked && !forwarded(&line.id))
            .map(|line| line.id)
            .take(10)
            .collect();
        report.check(
            covered_missing.is_empty(),
            format!(
                "round {round}: checkpointed lines neither sent nor spooled: {covered_missing:?}"
            ),
        );
        let uncovered = generator
            .written
            .iter()
            .filter(|line| line.offset + line.len > acked && forwarded(&line.id))
            .count();
        uncovered_total += uncovered;
        report.check(
            uncovered == 0,
            format!("round {round}: {uncovered} lines sent or spooled beyond the final checkpoint"),
        );
        let log_text = world.agent.log();
        report.check(
            !log_text.contains("Final checkpoint write failed"),
            "the final checkpoint write failed",
        );
    }
    world.proxy.set_mode(Mode::Pass);
    world.start();
    let ids = generator.ids();
    let delivered = world.wait_delivered(&ids, 120);
    let alerts = world.wait_alerts(&generator.netcat_ids(), 30);
    world.agent.stop();

    report.tally = Tally::of(&ids, &delivered);
    report.check_no_loss();
    report.check(
        report.tally.duplicates as usize <= uncovered_total,
        format!(
            "{} duplicates, {uncovered_total} expected from lines beyond the checkpoints",
            report.tally.duplicates
        ),
    );
    report.alerts(&generator.netcat_ids(), &alerts);
    report.note(format!(
        "{rounds} SIGTERMs while PutRecords took 0.4 s or more; slowest exit {:.1} s with shutdown_timeout_ms {}",
        slowest.as_secs_f64(),
        shutdown_timeout.as_millis()
    ));
    report.finish();
}

// Regression tests of agent defects the matrix found. scripts/faults runs them with the
// `matrix_` tests; they write no row of the table.

#[test]
#[ignore = "fault matrix regression: scripts/faults runs it"]
fn regression_retried_alert_commit_sends_once() {
    let mut world = World::new(json!({}), |_| {});
    // A directory where the dedup state's temporary file goes makes every save fail after
    // the message is already in the outbox, as a full disk can.
    let blocker = world.state_dir.join("dedup.json.tmp");
    std::fs::create_dir_all(&blocker).unwrap();
    world.start();
    let id = 7;
    append_bytes(
        &world.log_path(),
        format!("{}\n", netcat_line(id)).as_bytes(),
    );
    // The pipeline retries the commit with a growing backoff; 5 s cover several retries.
    wait_until(5, || world.agent.webhook.accepted().len() >= 2);
    std::fs::remove_dir(&blocker).unwrap();
    sleep_ms(2000);
    world.agent.stop();
    let alerts = common::faults::alert_deliveries(&world.agent);
    assert_eq!(alerts.get(&id), Some(&1), "deliveries of the one alert");
}

#[test]
#[ignore = "fault matrix regression: scripts/faults runs it"]
fn regression_kill_during_alert_commit_resends_at_most_once() {
    let mut world = World::new(json!({}), |_| {});
    let mut generator = Generator::new(world.log_path(), SEED ^ 12, 1);
    for _ in 0..5 {
        world.start();
        let before = world.agent.webhook.accepted().len();
        generator.write_batch(100);
        wait_until(20, || world.agent.webhook.accepted().len() >= before + 5);
        world.agent.kill();
    }
    world.start();
    let netcat = generator.netcat_ids();
    world.wait_alerts(&netcat, 60);
    sleep_ms(1000);
    world.agent.stop();
    let alerts = common::faults::alert_deliveries(&world.agent);
    // Each kill lands right after the receiver took a message, before the agent read the
    // answer, so that message may be sent again once; nothing else may be.
    let resent: u32 = alerts.values().map(|count| count.saturating_sub(1)).sum();
    assert!(
        resent <= 5,
        "{resent} alerts sent again after 5 kills: {alerts:?}"
    );
}

// Lambda scenarios. The central Lambda's fault row ("Lambda invocation failing mid-batch":
// batchItemFailures honoured, no alert lost or doubled) belongs here once the Lambda can be
// driven from a test; until then the matrix has no row for it.
