#!/usr/bin/env python3
"""Runs the Lambda's `bootstrap` binary over a Kinesis stream for scripts/demo, on 127.0.0.1.

It plays the two AWS parts around the function:

- the event source mapping: reads the stream from its oldest record with GetShardIterator
  and GetRecords. It invokes the function with batches of up to 100 records (the template's
  default BatchSize), one invocation at a time per shard, in Lambda's Kinesis event format;
- the Lambda Runtime API that a custom runtime polls: GET /2018-06-01/runtime/invocation/next,
  POST .../invocation/{id}/response and .../invocation/{id}/error, and
  POST /2018-06-01/runtime/init/error.

It prints the function's audit lines ("Alert.") and batch summaries as they arrive, and
writes counts to --summary as JSON.

Usage: demo_lambda.py --bootstrap PATH --conf DIR --kinesis-port P --stream S
                      --webhook URL --summary FILE
"""

import argparse
import base64
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid

# No __pycache__ beside the scripts: the repository does not ignore it.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_kinesis  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
API_PREFIX = "/2018-06-01/runtime/"
REGION = "us-east-1"
# packaging/lambda/template.yaml: BatchSize defaults to 100 and Timeout is 120 s.
BATCH_SIZE = 100
FUNCTION_TIMEOUT_SECONDS = 120


class RuntimeApi(http.server.ThreadingHTTPServer):
    """The Lambda Runtime API on 127.0.0.1, serving invocations from a queue."""

    daemon_threads = True

    def __init__(self, function_arn):
        super().__init__(("127.0.0.1", 0), RuntimeApiHandler)
        self.function_arn = function_arn
        self.condition = threading.Condition()
        self.queue = []
        self.results = {}
        self.init_error = None
        self.closing = False

    @property
    def address(self):
        return "127.0.0.1:%d" % self.server_address[1]

    def invoke(self, event, timeout_seconds):
        """Queue one invocation and return its request id."""
        request_id = str(uuid.uuid4())
        deadline_ms = int((time.time() + timeout_seconds) * 1000)
        with self.condition:
            self.queue.append((request_id, json.dumps(event).encode(), deadline_ms))
            self.condition.notify_all()
        return request_id

    def wait_result(self, request_id, timeout, process):
        """Wait for the result of `request_id` and return ("response" or "error", body, error
        type), or ("init_error", ...), ("exited", ...) or ("timeout", ...) when none comes."""
        deadline = time.time() + timeout
        with self.condition:
            while True:
                if request_id in self.results:
                    return self.results[request_id]
                if self.init_error:
                    return ("init_error",) + self.init_error
                if process.poll() is not None:
                    return ("exited", "bootstrap exited with status %s" % process.returncode, None)
                left = deadline - time.time()
                if left <= 0:
                    return ("timeout", "no result within %d s" % timeout, None)
                self.condition.wait(min(left, 0.2))

    def next_invocation(self):
        """Block until an invocation is queued and return it, or None once the server closes."""
        with self.condition:
            while not self.queue and not self.closing:
                self.condition.wait(0.5)
            return self.queue.pop(0) if self.queue else None

    def store(self, request_id, result):
        with self.condition:
            if request_id is None:
                self.init_error = result
            else:
                self.results[request_id] = result
            self.condition.notify_all()

    def handle_error(self, request, client_address):
        # bootstrap is stopped while it waits for the next invocation, which closes its
        # connection. Report only other errors.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close(self):
        with self.condition:
            self.closing = True
            self.condition.notify_all()
        self.shutdown()
        self.server_close()


class RuntimeApiHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != API_PREFIX + "invocation/next":
            self.respond(404, {"errorMessage": "unknown path %s" % self.path})
            return
        invocation = self.server.next_invocation()
        if invocation is None:
            # The demo is over and bootstrap is being stopped, so close without a response.
            return
        request_id, body, deadline_ms = invocation
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline_ms))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", self.server.function_arn)
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-%s;Sampled=0" % request_id.replace("-", "")[:24])
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = body.decode(errors="replace")
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
        route = self.path[len(API_PREFIX):] if self.path.startswith(API_PREFIX) else None
        if route == "init/error":
            self.server.store(None, (document, error_type))
        elif route and route.startswith("invocation/") and route.endswith("/response"):
            self.server.store(route[len("invocation/"):-len("/response")], ("response", document, None))
        elif route and route.startswith("invocation/") and route.endswith("/error"):
            self.server.store(route[len("invocation/"):-len("/error")], ("error", document, error_type))
        else:
            self.respond(404, {"errorMessage": "unknown path %s" % self.path})
            return
        self.respond(202, {"status": "OK"})

    def respond(self, status, document):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def account(arn):
    """Return the account id of an ARN (arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE)."""
    return arn.split(":")[4]


