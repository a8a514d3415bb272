#!/usr/bin/env python3
"""Sample ML inference API for testing monstack (standard library only).

Emulates a model server and exposes Prometheus metrics in the text
exposition format, with the names of docs/metrics.md:

  inference_requests_total{endpoint,method,status}     counter   (/predict only)
  inference_request_duration_seconds{endpoint}         histogram (0.005 .. 10 s)
  inference_predictions_total{model_version}           counter
  inference_prediction_value                           histogram (0.1 .. 1.0)
  inference_predicted_class_total{predicted_class}     counter   (positive: >= 0.5, negative)
  inference_model_info{model_name,model_version}       gauge, always 1
  inference_drift_checked_total                        counter
  inference_drift_detected_total                       counter

Endpoints:
  POST /predict  JSON body {"features": [numbers]} (optional)
  GET  /predict  ?x=1.5&x=2 (optional)
       -> 200 {"prediction": 0.73, "model_name": ..., "model_version": ..., "drift": false}
       -> 500 for a fraction --error-rate of the requests
       --constant-prediction V: every prediction is V (a silent failure: 200
       answers, one class, no spread of scores)
  GET  /health   -> 200 "ok"
  GET  /metrics  -> Prometheus text format

Request log: one JSON object per request on standard output (the journal,
under systemd), unless --request-log off:

  {"event": "request", "method": "POST", "path": "/predict", "status": 500,
   "duration_seconds": 0.0123, "model_name": "sample-model",
   "model_version": "1.0.0", "client": "127.0.0.1"}

Only /predict is counted in inference_requests_total, so scrapes and health
checks do not dilute the error ratio.  --self-traffic N (default 2) makes a
background thread send N requests per second to the app itself, so the
metrics move without an external load generator; 0 disables it.

Runs on the python3 of Debian 12/13 (3.11+, also 3.8+) without packages:
    python3 inference_app.py --port 8000 --model-version 1.4.2 --error-rate 0.05
"""
from __future__ import annotations

import argparse
import json
import math
import random
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PREDICTION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
CLASSES = ("negative", "positive")
CLASS_THRESHOLD = 0.5
PREDICT = "/predict"
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
WEIGHTS = (0.8, -0.5, 0.3, 1.1)
LOG_LOCK = threading.Lock()


def escape(value: str) -> str:
    """Escape a label value for the text exposition format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels_text(pairs: Sequence[Tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in pairs) + "}"


def number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Histogram:
    """A Prometheus histogram (not thread-safe; Metrics holds the lock)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # last one is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value
        self.count += 1

    def render(self, name: str, pairs: Sequence[Tuple[str, str]]) -> List[str]:
        lines = []
        cumulative = 0
        for bound, count in zip(self.buckets + (math.inf,), self.counts):
            cumulative += count
            lines.append(f"{name}_bucket{labels_text(list(pairs) + [('le', number(bound))])} {cumulative}")
        lines.append(f"{name}_sum{labels_text(pairs)} {number(self.total)}")
        lines.append(f"{name}_count{labels_text(pairs)} {self.count}")
        return lines


