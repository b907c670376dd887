"""TutorMax background work: a Celery app on a Redis broker, as the team
runs it, with no knowledge of hscale. hscale runs `celery -A tasks worker`
as a service with no port and scales it on the broker's queue depth.

Each task records that it ran (HINCRBY tutormax:runs <id> 1), so a run can
check that every task ran exactly once across scale-out and scale-in."""
import os
import time

import redis
from celery import Celery

BROKER = os.environ.get("BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("tasks", broker=BROKER)
# One task reserved per worker process, acknowledged when done: a worker
# stopped mid-task (scale-in past stop_grace, a crash) leaves it to another.
app.conf.update(worker_prefetch_multiplier=1, task_acks_late=True,
                broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
_store = None


def store():
    global _store
    if _store is None:
        _store = redis.Redis.from_url(BROKER)
    return _store


@app.task(name="tasks.summarize")
def summarize(session_id, seconds=0.2):
    """Summarises a tutoring session (here: takes `seconds` of work)."""
    store().hset("tutormax:started", session_id, time.time())
    time.sleep(seconds)
    store().hincrby("tutormax:runs", session_id, 1)
    return {"session": session_id, "worker": os.environ.get("INSTANCE_ID", "?")}
