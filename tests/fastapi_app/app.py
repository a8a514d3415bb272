"""FastAPI test service instrumented with prometheus-fastapi-instrumentator.

A real service using the real library with its defaults, for monstack's
tests of the metric contract examples/metric-contracts/fastapi-instrumentator.yml:

  http_requests_total{handler, method, status="2xx"|"5xx"}
  http_request_duration_seconds{handler, method}   buckets 0.1, 0.5, 1 s

Endpoints:
  GET /predict?x=1.5         -> 200 {"prediction": ...}
  GET /predict?fail=true     -> 500 (a failing model, on request)
  GET /predict?delay=0.8     -> answered after 0.8 s (at most 5 s)
  GET /health                -> 200
  GET /metrics               -> the instrumentator's metrics

Run (the wheels of requirements.txt unpacked into LIB):
  PYTHONPATH=LIB python3 -m uvicorn app:app --host 0.0.0.0 --port 8001
"""
from __future__ import annotations

import asyncio

from fastapi import FastAPI, HTTPException
from prometheus_fastapi_instrumentator import Instrumentator

WEIGHT, BIAS = 0.8, -0.5
MAX_DELAY = 5.0

app = FastAPI(title="monstack FastAPI test service")


@app.get("/predict")
async def predict(x: float = 1.0, fail: bool = False, delay: float = 0.0) -> dict:
    if delay > 0:
        await asyncio.sleep(min(delay, MAX_DELAY))
    if fail:
        raise HTTPException(status_code=500, detail="model failure (requested with fail=true)")
    return {"prediction": round(WEIGHT * x + BIAS, 4)}


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


# The library's defaults, as a user of the example contract has them.
Instrumentator().instrument(app).expose(app)
