"""A throw-away PostgreSQL server for the cluster tests, from Debian's `postgresql` package.

initdb in a temporary directory, run as a non-root user (the package's `postgres` account when
the tests run as root), listening on 127.0.0.1 on a free port with its socket in the same
directory. `PgServer.unavailable()` says why no server can be had (package missing, initdb or
the start failed); the tests skip with that reason and only then.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

SUPERUSER = "vhsm"


def _bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class PgServer:
    """One PostgreSQL server; start() / stop() / restart(), url(db) for clients."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="vhsm-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres").pw_name
            except KeyError:
                self.user = None
        self.problem: str | None = None

    # ------------------------------------------------------------ running tools as the owner
    def _argv(self, tool: str, *args: str) -> list[str]:
        argv = [os.path.join(self.bin or "", tool), *args]
        if os.geteuid() == 0:
            return ["runuser", "-u", self.user or "postgres", "--", *argv]
        return argv

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self._argv(tool, *args), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)

    # ------------------------------------------------------------ lifecycle
    def setup(self) -> "PgServer":
        """initdb and start; on failure self.problem says why (and nothing is left running)."""
        if self.bin is None:
            self.problem = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl; apt-get install postgresql)"
            return self
        if os.geteuid() == 0 and self.user is None:
            self.problem = "running as root and there is no `postgres` user to run the server as"
            return self
        if os.geteuid() == 0:
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        r = self._run("initdb", "-D", self.data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                      "--no-instructions", "--no-sync", timeout=120)
        if r.returncode != 0:
            self.problem = f"initdb failed: {r.stderr.strip() or r.stdout.strip()}"
            return self
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.dir}'\nmax_connections = 200\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "shared_buffers = 32MB\n")
        if not self.start():
            return self
        try:
            import psycopg
            with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as c:
                c.execute("CREATE DATABASE vhsm")
        except Exception as e:  # noqa: BLE001 - the reason is reported as the skip reason
            self.problem = f"cannot create the test database: {e}"
            self.stop()
        return self

    def start(self, timeout: float = 60) -> bool:
        r = self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", str(int(timeout)), "start",
                      timeout=timeout + 10)
        if r.returncode != 0:
            tail = ""
            try:
                with open(self.log) as f:
                    tail = f.read()[-1500:]
            except OSError:
                pass
            self.problem = f"pg_ctl start failed: {r.stderr.strip() or r.stdout.strip()}\n{tail}"
            return False
        return True

    def stop(self, mode: str = "fast") -> None:
        if self.bin and os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", timeout=70)

    def running(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db: str = "vhsm") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{db}"

    def new_database(self, name: str) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def wait_port_closed(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            return
        time.sleep(0.1)