def kinesis_event(records, shard_id, stream_arn):
    """Build the event Lambda delivers for Kinesis records of one shard."""
    event_records = []
    for record in records:
        event_records.append({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": record["partition_key"],
                "sequenceNumber": record["sequence_number"],
                "data": base64.b64encode(record["data"]).decode(),
                "approximateArrivalTimestamp": record["arrival"],
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": "%s:%s" % (shard_id, record["sequence_number"]),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::%s:role/edgealert-lambda" % account(stream_arn),
            "awsRegion": REGION,
            "eventSourceARN": stream_arn,
        })
    return {"Records": event_records}


class FunctionLog:
    """Reader of the function's JSON log lines that prints the audit, batch and error lines and
    keeps every line."""

    def __init__(self, process):
        self.lines = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.read, args=(stream,), daemon=True)
                        for stream in (process.stdout, process.stderr)]
        for thread in self.threads:
            thread.start()

    def read(self, stream):
        for raw in stream:
            text = raw.decode(errors="replace").rstrip("\n")
            try:
                entry = json.loads(text)
            except ValueError:
                entry = {"message": text, "level": "INFO"}
            if not isinstance(entry, dict):
                entry = {"message": text, "level": "INFO"}
            with self.lock:
                self.lines.append(entry)
            printed = format_log_line(entry)
            if printed:
                sys.stdout.write(printed + "\n")
                sys.stdout.flush()

    def join(self, timeout):
        for thread in self.threads:
            thread.join(timeout)

    def entries(self, message):
        with self.lock:
            return [entry for entry in self.lines if entry.get("message") == message]


def format_log_line(entry):
    """Return the line to print for one log entry of the function, or None to skip it."""
    message = entry.get("message", "")
    if message == "Alert.":
        return ("  [lambda]  Alert. %-26s alert %s decision=%s notified_by=%s delivery=%s" % (
            entry.get("rule"), str(entry.get("alert_id", ""))[:12], entry.get("decision"),
            entry.get("notified_by"), entry.get("delivery")))
    if message == "Processed a batch.":
        keys = ("records", "lines", "classified", "rows", "alerts", "sent", "dropped", "bad_records",
                "unclassified_lines", "duration_ms")
        fields = " ".join("%s=%s" % (key, entry[key]) for key in keys if key in entry)
        return "  [lambda]  Processed a batch. " + fields
    if message == "Initialized.":
        return "  [lambda]  Initialized: %s rules, %s log types, conf %s, in %s ms" % (
            entry.get("rules"), entry.get("log_types"), entry.get("conf"), entry.get("init_ms"))
    if entry.get("level") in ("WARN", "ERROR"):
        details = {key: value for key, value in entry.items() if key not in ("timestamp", "level", "message")}
        return "  [lambda]  %s %s %s" % (entry.get("level"), message, json.dumps(details) if details else "")
    return None


def function_env(api, conf, webhook):
    """Return the environment Lambda gives a function, plus the edgealert settings. Fake
    credentials and a disabled instance metadata service keep the AWS SDK from reaching AWS."""
    return {
        "PATH": "/usr/bin:/bin",
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": "edgealert",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/edgealert",
        "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d") + "/[$LATEST]demo",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "AKIAEDGEALERTDEMO",
        "AWS_SECRET_ACCESS_KEY": "edgealert-demo-not-a-secret",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/edgealert-demo",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/edgealert-demo",
        # The deployment zip contains bootstrap and conf/, and the repository root contains conf/.
        "LAMBDA_TASK_ROOT": REPO,
        "EDGEALERT_CONF": conf,
        "EDGEALERT_SLACK_WEBHOOKS": json.dumps({"security": webhook}),
    }


def read_batches(kinesis, stream):
    """Read the stream as the event source mapping does: per shard, oldest first, in
    batches of at most BATCH_SIZE records. Returns a list of (shard id, records)."""
    batches = []
    for shard_id in kinesis.shard_ids(stream):
        iterator = kinesis.iterator(stream, shard_id)
        records = []
        while iterator:
            found, iterator, behind = kinesis.get_records(iterator, limit=BATCH_SIZE)
            records += found
            if not found and behind == 0:
                break
        for start in range(0, len(records), BATCH_SIZE):
            batches.append((shard_id, records[start:start + BATCH_SIZE]))
    return batches


