#!/usr/bin/env python3
"""A real OpenStack on this machine: Keystone, Glance, Cinder with this driver, the storage node.

    tools/stack/up        # idempotent: install what is missing, start what is not running
    tools/stack/status    # what runs, where; exit 0 only when everything is healthy
    tools/stack/down      # stop every process of the stack (each by its own pid file)

Pieces, all bound to 127.0.0.1, all state in one directory (STACK_DIR, default
${CZO_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/cinder-zfs-ocfs2}/stack):
  rabbitmq    Debian's rabbitmq-server run as a plain process (own epmd, own mnesia dir)
  mariadb     Debian's mariadb-server: mariadbd with its own datadir (databases keystone, glance,
              cinder)
  keystone    Keystone 30 from PyPI in <stack>/venv-keystone, served by gunicorn, fernet tokens
  glance-api  Glance 33 from PyPI in <stack>/venv-glance, served by gunicorn (glance.wsgi.api),
              keystonemiddleware, a filesystem store in <stack>/glance/images; one public qcow2
              test image (TEST_IMAGE) uploaded once, recorded in <stack>/test-image.json
  cinder-*    cinder-api (keystonemiddleware), cinder-scheduler, cinder-volume from the project
              venv (.venv: cinder 29 + this package), backend [zfs] in ssh mode against the
              storage-node VM (tools/storage-node/node), the agent installed on it
  clouds.yaml clouds admin, alice (project-a, member), bob (project-b, member)

Debian packages are installed with a temporary /usr/sbin/policy-rc.d that exits 101, so their
maintainer scripts start no daemon. Every process is started with its own pid file and stopped only
by that pid, after checking /proc/<pid>/cmdline names this stack's directory. Nothing is killed by
name. Runs under the project venv's python (tools/stack/up sees to it).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV = Path(os.environ.get("VENV") or REPO / ".venv")
CACHE = Path(
    os.environ.get("CZO_CACHE_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cinder-zfs-ocfs2"
)
STACK = Path(os.environ.get("STACK_DIR") or CACHE / "stack").absolute()
HOST = "127.0.0.1"
PORTS = {
    "epmd": int(os.environ.get("STACK_EPMD_PORT", "4369")),
    "rabbitmq": int(os.environ.get("STACK_RABBIT_PORT", "5672")),
    "rabbitmq-dist": int(os.environ.get("STACK_RABBIT_DIST_PORT", "25672")),
    "mariadb": int(os.environ.get("STACK_MARIADB_PORT", "3306")),
    "keystone": int(os.environ.get("STACK_KEYSTONE_PORT", "5000")),
    "cinder-api": int(os.environ.get("STACK_CINDER_PORT", "8776")),
    "glance-api": int(os.environ.get("STACK_GLANCE_PORT", "9292")),
}
BACKEND = "zfs"
CINDER_HOST = "stack"
ZFS_ROOT = "tank/cinder"
REGION = "RegionOne"
DEBS = ["rabbitmq-server", "mariadb-server", "mariadb-client",
        "qemu-utils"]  # qemu-img: the test image here, image conversion in cinder-volume
CINDER_SERVICES = ["cinder-api", "cinder-scheduler", "cinder-volume"]
PROJECTS = {"project-a": "alice", "project-b": "bob"}

RUN = STACK / "run"
LOG = STACK / "log"
SECRETS = STACK / "secrets.json"
CLOUDS = STACK / "clouds.yaml"
CINDER_CONF = STACK / "cinder" / "cinder.conf"
KEYSTONE_CONF = STACK / "keystone" / "keystone.conf"
KEYSTONE_VENV = STACK / "venv-keystone"
GLANCE_DIR = STACK / "glance"
GLANCE_CONF = GLANCE_DIR / "glance-api.conf"  # the name glance.wsgi.api looks for
GLANCE_VENV = STACK / "venv-glance"
TEST_IMAGE_STATE = STACK / "test-image.json"  # the test image's id (tools/tempest reads it)
MY_CNF = STACK / "mariadb" / "my.cnf"
MY_SOCK = STACK / "mariadb" / "mysqld.sock"
AGENT_DIR = STACK / "agent"
AGENT_KEY_COMMENT = "cinder-volume@stack"

T0 = time.time()


class StackError(Exception):
    pass


def say(msg: str) -> None:
    print(f"[stack {time.time() - T0:6.1f}s] {msg}", flush=True)


@contextlib.contextmanager
def step(what: str):
    t = time.time()
    say(f"{what} ...")
    yield
    say(f"{what}: done in {time.time() - t:.1f}s")


def sh(argv: list[str], check: bool = True, env: dict | None = None, quiet: bool = True,
       timeout: float | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in argv], capture_output=quiet, text=True, env=env,
                       timeout=timeout, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check and r.returncode != 0:
        out = ((r.stdout or "") + (r.stderr or ""))[-4000:] if quiet else ""
        raise StackError(f"{' '.join(map(str, argv))} exited {r.returncode}\n{out}")
    return r


@contextlib.contextmanager
def lock():
    STACK.mkdir(parents=True, exist_ok=True)
    with open(STACK / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def stamp_ok(name: str, value: str) -> bool:
    p = STACK / "stamps" / name
    return p.exists() and p.read_text() == value


def stamp_set(name: str, value: str) -> None:
    p = STACK / "stamps" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(value)


def file_digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def write_if_changed(path: Path, text: str, mode: int = 0o600) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


SECRET_KEYS = ("admin", "alice", "bob", "cinder_service", "db_keystone", "db_cinder",
               "glance_service", "db_glance")


def secrets_get() -> dict:
    """The stack's passwords; those a newer stack.py added are generated into the old file."""
    data = json.loads(SECRETS.read_text()) if SECRETS.exists() else {}
    missing = [k for k in SECRET_KEYS if k not in data]
    if missing:
        data.update({k: secrets.token_hex(12) for k in missing})
        write_if_changed(SECRETS, json.dumps(data, indent=2) + "\n")
    return data


