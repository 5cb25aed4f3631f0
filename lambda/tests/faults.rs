//! The central Lambda's rows of the fault matrix.
//!
//! A fleet of two kinds of hosts fills a kinesalite stream: the real agent forwards packed
//! records (and alerts its own webhook), and hosts without the agent put records the way
//! osquery's own `aws_kinesis` logger does. An event source mapping written here then reads
//! the shard and invokes the real `bootstrap` through a local Runtime API, the way Lambda
//! does with `ReportBatchItemFailures`. A response that names a record makes the next batch
//! start at that record. A failed invocation (an error, or a container that died) is retried
//! whole, in a new container when the old one is gone. The Lambda's webhook responds with
//! faults, and every alert is accounted for across both webhooks.
//!
//! `scripts/faults` runs these with `--ignored`, passing the kinesalite wrapper in
//! `EDGEALERT_KINESALITE_JS`, the agent binary in `EDGEALERT_AGENT_BIN`, the scale in
//! `EDGEALERT_FAULTS_SCALE` and the file for the result rows in `EDGEALERT_FAULTS_OUT`.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::agent::{Agent, STREAM};
use common::kinesis::{self, Emulator, StreamRecord};
use common::matrix::{
    Delivered, Report, Rng, Scale, Tally, netcat_line, webhook_alerts, worker_line,
};
use common::runtime_api::{Bootstrap, Invocation, RuntimeApi};
use common::webhook::{Reply, Webhook};
use common::{STREAM_ARN, kinesis_event_json, osquery_plugin_record, repo};
use serde_json::json;

/// Records per invocation, as the event source mapping's `BatchSize`.
const BATCH_SIZE: usize = 10;

/// Time each invocation gets, as the function's timeout.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(3);

/// Invocations of one batch position after which the mapping gives up; Lambda would send
/// the batch to the on-failure destination, which the test counts as a failure.
const MAX_ATTEMPTS_PER_POSITION: u32 = 20;

/// Lines in the stream, by who put them there.
struct Fleet {
    _emulator: Emulator,
    _agent: Agent,
    agent_webhook: Webhook,
    /// Every record of the shard, in order.
    records: Vec<StreamRecord>,
    /// Ids of all lines written, agent lines first.
    written: Vec<u64>,
    /// Ids of netcat lines the agent forwarded, alerted by the agent.
    agent_netcat: Vec<u64>,
    /// Ids of netcat lines from hosts without the agent, alerted by the Lambda.
    plugin_netcat: Vec<u64>,
}

