"""A private MariaDB server for the catalog's server-database tests (issue 5).

Fixtures `mariadb` (session, the server: `.url`, `.new_database(name)`) and `mariadb_url`
(its first database). The server is Debian's `mariadbd` as a plain child process with a data
directory of its own under the session's temp dir, bound to 127.0.0.1 on a free port (never
3306: the local OpenStack stack runs its MariaDB there), creates a database and a password user
for the tests and yields their SQLAlchemy URL (`mysql+pymysql://...`; PyMySQL comes from
requirements-test.txt). At the end of the session the server is stopped by its own pid.

When the server binaries are missing, `mariadb-server` is installed with apt-get (root only),
with a temporary /usr/sbin/policy-rc.d exiting 101 so the package starts no daemon of its own.
A server that cannot start fails the tests with the reason; they never skip.

A test module picks the fixtures up by name: `mariadb = catalog_db.mariadb` (and mariadb_url).
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
DATABASE = "catalog_test"
USER = "catalog"
START_TIMEOUT = 120.0


class MariaDBError(RuntimeError):
    """The test server could not be installed or started (the message says why)."""


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def binaries() -> dict[str, str | None]:
    return {"server": _which("mariadbd") or _which("mysqld"),
            "install_db": _which("mariadb-install-db") or _which("mysql_install_db"),
            "client": _which("mariadb") or _which("mysql")}


def ensure_installed() -> dict[str, str]:
    """The server, install-db and client binaries; apt-get installs them when missing."""
    found = binaries()
    if all(found.values()):
        return found  # type: ignore[return-value]
    if os.geteuid() != 0:
        raise MariaDBError("mariadb-server is not installed and installing it needs root: "
                           "apt-get install mariadb-server")
    made_policy = False
    if not POLICY_RC_D.exists():
        # Debian's maintainer scripts start the daemon (on every interface) unless told not to.
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
        made_policy = True
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for argv in (["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                      "mariadb-server", "mariadb-client"]):
            r = subprocess.run(argv, env=env, capture_output=True, text=True,
                               stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                raise MariaDBError(f"{' '.join(argv)} exited {r.returncode}:\n"
                                   f"{r.stdout[-2000:]}{r.stderr[-2000:]}")
    finally:
        if made_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    found = binaries()
    missing = [k for k, v in found.items() if not v]
    if missing:
        raise MariaDBError(f"mariadb-server installed but {missing} not found")
    return found  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MariaDB:
    """One mariadbd with its own data dir, socket and port; `start()`, `url`, `stop()`."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.datadir = self.base / "data"
        self.socket = self.base / "mysqld.sock"
        self.log = self.base / "mysqld.log"
        self.port = 0
        self.password = secrets.token_hex(12)
        self.proc: subprocess.Popen | None = None
        self.bins: dict[str, str] = {}
        # The server's admin: the OS user running the tests, by unix_socket authentication.
        self.admin = "root" if os.geteuid() == 0 else getpass.getuser()

    @property
    def url(self) -> str:
        return self.database_url(DATABASE)

    def database_url(self, database: str) -> str:
        return (f"mysql+pymysql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"
                "?charset=utf8mb4")

    def new_database(self, database: str) -> str:
        """Another empty database for the test user (dropped first if a test left it)."""
        self._client(f"DROP DATABASE IF EXISTS {database}; "
                     f"CREATE DATABASE {database} CHARACTER SET utf8mb4; "
                     f"GRANT ALL PRIVILEGES ON {database}.* TO '{USER}'@'127.0.0.1';")
        return self.database_url(database)

    def _client(self, sql: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([self.bins["client"], "--no-defaults", f"--socket={self.socket}",
                            f"--user={self.admin}", "-e", sql], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise MariaDBError(f"mariadb client failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def start(self) -> str:
        self.bins = ensure_installed()
        user = "root" if os.geteuid() == 0 else None
        self.datadir.mkdir(parents=True, exist_ok=True)
        argv = [self.bins["install_db"], "--no-defaults", f"--datadir={self.datadir}",
                "--auth-root-authentication-method=socket", "--skip-test-db"]
        argv.append(f"--user={user}" if user else f"--auth-root-socket-user={self.admin}")
        r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise MariaDBError(f"mariadb-install-db exited {r.returncode}:\n"
                               f"{r.stdout[-2000:]}{r.stderr[-2000:]}")
        self.port = free_port()
        argv = [self.bins["server"], "--no-defaults", f"--datadir={self.datadir}",
                f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
                f"--pid-file={self.base / 'mysqld.pid'}", f"--log-error={self.log}",
                "--skip-name-resolve", "--character-set-server=utf8mb4",
                "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=100"]
        if user:
            argv.append(f"--user={user}")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise MariaDBError(f"mariadbd exited {self.proc.returncode} at start:\n"
                                   f"{self._log_tail()}")
            if self.socket.exists() and self._client("SELECT 1", check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise MariaDBError(f"mariadbd not ready in {START_TIMEOUT:.0f} s:\n"
                                   f"{self._log_tail()}")
            time.sleep(0.2)
        self._client(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{self.password}';")
        self.new_database(DATABASE)
        return self.url

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM to our own pid (a clean InnoDB shutdown), SIGKILL if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    """A private MariaDB server (see the module doc), stopped at the end of the session."""
    server = MariaDB(tmp_path_factory.mktemp("mariadb"))
    try:
        server.start()
    except MariaDBError as exc:
        server.stop()
        pytest.fail(f"the test MariaDB server could not start: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_url(mariadb):
    """SQLAlchemy URL of an empty database on the private server, for the test user."""
    return mariadb.url
