#!/usr/bin/env python3
"""Measures Kinesis forwarding of `edgealert run` against kinesalite on 127.0.0.1.

Figures, for the `packed` and `compat` record formats:
- ceiling: rows/s that kinesalite accepts from a minimal client, which sends prepared
  PutRecords requests one at a time, as the agent does (one call in flight);
- throughput: rows/s that the agent forwards from a pre-written fleet log, from process start
  until status.json reports every line accepted (`last_success_unix_ms` of that status gives
  the time of the last accepted call);
- PUT payload units and records per million rows, from the agent's status counters, for the
  pre-written log, for lines appended at a steady rate and for the memory run;
- latency: time from appending a line to the PutRecords response that carries it, at the
  default linger_ms, through a proxy that decodes each request;
- memory and idle CPU at 5,000 rows/s with forwarding off and on (packed).

The agent runs pinned to core bench_agent.AGENT_CORE; kinesalite, the proxy and this harness
run on bench_agent.HARNESS_CORE. The ceiling client runs on the agent's core, so both
producers compete with kinesalite the same way. Every server binds 127.0.0.1 and the agent
gets fake AWS credentials with instance metadata disabled.

Needs the `zstandard` package (scripts/lib/bench_venv.sh installs it) and kinesalite
(scripts/lib/kinesalite.sh installs it). Run through scripts/bench, or:
    .tools/bench-venv/bin/python scripts/bench_kinesis.py --kinesalite-js scripts/lib/kinesalite.js
"""

import argparse
import base64
import http.client
import http.server
import json
import math
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

# No __pycache__ beside the scripts: the repository does not ignore it.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_agent  # noqa: E402
import gen_osquery  # noqa: E402

try:
    import zstandard
except ImportError:
    sys.exit("bench_kinesis.py: the zstandard package is missing: run it with the Python of "
             ".tools/bench-venv, which install_bench_venv in scripts/lib/bench_venv.sh creates")

STREAM = "osquery-records"
REGION = "us-east-1"
TARGET_PREFIX = "Kinesis_20131202."
# kinesalite 3.3.3 checks that the Authorization header names Credential, SignedHeaders and
# Signature and that X-Amz-Date or Date is present; it never verifies the signature.
FAKE_AUTHORIZATION = ("AWS4-HMAC-SHA256 Credential=AKIAEDGEALERTBENCH/20250314/us-east-1/kinesis/aws4_request, "
                      "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64)

# Kinesis limits (the service's documented quotas) and the agent's packed defaults.
MAX_REQUEST_RECORDS = 500
MAX_REQUEST_BYTES = 5 * 1024 * 1024
PAYLOAD_UNIT_BYTES = 25 * 1024
PACKED_BODY_BYTES = 256 * 1024
ZSTD_LEVEL = 3

# Packed record layout (docs/kinesis-records.md): "EAP1", a codec byte, then the body: a
# JSON header line and entries, each with a 20-byte big-endian frame header.
PACKED_MARKER = b"EAP1"
FRAME = struct.Struct(">BBHQII")
SEQUENCE = re.compile(rb'"bench_seq":"(\d+)"')


def percentile(values, fraction):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * fraction))]


