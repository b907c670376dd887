# /work/shared/anchors/mkdb.py, writing cases.db in the current directory:
# 10,000 cases over 100 users and 21 statuses, indexed on (user_id, case_status).
import sqlite3, random
random.seed(1)
db = sqlite3.connect("cases.db")
db.execute("drop table if exists cases")
db.execute("create table cases(case_id integer primary key, user_id integer, case_status integer, created_date text, patient_name text)")
rows = [(i, random.randint(1,100), random.randint(0,20), f"2026-0{random.randint(1,9)}-{random.randint(10,28)}", f"Patient {i}") for i in range(1,10001)]
db.executemany("insert into cases values(?,?,?,?,?)", rows)
db.execute("create index idx_cases_user_status on cases(user_id, case_status)")
db.commit()
print(db.execute("select count(*) from cases where user_id=7 and case_status=10").fetchone())
