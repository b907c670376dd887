"""Real PostgreSQL and Redis for end-to-end tests, started by the test.

PgCluster runs a primary and a streaming replica (pg_basebackup -R) as the
`postgres` user on free loopback ports in a temporary directory, the way
tests/unit/test_store_pg.c does; every statement is logged
(log_statement=all) so a test can tell which server ran a query. The
replica applies WAL `apply_delay` late, which makes "this read came from the
replica" observable: a fresh write is not there yet. Tests that cannot run
(not root, no PostgreSQL 15, no redis-server) are skipped, not failed."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import free_port, wait_port, wait_until  # noqa: F401 (wait_until: re-exported)

PGBIN = "/usr/lib/postgresql/15/bin"


def have_pg():
    return os.geteuid() == 0 and os.access(f"{PGBIN}/initdb", os.X_OK)


class PgCluster:
    def __init__(self, apply_delay="2s"):
        self.dir = tempfile.mkdtemp(prefix="hscale_pg_")
        shutil.chown(self.dir, "postgres")
        self.port = {"p": free_port(), "r": free_port()}
        self.apply_delay = apply_delay

    def url(self, node, db="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port[node]}/{db}"

    def _pg(self, *args, check=True):
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=check,
                              capture_output=True, text=True, timeout=60)

    def start(self, node):
        opts = (f"-p {self.port[node]} -k {self.dir} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c log_statement=all")
        self._pg(f"{PGBIN}/pg_ctl", "-w", "-t", "30", "-D", f"{self.dir}/{node}",
                 "-l", self.log_path(node), "-o", opts, "start")

    def stop(self, node):
        self._pg(f"{PGBIN}/pg_ctl", "-D", f"{self.dir}/{node}", "-m", "immediate", "stop",
                 check=False)

    def log_path(self, node):
        return f"{self.dir}/{node}.log"

    def log(self, node):
        with open(self.log_path(node), errors="replace") as f:
            return f.read()

    def setup(self):
        self._pg(f"{PGBIN}/initdb", "-D", f"{self.dir}/p", "--auth=trust", "-N")
        self.start("p")
        self._pg(f"{PGBIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port["p"]),
                 "-U", "postgres", "-D", f"{self.dir}/r", "-R", "-X", "stream")
        with open(f"{self.dir}/r/postgresql.auto.conf", "a") as f:
            f.write(f"recovery_min_apply_delay = '{self.apply_delay}'\n")
        self.start("r")

    def psql(self, sql, db="postgres", node="p", check=True):
        """The query's rows as text; None on failure when check is off."""
        r = subprocess.run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p",
                            str(self.port[node]), "-U", "postgres", "-d", db, "-c", sql],
                           capture_output=True, text=True, timeout=30)
        if not check and r.returncode != 0:
            return None
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def teardown(self):
        self.stop("r")
        self.stop("p")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pg():
    if not have_pg():
        pytest.skip("needs PostgreSQL 15 and root (to run it as the postgres user)")
    c = PgCluster()
    try:
        c.setup()
        yield c
    finally:
        c.teardown()


@pytest.fixture(scope="module")
def redis_addr(tmp_path_factory):
    exe = shutil.which("redis-server")
    if not exe:
        pytest.skip("needs redis-server")
    port = free_port()
    d = tmp_path_factory.mktemp("redis")
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(d)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        wait_port(port, proc=p)
        yield f"127.0.0.1:{port}"
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
