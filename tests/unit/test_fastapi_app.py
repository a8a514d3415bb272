"""The FastAPI test service (tests/fastapi_app) with the real prometheus-fastapi-instrumentator
exposes what examples/metric-contracts/fastapi-instrumentator.yml says.

Runs the service on 127.0.0.1 with the wheels scripts/setup.sh downloads for the test
hosts (Python 3.11, as on this controller); skipped, with the reason, without them.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "fastapi_app"
CONTRACT = ROOT / "examples" / "metric-contracts" / "fastapi-instrumentator.yml"
WHEELS = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack")) / "wheels" / "fastapi-app-py3.11"
SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$")


def python() -> str:
    """Debian's python3 when it is the wheels' 3.11, else this one (the venv's 3.11)."""
    system = shutil.which("python3", path="/usr/bin")
    if system and subprocess.run([system, "-c", "import sys; assert sys.version_info[:2] == (3, 11)"],
                                 capture_output=True).returncode == 0:
        return system
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the wheels are for Python 3.11")
    return sys.executable


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            out.append((match.group(1), labels, float(match.group(3))))
    return out


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    yield from run_service(tmp_path_factory, {})


@pytest.fixture(scope="module")
def constant_service(tmp_path_factory):
    """The service with its silent-failure switch on: every prediction 0.93."""
    yield from run_service(tmp_path_factory, {"CONSTANT_PREDICTION": "0.93"})


def run_service(tmp_path_factory, extra_env: dict[str, str]):
    wheels = sorted(WHEELS.glob("*.whl"))
    if not any(w.name.startswith("prometheus_fastapi_instrumentator-8.1.0-") for w in wheels):
        pytest.skip(f"no prometheus-fastapi-instrumentator 8.1.0 wheel in {WHEELS} (run scripts/setup.sh)")
    interpreter = python()
    lib = tmp_path_factory.mktemp("fastapi-lib")
    # Packed and unpacked as tests/fastapi_app/deploy.yml does it.
    archive = tmp_path_factory.mktemp("fastapi-archive") / "lib.tar.gz"
    result = subprocess.run([sys.executable, str(APP / "pack_wheels.py"), str(WHEELS), str(archive)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with tarfile.open(archive) as tar:
        # GNU tar gives the target directory the mode of ".": the service's user must read it.
        assert tar.getmember(".").mode & 0o777 == 0o755
        tar.extractall(lib, filter="data")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(lib / "uvicorn.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([interpreter, "-s", "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
                             "--port", str(port), "--no-access-log"],
                            cwd=APP, env=dict(os.environ, PYTHONPATH=str(lib), PYTHONDONTWRITEBYTECODE="1", **extra_env),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the FastAPI service did not start:\n" + (lib / "uvicorn.log").read_text())
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def test_requirements_pin_the_instrumentator_of_the_issue():
    lines = (APP / "requirements.txt").read_text().splitlines()
    assert "prometheus-fastapi-instrumentator==8.1.0" in lines


def test_the_real_instrumentator_exposes_the_contract(service):
    contract = yaml.safe_load(CONTRACT.read_text())
    metrics, labels = contract["prometheus_ml_metrics"], contract["prometheus_ml_labels"]
    for _ in range(5):
        assert get(f"{service}/predict?x=2")[0] == 200
    assert get(f"{service}/predict?fail=true")[0] == 500
    assert get(f"{service}/predict?delay=0.6")[0] == 200
    status, text = get(f"{service}/metrics")
    assert status == 200
    found = samples(text)

    requests = {(s[1][labels["endpoint"]], s[1][labels["status"]]): s[2]
                for s in found if s[0] == metrics["requests_total"]}
    assert requests[("/predict", "2xx")] == 6
    assert requests[("/predict", "5xx")] == 1
    assert all(re.fullmatch(r"5..", code) for (_, code) in requests if code.startswith("5"))

    buckets = {s[1]["le"]: s[2] for s in found if s[0] == metrics["request_duration_seconds"] + "_bucket"
               and s[1].get(labels["endpoint"]) == "/predict"}
    assert {float(le) for le in buckets} == {0.1, 0.5, 1.0, float("inf")}
    assert buckets["+Inf"] == 7 and buckets["0.5"] == 6  # the 0.6 s request is above 0.5 s

    names = {s[0] for s in found}
    for key in ("predictions_total", "model_info", "drift_checked_total", "drift_ratio"):
        assert metrics[key] == "", f"the library has no {key} metric"
    assert not any("endpoint" in s[1] for s in found), "the library calls the route 'handler'"
    assert "http_request_duration_highr_seconds_bucket" in names


def outputs(found) -> tuple[dict[str, float], dict[str, float]]:
    """(predicted class -> count, le -> cumulative count of the scores) from /metrics samples."""
    classes = {s[1]["predicted_class"]: s[2] for s in found if s[0] == "inference_predicted_class_total"}
    buckets = {s[1]["le"]: s[2] for s in found if s[0] == "inference_prediction_value_bucket"}
    return classes, buckets


def test_the_model_outputs_are_exposed_under_the_sample_contract_names(service):
    sample = yaml.safe_load((CONTRACT.parent / "sample-app.yml").read_text())["prometheus_ml_metrics"]
    answers = [get(f"{service}/predict?x={x}") for x in (-3, -1, 0, 2, 4)]
    assert {status for status, _ in answers} == {200}
    classes, buckets = outputs(samples(get(f"{service}/metrics")[1]))
    names = {s[0] for s in samples(get(f"{service}/metrics")[1])}
    assert sample["predicted_class_total"] in names and sample["prediction_value"] + "_bucket" in names
    assert classes["positive"] > 0 and classes["negative"] > 0  # a healthy model: both classes
    assert classes["positive"] + classes["negative"] == buckets["+Inf"]
    assert len({count for count in buckets.values()}) > 2  # scores in several buckets


def test_constant_prediction_answers_200_with_one_value(constant_service):
    answers = [get(f"{constant_service}/predict?x={x}") for x in (-3, -1, 0, 2, 4)]
    assert {status for status, _ in answers} == {200}
    assert {body for _, body in answers} == {'{"prediction":0.93,"score":0.93,"class":"positive"}'}
    classes, buckets = outputs(samples(get(f"{constant_service}/metrics")[1]))
    assert classes == {"positive": 5, "negative": 0}
    assert buckets["0.9"] == 0 and buckets["1.0"] == 5 and buckets["+Inf"] == 5


@pytest.mark.parametrize("text, expected", [("", None), (None, None), ("0.5", 0.5), ("0", 0.0), ("1", 1.0)])
def test_constant_prediction_setting(text, expected):
    assert constant(text) == expected


@pytest.mark.parametrize("text", ["1.5", "-0.1", "nan?", "x"])
def test_constant_prediction_setting_refuses_non_scores(text):
    with pytest.raises(ValueError):
        constant(text)


def constant(text):
    """app.constant_prediction, read from the file (importing app.py needs FastAPI)."""
    import ast
    source = (APP / "app.py").read_text()
    tree = ast.parse(source)
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef)
                    and node.name == "constant_prediction")
    namespace: dict = {}
    exec(compile(ast.Module(body=[function], type_ignores=[]), "app.py", "exec"), namespace)  # noqa: S102
    return namespace["constant_prediction"](text)
