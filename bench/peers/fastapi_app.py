# The seeds' stack for bench/app_vs_fastapi.sh: /work/shared/anchors/app.py
# with the database path taken from CASES_DB instead of a fixed /tmp path.
import os
import sqlite3
from fastapi import FastAPI
app = FastAPI()
db = sqlite3.connect(os.environ.get("CASES_DB", "/tmp/anchors/cases.db"), check_same_thread=False)
@app.get("/health")
def health():
    return {"status": "healthy"}
@app.get("/casefilter")
def casefilter(user_id: int, status: int):
    cur = db.execute("select case_id,user_id,case_status,created_date,patient_name from cases where user_id=? and case_status=? limit 50", (user_id, status))
    return [dict(case_id=r[0], user_id=r[1], case_status=r[2], created_date=r[3], patient_name=r[4]) for r in cur]