def spread(values):
    """Return the median, minimum and maximum of `values`."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


class Emulator:
    """A kinesalite process on 127.0.0.1, pinned to the harness core, with one stream."""

    def __init__(self, wrapper, shards=1):
        self.process = subprocess.Popen(
            ["taskset", "-c", str(bench_agent.HARNESS_CORE), "node", wrapper, "--port", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.process.stdout.readline().decode().strip()
        if not line.startswith("listening 127.0.0.1:"):
            self.close()
            sys.exit("kinesalite did not start: %s printed %r" % (wrapper, line))
        self.port = int(line.rsplit(":", 1)[1])
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.call("CreateStream", {"StreamName": STREAM, "ShardCount": shards})
        deadline = time.time() + 30
        while self.call("DescribeStreamSummary", {"StreamName": STREAM})[
                "StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
            if time.time() > deadline:
                sys.exit("stream %s is not ACTIVE after 30 s" % STREAM)
            time.sleep(0.01)

    def schedstat(self):
        return bench_agent.schedstat(self.process.pid)

    def call(self, operation, payload):
        return self.send(operation, json.dumps(payload).encode())

    def send(self, operation, body):
        """Send one request with a prepared JSON body and return the decoded response."""
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET_PREFIX + operation,
                   "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                   "Authorization": FAKE_AUTHORIZATION}
        self.connection.request("POST", "/", body, headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            sys.exit("kinesalite %s failed with HTTP %d: %s" % (operation, response.status, data[:300]))
        return json.loads(data) if data else {}

    def close(self):
        self.process.stdin.close()
        self.process.terminate()
        self.process.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def kinesis_settings(endpoint, record_format):
    settings = {"stream": STREAM, "endpoint": endpoint, "region": REGION, "format": record_format}
    return {"kinesis": settings}


def fleet(seed, count, mark=False):
    """Return `count` fleet lines of one host and that host's identifier."""
    generator = gen_osquery.FleetGenerator(seed, mark=mark)
    iterator = iter(generator)
    lines = [next(iterator) for _ in range(count)]
    return lines, generator.hosts[0].host_identifier


# Emulator ceiling.

def packed_records(lines, path):
    """Encode lines into packed records as the agent's defaults do: bodies up to 256 KiB,
    zstd level 3. Returns (data, entries) pairs."""
    header = json.dumps({"v": 1, "agent": "bench", "version": "0", "files": [{"path": path, "id": "0:0"}]},
                        separators=(",", ":")).encode() + b"\n"
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    records, body, entries, offset = [], [header], 0, 0
    body_len = len(header)
    for line in lines:
        entry = line.data[:-1]
        if entries and body_len + FRAME.size + len(entry) > PACKED_BODY_BYTES:
            records.append((PACKED_MARKER + b"\x01" + compressor.compress(b"".join(body)), entries))
            body, entries, body_len = [header], 0, len(header)
        body.append(FRAME.pack(0, 0, 0, offset, 0, len(entry)) + entry)
        body_len += FRAME.size + len(entry)
        entries += 1
        offset += len(line.data)
    if entries:
        records.append((PACKED_MARKER + b"\x01" + compressor.compress(b"".join(body)), entries))
    return records


def put_records_bodies(records, key):
    """Group (data, entries) records into PutRecords bodies within the service's limits.
    Returns (body, entries) pairs."""
    bodies, batch, batch_bytes, batch_entries = [], [], 0, 0

    def close():
        payload = {"StreamName": STREAM, "Records": batch}
        bodies.append((json.dumps(payload).encode(), batch_entries))

    for data, entries in records:
        size = len(data) + len(key)
        if batch and (len(batch) == MAX_REQUEST_RECORDS or batch_bytes + size > MAX_REQUEST_BYTES):
            close()
            batch, batch_bytes, batch_entries = [], 0, 0
        batch.append({"Data": base64.b64encode(data).decode(), "PartitionKey": key})
        batch_bytes += size
        batch_entries += entries
    if batch:
        close()
    return bodies


def ceiling(wrapper, record_format, lines, key, runs):
    """Measure rows/s that kinesalite accepts from prepared requests sent one at a time."""
    if record_format == "compat":
        records = [(line.data[:-1], 1) for line in lines]
    else:
        records = packed_records(lines, "/var/log/osquery/osqueryd.results.log")
    rows_per_entry = sum(line.rows for line in lines) / len(lines)
    bodies = put_records_bodies(records, key)
    seconds, emulator_cpu, emulator_waiting = [], [], []
    for _ in range(runs):
        with Emulator(wrapper) as emulator:
            os.sched_setaffinity(0, {bench_agent.AGENT_CORE})
            started, (cpu, waiting) = time.perf_counter(), emulator.schedstat()
            for body, _ in bodies:
                response = emulator.send("PutRecords", body)
                if response.get("FailedRecordCount"):
                    sys.exit("kinesalite rejected %d records" % response["FailedRecordCount"])
            seconds.append(time.perf_counter() - started)
            cpu_after, waiting_after = emulator.schedstat()
            emulator_cpu.append((cpu_after - cpu) / seconds[-1])
            emulator_waiting.append((waiting_after - waiting) / seconds[-1])
            bench_agent.pin_harness()
    median = statistics.median(seconds)
    entries = sum(entries for _, entries in bodies)
    return {"format": record_format, "lines": len(lines), "rows": round(entries * rows_per_entry),
            "records": len(records), "requests": len(bodies), "runs": runs, "seconds": seconds,
            "kinesalite_cpu_share": emulator_cpu, "kinesalite_runqueue_share": emulator_waiting,
            "lines_per_s": entries / median, "rows_per_s": entries * rows_per_entry / median,
            "request_mib_per_s": sum(len(body) for body, _ in bodies) / median / 2**20}


