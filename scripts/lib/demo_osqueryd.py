#!/usr/bin/env python3
"""Writes osquery result lines into a results log the way osqueryd's filesystem logger does,
for scripts/demo: appends of whole lines, and one rename rotation (results.log moved to
results.log.1 and a new results.log created, as osqueryd's --logger_rotate does).

The lines are the netcat scenario of tests/data/osquery/results_event.log: on host
web-07.corp.example, `nc -lvnp 4444` and later `ncat --ssl -e /bin/bash` start listening.
Between its steps come ordinary lines from three other hosts, generated with a fixed seed by
scripts/gen_osquery.py: process churn, osquery's schedule statistics and socket events. No
shipped rule fires on them.

Usage: demo_osqueryd.py --log PATH --summary FILE [--pause SECONDS]
"""

import argparse
import json
import os
import sys
import time

# No __pycache__ beside the scripts: the repository does not ignore it.
sys.dont_write_bytecode = True
SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, SCRIPTS)
import gen_osquery  # noqa: E402

REPO = os.path.dirname(SCRIPTS)
FIXTURE = os.path.join(REPO, "tests", "data", "osquery", "results_event.log")
ORDINARY_SEED = 7
ORDINARY_HOSTS = 3


class Writer:
    """Line writer for the results log that counts the lines and bytes it wrote."""

    def __init__(self, path):
        self.path = path
        self.lines = 0
        self.bytes = 0

    def append(self, lines, description):
        """Append `lines` (bytes, each ending in a newline) with one write per line, as the
        filesystem logger writes one result line at a time."""
        # O_APPEND puts every write at the current end of the file, also after a rotation
        # by another process. The file is created when missing, as osqueryd creates it.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            for line in lines:
                os.write(fd, line)
        finally:
            os.close(fd)
        self.lines += len(lines)
        self.bytes += sum(len(line) for line in lines)
        say("%s: %d line%s -> %s" % (description, len(lines), "" if len(lines) == 1 else "s",
                                     os.path.basename(self.path)))


def say(message):
    now = time.time()
    clock = time.strftime("%H:%M:%S", time.localtime(now)) + ".%03d" % (now % 1 * 1000)
    sys.stdout.write("  [osqueryd] %s %s\n" % (clock, message))
    sys.stdout.flush()


class OrdinaryTraffic:
    """Query runs of hosts other than web-07 on which no shipped rule fires."""

    def __init__(self):
        self.generator = gen_osquery.FleetGenerator(ORDINARY_SEED, hosts=ORDINARY_HOSTS)
        self.hosts = [host.host_identifier for host in self.generator.hosts]

    def take(self, count):
        """Return at least `count` lines: whole query runs, so a run is never cut in two."""
        generator = self.generator
        lines = []
        while len(lines) < count:
            host = generator.rng.choice(generator.hosts)
            pick = generator.rng.random()
            if pick < 0.4:
                run = generator.process_churn(host)
            elif pick < 0.7:
                run = generator.schedule_churn(host)
            else:
                run = generator.socket_events(host)
            generator.clock += 1
            lines += [line.data for line in run]
        return lines


def fixture_lines(first, last):
    """Return lines `first` to `last` (1-based, inclusive) of results_event.log."""
    with open(FIXTURE, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    return lines[first - 1:last]


def rotate(path):
    """Rotate as osqueryd does: move the log to NAME.1 and start a new, empty NAME."""
    os.rename(path, path + ".1")
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
    say("rotation: %s -> %s.1, new empty %s" % ((os.path.basename(path),) * 3))


def main():
    parser = argparse.ArgumentParser(description="Write osquery result lines as osqueryd does.")
    parser.add_argument("--log", required=True, help="the results log to append to")
    parser.add_argument("--summary", required=True, help="file that receives the counts as JSON")
    parser.add_argument("--pause", type=float, default=2.0,
                        help="seconds to wait after each step that should raise an alert")
    args = parser.parse_args()
    writer = Writer(args.log)
    ordinary = OrdinaryTraffic()
    say("ordinary traffic comes from %s" % ", ".join(ordinary.hosts))

    writer.append(ordinary.take(120), "ordinary traffic")
    writer.append(fixture_lines(1, 9), "web-07: listening ports and processes at osqueryd start")
    time.sleep(args.pause / 2)
    writer.append(fixture_lines(10, 12), "web-07: nc -lvnp 4444 starts listening")
    time.sleep(args.pause)
    writer.append(ordinary.take(80), "ordinary traffic")
    writer.append(fixture_lines(13, 16), "web-07: ncat -lvp 8443 --ssl -e /bin/bash starts listening")
    time.sleep(args.pause)
    # These lines land just before the rotation, so the agent may read some of them from
    # results.log.1.
    writer.append(ordinary.take(100), "ordinary traffic")
    lines_before_rotation = writer.lines
    rotate(args.log)
    writer.append(fixture_lines(17, 26), "web-07: nc exits, python3 -m http.server 8000, churn of nc and ncat")
    writer.append(ordinary.take(100), "ordinary traffic")

    summary = {"lines": writer.lines, "bytes": writer.bytes, "lines_before_rotation": lines_before_rotation,
               "lines_after_rotation": writer.lines - lines_before_rotation}
    with open(args.summary, "w") as f:
        json.dump(summary, f)
    say("done: %d lines, %d bytes (%d before the rotation, %d after)" % (
        writer.lines, writer.bytes, lines_before_rotation, writer.lines - lines_before_rotation))


if __name__ == "__main__":
    main()
