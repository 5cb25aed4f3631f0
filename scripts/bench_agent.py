#!/usr/bin/env python3
"""Measures `edgealert run` on generated osquery result logs.

Figures, each as the median of several runs where the figure allows it:
- throughput: lines/s, rows/s and MiB/s from a pre-written log to the records sink, with the
  agent pinned to one core, on two inputs from scripts/gen_osquery.py: the `processes`
  profile (the input of earlier figures) and the `fleet` query mix;
- latency: time from a line appended the way osqueryd appends (open, one write, close) to
  its alert in the alerts file and to the webhook request;
- memory and idle CPU: RSS while rows arrive at 5,000 a second, then CPU while idle.

The agent runs on core AGENT_CORE and this harness on HARNESS_CORE, each pinned with
sched_setaffinity (taskset for the agent). Everything happens in a temporary directory;
the webhook receiver listens on 127.0.0.1 and the agent reaches nothing else.
scripts/bench_kinesis.py reuses Agent and memory_and_idle with Kinesis forwarding on.
"""

import ctypes
import http.server
import json
import os
import threading
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

# No __pycache__ beside the scripts: the repository does not ignore it.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_osquery  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "target", "release", "edgealert")
AGENT_CORE = 0
HARNESS_CORE = 1

# Fake credentials and no instance metadata, so the AWS SDK inside the agent never tries to
# reach an address other than the configured 127.0.0.1 endpoints.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAEDGEALERTBENCH",
    "AWS_SECRET_ACCESS_KEY": "edgealert-bench-not-a-secret",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/edgealert-bench",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/edgealert-bench",
}


def stop_with_harness():
    """Ask the kernel to send SIGTERM to this child when the harness exits, so an agent does
    not outlive a harness that crashed. Runs in the child between fork and exec."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def pin_harness():
    """Pin this process to HARNESS_CORE, away from the agent's core, when the machine has it."""
    if HARNESS_CORE in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {HARNESS_CORE})


def machine_context():
    """Return what the figures depend on: commit, kernel, CPU model, cores and load.

    scripts/bench sets EDGEALERT_BENCH_BUILD to the commit it built, because HEAD can move
    while the benchmarks run. Uncommitted changes count only in the paths that go into the
    binary or its configuration."""
    def run(*command):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        return result.stdout.strip()

    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    built_paths = ["agent/src", "agent/Cargo.toml", "rules-core/src", "rules-core/Cargo.toml", "tailer/src",
                   "tailer/Cargo.toml", "conf", "Cargo.toml", "Cargo.lock"]
    return {"build": os.environ.get("EDGEALERT_BENCH_BUILD", ""),
            "head": run("git", "rev-parse", "--short", "HEAD"),
            "head_uncommitted_changes": run("git", "status", "--porcelain", "--", *built_paths) != "",
            "kernel": os.uname().release, "cpu": cpu, "cores": os.cpu_count(),
            "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def schedstat(pid):
    """Return (on-CPU seconds, seconds runnable but waiting for a CPU) summed over every
    thread of process `pid`, from /proc/PID/task/*/schedstat. Threads that exited are not
    counted. The waiting time shows how much other processes on the same core slowed it."""
    on_cpu = waiting = 0
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
                fields = f.read().split()
        except FileNotFoundError:
            continue
        on_cpu += int(fields[0])
        waiting += int(fields[1])
    return on_cpu / 1e9, waiting / 1e9


def cpu_seconds(pid):
    """Return the on-CPU time of every thread of process `pid`, in seconds."""
    return schedstat(pid)[0]


def wakeups(pid):
    """Return the voluntary context switches of every thread of process `pid`: a thread
    switches voluntarily each time it blocks, so an idle agent counts one per wake-up."""
    total = 0
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, task)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


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

    def __init__(self, root, start_at="beginning", records=True, settings=None, log_level="warn"):
        self.root = root
        self.log_level = log_level
        self.log = os.path.join(root, "logs", "osqueryd.results.log")
        self.records = os.path.join(root, "records.jsonl")
        self.alerts = os.path.join(root, "state", "alerts.jsonl")
        self.status_path = os.path.join(root, "state", "status.json")
        shutil.copytree(os.path.join(REPO, "conf"), os.path.join(root, "conf"))
        os.makedirs(os.path.dirname(self.log), exist_ok=True)
        self.receiver = Receiver()
        secret = os.path.join(root, "slack-security.url")
        with open(secret, "w") as f:
            f.write(self.receiver.url())
        os.chmod(secret, 0o600)
        agent_settings = {"files": [self.log], "state_dir": os.path.join(root, "state"),
                          "start_at": start_at, "slack": {"webhooks": {"security": {"file": secret}}}}
        if records:
            agent_settings["records_file"] = self.records
        agent_settings.update(settings or {})
        with open(os.path.join(root, "conf", "agent.json"), "w") as f:
            json.dump(agent_settings, f)
        self.process = None

    def start(self):
        stderr = open(os.path.join(self.root, "agent.log"), "ab")
        self.process = subprocess.Popen(
            ["taskset", "-c", str(AGENT_CORE), BIN, "run", "--conf", os.path.join(self.root, "conf"),
             "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=stderr, env=dict(os.environ, RUST_LOG=self.log_level, **AWS_ENV),
            preexec_fn=stop_with_harness)
        deadline = time.time() + 30
        while not os.path.exists(self.status_path):
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

    def status(self):
        """Return the agent's status.json, or an empty dict while it is being replaced."""
        try:
            with open(self.status_path) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

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


def throughput(profile, lines, runs):
    generated = gen_osquery.generate(1, lines=lines, profile=profile)
    data = b"".join(line.data for line in generated)
    rows = sum(line.rows for line in generated)
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
    return {"profile": profile, "lines": lines, "rows": rows, "bytes": len(data), "runs": runs,
            "seconds": results, "lines_per_s": lines / median, "rows_per_s": rows / median,
            "mib_per_s": len(data) / median / 2**20}


def percentile(values, fraction):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * fraction))]


