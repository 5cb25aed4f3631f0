#!/usr/bin/env python3
"""Measures `edgealert run` on generated osquery result logs.

Figures, each as the median of several runs where the figure allows it:
- throughput: lines/s and MiB/s from a pre-written log to the records sink, with the agent
  pinned to one core;
- latency: time from a line appended the way osqueryd appends (open, one write, close) to
  its alert in the alerts file;
- memory and idle CPU: RSS while lines arrive at 5,000 a second, then CPU while idle.

The harness runs on core 0 and pins the agent to core 1 with taskset. Everything happens in
a temporary directory; nothing touches the network.
"""

import http.server
import json
import os
import threading
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "target", "release", "edgealert")
NAMES = ["sshd", "nginx", "postgres", "python3", "node", "java", "containerd", "bash", "cron"]
QUERIES = ["pack_detection_processes", "pack_detection_listening_processes",
           "pack_incident-response_process_open_sockets", "pack_detection_process_events"]


def process_line(rng, name=None, pid=None, query=None):
    """Returns one differential event line of about 880 bytes, like the Rust generator's."""
    name = name or rng.choice(NAMES)
    pid = pid if pid is not None else 1000 + rng.randrange(60000)
    host = "web-%02d.corp.example" % rng.randrange(40)
    record = {
        "name": query or rng.choice(QUERIES), "hostIdentifier": host,
        "calendarTime": "Fri Mar 14 09:12:03 2025 UTC", "unixTime": 1741943523 + rng.randrange(86400),
        "epoch": 0, "counter": 1 + rng.randrange(500), "numerics": False,
        "decorations": {"host_uuid": "8F3A2C1E-5B7D-4E90-A1C3-6D2F0B9E4A17", "hostname": host, "username": "ops"},
        "columns": {
            "cmdline": "/usr/bin/%s --config /etc/%s/%s.conf --workers %d" % (name, name, name, rng.randrange(16)),
            "cwd": "/", "egid": "0", "euid": "0", "gid": "0", "name": name, "nice": "0", "on_disk": "1",
            "parent": "1", "path": "/usr/bin/" + name, "pgroup": str(pid), "pid": str(pid),
            "resident_size": str(rng.randrange(1 << 30)), "root": "/", "sgid": "0",
            "start_time": str(1741900000 + rng.randrange(40000)), "state": "S", "suid": "0",
            "system_time": str(rng.randrange(100000)), "threads": str(rng.randrange(64)), "uid": "0",
            "user_time": str(rng.randrange(100000)), "address": "0.0.0.0", "port": str(rng.randrange(65535)),
            "protocol": "6", "family": "2"},
        "action": "added"}
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