# Forwarding throughput.

def wait_for_entries(agent, expected, timeout):
    """Poll status.json until the forwarder reports `expected` entries accepted and nothing
    buffered or spooled. Returns the kinesis section of that status."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        kinesis = agent.status().get("kinesis") or {}
        if (kinesis.get("entries_sent", 0) >= expected and kinesis.get("buffered_records") == 0
                and kinesis.get("spool_records") == 0):
            return kinesis
        if agent.process.poll() is not None:
            sys.exit("the agent exited with %s; see %s/agent.log" % (agent.process.returncode, agent.root))
        time.sleep(0.02)
    sys.exit("timed out after %d s waiting for %d entries; status: %s" % (timeout, expected, agent.status()))


def spool_moves(agent):
    """Count the agent's log messages about moving records to the on-disk spool.

    NOTE: this matches the text of an INFO message of agent/src/kinesis/sender.rs, and counts
    0 if that text changes."""
    with open(os.path.join(agent.root, "agent.log"), "rb") as f:
        return sum(1 for line in f if b"Moved records to the on-disk spool" in line)


def records_sink_run(lines, data):
    """Time one run without Kinesis, where the agent writes every line to its records file.

    This is the sink of bench_agent.py's throughput figure, measured here again so that it
    runs under the same load as the forwarding runs."""
    with tempfile.TemporaryDirectory() as root:
        agent = bench_agent.Agent(root)
        with open(agent.log, "wb") as f:
            f.write(data)
        started = time.perf_counter()
        agent.start()
        while bench_agent.size(agent.records) < len(data):
            time.sleep(0.002)
        seconds = time.perf_counter() - started
        agent_cpu, agent_waiting = bench_agent.schedstat(agent.process.pid)
        agent.stop()
    return {"seconds": seconds, "agent_cpu_share": agent_cpu / seconds,
            "agent_runqueue_share": agent_waiting / seconds}


def forward_run(wrapper, record_format, lines, data):
    """Time one run of the agent forwarding a pre-written log, up to the last accepted call."""
    with Emulator(wrapper) as emulator, tempfile.TemporaryDirectory() as root:
        agent = bench_agent.Agent(root, records=False, log_level="info",
                                  settings=kinesis_settings(emulator.endpoint, record_format))
        with open(agent.log, "wb") as f:
            f.write(data)
        emulator_cpu, emulator_waiting = emulator.schedstat()
        started = time.time()
        agent.start()
        kinesis = wait_for_entries(agent, len(lines), timeout=600)
        seconds = kinesis["last_success_unix_ms"] / 1000 - started
        # Shares of the run's time: on CPU, and runnable but waiting for the core. Both
        # counters also include the up to 20 ms of polling after the last call.
        agent_cpu, agent_waiting = bench_agent.schedstat(agent.process.pid)
        cpu_after, waiting_after = emulator.schedstat()
        agent.stop()
        return {"seconds": seconds, "agent_cpu_share": agent_cpu / seconds,
                "agent_runqueue_share": agent_waiting / seconds,
                "kinesalite_cpu_share": (cpu_after - emulator_cpu) / seconds,
                "kinesalite_runqueue_share": (waiting_after - emulator_waiting) / seconds,
                "spool_moves": spool_moves(agent),
                **counters(kinesis)}


def forward_throughput(wrapper, lines, runs):
    """Run the records sink, packed and compat in turn, `runs` times, so that the machine's
    load drifts over all three modes alike."""
    data = b"".join(line.data for line in lines)
    rows = sum(line.rows for line in lines)
    modes = {"records_sink": [], "packed": [], "compat": []}
    for _ in range(runs):
        modes["records_sink"].append(records_sink_run(lines, data))
        for record_format in ("packed", "compat"):
            modes[record_format].append(forward_run(wrapper, record_format, lines, data))
    report = {"lines": len(lines), "rows": rows, "bytes": len(data), "modes": {}}
    for mode, results in modes.items():
        median = statistics.median(result["seconds"] for result in results)
        summary = {"runs": results, "lines_per_s": len(lines) / median, "rows_per_s": rows / median,
                   "mib_per_s": len(data) / median / 2**20,
                   "rows_per_s_spread": spread([rows / result["seconds"] for result in results])}
        if mode != "records_sink":
            summary["per_million_rows"] = per_million(results[0], rows)
        report["modes"][mode] = summary
    return report


def counters(kinesis):
    keys = ("records_sent", "entries_sent", "bytes_sent", "payload_units", "requests", "throttled",
            "request_errors", "entries_retried", "lines_split", "dead_lettered")
    return {key: kinesis.get(key) for key in keys}


def per_million(result, rows):
    scale = 1e6 / rows
    return {"payload_units": result["payload_units"] * scale, "records": result["records_sent"] * scale,
            "requests": result["requests"] * scale, "bytes": result["bytes_sent"] * scale}


# Append-to-acknowledgement latency.

def decode_entries(data):
    """Return the byte strings of the lines inside one record's data, in either format."""
    if not data.startswith(PACKED_MARKER):
        return [data]
    codec, body = data[4], data[5:]
    if codec == 1:
        body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
    elif codec != 0:
        raise ValueError("unknown codec byte %d" % codec)
    position = body.index(b"\n") + 1
    entries = []
    while position < len(body):
        _kind, _flags, _file, _offset, _row, length = FRAME.unpack_from(body, position)
        position += FRAME.size
        entries.append(body[position:position + length])
        position += length
    if position != len(body):
        raise ValueError("a frame runs past the end of the body")
    return entries


