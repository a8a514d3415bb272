#!/usr/bin/env python3
"""A tiny Alertmanager webhook receiver for tests (Python 3 standard library only).

    POST <any path>          an Alertmanager webhook notification (JSON); appended as one
                             line to --out. 400 if the body is not a JSON object.
    GET  /notifications      every stored notification as a JSON list, oldest first;
                             ?receiver=NAME keeps only that receiver's.
    DELETE /notifications    forget every stored notification.
    GET  /health             {"status": "ok"}

Runs on the test hosts with the distribution's python3 (Debian 12 and 13), under
webhook-receiver.service (DynamicUser, StateDirectory=webhook-receiver).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DEFAULT_OUT = "/var/lib/webhook-receiver/notifications.jsonl"
MAX_BODY = 4 * 1024 * 1024  # Alertmanager payloads are small; refuse anything huge.


class Store:
    """Notifications as JSON lines in one file; one lock for every writer and reader."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        with self.lock, open(self.path, "a", encoding="utf-8"):
            pass

    def append(self, payload: dict) -> None:
        line = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())

    def read(self) -> list:
        with self.lock, open(self.path, encoding="utf-8") as src:
            return [json.loads(line) for line in src if line.strip()]

    def clear(self) -> None:
        with self.lock, open(self.path, "w", encoding="utf-8"):
            pass


class Handler(BaseHTTPRequestHandler):
    server_version = "webhook-receiver/1"
    store: Store  # set on the class by make_server()

    def _send(self, status: int, body) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > MAX_BODY else HTTPStatus.BAD_REQUEST,
                       {"error": "bad Content-Length"})
            return
        raw = self.rfile.read(length)
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": f"body is not JSON: {exc}"})
            return
        if not isinstance(payload, dict):
            self._send(HTTPStatus.BAD_REQUEST, {"error": "body is not a JSON object"})
            return
        self.store.append(payload)
        self._send(HTTPStatus.OK, {"status": "stored"})

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path == "/health":
            self._send(HTTPStatus.OK, {"status": "ok"})
        elif url.path == "/notifications":
            items = self.store.read()
            receiver = parse_qs(url.query).get("receiver")
            if receiver:
                items = [n for n in items if n.get("receiver") in receiver]
            self._send(HTTPStatus.OK, items)
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_DELETE(self) -> None:  # noqa: N802
        if urlsplit(self.path).path == "/notifications":
            self.store.clear()
            self._send(HTTPStatus.OK, {"status": "cleared"})
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def log_message(self, fmt: str, *args) -> None:
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def make_server(address: str, port: int, out: str) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"store": Store(out)})
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=9095, help="port to listen on (default 9095)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"JSON-lines file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    server = make_server(args.address, args.port, args.out)
    sys.stderr.write(f"webhook-receiver listening on {args.address}:{server.server_address[1]}, "
                     f"writing {args.out}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
