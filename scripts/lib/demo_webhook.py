#!/usr/bin/env python3
"""Slack-compatible incoming-webhook receiver on 127.0.0.1 for scripts/demo.

Accepts POST requests with a JSON body and responds 200 `ok`, as Slack's incoming webhooks
do. Prints one line per message as it arrives and appends the message to a JSON-lines file,
so the demo can count messages and find alert ids that arrived twice.

Usage: demo_webhook.py --port-file FILE --messages FILE

The port is picked by the kernel and written to --port-file once the server listens.
"""

import argparse
import http.server
import json
import os
import signal
import sys
import threading
import time

ALERT_ID_PREFIX = "Alert ID: "


def alert_id(payload):
    """Return the alert id from the context block that rules-core/src/slack.rs renders, or
    None for messages without one, such as dedup digests."""
    for block in payload.get("blocks") or []:
        if not isinstance(block, dict) or block.get("type") != "context":
            continue
        for element in block.get("elements") or []:
            text = element.get("text", "") if isinstance(element, dict) else ""
            if text.startswith(ALERT_ID_PREFIX):
                return text[len(ALERT_ID_PREFIX):].strip()
    return None


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, messages_path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.messages_path = messages_path
        self.lock = threading.Lock()
        self.count = 0

    def handle_error(self, request, client_address):
        # A sender that gives up on a request closes its connection. Report only other errors.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def record(self, path, payload):
        """Append one message to the messages file and print it."""
        with self.lock:
            self.count += 1
            entry = {"number": self.count, "received_unix": time.time(), "path": path,
                     "text": payload.get("text", ""), "alert_id": alert_id(payload)}
            with open(self.messages_path, "a") as f:
                f.write(json.dumps(entry) + "\n")
            received = entry["received_unix"]
            clock = time.strftime("%H:%M:%S", time.localtime(received)) + ".%03d" % (received % 1 * 1000)
            shown_id = (entry["alert_id"] or "-")[:12]
            sys.stdout.write("  [slack]   %s message %d: %s (alert %s)\n" % (clock, self.count, entry["text"], shown_id))
            sys.stdout.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            # Slack responds 400 invalid_payload to a body that is not a JSON object.
            self.respond(400, b"invalid_payload")
            sys.stdout.write("  [slack]   rejected a request to %s: body is not a JSON object\n" % self.path)
            sys.stdout.flush()
            return
        self.server.record(self.path, payload)
        self.respond(200, b"ok")

    def respond(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description="Slack-compatible webhook receiver on 127.0.0.1.")
    parser.add_argument("--port-file", required=True, help="file to write the listening port to")
    parser.add_argument("--messages", required=True, help="JSON-lines file that receives every message")
    args = parser.parse_args()
    # SIGTERM from the demo's cleanup ends serve_forever through KeyboardInterrupt, quietly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    open(args.messages, "a").close()
    server = Receiver(args.messages)
    port_file_tmp = args.port_file + ".tmp"
    with open(port_file_tmp, "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.replace(port_file_tmp, args.port_file)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