class Receiver:
    """A Slack-compatible webhook receiver on 127.0.0.1 that records arrival times."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((time.perf_counter(), body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self):
        return "http://127.0.0.1:%d/services/bench" % self.server.server_address[1]


class Agent:
    """An `edgealert run` process in its own temporary directory."""

    def __init__(self, root, start_at="beginning"):
        self.root = root
        self.log = os.path.join(root, "logs", "osqueryd.results.log")
        self.records = os.path.join(root, "records.jsonl")
        self.alerts = os.path.join(root, "state", "alerts.jsonl")
        shutil.copytree(os.path.join(REPO, "conf"), os.path.join(root, "conf"))
        os.makedirs(os.path.dirname(self.log), exist_ok=True)
        self.receiver = Receiver()
        secret = os.path.join(root, "slack-security.url")
        with open(secret, "w") as f:
            f.write(self.receiver.url())
        os.chmod(secret, 0o600)
        settings = {"files": [self.log], "state_dir": os.path.join(root, "state"),
                    "records_file": self.records, "start_at": start_at,
                    "slack": {"webhooks": {"security": {"file": secret}}}}
        with open(os.path.join(root, "conf", "agent.json"), "w") as f:
            json.dump(settings, f)
        self.process = None

    def start(self):
        stderr = open(os.path.join(self.root, "agent.log"), "ab")
        self.process = subprocess.Popen(
            ["taskset", "-c", "1", BIN, "run", "--conf", os.path.join(self.root, "conf"), "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=stderr, env=dict(os.environ, RUST_LOG="warn"))
        status = os.path.join(self.root, "state", "status.json")
        deadline = time.time() + 30
        while not os.path.exists(status):
            if time.time() > deadline:
                sys.exit("the agent did not start; see " + os.path.join(self.root, "agent.log"))
            time.sleep(0.01)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.receiver.server.shutdown()

    def cpu_ticks(self):
        with open("/proc/%d/stat" % self.process.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def rss_kib(self):
        with open("/proc/%d/status" % self.process.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def size(path):
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def throughput(lines, runs):
    rng = random.Random(1)
    data = b"".join(process_line(rng) for _ in range(lines))
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as root:
            agent = Agent(root)
            with open(agent.log, "wb") as f:
                f.write(data)
            started = time.perf_counter()
            agent.start()
            while size(agent.records) < len(data):
                time.sleep(0.002)
            elapsed = time.perf_counter() - started
            agent.stop()
            results.append(elapsed)
    median = statistics.median(results)
    return {"lines": lines, "bytes": len(data), "runs": runs,
            "seconds": results, "lines_per_s": lines / median, "mib_per_s": len(data) / median / 2**20}


def percentile(values, fraction):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * fraction))]


def latency(samples, spacing):
    """Appends one netcat listener line at a time, `spacing` seconds apart so Slack's rate
    limit of about one message a second does not queue them, and times the alert file
    write and the webhook request."""
    rng = random.Random(2)
    to_file, to_slack = [], []
    with tempfile.TemporaryDirectory() as root:
        agent = Agent(root)
        agent.start()
        for index in range(samples):
            line = process_line(rng, name="nc", pid=200000 + index, query="pack_detection_listening_processes")
            before_file, before_slack = size(agent.alerts), len(agent.receiver.received)
            started = time.perf_counter()
            with open(agent.log, "ab") as f:
                f.write(line)
            while size(agent.alerts) == before_file:
                pass
            to_file.append((time.perf_counter() - started) * 1000)
            deadline = started + 10
            while len(agent.receiver.received) == before_slack and time.perf_counter() < deadline:
                time.sleep(0.0002)
            if len(agent.receiver.received) > before_slack:
                to_slack.append((agent.receiver.received[before_slack][0] - started) * 1000)
            time.sleep(max(0.0, started + spacing - time.perf_counter()))
        agent.stop()
    return {"samples": samples, "spacing_s": spacing,
            "alert_file_p50_ms": percentile(to_file, 0.5), "alert_file_p99_ms": percentile(to_file, 0.99),
            "webhook_samples": len(to_slack),
            "webhook_p50_ms": percentile(to_slack, 0.5), "webhook_p99_ms": percentile(to_slack, 0.99),
            "webhook_max_ms": max(to_slack)}


def memory_and_idle(rate, seconds, idle_seconds):
    rng = random.Random(3)
    with tempfile.TemporaryDirectory() as root:
        agent = Agent(root)
        agent.start()
        batch = rate // 100
        rss = []
        started = time.perf_counter()
        for tick in range(seconds * 100):
            chunk = b"".join(process_line(rng) for _ in range(batch))
            with open(agent.log, "ab") as f:
                f.write(chunk)
            if tick % 50 == 0 and tick > 0:
                rss.append(agent.rss_kib())
            next_tick = started + (tick + 1) / 100
            time.sleep(max(0.0, next_tick - time.perf_counter()))
        time.sleep(2)
        ticks = agent.cpu_ticks()
        time.sleep(idle_seconds)
        idle_ticks = agent.cpu_ticks() - ticks
        agent.stop()
    clock = os.sysconf("SC_CLK_TCK")
    return {"rate": rate, "seconds": seconds, "rss_median_mib": statistics.median(rss) / 1024,
            "rss_max_mib": max(rss) / 1024, "idle_seconds": idle_seconds,
            "idle_cpu_percent": 100.0 * idle_ticks / clock / idle_seconds}


def main():
    quick = "--quick" in sys.argv
    report = {
        "throughput": throughput(20000 if quick else 100000, 1 if quick else 3),
        "latency": latency(10 if quick else 100, 1.1),
        "memory_and_idle": memory_and_idle(5000, 5 if quick else 20, 5 if quick else 30),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
