"""FastAPI test service instrumented with prometheus-fastapi-instrumentator.

A real service using the real library with its defaults, for monstack's
tests of the metric contract examples/metric-contracts/fastapi-instrumentator.yml:

  http_requests_total{handler, method, status="2xx"|"5xx"}
  http_request_duration_seconds{handler, method}   buckets 0.1, 0.5, 1 s

and, with prometheus_client, the model's outputs under the names of the sample
app's contract (prediction_value, predicted_class_total):

  inference_prediction_value                       histogram of scores, 0.1 .. 1.0
  inference_predicted_class_total{predicted_class} positive (score >= 0.5), negative

Endpoints:
  GET /predict?x=1.5         -> 200 {"prediction": ..., "score": 0-1, "class": ...}
  GET /predict?fail=true     -> 500 (a failing model, on request)
  GET /predict?delay=0.8     -> answered after 0.8 s (at most 5 s)
  GET /health                -> 200
  GET /metrics               -> the instrumentator's metrics

Switch: CONSTANT_PREDICTION=0.93 in the environment makes every prediction that
one value (answered 200): a model whose output collapsed, the silent failure
the ml_outputs alerts catch.

Run (the wheels of requirements.txt unpacked into LIB):
  PYTHONPATH=LIB python3 -m uvicorn app:app --host 0.0.0.0 --port 8001
"""
from __future__ import annotations

import asyncio
import math
import os

from fastapi import FastAPI, HTTPException
from prometheus_client import Counter, Histogram
from prometheus_fastapi_instrumentator import Instrumentator

WEIGHT, BIAS = 0.8, -0.5
MAX_DELAY = 5.0
CLASS_THRESHOLD = 0.5


def constant_prediction(text: str | None) -> float | None:
    """CONSTANT_PREDICTION: a score from 0 to 1, or unset/empty for the real model."""
    if not text:
        return None
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"CONSTANT_PREDICTION: expected a score from 0 to 1, got {text}")
    return value


CONSTANT = constant_prediction(os.environ.get("CONSTANT_PREDICTION"))
SCORES = Histogram("inference_prediction_value", "Distribution of predicted values (scores).",
                   buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
CLASSES = Counter("inference_predicted_class_total", "Predictions by predicted class.", ["predicted_class"])
for _name in ("negative", "positive"):
    CLASSES.labels(predicted_class=_name)

app = FastAPI(title="monstack FastAPI test service")


@app.get("/predict")
async def predict(x: float = 1.0, fail: bool = False, delay: float = 0.0) -> dict:
    if delay > 0:
        await asyncio.sleep(min(delay, MAX_DELAY))
    if fail:
        raise HTTPException(status_code=500, detail="model failure (requested with fail=true)")
    if CONSTANT is not None:
        prediction = score = CONSTANT
    else:
        prediction = round(WEIGHT * x + BIAS, 4)
        score = round(1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, prediction)))), 6)
    label = "positive" if score >= CLASS_THRESHOLD else "negative"
    SCORES.observe(score)
    CLASSES.labels(predicted_class=label).inc()
    return {"prediction": prediction, "score": score, "class": label}


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


# The library's defaults, as a user of the example contract has them.
Instrumentator().instrument(app).expose(app)
