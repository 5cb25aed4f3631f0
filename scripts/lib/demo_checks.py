#!/usr/bin/env python3
"""Checks of scripts/demo.

Commands:
    demo_checks.py wait-agent --status FILE --written FILE [--timeout S]
        wait until the agent's status.json shows every written line read, every line accepted by
        Kinesis, nothing buffered or spooled and no Slack message waiting
    demo_checks.py summary --written F --agent-status F --stream F --lambda F
                           --slack-messages F --slack-before-lambda N --agent-exit-status N
        print the summary table and exit 1 when a check fails
"""

import argparse
import json
import sys
import time


def load(path):
    with open(path) as f:
        return json.load(f)


def read_status(path):
    """Return the agent's status.json, or None while the agent is replacing it."""
    try:
        return load(path)
    except (FileNotFoundError, ValueError):
        return None


def drained(status, lines):
    """Return a list of what the agent has not done yet; empty once it has caught up."""
    kinesis = status.get("kinesis") or {}
    slack = status.get("slack") or {}
    pending = []
    if status["counters"]["lines"] < lines:
        pending.append("read %d of %d lines" % (status["counters"]["lines"], lines))
    if kinesis.get("entries_sent", 0) < lines:
        pending.append("Kinesis accepted %d of %d lines" % (kinesis.get("entries_sent", 0), lines))
    if kinesis.get("buffered_records") or kinesis.get("spool_records"):
        pending.append("%s records buffered, %s spooled" % (kinesis.get("buffered_records"),
                                                           kinesis.get("spool_records")))
    if slack.get("outbox"):
        pending.append("%d Slack messages queued" % slack["outbox"])
    return pending


def wait_agent(args):
    lines = load(args.written)["lines"]
    deadline = time.time() + args.timeout
    pending = ["status.json not written yet"]
    while time.time() < deadline:
        status = read_status(args.status)
        if status is not None:
            pending = drained(status, lines)
            if not pending:
                return 0
        time.sleep(0.2)
    print("the agent did not catch up within %d s: %s" % (args.timeout, "; ".join(pending)), file=sys.stderr)
    return 1


def slack_messages(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def summary(args):
    written = load(args.written)
    status = load(args.agent_status)
    stream = load(args.stream)
    function = load(args.function_summary)
    messages = slack_messages(args.slack_messages)
    kinesis = status.get("kinesis") or {}
    agent_sent = sum(webhook.get("sent", 0) for webhook in (status["slack"].get("webhooks") or {}).values())
    from_lambda = len(messages) - args.slack_before_lambda
    alert_ids = [message["alert_id"] for message in messages if message.get("alert_id")]
    repeated_ids = sorted({alert_id for alert_id in alert_ids if alert_ids.count(alert_id) > 1})
    decided_by = ", ".join("%s %d" % pair for pair in sorted(function["notified_by"].items())) or "none"

    rows = [
        ("lines written by osqueryd", "%d (%d before the rotation, %d after)" % (
            written["lines"], written["lines_before_rotation"], written["lines_after_rotation"])),
        ("lines read by the agent", "%d" % status["counters"]["lines"]),
        ("records forwarded by the agent", "%d (%d lines, %d bytes, in %d PutRecords calls)" % (
            kinesis.get("records_sent", 0), kinesis.get("entries_sent", 0), kinesis.get("bytes_sent", 0),
            kinesis.get("requests", 0))),
        ("lines in Kinesis", "%d in %d records, %d delivered twice" % (
            stream["unique_lines"], stream["records"], stream["duplicate_lines"])),
        ("lines the Lambda processed", "%d in %d invocation%s" % (
            function["lines"], function["invocations"], "" if function["invocations"] == 1 else "s")),
        ("alerts the agent sent to Slack", "%d (from %d rule matches)" % (agent_sent, status["counters"]["alerts"])),
        ("Slack messages received", "%d" % len(messages)),
        ("messages from the Lambda", "%d (it audited %d alerts, notified_by: %s)" % (
            from_lambda, function["alerts"], decided_by)),
        ("alert ids in Slack more than once", "%d" % len(repeated_ids)),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print("  %-*s  %s" % (width, label, value))

    checks = [
        ("every written line was read by the agent", status["counters"]["lines"], written["lines"]),
        ("the agent exited with status 0 on SIGTERM", args.agent_exit_status, 0),
        ("every written line reached Kinesis once", stream["unique_lines"], written["lines"]),
        ("no line was delivered to Kinesis twice", stream["duplicate_lines"], 0),
        ("no record in the stream failed to decode", stream["bad_records"], 0),
        ("the Lambda processed every line in the stream", function["lines"], stream["lines"]),
        ("no invocation failed or asked for a retry", function["failed_invocations"] + function["batch_item_failures"], 0),
        ("the function logged no error", function["errors"], 0),
        ("the agent's messages all arrived", args.slack_before_lambda, agent_sent),
        ("the Lambda sent no message", from_lambda, 0),
        ("the Lambda's audit lines show no message it sent", function["audited_messages_sent"], 0),
        ("the Lambda's batch summaries show no message it sent", function["batch_messages_sent"], 0),
        ("no alert id arrived twice", len(repeated_ids), 0),
    ]
    failed = [(name, got, expected) for name, got, expected in checks if got != expected]
    if agent_sent == 0:
        failed.append(("the scenario raised at least one Slack alert", agent_sent, ">= 1"))
    for name, got, expected in failed:
        print("FAIL: %s: expected %s, got %s" % (name, expected, got))
    if repeated_ids:
        print("      alert ids that arrived more than once: %s" % ", ".join(repeated_ids))
    if failed:
        return 1
    print("PASS: all %d checks held" % (len(checks) + 1))
    return 0


def main():
    parser = argparse.ArgumentParser(description="Checks of scripts/demo.")
    commands = parser.add_subparsers(dest="command", required=True)
    wait = commands.add_parser("wait-agent", help="wait until the agent has forwarded and notified everything")
    wait.add_argument("--status", required=True, help="the agent's status.json")
    wait.add_argument("--written", required=True, help="JSON counts of demo_osqueryd.py")
    wait.add_argument("--timeout", type=float, default=60, help="seconds to wait (default 60)")
    report = commands.add_parser("summary", help="print the summary and check it")
    report.add_argument("--written", required=True, help="JSON counts of demo_osqueryd.py")
    report.add_argument("--agent-status", required=True, help="the agent's status.json, taken before it stopped")
    report.add_argument("--stream", required=True, help="JSON counts of `demo_kinesis.py count`")
    report.add_argument("--lambda", dest="function_summary", required=True, help="JSON counts of demo_lambda.py")
    report.add_argument("--slack-messages", required=True, help="JSON lines of demo_webhook.py")
    report.add_argument("--slack-before-lambda", type=int, required=True,
                        help="messages received before the Lambda started")
    report.add_argument("--agent-exit-status", type=int, required=True,
                        help="exit status of the agent after SIGTERM")
    args = parser.parse_args()
    sys.exit(wait_agent(args) if args.command == "wait-agent" else summary(args))


if __name__ == "__main__":
    main()
