"""The real services the integration and end-to-end tests run against.

Each ensure_* function starts its service, or reuses it when it already runs,
and leaves it running after the test session so the next run starts in
seconds (stop everything with `stop_all()` or `python -m tests.support.stack stop`).
All state lives under .data/test/ in the repository (.data/$KEYBRIDGE_TEST_STACK/
when that is set); the secrets are fixed and only ever used by this test instance.

    from tests.support import stack

    mail_dir = stack.ensure_mail_sink()
    keycloak = stack.ensure_keycloak()          # KeycloakInstance(url=..., realm="customers", ...)
    server = stack.ensure_postgres()            # postgresql+psycopg://postgres@127.0.0.1:15432/postgres
    database_url = stack.create_database()      # a new, empty database on that server
    mails = stack.read_mails(mail_dir, to="jane@acme.example")
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

REPO_DIR = Path(__file__).resolve().parents[2]
# Which stack: "test" by default; scripts/test uses "ci" under CI=true so a CI
# run in a working tree neither reuses nor stops the developer's test stack.
STACK_NAME = os.environ.get("KEYBRIDGE_TEST_STACK", "test")
TEST_DIR = REPO_DIR / ".data" / STACK_NAME
KEYCLOAK_SCRIPT = REPO_DIR / "scripts" / "keycloak.sh"
MAILSINK_SCRIPT = REPO_DIR / "scripts" / "mailsink.py"

TEST_MAIL_DIR = TEST_DIR / "mail"
TEST_CLIENT_SECRET = "keybridge-test-adapter-secret"
TEST_DELEGATION_SECRET = "keybridge-test-delegation-secret"
TEST_ADMIN_USER = "admin"
TEST_ADMIN_PASSWORD = "admin"
POSTGRES_PORT = 15432
REALM = "customers"
ADAPTER_CLIENT_ID = "keybridge-adapter"
DELEGATION_CLIENT_ID = "keybridge-delegation"
# Keycloak's nudge listener posts here after each relevant event; only the tests that
# serve the adapter on this port (tests/integration/test_extension.py) receive them.
NUDGE_PORT = 18700
NUDGE_URL = f"http://127.0.0.1:{NUDGE_PORT}/internal/keycloak-nudge"
# The adapter of the account console test listens here: Keycloak's account theme links to its page.
PORTAL_PORT = 18710
PORTAL_URL = f"http://127.0.0.1:{PORTAL_PORT}/portal/"
NUDGE_SECRET = "whsec_" + "dGVzdC1ub2RnZS1zZWNyZXQtZm9yLWtleWJyaWRnZQ=="


class StackError(RuntimeError):
    """A test service could not be started; the message says what to do."""


@dataclass(frozen=True)
class KeycloakInstance:
    """Where the test Keycloak answers and how to log in to it."""

    url: str
    realm: str
    admin_user: str
    admin_password: str
    client_id: str
    client_secret: str
    smtp_port: int
    delegation_client_id: str = DELEGATION_CLIENT_ID
    delegation_client_secret: str = TEST_DELEGATION_SECRET

    @property
    def realm_url(self) -> str:
        return f"{self.url}/realms/{self.realm}"

    @property
    def admin_url(self) -> str:
        return f"{self.url}/admin/realms/{self.realm}"

    def admin_token(self) -> str:
        """An access token of the master realm's admin (for test setup and checks)."""
        return _admin_token(self.url, self.admin_user, self.admin_password)