class AckProxy:
    """An HTTP proxy on 127.0.0.1 in front of kinesalite that timestamps, for every line id it
    finds in a PutRecords request, the moment the response accepting that record arrives."""

    def __init__(self, upstream_port):
        self.acked = {}
        self.records = []
        self.forward_seconds = []
        self.upstream_seconds = []
        self.errors = []
        proxy = self
        local = threading.local()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Without TCP_NODELAY the response's header and body writes meet the agent's
            # delayed ACK, which held each response back by about 40 ms.
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received = time.perf_counter()
                if not hasattr(local, "connection"):
                    local.connection = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                headers = {name: value for name, value in self.headers.items() if name.lower() != "connection"}
                local.connection.request("POST", self.path, body, headers)
                sent = time.perf_counter()
                proxy.forward_seconds.append(sent - received)
                put_records = self.headers.get("X-Amz-Target", "").endswith(".PutRecords")
                records = json.loads(body)["Records"] if put_records else []
                upstream = local.connection.getresponse()
                data = upstream.read()
                acked_at = time.perf_counter()
                proxy.upstream_seconds.append(acked_at - sent)
                if put_records and upstream.status == 200:
                    proxy.note_response(records, json.loads(data)["Records"], acked_at)
                self.send_response(upstream.status)
                for name, value in upstream.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def note_response(self, sent, results, acked_at):
        for record, result in zip(sent, results):
            if result.get("ErrorCode"):
                continue
            data = base64.b64decode(record["Data"])
            try:
                entries = decode_entries(data)
            except (ValueError, struct.error, zstandard.ZstdError) as error:
                self.errors.append(str(error))
                continue
            self.records.append((len(data) + len(record["PartitionKey"]), len(entries)))
            for entry in entries:
                for match in SEQUENCE.finditer(entry):
                    self.acked.setdefault(int(match.group(1)), acked_at)

    def close(self):
        self.server.shutdown()


