"""TutorMax API: a FastAPI service that hands slow work to Celery workers,
as the team runs it, with no knowledge of hscale. /health answers JSON with
the instance id (the TutorMax guide's health check).

Run by hscale as:  python3 -m uvicorn main:app --host HOST --port PORT
"""
import os

from fastapi import FastAPI
from pydantic import BaseModel

import tasks

app = FastAPI(title="TutorMax")
INSTANCE = os.environ.get("INSTANCE_ID", "local")
SESSIONS = [{"id": i, "tutor": f"tutor-{i % 12}", "student": f"student-{i}"} for i in range(1, 201)]


class Batch(BaseModel):
    sessions: list[int]
    seconds: float = 0.2


@app.get("/health")
def health():
    return {"status": "ok", "instance": INSTANCE}


@app.get("/api/sessions")
def sessions(tutor: str = ""):
    return [s for s in SESSIONS if not tutor or s["tutor"] == tutor]


@app.post("/api/summaries", status_code=202)
def summaries(batch: Batch):
    """Queues one summary task per session: the worker service scales on it."""
    for sid in batch.sessions:
        tasks.summarize.delay(str(sid), batch.seconds)
    return {"queued": len(batch.sessions), "instance": INSTANCE}