# --- helpers -------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """Serializes starting a service across concurrent test runs on this machine."""
    TEST_DIR.mkdir(parents=True, exist_ok=True)
    with open(TEST_DIR / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def _pid_alive(pid_file: Path, signature: str) -> int | None:
    """The pid in pid_file if that process runs and its command line holds signature."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if signature in cmdline else None


def _listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP `port` (from /proc), if visible."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


def _port_taken_message(port: int, service: str) -> str:
    """Says who holds `port` and how to free it."""
    pid = _listener_pid(port)
    holder = "another program"
    if pid is not None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            holder = f"pid {pid} ({cmdline[:160]})"
        except OSError:
            holder = f"pid {pid}"
    hint = ""
    if "/.data/test/" in holder or "mailsink.py" in holder:
        hint = (" It looks like the test stack of another checkout: stop it there with"
                " `python -m tests.support.stack stop`, or `kill` that pid if its checkout is gone.")
    return f"port {port}, needed by the test {service}, is held by {holder}.{hint}"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _load_mailsink():
    """scripts/mailsink.py, which also knows how to read the messages it stores."""
    if "keybridge_mailsink" in sys.modules:
        return sys.modules["keybridge_mailsink"]
    spec = importlib.util.spec_from_file_location("keybridge_mailsink", MAILSINK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["keybridge_mailsink"] = module
    spec.loader.exec_module(module)
    return module


_mailsink = _load_mailsink()
Mail = _mailsink.Mail


# --- mail ----------------------------------------------------------------------------


def ensure_mail_sink(port: int = 18025, dir: str | os.PathLike = TEST_MAIL_DIR) -> Path:  # noqa: A002 (the brief's name)
    """Starts scripts/mailsink.py on 127.0.0.1:port storing into dir, or reuses it.

    Returns the mail folder. Raises StackError when the port is taken by
    another program or the sink does not come up.
    """
    mail_dir = Path(dir).resolve()
    pid_file = TEST_DIR / f"mailsink-{port}.pid"
    dir_file = TEST_DIR / f"mailsink-{port}.dir"
    log_file = TEST_DIR / f"mailsink-{port}.log"
    with _lock(f"mailsink-{port}"):
        pid = _pid_alive(pid_file, "mailsink.py")
        if pid and _port_open(port):
            if dir_file.exists() and dir_file.read_text() == str(mail_dir):
                return mail_dir
            os.kill(pid, signal.SIGTERM)
            _wait(lambda: not _port_open(port), 10, f"the mail sink on port {port} to stop")
        if _port_open(port):
            raise StackError(_port_taken_message(port, "mail sink"))
        mail_dir.mkdir(parents=True, exist_ok=True)
        pid_file.unlink(missing_ok=True)
        # setsid --fork detaches the sink from this process: it outlives the
        # test run, and no Popen object is left to warn about a running child.
        with open(log_file, "ab") as log:
            subprocess.run(
                ["setsid", "--fork", sys.executable, str(MAILSINK_SCRIPT), "--host", "127.0.0.1", "--port", str(port),
                 "--dir", str(mail_dir), "--pid-file", str(pid_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_DIR, check=True,
            )
        dir_file.write_text(str(mail_dir))
        try:
            _wait(lambda: _port_open(port) and _pid_alive(pid_file, "mailsink.py") is not None, 15, f"the mail sink on port {port}")
        except StackError:
            raise StackError(f"the mail sink did not start:\n{_tail(log_file)}") from None
        return mail_dir


def read_mails(dir: str | os.PathLike = TEST_MAIL_DIR, to: str | None = None) -> list:  # noqa: A002
    """Stored messages, oldest first, each a Mail(path, to, subject, text, html, link); only those to `to` if given."""
    return _mailsink.read_mails(dir, to=to)


def wait_for_mail(to: str, dir: str | os.PathLike = TEST_MAIL_DIR, timeout: float = 30.0, count: int = 1):  # noqa: A002
    """The newest message to `to` once at least `count` have arrived; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        mails = read_mails(dir, to=to)
        if len(mails) >= count:
            return mails[-1]
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{len(mails)} of {count} expected message(s) to {to} arrived in {dir} within {timeout:.0f}s")
        time.sleep(0.25)


# --- keycloak ------------------------------------------------------------------------


def _admin_token(url: str, user: str, password: str) -> str:
    response = requests.post(
        f"{url}/realms/master/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": "admin-cli", "username": user, "password": password},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def ensure_keycloak(
    name: str = STACK_NAME,
    http_port: int = 18080,
    smtp_port: int = 18025,
    client_secret: str = TEST_CLIENT_SECRET,
    mgmt_port: int | None = None,
    delegation_secret: str = TEST_DELEGATION_SECRET,
) -> KeycloakInstance:
    """Starts the named Keycloak instance through scripts/keycloak.sh, or reuses it.

    The instance is reset first when realm-config changed since it imported
    the realm. A reused instance gets the requested SMTP port and client
    secrets (adapter and delegation) if it had others. Raises StackError with the Keycloak log tail when
    it does not start.
    """
    env = {
        **os.environ,
        "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET": client_secret,
        "KEYBRIDGE_KEYCLOAK_DELEGATION_CLIENT_SECRET": delegation_secret,
        "KC_SMTP_HOST": "127.0.0.1",
        "KC_SMTP_PORT": str(smtp_port),
        "KC_BOOTSTRAP_ADMIN_USERNAME": TEST_ADMIN_USER,
        "KC_BOOTSTRAP_ADMIN_PASSWORD": TEST_ADMIN_PASSWORD,
        "KEYBRIDGE_NUDGE_URL": NUDGE_URL,
        "KEYBRIDGE_NUDGE_SECRET": NUDGE_SECRET,
        "KEYBRIDGE_PORTAL_URL": PORTAL_URL,
    }
    command = [str(KEYCLOAK_SCRIPT), "start", "--name", name, "--http-port", str(http_port),
               "--mgmt-port", str(mgmt_port or http_port + 1000), "--reimport-if-changed"]
    with _lock(f"keycloak-{name}"):
        running_here = subprocess.run([str(KEYCLOAK_SCRIPT), "status", "--name", name], stdin=subprocess.DEVNULL,
                                      capture_output=True).returncode == 0
        if not running_here and _port_open(http_port):
            raise StackError(_port_taken_message(http_port, f"Keycloak '{name}'"))
        result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=REPO_DIR)
        if result.returncode != 0:
            raise StackError(f"scripts/keycloak.sh could not start Keycloak '{name}':\n{result.stdout}{result.stderr}")
        instance = KeycloakInstance(
            url=f"http://localhost:{http_port}", realm=REALM, admin_user=TEST_ADMIN_USER,
            admin_password=TEST_ADMIN_PASSWORD, client_id=ADAPTER_CLIENT_ID, client_secret=client_secret,
            smtp_port=smtp_port, delegation_client_secret=delegation_secret,
        )
        _align_keycloak(instance)
        return instance