def ack_latency(wrapper, record_format, rate, seconds):
    """Append marked fleet lines at `rate` lines/s for `seconds`, each with open, one write and
    close, and time each from the write to the PutRecords response that accepted it."""
    lines, _ = fleet(4, rate * seconds, mark=True)
    written = {}
    with Emulator(wrapper) as emulator, tempfile.TemporaryDirectory() as root:
        proxy = AckProxy(emulator.port)
        agent = bench_agent.Agent(root, records=False, settings=kinesis_settings(proxy.endpoint, record_format))
        agent.start()
        started = time.perf_counter()
        for index, line in enumerate(lines):
            time.sleep(max(0.0, started + index / rate - time.perf_counter()))
            written[index] = time.perf_counter()
            with open(agent.log, "ab") as f:
                f.write(line.data)
        deadline = time.perf_counter() + 30
        while len(proxy.acked) < len(lines) and time.perf_counter() < deadline:
            time.sleep(0.05)
        kinesis = wait_for_entries(agent, len(lines), timeout=30)
        agent.stop()
        proxy.close()
    latencies = [(proxy.acked[index] - at) * 1000 for index, at in written.items() if index in proxy.acked]
    rows = sum(line.rows for line in lines)
    proxy_units = sum(math.ceil(size / PAYLOAD_UNIT_BYTES) for size, _ in proxy.records)
    return {"format": record_format, "rate_lines_per_s": rate, "seconds": seconds, "lines": len(lines),
            "rows": rows, "acked": len(latencies), "decode_errors": proxy.errors[:5],
            "p50_ms": percentile(latencies, 0.5), "p90_ms": percentile(latencies, 0.9),
            "p99_ms": percentile(latencies, 0.99), "max_ms": max(latencies),
            "proxy_forward_p50_ms": percentile(proxy.forward_seconds, 0.5) * 1000,
            "proxy_forward_p99_ms": percentile(proxy.forward_seconds, 0.99) * 1000,
            "kinesalite_p50_ms": percentile(proxy.upstream_seconds, 0.5) * 1000,
            "kinesalite_p99_ms": percentile(proxy.upstream_seconds, 0.99) * 1000,
            "lines_per_record": statistics.mean(entries for _, entries in proxy.records),
            "payload_units_seen_by_proxy": proxy_units, **counters(kinesis),
            "per_million_rows": per_million(counters(kinesis), rows)}


# Memory and idle CPU.

def memory_and_idle(wrapper, rate, seconds, idle_seconds):
    """RSS and idle CPU without forwarding and with packed forwarding, back to back."""
    without = bench_agent.memory_and_idle(rate, seconds, idle_seconds)
    with Emulator(wrapper) as emulator:
        forwarding = bench_agent.memory_and_idle(rate, seconds, idle_seconds,
                                                 settings=kinesis_settings(emulator.endpoint, "packed"))
    kinesis = forwarding["kinesis"] or {}
    forwarding["per_million_rows"] = per_million(counters(kinesis), forwarding["rows"])
    return {"without_kinesis": without, "with_kinesis_packed": forwarding}


def main():
    parser = argparse.ArgumentParser(description="Measure Kinesis forwarding of edgealert run against kinesalite.")
    parser.add_argument("--kinesalite-js", default=os.path.join(bench_agent.REPO, "scripts", "lib", "kinesalite.js"),
                        help="path of the kinesalite wrapper script (default scripts/lib/kinesalite.js)")
    parser.add_argument("--quick", action="store_true", help="fewer lines, runs and seconds, for a smoke test")
    args = parser.parse_args()
    bench_agent.pin_harness()
    quick = args.quick
    runs = 1 if quick else 3
    lines, key = fleet(1, 20000 if quick else 100000)
    ceiling_lines = lines[:10000 if quick else 50000]
    report = {
        "machine": bench_agent.machine_context(),
        "ceiling": [ceiling(args.kinesalite_js, "compat", ceiling_lines, key, runs),
                    ceiling(args.kinesalite_js, "packed", lines, key, runs)],
        "throughput": forward_throughput(args.kinesalite_js, lines, runs),
        "latency": [ack_latency(args.kinesalite_js, "packed", 200, 5 if quick else 30),
                    ack_latency(args.kinesalite_js, "compat", 200, 5 if quick else 30),
                    ack_latency(args.kinesalite_js, "packed", 20, 5 if quick else 30)],
        "memory_and_idle": memory_and_idle(args.kinesalite_js, 5000, 5 if quick else 20, 5 if quick else 30),
    }
    report["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