# ------------------------------------------------------------------ processes
def pidfile(name: str) -> Path:
    return RUN / f"{name}.pid"


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def ours(pid: int) -> bool:
    """A live process started by this stack: its environment carries CZO_STACK=<stack dir>.

    Every process the stack starts gets that variable (children inherit it), so a recycled pid
    or a same-named process of someone else is never taken for ours.
    """
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"CZO_STACK={STACK}".encode() in env


def read_pid(name: str) -> int | None:
    try:
        return int(pidfile(name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(name: str) -> bool:
    """The process of a pid file exists and is no zombie (used while it starts)."""
    pid = read_pid(name)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError, TypeError):
        return False
    return state not in ("Z", "X")


def running(name: str) -> int | None:
    pid = read_pid(name)
    if pid and ours(pid):
        return pid
    return None


def start_proc(name: str, argv: list, env: dict | None = None, cwd: Path | None = None) -> int:
    RUN.mkdir(parents=True, exist_ok=True)
    LOG.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["CZO_STACK"] = str(STACK)
    # setproctitle (gunicorn uses it when installed, as in the Glance venv) would otherwise
    # overwrite /proc/<pid>/environ, and with it the CZO_STACK mark that ours() looks for.
    full_env["SPT_NOENV"] = "1"
    with open(LOG / f"{name}.out", "ab") as out:
        out.write(f"\n==== {time.ctime()} {' '.join(map(str, argv))}\n".encode())
        out.flush()
        proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out, env=full_env, cwd=str(cwd or STACK),
                                start_new_session=True, close_fds=True)
    pidfile(name).write_text(f"{proc.pid}\n")
    return proc.pid


def stop_proc(name: str, timeout: float = 30) -> bool:
    pid = read_pid(name)
    if not pid or not ours(pid):
        pidfile(name).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    end = time.time() + timeout
    while time.time() < end and ours(pid):
        time.sleep(0.2)
    if ours(pid):
        say(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f}s: SIGKILL")
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    pidfile(name).unlink(missing_ok=True)
    say(f"stopped {name} (pid {pid})")
    return True


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


ENV_OF_PORT = {"epmd": "STACK_EPMD_PORT", "rabbitmq": "STACK_RABBIT_PORT",
               "mariadb": "STACK_MARIADB_PORT", "keystone": "STACK_KEYSTONE_PORT",
               "cinder-api": "STACK_CINDER_PORT", "glance-api": "STACK_GLANCE_PORT"}


def port_free_for(name: str) -> None:
    """Refuse to start `name` on a port that another process (another stack?) holds."""
    port = PORTS[name]
    if port_open(port):
        raise StackError(f"{HOST}:{port} ({name}) is held by a process that is not this stack's "
                         f"(another stack in another STACK_DIR?): stop it, or choose another "
                         f"port with {ENV_OF_PORT[name]}=...")


def wait_for(what: str, ok, timeout: float, name: str | None = None) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            if ok():
                return
        except Exception:  # noqa: BLE001 - probing
            pass
        if name and not alive(name):
            raise StackError(f"{name} exited while starting; see {LOG / (name + '.out')}:\n"
                             f"{log_tail(name)}")
        time.sleep(0.3)
    raise StackError(f"{what} not ready after {timeout:.0f}s; see {LOG}\n"
                     f"{log_tail(name) if name else ''}")


def log_tail(name: str, n: int = 30) -> str:
    for p in (LOG / f"{name}.log", LOG / f"{name}.out"):
        if p.exists():
            return "\n".join(p.read_text(errors="replace").splitlines()[-n:])
    return ""


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def http_ok(url: str, codes: tuple = (200,)) -> bool:
    try:
        return http_status(url) in codes
    except OSError:
        return False


# ------------------------------------------------------------------ Debian packages
def missing_debs() -> list[str]:
    out = sh(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n"] + DEBS,
             check=False).stdout
    installed = {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}
    return [d for d in DEBS if d not in installed]


@contextlib.contextmanager
def no_daemon_starts():
    """A temporary policy-rc.d that forbids maintainer scripts to start services."""
    prc = Path("/usr/sbin/policy-rc.d")
    saved = prc.read_bytes() if prc.exists() else None
    prc.write_text("#!/bin/sh\n# tools/stack: no daemon starts during package installs\n"
                   "exit 101\n")
    prc.chmod(0o755)
    try:
        yield
    finally:
        if saved is None:
            prc.unlink(missing_ok=True)
        else:
            prc.write_bytes(saved)