impl Fleet {
    /// Writes `agent_lines` through the agent and `plugin_lines` as osquery's own logger,
    /// interleaved, and waits until the stream contains all of them and the agent has sent its
    /// alerts.
    fn start(seed: u64, agent_lines: u64, plugin_lines: u64) -> Fleet {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let emulator = Emulator::start();
        let client = runtime.block_on(kinesis::client(&emulator.endpoint()));
        runtime.block_on(kinesis::create_stream(&client, STREAM, 1));
        let agent_webhook = Webhook::start();
        let agent = Agent::start(
            &repo().join("conf"),
            &emulator,
            json!({
                "kinesis": {"packed_record_bytes": 2048, "linger_ms": 20},
                // Every alert becomes its own message, so the webhook can count them.
                "slack": {"min_interval_ms": 1, "burst": 1000, "max_backlog": 100_000},
            }),
            &agent_webhook,
        );

        let mut rng = Rng::new(seed);
        let mut written = Vec::new();
        let mut agent_netcat = Vec::new();
        let mut plugin_netcat = Vec::new();
        let mut next_agent = 0;
        let mut next_plugin = agent_lines;
        while next_agent < agent_lines || next_plugin < agent_lines + plugin_lines {
            let count = rng.range(5, 25).min(agent_lines - next_agent);
            let mut lines = Vec::new();
            for id in next_agent..next_agent + count {
                let netcat = rng.range(0, 6) == 0;
                if netcat {
                    agent_netcat.push(id);
                }
                lines.push(
                    if netcat {
                        netcat_line(id)
                    } else {
                        worker_line(id)
                    }
                    .into_bytes(),
                );
                written.push(id);
            }
            next_agent += count;
            agent.append(&lines);
            let count = rng
                .range(2, 10)
                .min(agent_lines + plugin_lines - next_plugin);
            for id in next_plugin..next_plugin + count {
                let netcat = rng.range(0, 3) == 0;
                if netcat {
                    plugin_netcat.push(id);
                }
                let line = if netcat {
                    netcat_line(id)
                } else {
                    worker_line(id)
                };
                let data = osquery_plugin_record(line.as_bytes());
                let put = client
                    .put_record()
                    .stream_name(STREAM)
                    .partition_key(format!("osquery-{}", id % 3))
                    .data(aws_sdk_kinesis::primitives::Blob::new(data));
                runtime
                    .block_on(put.send())
                    .expect("PutRecord to kinesalite");
                written.push(id);
            }
            next_plugin += count;
            std::thread::sleep(Duration::from_millis(rng.range(10, 60)));
        }

        let deadline = Instant::now() + Duration::from_secs(120);
        let records = loop {
            let records = runtime.block_on(kinesis::read_all(&client, STREAM));
            let delivered = Delivered::from_records(&records);
            let alerts = webhook_alerts(&agent_webhook).len();
            if delivered.counts.len() >= written.len() && alerts >= agent_netcat.len() {
                break records;
            }
            assert!(
                Instant::now() < deadline,
                "in 120 s the stream got {} of {} lines and the agent sent {alerts} of {} alerts; agent log:\n{}",
                delivered.counts.len(),
                written.len(),
                agent_netcat.len(),
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        Fleet {
            _emulator: emulator,
            _agent: agent,
            agent_webhook,
            records,
            written,
            agent_netcat,
            plugin_netcat,
        }
    }
}

/// What the event source mapping saw.
#[derive(Debug, Default)]
struct Mapping {
    invocations: u32,
    /// Responses that named a record to retry from.
    partial: u32,
    /// Invocations that failed whole: an error response, or no response in time.
    failed: u32,
    /// Containers started after the first one.
    restarts: u32,
    /// Records in all invocations, counting each time a record was in one.
    records_invoked: u64,
    /// Messages the Lambda's webhook accepted during invocations that were then killed.
    sent_before_kill: u64,
    /// Lines in records the Lambda finished, by id, counting every time.
    processed: BTreeMap<u64, u32>,
    /// Problems with the responses themselves, such as naming a record not in the batch.
    violations: Vec<String>,
}

/// Runs the records through `bootstrap` in batches until every record is finished, as
/// Lambda's event source mapping does with `ReportBatchItemFailures`. Kills the container
/// `kills` times: in every other invocation that sends a message, as soon as the Lambda's
/// webhook has received one, before the Lambda reads the response.
fn run_mapping(records: &[StreamRecord], webhook: &Webhook, kills: u32) -> Mapping {
    let api = RuntimeApi::start();
    let environment = [
        ("EDGEALERT_CONF", repo().join("conf").display().to_string()),
        (
            "EDGEALERT_SLACK_WEBHOOKS",
            webhook.url("/services/T0/B0/LAMBDASECRET"),
        ),
        ("EDGEALERT_SLACK_MIN_INTERVAL_MS", "10".to_owned()),
        ("EDGEALERT_DEADLINE_MARGIN_MS", "1000".to_owned()),
        // The 3 s invocations leave 2 s for Slack; the slowest scripted response is 150 ms.
        ("EDGEALERT_SLACK_MIN_REQUEST_MS", "200".to_owned()),
    ];
    let mut bootstrap = Some(Bootstrap::start(&api, &environment));
    let mut mapping = Mapping::default();
    let mut position = 0;
    let mut attempts_here = 0;
    let mut sending_invocations = 0;
    let mut killed = 0;
    while position < records.len() {
        attempts_here += 1;
        assert!(
            attempts_here <= MAX_ATTEMPTS_PER_POSITION,
            "record {position} failed {MAX_ATTEMPTS_PER_POSITION} invocations: {mapping:?}"
        );
        if bootstrap.is_none() {
            bootstrap = Some(Bootstrap::start(&api, &environment));
            mapping.restarts += 1;
        }
        let batch = &records[position..records.len().min(position + BATCH_SIZE)];
        let pairs: Vec<(String, Vec<u8>)> = batch
            .iter()
            .map(|record| (record.sequence_number.clone(), record.data.clone()))
            .collect();
        let event = serde_json::to_vec(&kinesis_event_json(STREAM_ARN, &pairs)).unwrap();
        mapping.invocations += 1;
        let mut sending = false;
        let accepted_before = webhook.accepted().len();
        let request_id = api.invoke(&event, INVOCATION_TIMEOUT);
        let wait_until = Instant::now() + INVOCATION_TIMEOUT + Duration::from_secs(5);
        let result = loop {
            if let Some(result) = api.result(&request_id, Duration::from_millis(5)) {
                break Some(result);
            }
            let accepted = webhook.accepted().len();
            if accepted > accepted_before && !sending {
                sending = true;
                sending_invocations += 1;
            }
            if sending && killed < kills && sending_invocations % 2 == 1 {
                killed += 1;
                // Drop kills the process with SIGKILL, as a crash or an out-of-memory
                // kill would end the container.
                bootstrap = None;
                mapping.sent_before_kill += (accepted - accepted_before) as u64;
                break None;
            }
            if Instant::now() > wait_until {
                bootstrap = None;
                break None;
            }
        };
        let finished = match result {
            Some(Invocation::Response(body)) => {
                let failures = body["batchItemFailures"].as_array().cloned();
                match failures.as_deref() {
                    Some([]) => batch.len(),
                    Some([failure, ..]) => {
                        mapping.partial += 1;
                        let named = failure["itemIdentifier"].as_str().unwrap_or("");
                        match batch
                            .iter()
                            .position(|record| record.sequence_number == named)
                        {
                            Some(index) => index,
                            None => {
                                mapping
                                    .violations
                                    .push(format!("response named {named:?}, not in the batch"));
                                0
                            }
                        }
                    }
                    None => {
                        mapping
                            .violations
                            .push(format!("response without batchItemFailures: {body}"));
                        0
                    }
                }
            }
            Some(Invocation::Error { .. }) | None => {
                mapping.failed += 1;
                0
            }
        };
        mapping.records_invoked += batch.len() as u64;
        for (id, count) in Delivered::from_records(&batch[..finished]).counts {
            *mapping.processed.entry(id).or_default() += count;
        }
        if finished > 0 {
            position += finished;
            attempts_here = 0;
        }
    }
    mapping
}

/// Returns the responses of the Lambda's webhook. Every third message is slowed by 150 ms,
/// below the 200 ms a request is always given, so a slow response is never cut off. The
/// others include 5xx responses that the Lambda retries, short `Retry-After` waits, and
/// waits longer than the 2 s an invocation has for Slack, which end it with a
/// `batchItemFailures` entry.
fn faulty_answers(rng: &mut Rng, count: usize) -> Vec<Reply> {
    (0..count)
        .map(|index| match rng.range(0, 12) {
            0 => Reply::status(500, "server_error"),
            1 => Reply::status(503, "service_unavailable"),
            2 => Reply::rate_limited(1),
            3 => Reply::rate_limited(4),
            _ if index % 3 == 0 => Reply {
                delay: Duration::from_millis(150),
                ..Reply::status(200, "ok")
            },
            _ => Reply::status(200, "ok"),
        })
        .collect()
}

/// Accounts for the lines the Lambda finished and the alerts of both webhooks.
fn account(report: &mut Report, fleet: &Fleet, mapping: &Mapping, lambda_webhook: &Webhook) {
    let written = &fleet.written;
    let lost: Vec<u64> = written
        .iter()
        .copied()
        .filter(|id| !mapping.processed.contains_key(id))
        .collect();
    report.tally = Tally {
        written: written.len() as u64,
        unique_delivered: mapping.processed.len() as u64,
        duplicates: 0,
        lost: lost.len() as u64,
        lost_ids: lost.iter().copied().take(10).collect(),
        ..Tally::default()
    };
    report.check_no_loss();

    let redelivered = mapping.records_invoked - fleet.records.len() as u64;
    report.note(format!(
        "{} records in {} invocations: {} responses named a record to retry from, {} invocations failed whole, {} containers restarted; {redelivered} records delivered to the Lambda again by those retries",
        fleet.records.len(),
        mapping.invocations,
        mapping.partial,
        mapping.failed,
        mapping.restarts
    ));
    for violation in &mapping.violations {
        report.check(false, violation.clone());
    }

    let from_agent = webhook_alerts(&fleet.agent_webhook);
    let from_lambda = webhook_alerts(lambda_webhook);
    let agent_alerts_from_lambda: Vec<&u64> = fleet
        .agent_netcat
        .iter()
        .filter(|id| from_lambda.contains_key(id))
        .collect();
    report.check(
        agent_alerts_from_lambda.is_empty(),
        format!(
            "the Lambda notified {} alerts the agent had sent: {agent_alerts_from_lambda:?}",
            agent_alerts_from_lambda.len()
        ),
    );
    let plugin_alerts_from_agent = fleet
        .plugin_netcat
        .iter()
        .filter(|id| from_agent.contains_key(id))
        .count();
    report.check(
        plugin_alerts_from_agent == 0,
        format!("the agent's webhook got {plugin_alerts_from_agent} alerts of other hosts"),
    );
    report.note(format!(
        "{} alerts by the agent, {} by the Lambda",
        fleet.agent_netcat.len(),
        fleet.plugin_netcat.len()
    ));

    let mut delivered = from_agent;
    for (id, count) in from_lambda {
        *delivered.entry(id).or_default() += count;
    }
    let mut expected: Vec<u64> = fleet.agent_netcat.clone();
    expected.extend(&fleet.plugin_netcat);
    expected.sort_unstable();
    if mapping.sent_before_kill == 0 {
        report.alerts(&expected, &delivered);
    } else {
        report.alerts_resent_at_most(&expected, &delivered, mapping.sent_before_kill);
    }
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it with kinesalite and the agent binary"]
fn matrix_lambda_invocation_failing_mid_batch() {
    let scale = Scale::from_env();
    let mut report = Report::new("Lambda invocation failing mid-batch");
    let fleet = Fleet::start(91, scale.pick(240, 2400), scale.pick(120, 1200));
    let lambda_webhook = Webhook::start();
    let mut rng = Rng::new(92);
    lambda_webhook.script(faulty_answers(&mut rng, fleet.plugin_netcat.len() * 2));

    let mapping = run_mapping(&fleet.records, &lambda_webhook, 0);

    account(&mut report, &fleet, &mapping, &lambda_webhook);
    report.check(
        mapping.partial > 0,
        "no invocation ran out of time, so batchItemFailures went untested",
    );
    report.check(
        mapping.failed == 0,
        format!("{} invocations failed whole", mapping.failed),
    );
    report.finish();
}

#[test]
#[ignore = "fault matrix: scripts/faults runs it with kinesalite and the agent binary"]
fn matrix_lambda_container_killed_mid_batch() {
    let scale = Scale::from_env();
    let mut report = Report::new("Lambda container killed mid-batch");
    let fleet = Fleet::start(93, scale.pick(240, 2400), scale.pick(120, 1200));
    let lambda_webhook = Webhook::start();
    // Slow responses keep an invocation busy long enough to be killed between two messages.
    lambda_webhook.script((0..fleet.plugin_netcat.len() * 2).map(|_| Reply {
        delay: Duration::from_millis(100),
        ..Reply::status(200, "ok")
    }));
    let kills = scale.pick(3, 10);

    let mapping = run_mapping(&fleet.records, &lambda_webhook, kills);

    account(&mut report, &fleet, &mapping, &lambda_webhook);
    report.check(
        mapping.restarts == kills,
        format!("{} of {kills} kills hit an invocation", mapping.restarts),
    );
    report.note(
        "a killed container loses the Lambda's in-memory dedup state, so the new one sends again the messages the killed invocation had sent",
    );
    report.finish();
}
