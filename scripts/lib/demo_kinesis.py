#!/usr/bin/env python3
"""Kinesis Data Streams client for scripts/demo: talks to kinesalite on 127.0.0.1 with plain
HTTP JSON requests, as the AWS SDKs do, and decodes the agent's records.

Commands:
    demo_kinesis.py create --port P --stream S        create a stream and wait until ACTIVE
    demo_kinesis.py watch --port P --stream S         print every record as it arrives
    demo_kinesis.py count --port P --stream S         print a JSON summary of the stream

The record formats are described in docs/kinesis-records.md. Packed records compressed with
zstd need the `zstandard` package, which install_bench_venv in scripts/lib/bench_venv.sh
installs into .tools/bench-venv.
"""

import argparse
import base64
import http.client
import json
import signal
import struct
import sys
import time

TARGET_PREFIX = "Kinesis_20131202."
# kinesalite 3.3.3 checks that the Authorization header names Credential, SignedHeaders and
# Signature, and never verifies the signature, so a fixed header with a dummy one is enough.
FAKE_AUTHORIZATION = ("AWS4-HMAC-SHA256 Credential=AKIAEDGEALERTDEMO/20250314/us-east-1/kinesis/aws4_request, "
                      "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64)

PACKED_MARKER = b"EAP1"
CODEC_STORED = 0
CODEC_ZSTD = 1
# Frame header of a packed entry, big-endian: kind, flags, file index, offset, row, length.
FRAME = struct.Struct(">BBHQII")
KIND_LINE = 0
KIND_INTERNAL = 1
KIND_SPLIT_ROW = 2
FLAG_NOTIFIED = 1
NO_FILE = 65535
# Readers of the format reject bodies that expand past 8 MiB (docs/kinesis-records.md).
MAX_BODY_BYTES = 8 * 1024 * 1024


class KinesisError(Exception):
    pass


class Kinesis:
    """A Kinesis Data Streams endpoint on 127.0.0.1."""

    def __init__(self, port, timeout=10):
        self.port = port
        self.timeout = timeout

    def call(self, operation, payload):
        """Send one request and return the decoded JSON response."""
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET_PREFIX + operation,
                   "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                   "Authorization": FAKE_AUTHORIZATION}
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            connection.request("POST", "/", json.dumps(payload).encode(), headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise KinesisError("%s failed with HTTP %d: %s" % (operation, response.status, data[:300].decode(errors="replace")))
        return json.loads(data) if data else {}

    def create_stream(self, stream, shards=1, timeout=30):
        """Create `stream` and wait until it is ACTIVE. Returns its ARN."""
        self.call("CreateStream", {"StreamName": stream, "ShardCount": shards})
        deadline = time.time() + timeout
        while True:
            summary = self.call("DescribeStreamSummary", {"StreamName": stream})["StreamDescriptionSummary"]
            if summary["StreamStatus"] == "ACTIVE":
                return summary["StreamARN"]
            if time.time() > deadline:
                raise KinesisError("stream %s is not ACTIVE after %d s" % (stream, timeout))
            time.sleep(0.05)

    def shard_ids(self, stream):
        return [shard["ShardId"] for shard in self.call("ListShards", {"StreamName": stream})["Shards"]]

    def iterator(self, stream, shard_id):
        """Return a shard iterator at the oldest record of the shard (TRIM_HORIZON)."""
        response = self.call("GetShardIterator", {"StreamName": stream, "ShardId": shard_id,
                                                  "ShardIteratorType": "TRIM_HORIZON"})
        return response["ShardIterator"]

    def get_records(self, iterator, limit=1000):
        """Return (records, next iterator, milliseconds behind latest) for one GetRecords call.
        Each record's Data is decoded from base64."""
        response = self.call("GetRecords", {"ShardIterator": iterator, "Limit": limit})
        records = []
        for record in response.get("Records", []):
            records.append({"sequence_number": record["SequenceNumber"],
                            "partition_key": record["PartitionKey"],
                            "arrival": record.get("ApproximateArrivalTimestamp", time.time()),
                            "data": base64.b64decode(record["Data"])})
        return records, response.get("NextShardIterator"), response.get("MillisBehindLatest", 0)

    def read_all(self, stream):
        """Read every record of every shard, oldest first per shard. Returns a list of
        (shard id, record) pairs."""
        found = []
        for shard_id in self.shard_ids(stream):
            iterator = self.iterator(stream, shard_id)
            while iterator:
                records, iterator, behind = self.get_records(iterator)
                found += [(shard_id, record) for record in records]
                if not records and behind == 0:
                    break
        return found


def decompress_zstd(body):
    try:
        import zstandard
    except ImportError:
        raise KinesisError("a packed record is zstd-compressed and the zstandard package is missing: run this "
                           "with .tools/bench-venv/bin/python (install_bench_venv in scripts/lib/bench_venv.sh)")
    return zstandard.ZstdDecompressor().decompressobj().decompress(body)


def decode(data):
    """Decode one record's data. Returns a dict with `format` (`packed` or `compat`), and for
    packed records `codec`, `body_bytes`, `header` and `entries`, each entry a dict with
    kind, flags, file (the header's file entry or None), offset, row and data."""
    if not data.startswith(PACKED_MARKER):
        return {"format": "compat", "entries": [{"kind": KIND_LINE, "flags": 0, "file": None, "offset": None,
                                                 "row": 0, "data": data}]}
    if len(data) < 5:
        raise KinesisError("packed record of %d bytes has no codec byte" % len(data))

    codec, body = data[4], data[5:]
    if codec == CODEC_ZSTD:
        body = decompress_zstd(body)
    elif codec != CODEC_STORED:
        raise KinesisError("unknown codec byte %d" % codec)
    if len(body) > MAX_BODY_BYTES:
        raise KinesisError("packed body of %d bytes exceeds %d" % (len(body), MAX_BODY_BYTES))

    newline = body.find(b"\n")
    if newline < 0:
        raise KinesisError("packed body has no header line")
    header = json.loads(body[:newline])
    files = header.get("files", [])

    entries = []
    position = newline + 1
    while position < len(body):
        if position + FRAME.size > len(body):
            raise KinesisError("a frame header runs past the end of the body")
        kind, flags, file_index, offset, row, length = FRAME.unpack_from(body, position)
        position += FRAME.size
        if position + length > len(body):
            raise KinesisError("a frame runs past the end of the body")
        if file_index != NO_FILE and file_index >= len(files):
            raise KinesisError("file index %d is past the header's %d files" % (file_index, len(files)))
        entries.append({"kind": kind, "flags": flags, "file": files[file_index] if file_index != NO_FILE else None,
                        "offset": offset, "row": row, "data": body[position:position + length]})
        position += length
    return {"format": "packed", "codec": "zstd" if codec == CODEC_ZSTD else "stored", "body_bytes": len(body),
            "header": header, "entries": entries}


def is_line(entry):
    return entry["kind"] in (KIND_LINE, KIND_SPLIT_ROW)


def clock(unix_time):
    """Format a Unix time as local HH:MM:SS.mmm."""
    return time.strftime("%H:%M:%S", time.localtime(unix_time)) + ".%03d" % (unix_time % 1 * 1000)


def describe(number, record, decoded):
    """Return the one-line description that `watch` prints for a record."""
    entries = decoded["entries"]
    lines = sum(1 for entry in entries if is_line(entry))
    internal = len(entries) - lines
    notified = sum(1 for entry in entries if entry["flags"] & FLAG_NOTIFIED)
    counts = "%d line%s" % (lines, "" if lines == 1 else "s")
    if internal:
        counts += " and %d internal event%s" % (internal, "" if internal == 1 else "s")
    counts += " (%d with the agent's notified flag)" % notified
    if decoded["format"] == "packed":
        file_ids = sorted({entry["file"]["id"] for entry in entries if entry["file"]})
        shape = "packed %s, %d of %d bytes" % (decoded["codec"], len(record["data"]), decoded["body_bytes"])
        if file_ids:
            shape += ", file id %s" % " and ".join(file_ids)
    else:
        shape = "compat, %d bytes" % len(record["data"])
    return "  [kinesis] %s record %d, key %s: %s, %s" % (
        clock(record["arrival"]), number, record["partition_key"], counts, shape)


def watch(kinesis, stream, interval):
    """Print every record of `stream` as it arrives, until SIGTERM or SIGINT."""
    iterators = {shard_id: kinesis.iterator(stream, shard_id) for shard_id in kinesis.shard_ids(stream)}
    number = 0
    while True:
        for shard_id, iterator in list(iterators.items()):
            if not iterator:
                continue
            records, iterators[shard_id], _ = kinesis.get_records(iterator)
            for record in records:
                number += 1
                try:
                    line = describe(number, record, decode(record["data"]))
                except (KinesisError, ValueError, struct.error) as error:
                    line = "  [kinesis] %s record %d (%s): cannot be decoded: %s" % (
                        clock(record["arrival"]), number, shard_id, error)
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
        time.sleep(interval)


def count(kinesis, stream):
    """Return counts of the records in `stream`: lines, internal events, duplicate deliveries."""
    records = kinesis.read_all(stream)
    summary = {"records": len(records), "packed_records": 0, "compat_records": 0, "bad_records": 0, "lines": 0,
               "unique_lines": 0, "duplicate_lines": 0, "internal_events": 0, "notified_lines": 0,
               "payload_bytes": 0, "uncompressed_bytes": 0}
    seen = set()
    for shard_id, record in records:
        summary["payload_bytes"] += len(record["data"])
        try:
            decoded = decode(record["data"])
        except (KinesisError, ValueError, struct.error):
            summary["bad_records"] += 1
            continue
        summary[decoded["format"] + "_records"] += 1
        summary["uncompressed_bytes"] += decoded.get("body_bytes", len(record["data"]))
        agent = decoded.get("header", {}).get("agent")
        for entry in decoded["entries"]:
            if not is_line(entry):
                summary["internal_events"] += 1
                continue
            summary["lines"] += 1
            summary["notified_lines"] += 1 if entry["flags"] & FLAG_NOTIFIED else 0
            if decoded["format"] == "compat":
                # A compat record carries nothing that distinguishes a second delivery from a new line.
                summary["unique_lines"] += 1
                continue
            # The delivery key of docs/kinesis-records.md: agent, file id, offset, kind, row.
            file_id = entry["file"]["id"] if entry["file"] else None
            key = (agent, file_id, entry["offset"], entry["kind"], entry["row"])
            if key in seen:
                summary["duplicate_lines"] += 1
            else:
                seen.add(key)
                summary["unique_lines"] += 1
    return summary


def main():
    parser = argparse.ArgumentParser(description="Kinesis client for scripts/demo (kinesalite on 127.0.0.1).")
    parser.add_argument("command", choices=["create", "watch", "count"])
    parser.add_argument("--port", type=int, required=True, help="kinesalite's port on 127.0.0.1")
    parser.add_argument("--stream", required=True, help="stream name")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between GetRecords polls (watch)")
    args = parser.parse_args()
    kinesis = Kinesis(args.port)
    try:
        if args.command == "create":
            print(kinesis.create_stream(args.stream))
        elif args.command == "watch":
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                watch(kinesis, args.stream, args.interval)
            except KeyboardInterrupt:
                pass
        else:
            print(json.dumps(count(kinesis, args.stream)))
    except (KinesisError, OSError) as error:
        sys.exit("demo_kinesis.py %s: %s" % (args.command, error))


if __name__ == "__main__":
    main()