class Metrics:
    """All metrics of the app, guarded by one lock."""

    def __init__(self, model_name: str, model_version: str) -> None:
        self.lock = threading.Lock()
        self.model_name = model_name
        self.model_version = model_version
        # Series that should exist (at 0) before the first request, so that
        # rate() and error ratios are defined from the first scrape on.
        self.requests: Dict[Tuple[str, str, str], int] = {
            (PREDICT, method, status): 0 for method in ("GET", "POST") for status in ("200", "500")
        }
        self.durations: Dict[str, Histogram] = {PREDICT: Histogram(LATENCY_BUCKETS)}
        self.predictions: Dict[str, int] = {model_version: 0}
        self.prediction_value = Histogram(PREDICTION_BUCKETS)
        self.predicted_class: Dict[str, int] = {name: 0 for name in CLASSES}
        self.drift_checked = 0
        self.drift_detected = 0

    def record_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self.lock:
            key = (endpoint, method, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            self.durations.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def record_prediction(self, value: float, drifted: bool) -> None:
        with self.lock:
            self.predictions[self.model_version] = self.predictions.get(self.model_version, 0) + 1
            self.prediction_value.observe(value)
            label = predicted_class(value)
            self.predicted_class[label] = self.predicted_class.get(label, 0) + 1
            self.drift_checked += 1
            if drifted:
                self.drift_detected += 1

    def render(self) -> str:
        with self.lock:
            out = [
                "# HELP inference_requests_total Requests served.",
                "# TYPE inference_requests_total counter",
            ]
            for (endpoint, method, status), count in sorted(self.requests.items()):
                pairs = [("endpoint", endpoint), ("method", method), ("status", status)]
                out.append(f"inference_requests_total{labels_text(pairs)} {count}")
            out += [
                "# HELP inference_request_duration_seconds Request latency.",
                "# TYPE inference_request_duration_seconds histogram",
            ]
            for endpoint, histogram in sorted(self.durations.items()):
                out += histogram.render("inference_request_duration_seconds", [("endpoint", endpoint)])
            out += [
                "# HELP inference_predictions_total Predictions served.",
                "# TYPE inference_predictions_total counter",
            ]
            for version, count in sorted(self.predictions.items()):
                out.append(f"inference_predictions_total{labels_text([('model_version', version)])} {count}")
            out += [
                "# HELP inference_prediction_value Distribution of predicted values.",
                "# TYPE inference_prediction_value histogram",
            ]
            out += self.prediction_value.render("inference_prediction_value", [])
            out += [
                "# HELP inference_predicted_class_total Predictions by predicted class.",
                "# TYPE inference_predicted_class_total counter",
            ]
            for label, count in sorted(self.predicted_class.items()):
                out.append(f"inference_predicted_class_total{labels_text([('predicted_class', label)])} {count}")
            info = [("model_name", self.model_name), ("model_version", self.model_version)]
            out += [
                "# HELP inference_model_info Model currently loaded (always 1).",
                "# TYPE inference_model_info gauge",
                f"inference_model_info{labels_text(info)} 1",
                "# HELP inference_drift_checked_total Requests checked for data drift.",
                "# TYPE inference_drift_checked_total counter",
                f"inference_drift_checked_total {self.drift_checked}",
                "# HELP inference_drift_detected_total Requests whose input drifted.",
                "# TYPE inference_drift_detected_total counter",
                f"inference_drift_detected_total {self.drift_detected}",
            ]
        return "\n".join(out) + "\n"


def predicted_class(value: float) -> str:
    """The class of a score: positive from CLASS_THRESHOLD on."""
    return CLASSES[1] if value >= CLASS_THRESHOLD else CLASSES[0]


class Model:
    """A toy model: logistic regression on the features plus a little noise
    (or one constant value, the silent failure of --constant-prediction)."""

    def __init__(self, name: str, version: str, rng: random.Random, constant: Optional[float] = None) -> None:
        self.name = name
        self.version = version
        self.rng = rng
        self.rng_lock = threading.Lock()
        self.constant = constant

    def random(self) -> float:
        with self.rng_lock:
            return self.rng.random()

    def gauss(self, sigma: float) -> float:
        with self.rng_lock:
            return self.rng.gauss(0.0, sigma)

    def predict(self, features: List[float]) -> float:
        if self.constant is not None:
            return self.constant
        if not features:
            features = [self.gauss(1.0) for _ in WEIGHTS]
        score = sum(w * x for w, x in zip(WEIGHTS * (len(features) // len(WEIGHTS) + 1), features))
        score += self.gauss(0.3)
        return round(1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, score)))), 6)


