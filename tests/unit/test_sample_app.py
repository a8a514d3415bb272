"""Start tests/sample_app/inference_app.py on a free loopback port and check its metrics."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "tests" / "sample_app" / "inference_app.py"
UNIT = REPO / "tests" / "sample_app" / "inference-app.service"
LATENCY_BOUNDS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"]
SAMPLE_RE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset], float]


class App:
    def __init__(self, process: subprocess.Popen, base: str) -> None:
        self.process = process
        self.base = base
        self.log_lines: list[str] = []

    def get(self, path: str, data: bytes | None = None) -> tuple[int, str]:
        request = urllib.request.Request(self.base + path, data=data,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def predict(self, features: list[float] | None = None) -> tuple[int, str]:
        return self.get("/predict", json.dumps({"features": features or [0.1, 0.2]}).encode())

    def metrics(self) -> tuple[str, Samples]:
        status, text = self.get("/metrics")
        assert status == 200
        return text, parse(text)


def parse(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE_RE.fullmatch(line)
        assert match, f"not exposition format: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(LABEL_RE.findall(labels or ""))
        samples[(name, pairs)] = float(value)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def start_app() -> Iterator:
    started: list[subprocess.Popen] = []

    def start(*args: str) -> App:
        process = subprocess.Popen(
            [sys.executable, str(APP), "--listen", "127.0.0.1", "--port", "0", "--seed", "7", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(process)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(15)
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line[0] if line else "")
        assert match, f"app did not start: {line!r} {process.poll()!r}"
        app = App(process, f"http://127.0.0.1:{match.group(1)}")
        # The request log (one JSON line per request) goes on stdout: keep it, so the pipe never fills.
        threading.Thread(target=lambda: app.log_lines.extend(process.stdout), daemon=True).start()
        return app

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def test_health_and_unknown_path(start_app):
    app = start_app("--self-traffic", "0")
    assert app.get("/health") == (200, "ok\n")
    assert app.get("/nope")[0] == 404


def test_predict_and_metrics(start_app):
    app = start_app("--self-traffic", "0", "--model-name", "rf", "--model-version", "2.3.4", "--drift-rate", "0")
    _, before = app.metrics()
    assert value(before, "inference_requests_total", endpoint="/predict", method="POST", status="200") == 0
    assert value(before, "inference_requests_total", endpoint="/predict", method="POST", status="500") == 0
    for _ in range(3):
        status, body = app.predict([1.0, -2.0, 0.5, 3.0])
        assert status == 200
        answer = json.loads(body)
        assert 0.0 <= answer["prediction"] <= 1.0
        assert answer["model_version"] == "2.3.4" and answer["model_name"] == "rf"
    for _ in range(2):
        assert app.get("/predict?x=1.5&x=-1")[0] == 200
    assert app.predict(["not a number"])[0] == 400

    text, samples = app.metrics()
    assert value(samples, "inference_requests_total", endpoint="/predict", method="POST", status="200") == 3
    assert value(samples, "inference_requests_total", endpoint="/predict", method="GET", status="200") == 2
    assert value(samples, "inference_requests_total", endpoint="/predict", method="POST", status="400") == 1
    assert value(samples, "inference_predictions_total", model_version="2.3.4") == 5
    assert value(samples, "inference_model_info", model_name="rf", model_version="2.3.4") == 1
    assert value(samples, "inference_drift_checked_total") == 5
    assert value(samples, "inference_drift_detected_total") == 0
    assert value(samples, "inference_prediction_value_count") == 5
    assert 0 < value(samples, "inference_prediction_value_sum") < 5
    assert (value(samples, "inference_predicted_class_total", predicted_class="positive")
            + value(samples, "inference_predicted_class_total", predicted_class="negative")) == 5

    buckets = [(dict(labels)["le"], count) for (name, labels), count in samples.items()
               if name == "inference_request_duration_seconds_bucket"]
    assert [le for le, _ in buckets] == LATENCY_BOUNDS
    counts = [count for _, count in buckets]
    assert counts == sorted(counts), "histogram buckets must be cumulative"
    assert counts[-1] == value(samples, "inference_request_duration_seconds_count", endpoint="/predict") == 6
    assert value(samples, "inference_request_duration_seconds_sum", endpoint="/predict") > 0
    assert all(dict(labels) == {"endpoint": "/predict", "le": dict(labels)["le"]}
               for (name, labels) in samples if name == "inference_request_duration_seconds_bucket")
    for name, kind in [("inference_requests_total", "counter"),
                       ("inference_request_duration_seconds", "histogram"),
                       ("inference_predictions_total", "counter"),
                       ("inference_prediction_value", "histogram"),
                       ("inference_predicted_class_total", "counter"),
                       ("inference_model_info", "gauge"),
                       ("inference_drift_checked_total", "counter"),
                       ("inference_drift_detected_total", "counter")]:
        assert f"# TYPE {name} {kind}\n" in text
        assert f"# HELP {name} " in text
    assert text.endswith("\n")


def test_error_rate_one_answers_500(start_app):
    app = start_app("--self-traffic", "0", "--error-rate", "1")
    for _ in range(3):
        assert app.predict()[0] == 500
    assert app.get("/predict")[0] == 500
    _, samples = app.metrics()
    assert value(samples, "inference_requests_total", endpoint="/predict", method="POST", status="500") == 3
    assert value(samples, "inference_requests_total", endpoint="/predict", method="GET", status="500") == 1
    assert value(samples, "inference_requests_total", endpoint="/predict", method="POST", status="200") == 0
    assert value(samples, "inference_predictions_total", model_version="1.0.0") == 0


def test_drift_rate_one_flags_everything(start_app):
    app = start_app("--self-traffic", "0", "--drift-rate", "1")
    for _ in range(4):
        assert json.loads(app.predict()[1])["drift"] is True
    _, samples = app.metrics()
    assert value(samples, "inference_drift_checked_total") == value(samples, "inference_drift_detected_total") == 4


def test_latency_is_added_and_observed(start_app):
    app = start_app("--self-traffic", "0", "--latency", "0.3")
    start = time.monotonic()
    assert app.predict()[0] == 200
    assert time.monotonic() - start >= 0.3
    _, samples = app.metrics()
    # Above 0.25 s, and observed once; no upper bound on how long a loaded
    # CI machine takes to wake the sleeping handler.
    name = "inference_request_duration_seconds"
    assert value(samples, name + "_bucket", endpoint="/predict", le="0.25") == 0
    assert value(samples, name + "_bucket", endpoint="/predict", le="+Inf") == 1
    assert value(samples, name + "_count", endpoint="/predict") == 1
    assert value(samples, name + "_sum", endpoint="/predict") >= 0.3


def test_self_traffic_moves_the_counters(start_app):
    app = start_app("--self-traffic", "20")
    deadline = time.monotonic() + 15
    seen = 0.0
    while time.monotonic() < deadline:
        _, samples = app.metrics()
        seen = value(samples, "inference_requests_total", endpoint="/predict", method="POST", status="200")
        if seen >= 5:
            break
        time.sleep(0.2)
    assert seen >= 5
    assert value(samples, "inference_drift_checked_total") >= 5


@pytest.mark.parametrize("args", [["--error-rate", "2"], ["--drift-rate", "-0.1"], ["--port", "70000"],
                                  ["--latency", "-1"], ["--self-traffic", "x"]])
def test_bad_arguments_exit_2(args):
    result = subprocess.run([sys.executable, str(APP), *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "error" in result.stderr


def test_metric_names_match_the_contract(start_app):
    """Every metric in docs/metrics.md is exposed with its type and labels."""
    contract = re.findall(r"^\| `(inference_[a-z_]+)` \| (\w+)[^|]*\| ([^|]*)\|", (REPO / "docs" / "metrics.md")
                          .read_text(), flags=re.M)
    assert len(contract) == 8
    app = start_app("--self-traffic", "0")
    app.predict()
    text, samples = app.metrics()
    for name, kind, labels in contract:
        assert f"# TYPE {name} {kind}" in text
        expected = set(re.findall(r"`([a-z_]+)`", labels))
        series = [dict(pairs) for (sample, pairs) in samples
                  if sample == name or (kind == "histogram" and sample in (f"{name}_count", f"{name}_sum"))]
        assert series, name
        for found in series:
            assert set(found) == expected, (name, found)


def test_systemd_unit():
    text = UNIT.read_text()
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, val = line.partition("=")
            settings.setdefault(key.strip(), []).append(val.strip())
    assert settings["DynamicUser"] == ["yes"]
    assert any(v.startswith("INFERENCE_APP_PORT=") for v in settings["Environment"])
    exec_start = settings["ExecStart"][0]
    assert exec_start.startswith("/usr/bin/python3 ") and "inference_app.py" in exec_start
    assert "--port ${INFERENCE_APP_PORT}" in exec_start
    for key, expected in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                          "PrivateTmp": "yes", "CapabilityBoundingSet": "", "RestrictNamespaces": "yes"}.items():
        assert settings[key] == [expected], key
    assert "[Install]" in text and "WantedBy=multi-user.target" in text


def test_request_log_is_one_json_object_per_request(start_app):
    app = start_app("--self-traffic", "0", "--model-version", "3.1.4", "--error-rate", "1")
    assert app.predict()[0] == 500
    assert app.get("/health")[0] == 200
    deadline = time.monotonic() + 10
    while len(app.log_lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    entries = [json.loads(line) for line in app.log_lines]
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [("POST", "/predict", 500), ("GET", "/health", 200)]
    for entry in entries:
        assert entry["event"] == "request"
        assert entry["model_version"] == "3.1.4" and entry["model_name"] == "sample-model"
        assert entry["client"] == "127.0.0.1"
        assert isinstance(entry["duration_seconds"], float) and 0 <= entry["duration_seconds"] < 5


def test_request_log_off(start_app):
    app = start_app("--self-traffic", "0", "--request-log", "off")
    assert app.get("/health")[0] == 200
    time.sleep(0.3)
    assert app.log_lines == []


def test_predicted_classes_exist_before_the_first_prediction(start_app):
    app = start_app("--self-traffic", "0")
    _, samples = app.metrics()
    assert value(samples, "inference_predicted_class_total", predicted_class="positive") == 0
    assert value(samples, "inference_predicted_class_total", predicted_class="negative") == 0


def test_healthy_model_predicts_both_classes_with_spread_scores(start_app):
    app = start_app("--self-traffic", "0")
    features = [[(i % 7 - 3) * 0.8, (i % 5 - 2) * -0.6, 0.1 * i % 1.0, (i % 9 - 4) * 0.7] for i in range(40)]
    answers = [json.loads(app.predict(one)[1])["prediction"] for one in features]
    assert max(answers) - min(answers) > 0.3
    _, samples = app.metrics()
    positive = value(samples, "inference_predicted_class_total", predicted_class="positive")
    negative = value(samples, "inference_predicted_class_total", predicted_class="negative")
    assert positive + negative == 40 and positive > 0 and negative > 0


def test_constant_prediction_is_a_silent_failure(start_app):
    """--constant-prediction: every answer 200 with the same value; one class, one score bucket."""
    app = start_app("--self-traffic", "0", "--constant-prediction", "0.93")
    statuses, predictions = set(), set()
    for features in ([1.0, -2.0, 0.5, 3.0], [-3.0, 2.0, 0.0, -1.0], None):
        for _ in range(5):
            status, body = app.predict(features) if features is not None else app.predict()
            statuses.add(status)
            predictions.add(json.loads(body)["prediction"])
    assert statuses == {200} and predictions == {0.93}
    _, samples = app.metrics()
    assert value(samples, "inference_requests_total", endpoint="/predict", method="POST", status="200") == 15
    assert value(samples, "inference_requests_total", endpoint="/predict", method="POST", status="500") == 0
    assert value(samples, "inference_predicted_class_total", predicted_class="positive") == 15
    assert value(samples, "inference_predicted_class_total", predicted_class="negative") == 0
    buckets = {dict(labels)["le"]: count for (name, labels), count in samples.items()
               if name == "inference_prediction_value_bucket"}
    assert buckets["0.9"] == 0 and buckets["1.0"] == 15 and buckets["+Inf"] == 15


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "x"])
def test_constant_prediction_must_be_a_fraction(bad):
    result = subprocess.run([sys.executable, str(APP), "--constant-prediction", bad], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "--constant-prediction" in result.stderr