def latency(samples, spacing):
    """Appends one netcat listener line at a time, `spacing` seconds apart so Slack's rate
    limit of about one message a second does not queue them, and times the alert file
    write and the webhook request."""
    generator = gen_osquery.FleetGenerator(2)
    to_file, to_slack = [], []
    with tempfile.TemporaryDirectory() as root:
        agent = Agent(root)
        agent.start()
        for _ in range(samples):
            # Each netcat listener has a new pid, so the rule's dedup never suppresses its alert.
            line = generator.netcat_listener().data
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


def wait_settled(agent, timeout):
    """Wait until the agent has no pending work: every line read, the Slack outbox empty and
    nothing buffered for Kinesis. Return False when that takes longer than `timeout` seconds."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        status = agent.status()
        files = status.get("files") or []
        read = bool(files) and all(
            not entry.get("lag_bytes") and entry.get("acked_offset") == entry.get("read_offset")
            for entry in files)
        outbox = (status.get("slack") or {}).get("outbox", 0)
        kinesis = status.get("kinesis") or {}
        buffered = kinesis.get("buffered_records", 0) + kinesis.get("spool_records", 0)
        if read and outbox == 0 and buffered == 0:
            return True
        time.sleep(0.5)
    return False


def memory_and_idle(rate, seconds, idle_seconds, settings=None):
    """Append fleet lines carrying `rate` rows a second for `seconds`, in batches every 10 ms,
    sample RSS every half second, wait until the agent has no pending work, then count CPU
    time over `idle_seconds` of no input. `settings` are merged into agent.json, for example
    a `kinesis` section."""
    lines = gen_osquery.generate(3, rows=rate * seconds)
    ticks_per_second = 100
    chunks, pending, next_rows = [], [], rate / ticks_per_second
    written_rows = 0
    for line in lines:
        pending.append(line.data)
        written_rows += line.rows
        if written_rows >= next_rows:
            chunks.append(b"".join(pending))
            pending = []
            next_rows += rate / ticks_per_second
    if pending:
        chunks.append(b"".join(pending))
    with tempfile.TemporaryDirectory() as root:
        agent = Agent(root, settings=settings)
        agent.start()
        rss = []
        started = time.perf_counter()
        for tick, chunk in enumerate(chunks):
            with open(agent.log, "ab") as f:
                f.write(chunk)
            if tick % 50 == 0 and tick > 0:
                rss.append(agent.rss_kib())
            next_tick = started + (tick + 1) / ticks_per_second
            time.sleep(max(0.0, next_tick - time.perf_counter()))
        settle_started = time.perf_counter()
        settled = wait_settled(agent, 120)
        settle_seconds = time.perf_counter() - settle_started
        time.sleep(2)
        ticks, cpu, wakes = agent.cpu_ticks(), cpu_seconds(agent.process.pid), wakeups(agent.process.pid)
        time.sleep(idle_seconds)
        idle_ticks = agent.cpu_ticks() - ticks
        idle_cpu = cpu_seconds(agent.process.pid) - cpu
        idle_wakeups = wakeups(agent.process.pid) - wakes
        status = agent.status()
        agent.stop()
    clock = os.sysconf("SC_CLK_TCK")
    return {"rate_rows_per_s": rate, "seconds": seconds, "lines": len(lines),
            "rows": sum(line.rows for line in lines), "rss_samples": len(rss),
            "rss_median_mib": statistics.median(rss) / 1024, "rss_max_mib": max(rss) / 1024,
            "idle_seconds": idle_seconds, "idle_ticks": idle_ticks,
            "idle_cpu_percent": 100.0 * idle_ticks / clock / idle_seconds,
            "idle_cpu_percent_schedstat": 100.0 * idle_cpu / idle_seconds,
            "idle_wakeups_per_s": idle_wakeups / idle_seconds,
            "settled": settled, "settle_seconds": settle_seconds,
            "kinesis": status.get("kinesis")}


def main():
    quick = "--quick" in sys.argv
    pin_harness()
    lines, runs = (20000, 1) if quick else (100000, 3)
    report = {
        "machine": machine_context(),
        "throughput": [throughput("processes", lines, runs), throughput("fleet", lines, runs)],
        "latency": latency(10 if quick else 100, 1.1),
        "memory_and_idle": memory_and_idle(5000, 5 if quick else 20, 5 if quick else 30),
    }
    report["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