def ensure_debs() -> None:
    missing = missing_debs()
    if not missing:
        return
    with step(f"installing Debian packages {' '.join(missing)} (no daemon started)"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing
        with no_daemon_starts():
            if sh(argv, check=False, env=env).returncode != 0:
                sh(["apt-get", "update", "-q"], env=env)
                sh(argv, env=env)


# ------------------------------------------------------------------ Python environments
def ensure_python() -> None:
    req = HERE / "requirements.txt"
    stamp = VENV / ".stack-requirements"  # in the venv: a new venv installs them again
    if not stamp.exists() or stamp.read_text() != file_digest(req):
        with step(f"installing {req.relative_to(REPO)} into {VENV}"):
            sh([VENV / "bin" / "pip", "install", "-q", "-r", req])
        stamp.write_text(file_digest(req))
    service_venv("keystone", KEYSTONE_VENV, "keystone-manage", "keystone 30, gunicorn")
    service_venv("glance", GLANCE_VENV, "glance-manage", "glance 33, gunicorn")


def service_venv(name: str, venv: Path, probe: str, what: str) -> None:
    """<name>-requirements.txt with <name>-constraints.txt in a venv of its own, once."""
    req, con = HERE / f"{name}-requirements.txt", HERE / f"{name}-constraints.txt"
    if stamp_ok(f"venv-{name}", file_digest(req, con)) and (venv / "bin" / probe).exists():
        return
    with step(f"{name} venv {venv} ({what})"):
        if not (venv / "bin" / "python").exists():
            base = getattr(sys, "_base_executable", None) or sys.executable
            sh([base, "-m", "venv", venv])
        sh([venv / "bin" / "pip", "install", "-q", "-r", req, "-c", con])
    stamp_set(f"venv-{name}", file_digest(req, con))


# ------------------------------------------------------------------ MariaDB
def mariadb_up(sec: dict) -> None:
    data = STACK / "mariadb" / "data"
    cnf = f"""[mysqld]
user = root
datadir = {data}
socket = {MY_SOCK}
pid-file = {STACK / 'mariadb' / 'mariadbd.pid'}
bind-address = {HOST}
port = {PORTS['mariadb']}
skip-name-resolve
log-error = {LOG / 'mariadb.log'}
max_connections = 500
innodb_buffer_pool_size = 128M
innodb_flush_log_at_trx_commit = 2
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci

[client]
socket = {MY_SOCK}
user = root
"""
    changed = write_if_changed(MY_CNF, cnf)
    LOG.mkdir(parents=True, exist_ok=True)
    if changed and running("mariadb"):
        stop_proc("mariadb")
    if not (data / "mysql").exists():
        with step("mariadb: initialising the data directory"):
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(parents=True)
            sh(["mariadb-install-db", f"--defaults-file={MY_CNF}", "--user=root",
                "--skip-test-db", "--auth-root-authentication-method=socket"])
    if not running("mariadb"):
        port_free_for("mariadb")
        with step(f"mariadb: starting on {HOST}:{PORTS['mariadb']}"):
            start_proc("mariadb", ["mariadbd", f"--defaults-file={MY_CNF}"])
            wait_for("mariadb", lambda: sh(["mariadb-admin", f"--defaults-file={MY_CNF}",
                                            "ping"], check=False).returncode == 0,
                     60, "mariadb")
    sql = []
    for db, user, pw in (("keystone", "keystone", sec["db_keystone"]),
                         ("glance", "glance", sec["db_glance"]),
                         ("cinder", "cinder", sec["db_cinder"])):
        sql += [f"CREATE DATABASE IF NOT EXISTS {db};",
                f"CREATE USER IF NOT EXISTS '{user}'@'{HOST}' IDENTIFIED BY '{pw}';",
                f"ALTER USER '{user}'@'{HOST}' IDENTIFIED BY '{pw}';",
                f"GRANT ALL PRIVILEGES ON {db}.* TO '{user}'@'{HOST}';"]
    sh(["mariadb", f"--defaults-file={MY_CNF}", "-e", "\n".join(sql)])


def mysql_url(user: str, pw: str, db: str) -> str:
    return f"mysql+pymysql://{user}:{pw}@{HOST}:{PORTS['mariadb']}/{db}?charset=utf8mb4"


# ------------------------------------------------------------------ RabbitMQ
def rabbit_env() -> dict:
    base = STACK / "rabbitmq"
    return {
        "HOME": str(base),  # the Erlang cookie lives here
        "RABBITMQ_NODENAME": "rabbit@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(PORTS["rabbitmq"]),
        "RABBITMQ_DIST_PORT": str(PORTS["rabbitmq-dist"]),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(LOG / "rabbitmq"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_ADDRESS": HOST,
        "ERL_EPMD_PORT": str(PORTS["epmd"]),
        "RABBITMQ_ALLOW_INPUT": "",
    }


def rabbitmq_up() -> None:
    base = STACK / "rabbitmq"
    base.mkdir(parents=True, exist_ok=True)
    write_if_changed(base / "rabbitmq.conf", "\n".join([
        f"listeners.tcp.default = {HOST}:{PORTS['rabbitmq']}",
        "loopback_users.guest = true",
        "log.console = false",
        "log.file.level = warning",
        "disk_free_limit.absolute = 100MB",
        "",
    ]))
    write_if_changed(base / "enabled_plugins", "[].\n")
    env = rabbit_env()
    if not running("epmd"):
        port_free_for("epmd")
        # Our own epmd, loopback only (rabbitmq would otherwise start one on every interface).
        start_proc("epmd", ["epmd", "-address", HOST, "-port", PORTS["epmd"]], env=env)
        wait_for("epmd", lambda: port_open(PORTS["epmd"]), 15, "epmd")
    if not running("rabbitmq"):
        port_free_for("rabbitmq")
        with step(f"rabbitmq: starting on {HOST}:{PORTS['rabbitmq']}"):
            start_proc("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env)
            wait_for("rabbitmq", lambda: port_open(PORTS["rabbitmq"]), 120, "rabbitmq")


# ------------------------------------------------------------------ Keystone
def keystone_url() -> str:
    return f"http://{HOST}:{PORTS['keystone']}"


def keystone_ok() -> bool:
    return http_ok(keystone_url() + "/v3")


def keystone_up(sec: dict) -> None:
    kdir = STACK / "keystone"
    conf = f"""[DEFAULT]
log_file = {LOG / 'keystone.log'}
debug = false

[database]
connection = {mysql_url('keystone', sec['db_keystone'], 'keystone')}
max_pool_size = 10

[token]
provider = fernet
expiration = 86400

[fernet_tokens]
key_repository = {kdir / 'fernet-keys'}

[credential]
key_repository = {kdir / 'credential-keys'}

[cache]
enabled = false

[oslo_policy]
enforce_new_defaults = true
enforce_scope = true
"""
    changed = write_if_changed(KEYSTONE_CONF, conf)
    manage = [KEYSTONE_VENV / "bin" / "keystone-manage", f"--config-file={KEYSTONE_CONF}"]
    if not stamp_ok("keystone-db", file_digest(KEYSTONE_CONF) + "30.0.0"):
        with step("keystone: db_sync, fernet and credential keys, bootstrap"):
            sh(manage + ["db_sync"])
            for kind in ("fernet", "credential"):
                if not (kdir / f"{kind}-keys" / "0").exists():
                    (kdir / f"{kind}-keys").mkdir(parents=True, exist_ok=True)
                    sh(manage + [f"{kind}_setup", "--keystone-user", "root",
                                 "--keystone-group", "root"])
            url = keystone_url() + "/v3/"
            sh(manage + ["bootstrap", "--bootstrap-password", sec["admin"],
                         "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
                         "--bootstrap-role-name", "admin", "--bootstrap-service-name",
                         "keystone", "--bootstrap-region-id", REGION,
                         "--bootstrap-admin-url", url, "--bootstrap-internal-url", url,
                         "--bootstrap-public-url", url])
        stamp_set("keystone-db", file_digest(KEYSTONE_CONF) + "30.0.0")
    gunicorn_up("keystone", KEYSTONE_VENV, "keystone_wsgi:application",
                ["--workers", "2", "--timeout", "120", "--pythonpath", HERE],
                {"OS_KEYSTONE_CONFIG_FILES": str(KEYSTONE_CONF)}, keystone_ok, changed)


def gunicorn_up(name: str, venv: Path, app: str, args: list, env: dict, ok, changed: bool) -> None:
    """Keep `name` (gunicorn from `venv` serving `app` on PORTS[name]) running and answering;
    restarted when its configuration changed."""
    if running(name) and (changed or not ok()):
        stop_proc(name)
    if running(name):
        return
    port_free_for(name)
    with step(f"{name}: gunicorn on {HOST}:{PORTS[name]}"):
        start_proc(name, [venv / "bin" / "gunicorn", "--bind", f"{HOST}:{PORTS[name]}",
                          "--name", name, "--access-logfile", LOG / f"{name}-access.log",
                          *args, app], env=env)
        wait_for(name, ok, 120, name)


def service_credentials(user: str, password: str) -> str:
    """keystoneauth password options of a service user (project service), for a conf section."""
    return f"""auth_url = {keystone_url()}
auth_type = password
user_domain_name = Default
project_domain_name = Default
project_name = service
username = {user}
password = {password}
region_name = {REGION}"""


def admin_conn(sec: dict):
    import openstack

    return openstack.connect(
        auth_url=keystone_url() + "/v3", username="admin", password=sec["admin"],
        project_name="admin", user_domain_name="Default", project_domain_name="Default",
        region_name=REGION, identity_api_version="3", block_storage_api_version="3",
        api_timeout=60)


def keystone_resources(sec: dict) -> None:
    # Idempotent but slow (password hashing): once per keystone database and settings.
    digest = hashlib.sha256(json.dumps([sec, PORTS, sorted(PROJECTS.items())],
                                       sort_keys=True).encode()).hexdigest()
    if stamp_ok("keystone-resources", digest + file_digest(STACK / "stamps" / "keystone-db")):
        return
    _keystone_resources(sec)
    stamp_set("keystone-resources", digest + file_digest(STACK / "stamps" / "keystone-db"))


def _keystone_resources(sec: dict) -> None:
    with step("keystone: projects, users, roles, the block-storage and image services"):
        c = admin_conn(sec)
        idn = c.identity
        domain = idn.find_domain("default") or next(iter(idn.domains(name="Default")))

        def role(name):
            return idn.find_role(name) or idn.create_role(name=name)

        def project(name):
            return (idn.find_project(name, domain_id=domain.id)
                    or idn.create_project(name=name, domain_id=domain.id))

        def user(name, pw, proj):
            u = idn.find_user(name, domain_id=domain.id)
            if u is None:
                u = idn.create_user(name=name, password=pw, domain_id=domain.id,
                                    default_project_id=proj.id)
            else:
                idn.update_user(u, password=pw)
            return u

        member, admin, service_role = role("member"), role("admin"), role("service")
        service_p = project("service")
        for name, pw in (("cinder", sec["cinder_service"]), ("glance", sec["glance_service"])):
            u = user(name, pw, service_p)
            for r in (admin, service_role):
                idn.assign_project_role_to_user(service_p, u, r)
        for pname, uname in PROJECTS.items():
            p = project(pname)
            u = user(uname, sec[uname], p)
            idn.assign_project_role_to_user(p, u, member)
        for name, stype, desc, url in (
                ("cinderv3", "block-storage", "Cinder Volume Service",
                 f"http://{HOST}:{PORTS['cinder-api']}/v3"),
                ("glance", "image", "Glance Image Service", glance_url())):
            svc = idn.find_service(name)
            if svc is None:
                svc = idn.create_service(name=name, type=stype, description=desc)
            have = {e.interface: e for e in idn.endpoints(service_id=svc.id)}
            for iface in ("public", "internal", "admin"):
                if iface not in have:
                    idn.create_endpoint(service_id=svc.id, interface=iface, url=url,
                                        region_id=REGION)
                elif have[iface].url != url:
                    idn.update_endpoint(have[iface], url=url)


# ------------------------------------------------------------------ Glance
TEST_IMAGE = "cinder-zfs-test-image"
TEST_IMAGE_SIZE = 32 * 1024 * 1024  # virtual size; the qcow2 holds ~1 MiB of data
MiB = 1024 * 1024


def glance_url() -> str:
    return f"http://{HOST}:{PORTS['glance-api']}"


def glance_ok() -> bool:
    return http_ok(glance_url() + "/healthcheck")


def glance_conf(sec: dict) -> str:
    """glance-api.conf: one filesystem store ("file"), keystone auth, the stack's MariaDB.

    Multi-store syntax (enabled_backends) because the staging and tasks stores (image import,
    upload) are then reserved file stores of their own under <stack>/glance. Only the
    glance-direct import method: web-download would fetch URLs from anywhere. (glance_store loads
    every store driver at start-up: "Could not load 'cinder': No module named 'os_brick'" in
    log/glance-api.log is that, and harmless: the cinder store is not used.)
    """
    return f"""[DEFAULT]
log_file = {LOG / 'glance-api.log'}
debug = false
enabled_backends = file:file
enabled_import_methods = [glance-direct]
show_image_direct_url = false

[database]
connection = {mysql_url('glance', sec['db_glance'], 'glance')}
max_pool_size = 10

[glance_store]
default_backend = file

[file]
filesystem_store_datadir = {GLANCE_DIR / 'images'}/

[os_glance_staging_store]
filesystem_store_datadir = {GLANCE_DIR / 'staging'}/

[os_glance_tasks_store]
filesystem_store_datadir = {GLANCE_DIR / 'tasks'}/

[paste_deploy]
flavor = keystone
config_file = {GLANCE_VENV / 'etc' / 'glance' / 'glance-api-paste.ini'}

[keystone_authtoken]
www_authenticate_uri = {keystone_url()}
{service_credentials('glance', sec['glance_service'])}
service_token_roles_required = true

[oslo_concurrency]
lock_path = {GLANCE_DIR / 'lock'}

[oslo_policy]
enforce_new_defaults = true
enforce_scope = true
"""


def glance_up(sec: dict) -> None:
    for d in ("images", "staging", "tasks", "lock"):
        (GLANCE_DIR / d).mkdir(parents=True, exist_ok=True)
    changed = write_if_changed(GLANCE_CONF, glance_conf(sec))
    want = file_digest(GLANCE_CONF, HERE / "glance-requirements.txt")
    if not stamp_ok("glance-db", want):
        with step("glance-manage db sync"):
            sh([GLANCE_VENV / "bin" / "glance-manage", f"--config-file={GLANCE_CONF}",
                "db", "sync"])
        stamp_set("glance-db", want)
    # gthread: an image upload or download holds a thread, not the whole worker, and the
    # workers' heartbeat goes on during a long transfer.
    gunicorn_up("glance-api", GLANCE_VENV, "glance.wsgi.api:application",
                ["--workers", "2", "--worker-class", "gthread", "--threads", "4",
                 "--timeout", "300"],
                {"OS_GLANCE_CONFIG_DIR": str(GLANCE_DIR)}, glance_ok, changed)


def test_image_data() -> tuple[bytes, str]:
    """The test image's first MiB and the sha256 of its whole raw content (32 MiB).

    Byte k of the first MiB is k % 251 + 1: never zero, and its period (251) is prime, so a
    shifted, truncated or zero-filled copy shows. The remaining 31 MiB are zeros.
    """
    first = (bytes(range(1, 252)) * (MiB // 251 + 1))[:MiB]
    h = hashlib.sha256(first)
    h.update(bytes(TEST_IMAGE_SIZE - MiB))
    return first, h.hexdigest()


def make_test_image(workdir: Path) -> Path:
    """A qcow2 of TEST_IMAGE_SIZE virtual bytes made by qemu-img from the raw test image."""
    first, _ = test_image_data()
    raw, qcow2 = workdir / "test-image.raw", workdir / "test-image.qcow2"
    with open(raw, "wb") as f:
        f.write(first)
        f.truncate(TEST_IMAGE_SIZE)
    sh(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, qcow2])
    raw.unlink()
    return qcow2


def test_image(sec: dict) -> dict:
    """Upload the public test image unless Glance has it active; record it in TEST_IMAGE_STATE."""
    c = admin_conn(sec)
    known = None
    if TEST_IMAGE_STATE.exists():
        known = json.loads(TEST_IMAGE_STATE.read_text()).get("id")
    image = None
    for img in sorted(c.image.images(name=TEST_IMAGE), key=lambda i: i.id != known):
        if img.status == "active" and image is None:
            image = img
        elif img.status != "active":
            say(f"deleting the test image {img.id} left {img.status} by an earlier run")
            c.image.delete_image(img, ignore_missing=True)
    if image is None:
        with step(f"glance: uploading the test image {TEST_IMAGE} (qcow2, "
                  f"{TEST_IMAGE_SIZE // MiB} MiB virtual)"):
            with tempfile.TemporaryDirectory(dir=STACK) as tmp:
                qcow2 = make_test_image(Path(tmp))
                image = c.image.create_image(
                    name=TEST_IMAGE, filename=str(qcow2), disk_format="qcow2",
                    container_format="bare", visibility="public", wait=True, timeout=300,
                    allow_duplicates=True)
            image = c.image.get_image(image.id)
            if image.status != "active":
                raise StackError(f"test image {image.id} is {image.status}, not active")
    first, raw_sha = test_image_data()
    state = {
        "id": image.id, "name": TEST_IMAGE, "disk_format": image.disk_format,
        "container_format": image.container_format, "visibility": image.visibility,
        "size": image.size, "virtual_size": image.virtual_size or TEST_IMAGE_SIZE,
        "glance_url": glance_url(),
        "content": "byte k of the first MiB is k % 251 + 1; the rest are zeros",
        "first_mib_sha256": hashlib.sha256(first).hexdigest(),
        "raw_sha256": raw_sha,
    }
    write_if_changed(TEST_IMAGE_STATE, json.dumps(state, indent=2) + "\n", mode=0o644)
    return state


# ------------------------------------------------------------------ storage node and agent
def node_up():
    """Start (or reuse) the storage node and install the agent with the stack's key."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests" / "functional"))
    import nodelib

    from tests.functional.driver_env import install_agent

    with step("storage node: tools/storage-node/node start (builds the image if missing)"):
        try:
            node = nodelib.start_node()
        except nodelib.NodeStartError as e:
            raise StackError(str(e)) from None
    with step(f"storage node: agent on 127.0.0.1:{node.port} (package copy, forced command)"):
        AGENT_DIR.mkdir(parents=True, exist_ok=True)
        key = AGENT_DIR / "agent_key"
        if not key.exists():
            sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", AGENT_KEY_COMMENT,
                "-f", key])
        # install_agent keeps other keys; drop this stack's old line so it is not repeated.
        node.run(f"touch /root/.ssh/authorized_keys; "
                 f"sed -i '/ {AGENT_KEY_COMMENT}$/d' /root/.ssh/authorized_keys", check=False)
        install_agent(node, AGENT_DIR)
        kh = AGENT_DIR / "known_hosts"
        write_if_changed(kh, Path(node.known_hosts).read_text())
        node.run(f"zfs list -H -o name {ZFS_ROOT} >/dev/null 2>&1 || zfs create {ZFS_ROOT}")
    return node


# ------------------------------------------------------------------ Cinder
def cinder_conf(sec: dict, node_port: int) -> str:
    cdir = STACK / "cinder"
    return f"""[DEFAULT]
host = {CINDER_HOST}
my_ip = {HOST}
state_path = {cdir / 'state'}
log_dir = {LOG}
debug = false
transport_url = rabbit://guest:guest@{HOST}:{PORTS['rabbitmq']}/
auth_strategy = keystone
api_paste_config = {VENV / 'etc' / 'cinder' / 'api-paste.ini'}
rootwrap_config = {VENV / 'etc' / 'cinder' / 'rootwrap.conf'}
resource_query_filters_file = {VENV / 'etc' / 'cinder' / 'resource_filters.json'}
osapi_volume_listen = {HOST}
osapi_volume_listen_port = {PORTS['cinder-api']}
osapi_volume_workers = 2
enabled_backends = {BACKEND}
default_volume_type = zfs
glance_api_servers = {glance_url()}
quota_volumes = 1000
quota_snapshots = 5000
quota_gigabytes = 100000
quota_backups = 100
quota_backup_gigabytes = 1000
quota_groups = 100
per_volume_size_limit = -1
rpc_response_timeout = 300
service_down_time = 120
report_interval = 10
periodic_interval = 60

[database]
connection = {mysql_url('cinder', sec['db_cinder'], 'cinder')}
max_pool_size = 20
max_overflow = 40

[oslo_concurrency]
lock_path = {cdir / 'lock'}

[cinder_sys_admin]
# cinder-volume runs as root and this host has no sudo: privsep (qemu-img's format checks on
# images) starts its helper directly instead of through sudo + rootwrap.
helper_command = {VENV / 'bin' / 'privsep-helper'} --config-file {CINDER_CONF}

[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 120

[keystone_authtoken]
www_authenticate_uri = {keystone_url()}
{service_credentials('cinder', sec['cinder_service'])}
service_token_roles_required = true

[service_user]
# Cinder calls Glance with the user's token plus its own service token, so an image transfer
# that outlives the user's token still goes through (keystonemiddleware accepts an expired
# user token with a valid service token of the service role).
send_service_user_token = true
{service_credentials('cinder', sec['cinder_service'])}

[oslo_policy]
enforce_new_defaults = true
enforce_scope = true

{backend_conf(node_port)}"""


def backend_conf(node_port: int) -> str:
    """The backend section, from the one source the DevStack plugin uses too."""
    sys.path.insert(0, str(REPO))
    from cinder_zfs_ocfs2.cmd.backend_conf import backend_section, render_ini

    return render_ini(BACKEND, backend_section(
        backend_name=BACKEND, root_dataset=ZFS_ROOT, agent_mode="ssh",
        ssh_host=HOST, ssh_port=node_port, ssh_user="root",
        ssh_key=str(AGENT_DIR / "agent_key"), ssh_known_hosts=str(AGENT_DIR / "known_hosts"),
        sparse_volumes=True, clone_mode="linked", max_clone_depth=5,
        target_helper="lioadm", target_protocol="iscsi", target_ip_address=HOST,
        target_port=3260))


def code_digest() -> str:
    """The driver package's code: cinder-volume (and its agent session) restart when it moves."""
    h = hashlib.sha256()
    pkg = REPO / "cinder_zfs_ocfs2"
    for p in sorted(pkg.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".ini", ".mako"):
            h.update(str(p.relative_to(pkg)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def cinder_up(sec: dict, node_port: int) -> None:
    for d in ("state", "lock"):
        (STACK / "cinder" / d).mkdir(parents=True, exist_ok=True)
    changed = write_if_changed(CINDER_CONF, cinder_conf(sec, node_port))
    if changed:
        for svc in CINDER_SERVICES:
            if running(svc):
                stop_proc(svc)
    code = code_digest()
    code_file = RUN / "cinder-volume.code"
    if running("cinder-volume") and (
            not code_file.exists() or code_file.read_text() != code):
        say("the driver's code changed since cinder-volume started: restarting it")
        stop_proc("cinder-volume")
    from importlib.metadata import version as dist_version

    version = dist_version("cinder")
    if not stamp_ok("cinder-db", version + sec["db_cinder"]):
        with step("cinder-manage db sync"):
            sh([VENV / "bin" / "cinder-manage", f"--config-file={CINDER_CONF}", "db", "sync"])
        stamp_set("cinder-db", version + sec["db_cinder"])
    if not running("cinder-api"):
        port_free_for("cinder-api")
    for svc in CINDER_SERVICES:
        if not running(svc):
            start_proc(svc, [VENV / "bin" / svc, f"--config-file={CINDER_CONF}"])
            if svc == "cinder-volume":
                code_file.write_text(code)
            say(f"{svc}: started (pid {read_pid(svc)})")
    with step(f"cinder: API on {HOST}:{PORTS['cinder-api']}, scheduler, volume {CINDER_HOST}@"
              f"{BACKEND} up"):
        wait_for("cinder-api", lambda: http_status(
            f"http://{HOST}:{PORTS['cinder-api']}/") in (200, 300), 120, "cinder-api")
        c = admin_conn(sec)

        def services_up():
            states = {(s.binary, s.host): (s.state, s.status)
                      for s in c.block_storage.services()}
            return (states.get(("cinder-scheduler", CINDER_HOST)) == ("up", "enabled")
                    and states.get(("cinder-volume", f"{CINDER_HOST}@{BACKEND}"))
                    == ("up", "enabled"))

        for svc in ("cinder-scheduler", "cinder-volume"):
            if not running(svc):
                raise StackError(f"{svc} exited; see {LOG}:\n{log_tail(svc)}")
        wait_for("cinder-scheduler and cinder-volume services", services_up, 180,
                 "cinder-volume")
        # The driver reports its pool once do_setup/check_for_setup_error passed.
        wait_for("the zfs backend's capacity report", lambda: any(
            p.name.startswith(f"{CINDER_HOST}@{BACKEND}") and
            (p.capabilities or {}).get("total_capacity_gb")
            for p in c.block_storage.backend_pools()), 120, "cinder-volume")


def volume_types(sec: dict) -> None:
    c = admin_conn(sec)
    bs = c.block_storage
    for name, extra, desc in (
            ("zfs", {"volume_backend_name": BACKEND}, "ZFS zvols (sparse)"),
            ("zfs-thick", {"volume_backend_name": BACKEND, "zfs:sparse": "false"},
             "ZFS zvols with a refreservation")):
        t = bs.find_type(name)
        if t is None:
            bs.create_type(name=name, extra_specs=extra, description=desc)
        elif any((t.extra_specs or {}).get(k) != v for k, v in extra.items()):
            bs.update_type_extra_specs(t, **extra)


def write_clouds(sec: dict) -> None:
    lines = ["# Written by tools/stack/up. export OS_CLIENT_CONFIG_FILE=<this file>", "clouds:"]
    for cloud, user, project in (("admin", "admin", "admin"), ("alice", "alice", "project-a"),
                                 ("bob", "bob", "project-b")):
        lines += [
            f"  {cloud}:",
            "    auth:",
            f"      auth_url: {keystone_url()}/v3",
            f"      username: {user}",
            f"      password: {sec[user]}",
            f"      project_name: {project}",
            "      user_domain_name: Default",
            "      project_domain_name: Default",
            f"    region_name: {REGION}",
            "    identity_api_version: 3",
            "    volume_api_version: 3",
            "    image_api_version: 2",
            "    interface: public",
        ]
    write_if_changed(CLOUDS, "\n".join(lines) + "\n")


# ------------------------------------------------------------------ commands
def up(args) -> int:
    with lock():
        if not (VENV / "bin" / "cinder-volume").exists():
            raise StackError(f"no project venv at {VENV}: run `make venv` first")
        say(f"stack dir {STACK}")
        ensure_debs()
        ensure_python()
        sec = secrets_get()
        node = node_up()
        try:
            mariadb_up(sec)
            rabbitmq_up()
            keystone_up(sec)
            keystone_resources(sec)
            write_clouds(sec)
            glance_up(sec)
            cinder_up(sec, node.port)
            volume_types(sec)
            image = test_image(sec)
        finally:
            node.close()
        say(f"test image {image['name']}: {image['id']} (recorded in {TEST_IMAGE_STATE})")
        say(f"stack up in {time.time() - T0:.1f}s")
        print(f"export OS_CLIENT_CONFIG_FILE={CLOUDS}")
        print("then: openstack --os-cloud alice volume list")
    return 0


SERVICES = ["cinder-api", "cinder-volume", "cinder-scheduler", "glance-api", "keystone",
            "rabbitmq", "epmd", "mariadb"]


def down(args) -> int:
    with lock():
        stopped = 0
        for name in SERVICES:
            stopped += stop_proc(name, timeout=60 if name == "rabbitmq" else 30)
        say(f"stack down ({stopped} processes stopped); state kept in {STACK}"
            + ("" if not args.node else ""))
        if args.node:
            sh([REPO / "tools" / "storage-node" / "node", "stop"], quiet=False)
        if args.purge:
            for p in ("mariadb", "rabbitmq", "keystone", "glance", "cinder", "run", "stamps",
                      "agent", "log", "secrets.json", "clouds.yaml", TEST_IMAGE_STATE.name):
                target = STACK / p
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
            say(f"purged the stack's data in {STACK} (the Keystone and Glance venvs are kept)")
    return 0


def node_health() -> dict:
    """The node runs, and cinder-volume dials the port it answers on (a node started again on
    another port would strand the stack until `up` rewrites cinder.conf)."""
    run_dir = Path(os.environ.get("NODE_RUN_DIR") or CACHE / "run")
    try:
        state = json.loads((run_dir / "state.json").read_text())
        pid = int(Path(run_dir / "qemu.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return {"pid": None, "ok": False, "error": "not running: tools/storage-node/node start"}
    res = {"pid": pid, "ok": Path(f"/proc/{pid}").exists()}
    dialed = next((line.split("=", 1)[1].strip() for line in (
        CINDER_CONF.read_text().splitlines() if CINDER_CONF.exists() else ())
        if line.replace(" ", "").startswith("zfs_ssh_port=")), None)
    if dialed is not None and dialed != str(state.get("port")):
        res.update(ok=False, error=f"cinder-volume dials port {dialed}, the node answers on "
                                   f"{state.get('port')}: run tools/stack/up")
    return res


def health() -> dict:
    res = {}
    for name in SERVICES:
        res[name] = {"pid": running(name)}
    res["mariadb"]["ok"] = bool(res["mariadb"]["pid"]) and sh(
        ["mariadb-admin", f"--defaults-file={MY_CNF}", "ping"], check=False).returncode == 0
    res["rabbitmq"]["ok"] = bool(res["rabbitmq"]["pid"]) and port_open(PORTS["rabbitmq"])
    res["epmd"]["ok"] = bool(res["epmd"]["pid"]) and port_open(PORTS["epmd"])
    try:
        res["keystone"]["ok"] = http_status(keystone_url() + "/v3") == 200
    except OSError:
        res["keystone"]["ok"] = False
    try:
        res["cinder-api"]["ok"] = http_status(
            f"http://{HOST}:{PORTS['cinder-api']}/") in (200, 300)
    except OSError:
        res["cinder-api"]["ok"] = False
    res["glance-api"]["ok"] = bool(res["glance-api"]["pid"]) and glance_ok()
    for svc in ("cinder-scheduler", "cinder-volume"):
        res[svc]["ok"] = bool(res[svc]["pid"])
    res["storage-node"] = node_health()
    if res["keystone"]["ok"] and res["cinder-api"]["ok"] and SECRETS.exists():
        try:
            c = admin_conn(secrets_get())
            states = {(s.binary, s.host): s.state for s in c.block_storage.services()}
            res["cinder-scheduler"]["ok"] &= states.get(
                ("cinder-scheduler", CINDER_HOST)) == "up"
            res["cinder-volume"]["ok"] &= states.get(
                ("cinder-volume", f"{CINDER_HOST}@{BACKEND}")) == "up"
        except Exception as e:  # noqa: BLE001
            res["cinder-api"]["error"] = repr(e)[:300]
    return res


def status(args) -> int:
    res = health()
    ok = all(v.get("ok") for v in res.values())
    if args.json:
        print(json.dumps({"ok": ok, "services": res, "stack_dir": str(STACK),
                          "clouds_yaml": str(CLOUDS), "cinder_conf": str(CINDER_CONF),
                          "glance_conf": str(GLANCE_CONF),
                          "test_image": str(TEST_IMAGE_STATE)}, indent=2))
    else:
        for name, v in res.items():
            print(f"{name:17} {'up  ' if v.get('ok') else 'DOWN'} pid {v.get('pid') or '-'}"
                  + (f"  {v['error']}" if v.get("error") else ""))
        print(f"stack dir {STACK}")
        print(f"export OS_CLIENT_CONFIG_FILE={CLOUDS}")
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="stack", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="install what is missing, start what is not running")
    p = sub.add_parser("down", help="stop the stack's processes (by their pid files)")
    p.add_argument("--node", action="store_true", help="stop the storage node as well")
    p.add_argument("--purge", action="store_true",
                   help="also delete the databases, keys and configuration")
    p = sub.add_parser("status", help="exit 0 when every service is healthy")
    p.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        return {"up": up, "down": down, "status": status}[args.cmd](args)
    except StackError as e:
        say(f"ERROR: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