def plural(count, noun):
    return "%d %s%s" % (count, noun, "" if count == 1 else "s")


def invoke_batches(api, process, batches, stream_arn):
    """Invoke the function once per batch, in order, and stop at the first failed invocation.
    Returns one result dict per invocation."""
    results = []
    for shard_id, records in batches:
        request_id = api.invoke(kinesis_event(records, shard_id, stream_arn), FUNCTION_TIMEOUT_SECONDS)
        kind, body, error_type = api.wait_result(request_id, FUNCTION_TIMEOUT_SECONDS + 10, process)
        failures = body.get("batchItemFailures", []) if kind == "response" and isinstance(body, dict) else []
        results.append({"request_id": request_id, "result": kind, "batch_item_failures": len(failures)})
        if kind != "response":
            print("  [mapping] invocation %s failed: %s %s %s" % (
                request_id[:8], kind, error_type or "", json.dumps(body)), flush=True)
            break
        print("  [mapping] invocation %s: %s, response batchItemFailures=%s" % (
            request_id[:8], plural(len(records), "record"), json.dumps(failures)), flush=True)
    return results


def summarize(results, log):
    """Return the counts that scripts/demo checks."""
    alerts = log.entries("Alert.")
    batches_logged = log.entries("Processed a batch.")
    counts = {
        "invocations": len(results),
        "failed_invocations": sum(1 for result in results if result["result"] != "response"),
        "batch_item_failures": sum(result["batch_item_failures"] for result in results),
        "records": sum(entry.get("records", 0) for entry in batches_logged),
        "lines": sum(entry.get("lines", 0) for entry in batches_logged),
        "alerts": len(alerts),
        "decisions": {},
        "notified_by": {},
        "audited_messages_sent": sum(1 for entry in alerts
                                     if entry.get("notified_by") == "lambda" and entry.get("delivery") == "sent"),
        "batch_messages_sent": sum(entry.get("sent", 0) for entry in batches_logged),
        "errors": sum(1 for entry in log.lines if entry.get("level") == "ERROR"),
    }
    for entry in alerts:
        for key, field in (("decisions", "decision"), ("notified_by", "notified_by")):
            value = str(entry.get(field))
            counts[key][value] = counts[key].get(value, 0) + 1
    return counts


def run(args):
    kinesis = demo_kinesis.Kinesis(args.kinesis_port)
    summary = kinesis.call("DescribeStreamSummary", {"StreamName": args.stream})["StreamDescriptionSummary"]
    stream_arn = summary["StreamARN"]
    batches = read_batches(kinesis, args.stream)
    records = sum(len(batch) for _, batch in batches)
    print("  [mapping] %s in %s, %s of up to %d records" % (
        plural(records, "record"), stream_arn, plural(len(batches), "invocation"), BATCH_SIZE), flush=True)

    # kinesalite puts every stream in account 000000000000, so the function is there too.
    api = RuntimeApi("arn:aws:lambda:%s:%s:function:edgealert" % (REGION, account(stream_arn)))
    threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    process = subprocess.Popen([args.bootstrap], env=function_env(api, args.conf, args.webhook),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = FunctionLog(process)
    try:
        results = invoke_batches(api, process, batches, stream_arn)
    finally:
        # Lambda would freeze the idle function. The demo stops it, then reads the rest of its log.
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.join(timeout=5)
        api.close()

    counts = summarize(results, log)
    with open(args.summary, "w") as f:
        json.dump(counts, f)
    return 0 if counts["failed_invocations"] == 0 else 1


def main():
    parser = argparse.ArgumentParser(description="Run the Lambda's bootstrap over a Kinesis stream on 127.0.0.1.")
    parser.add_argument("--bootstrap", required=True, help="path of the bootstrap binary")
    parser.add_argument("--conf", required=True, help="configuration directory (EDGEALERT_CONF)")
    parser.add_argument("--kinesis-port", type=int, required=True, help="kinesalite's port on 127.0.0.1")
    parser.add_argument("--stream", required=True, help="stream name")
    parser.add_argument("--webhook", required=True, help="Slack webhook URL for every descriptor")
    parser.add_argument("--summary", required=True, help="file that receives the counts as JSON")
    args = parser.parse_args()
    try:
        sys.exit(run(args))
    except (demo_kinesis.KinesisError, OSError) as error:
        sys.exit("demo_lambda.py: %s" % error)


if __name__ == "__main__":
    main()