def _align_keycloak(instance: KeycloakInstance) -> None:
    """Points a reused realm at this run's SMTP port and client secrets."""
    with requests.Session() as session:
        _align_realm(session, instance)


def _align_realm(session: requests.Session, instance: KeycloakInstance) -> None:
    session.headers["Authorization"] = f"Bearer {instance.admin_token()}"
    realm = session.get(instance.admin_url, timeout=30).json()
    smtp = realm.get("smtpServer") or {}
    if str(smtp.get("port")) != str(instance.smtp_port) or smtp.get("host") != "127.0.0.1":
        smtp.update({"host": "127.0.0.1", "port": str(instance.smtp_port)})
        session.put(instance.admin_url, json={"smtpServer": smtp}, timeout=30).raise_for_status()
    for client_id, secret in ((instance.client_id, instance.client_secret),
                              (instance.delegation_client_id, instance.delegation_client_secret)):
        token = requests.post(
            f"{instance.realm_url}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
            timeout=30,
        )
        if token.status_code != 200:
            client = session.get(f"{instance.admin_url}/clients", params={"clientId": client_id}, timeout=30).json()[0]
            client["secret"] = secret
            session.put(f"{instance.admin_url}/clients/{client['id']}", json=client, timeout=30).raise_for_status()


def stop_keycloak(name: str = STACK_NAME) -> None:
    subprocess.run([str(KEYCLOAK_SCRIPT), "stop", "--name", name], check=False, stdin=subprocess.DEVNULL)


# --- postgres ------------------------------------------------------------------------


