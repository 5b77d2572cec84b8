#!/usr/bin/env python3
"""A do-nothing OTLP/HTTP trace sink for measuring export cost.

    scripts/otlp-sink.py [PORT]      # default 4318; Ctrl-C or SIGTERM prints the totals

Accepts `POST /v1/traces` (protobuf), answers 200 with an empty
ExportTraceServiceResponse, and counts requests and bytes. Used by the
"Traces" figures in docs/performance.md: the bench's components export to
it, so what is measured is the components' side of export (span building,
batching, encoding, the HTTP client), not a backend.
"""
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

totals = {"requests": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (http.server naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        totals["requests"] += 1
        totals["bytes"] += len(body)
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 4318
    server = ThreadingHTTPServer(("127.0.0.1", port), Sink)
    # SIGTERM too (a background job started by a script ignores SIGINT).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    print(f"otlp-sink: {totals['requests']} export requests, {totals['bytes']} bytes", flush=True)


if __name__ == "__main__":
    main()
