"""SurgiCase case API: a FastAPI service as its team runs it, with no
knowledge of hscale. Readiness on /health/ready (the ALB check of the
SurgiCase guide), a liveness /health, the read paths of its Locust test and
a CPU-heavy report, so scaling on CPU can be seen.

Run by hscale as:  python3 -m uvicorn main:app --host HOST --port PORT
"""
import hashlib
import os
import time

from fastapi import FastAPI, HTTPException

app = FastAPI(title="SurgiCase")
INSTANCE = os.environ.get("INSTANCE_ID", "local")
VERSION = os.environ.get("APP_VERSION", "v1")
STARTED = time.time()

FACILITIES = [{"id": i, "name": f"Facility {i}", "user_id": 1 + i % 10} for i in range(1, 21)]
CASES = [{"id": i, "user_id": 1 + i % 10, "facility_id": 1 + i % 20, "status": 10 * (1 + i % 3),
          "procedure": f"procedure-{i % 7}"} for i in range(1, 1001)]


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/health/ready")
def ready():
    return {"status": "ready", "instance": INSTANCE, "version": VERSION,
            "uptime_s": round(time.time() - STARTED, 1)}


@app.get("/facilities")
def facilities(user_id: int):
    return [f for f in FACILITIES if f["user_id"] == user_id]


@app.get("/casefilter")
def casefilter(user_id: int, status: int = 0):
    return [c for c in CASES if c["user_id"] == user_id and (not status or c["status"] == status)]


@app.get("/cases/{case_id}")
def case(case_id: int):
    if not 1 <= case_id <= len(CASES):
        raise HTTPException(status_code=404, detail="no such case")
    return {**CASES[case_id - 1], "instance": INSTANCE}


@app.get("/reports/digest")
def digest(ms: int = 50):
    """A CPU-bound report: hashes for about `ms` milliseconds of CPU."""
    end = time.process_time() + min(ms, 2000) / 1000.0
    h = hashlib.sha256(b"surgicase")
    n = 0
    while time.process_time() < end:
        h.update(h.digest())
        n += 1
    return {"rounds": n, "digest": h.hexdigest()[:16], "instance": INSTANCE}