class Handler(BaseHTTPRequestHandler):
    server_version = "inference-app/1.0"

    # set on the class by make_server()
    metrics: Metrics
    model: Model
    options: argparse.Namespace

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        if self.options.access_log:
            super().log_message(format, *args)

    def log_request(self, code="-", size="-") -> None:
        """One JSON object per request on stdout (--request-log json), and the
        stdlib's access log on stderr with --access-log."""
        if self.options.access_log:
            super().log_request(code, size)
        if self.options.request_log != "json":
            return
        started = getattr(self, "started", None)
        line = json.dumps({
            "event": "request",
            "method": self.command,
            "path": urlsplit(self.path).path,
            "status": int(code) if str(code).isdigit() else code,
            "duration_seconds": round(time.perf_counter() - started, 6) if started else None,
            "model_name": self.model.name,
            "model_version": self.model.version,
            "client": self.client_address[0] if self.client_address else "",
        }, separators=(",", ":"))
        with LOG_LOCK:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def send_body(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: dict) -> None:
        self.send_body(status, (json.dumps(payload) + "\n").encode(), "application/json")

    def route(self) -> None:
        self.started = time.perf_counter()
        path = urlsplit(self.path).path
        if path == PREDICT:
            self.handle_predict()
        elif path == "/health" and self.command in ("GET", "HEAD"):
            self.send_body(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/metrics" and self.command in ("GET", "HEAD"):
            self.send_body(200, self.metrics.render().encode(), CONTENT_TYPE_METRICS)
        else:
            self.send_json(404, {"error": "not found", "endpoints": [PREDICT, "/health", "/metrics"]})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = route

    def read_features(self) -> List[float]:
        if self.command == "GET":
            return [float(x) for x in parse_qs(urlsplit(self.path).query).get("x", [])]
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            return []
        payload = json.loads(self.rfile.read(min(length, 1 << 20)) or b"{}")
        features = payload.get("features", []) if isinstance(payload, dict) else payload
        return [float(x) for x in features]

    def features_or_none(self) -> Optional[List[float]]:
        try:
            features = self.read_features()
        except (ValueError, TypeError, AttributeError):
            return None
        return features if all(math.isfinite(x) for x in features) else None

    def handle_predict(self) -> None:
        start = time.perf_counter()
        status, payload = self.predict_answer()
        # Counted before the answer is written: a client that has its answer finds it in /metrics.
        self.metrics.record_request(PREDICT, self.command, status, time.perf_counter() - start)
        self.send_json(status, payload)

    def predict_answer(self) -> Tuple[int, dict]:
        if self.command not in ("GET", "POST"):
            return 405, {"error": "use GET or POST"}
        features = self.features_or_none()
        if features is None:
            return 400, {"error": 'expected JSON {"features": [numbers]} or ?x=<number>'}
        time.sleep(self.options.latency + 0.002 + self.model.random() * 0.03)
        if self.model.random() < self.options.error_rate:
            return 500, {"error": "simulated model failure"}
        value = self.model.predict(features)
        drifted = self.model.random() < self.options.drift_rate
        self.metrics.record_prediction(value, drifted)
        return 200, {"prediction": value, "model_name": self.model.name, "model_version": self.model.version,
                     "drift": drifted}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(options: argparse.Namespace) -> Server:
    handler = type("BoundHandler", (Handler,), {
        "metrics": Metrics(options.model_name, options.model_version),
        "model": Model(options.model_name, options.model_version, random.Random(options.seed),
                       options.constant_prediction),
        "options": options,
    })
    server_class = Server
    if ":" in options.listen:
        server_class = type("Server6", (Server,), {"address_family": socket.AF_INET6})
    return server_class((options.listen, options.port), handler)


def self_url(listen: str, port: int) -> str:
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(listen, listen)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{PREDICT}"


def self_traffic(url: str, rate: float, stop: threading.Event, rng: random.Random) -> None:
    """Send about ``rate`` requests per second to ``url`` until ``stop`` is set."""
    in_flight = threading.BoundedSemaphore(16)

    def one(features: List[float]) -> None:
        try:
            body = json.dumps({"features": features}).encode()
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError):
            pass  # 500s are part of the show; the server may also be stopping
        finally:
            in_flight.release()

    interval = 1.0 / rate
    due = time.monotonic()
    while not stop.is_set():
        if in_flight.acquire(blocking=False):
            features = [round(rng.gauss(0.0, 1.0), 3) for _ in WEIGHTS]
            threading.Thread(target=one, args=(features,), daemon=True).start()
        due += interval
        delay = due - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            due = time.monotonic()  # fell behind: do not burst to catch up


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text}")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if value < 0 or math.isnan(value) or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535 (0: any free port), got {text}")
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Sample ML inference API with Prometheus metrics.")
    parser.add_argument("--port", type=port_number, default=8000, help="TCP port (0: any free port; default 8000)")
    parser.add_argument("--listen", default="0.0.0.0", help="address to listen on (default 0.0.0.0; '::' for IPv6)")
    parser.add_argument("--model-name", default="sample-model", help="model_name label (default sample-model)")
    parser.add_argument("--model-version", default="1.0.0", help="model_version label (default 1.0.0)")
    parser.add_argument("--error-rate", type=fraction, default=0.0,
                        help="fraction of /predict requests answered with 500 (default 0)")
    parser.add_argument("--drift-rate", type=fraction, default=0.05,
                        help="fraction of predictions flagged as drifted (default 0.05)")
    parser.add_argument("--constant-prediction", type=fraction, default=None, metavar="VALUE",
                        help="predict VALUE (0-1) for every request, answered with 200: a model whose "
                             "output collapsed (default: off)")
    parser.add_argument("--latency", type=non_negative, default=0.0,
                        help="seconds added to every /predict request (default 0)")
    parser.add_argument("--self-traffic", type=non_negative, default=2.0,
                        help="requests per second the app sends to itself (default 2, 0 disables)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr (text)")
    parser.add_argument("--request-log", choices=("json", "off"), default="json",
                        help="one JSON object per request on stdout (default json)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = parse_args(argv)
    server = make_server(options)
    port = server.server_address[1]
    stop = threading.Event()

    def terminate(signum, frame) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)
    if options.self_traffic > 0:
        threading.Thread(
            target=self_traffic, name="self-traffic", daemon=True,
            args=(self_url(options.listen, port), options.self_traffic, stop, random.Random(options.seed)),
        ).start()
    host = f"[{options.listen}]" if ":" in options.listen else options.listen
    print(f"inference app {options.model_name} {options.model_version} listening on http://{host}:{port}/ "
          f"(self-traffic {options.self_traffic:g}/s, error-rate {options.error_rate:g}, "
          f"drift-rate {options.drift_rate:g}"
          + (f", constant-prediction {options.constant_prediction:g}" if options.constant_prediction is not None else "")
          + ")", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