def _postgres_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if candidates:
        return candidates[-1].parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise StackError("PostgreSQL server binaries not found: apt-get install postgresql (scripts/test does it)")


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackError("running as root needs the 'postgres' system user: apt-get install postgresql") from None
    return ["runuser", "-u", "postgres", "--", *command]


def ensure_postgres(port: int = POSTGRES_PORT) -> str:
    """Starts a PostgreSQL server on 127.0.0.1:port with its data in .data/test/postgres, or reuses it.

    Returns the server's SQLAlchemy URL (database `postgres`, user `postgres`,
    trust authentication on loopback). Raises StackError when it cannot start.
    """
    data_dir = TEST_DIR / "postgres"
    log_file = TEST_DIR / "postgres.log"
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    with _lock("postgres"):
        if _postgres_answers(port):
            return url
        if _port_open(port):
            raise StackError(f"port {port} is taken by a program that is not a PostgreSQL we can log in to (ss -ltnp 'sport = :{port}')")
        bin_dir = _postgres_bin()
        TEST_DIR.mkdir(parents=True, exist_ok=True)
        if not (data_dir / "PG_VERSION").exists():
            shutil.rmtree(data_dir, ignore_errors=True)
            data_dir.mkdir(parents=True)
            _give_to_postgres(data_dir)
            _run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust",
                                    "-E", "UTF8", "--locale=C", "--no-sync"]), "initdb")
        log_file.touch()
        _give_to_postgres(log_file)
        options = (f"-p {port} -c listen_addresses=127.0.0.1 -k {data_dir} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        _run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log_file), "-o", options,
                                "-w", "-t", "60", "start"]), "pg_ctl start", log_file)
        _wait(lambda: _postgres_answers(port), 30, f"PostgreSQL on port {port}")
        return url


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _postgres_answers(port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def create_database(server_url: str | None = None, prefix: str = "keybridge_test") -> str:
    """Creates a new, empty database on the test server; returns its SQLAlchemy URL."""
    import psycopg

    server_url = server_url or ensure_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq_url(server_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def drop_database(database_url: str) -> None:
    """Drops a database made by create_database (closing its connections first)."""
    import psycopg

    server, name = database_url.rsplit("/", 1)
    with psycopg.connect(_libpq_url(server + "/postgres"), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _libpq_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def stop_postgres() -> None:
    data_dir = TEST_DIR / "postgres"
    if (data_dir / "postmaster.pid").exists():
        subprocess.run(_as_postgres_user([str(_postgres_bin() / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"]),
                       check=False, stdin=subprocess.DEVNULL)


# --- browser -------------------------------------------------------------------------


def chromium_executable() -> str:
    """The system Chromium for Playwright's `executable_path` (Playwright's own browser download is not used).

    Raises StackError when there is none.
    """
    found = os.environ.get("KEYBRIDGE_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise StackError("Chromium not found: apt-get install chromium (scripts/test does it), or set KEYBRIDGE_TEST_CHROMIUM")
    return found


# --- all -----------------------------------------------------------------------------


def stop_all() -> None:
    """Stops every test service this module starts (their data stays for the next run)."""
    stop_keycloak(STACK_NAME)
    stop_postgres()
    for pid_file in TEST_DIR.glob("mailsink-*.pid"):
        pid = _pid_alive(pid_file, "mailsink.py")
        if pid:
            os.kill(pid, signal.SIGTERM)
        pid_file.unlink(missing_ok=True)


def _run(command: list[str], what: str, log_file: Path | None = None) -> None:
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        log = f"\n{_tail(log_file)}" if log_file else ""
        raise StackError(f"{what} failed ({' '.join(command)}):\n{result.stdout}{result.stderr}{log}")


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


if __name__ == "__main__":
    if sys.argv[1:] == ["stop"]:
        stop_all()
    elif sys.argv[1:] == ["start"]:
        print(ensure_mail_sink())
        print(ensure_keycloak())
        print(ensure_postgres())
    else:
        sys.exit("usage: python -m tests.support.stack start|stop")
