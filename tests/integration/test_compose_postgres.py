"""docker-compose.yml's PostgreSQL init script, run the way the postgres image runs it (as its
superuser, once, on an empty cluster), then the adapter on what it made: the `keybridge` role
is no superuser, yet migrates its database and stores webhooks; it cannot enter Keycloak's."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid

import psycopg
import pytest

from adapter import create_app, migrations
from adapter.config import Settings
from tests.conftest import SECRET, SESSION_SECRET, envelope, signed_post
from tests.support import stack

pytestmark = pytest.mark.integration

INIT_SCRIPT = stack.REPO_DIR / "scripts" / "compose" / "postgres-init.sh"
ADAPTER_PASSWORD = "adapter-" + uuid.uuid4().hex
KEYCLOAK_PASSWORD = "keycloak-" + uuid.uuid4().hex


@pytest.fixture
def fresh_cluster():
    """An empty PostgreSQL cluster of its own (password logins over TCP), like a new postgres-data volume."""
    bin_dir = stack._postgres_bin()  # noqa: SLF001 — the test stack's own helpers
    data_dir = stack.TEST_DIR / f"compose-pg-{uuid.uuid4().hex[:8]}"
    data_dir.mkdir(parents=True)
    stack._give_to_postgres(data_dir)  # noqa: SLF001
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = lambda *cmd: subprocess.run(stack._as_postgres_user(list(cmd)), check=True, capture_output=True, text=True)  # noqa: E731,SLF001
    run(str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256",
        "-E", "UTF8", "--locale=C", "--no-sync")
    run(str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(data_dir / "log"), "-w", "-t", "60", "start",
        "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {data_dir} -c fsync=off")
    try:
        yield {"port": port, "socket_dir": str(data_dir)}
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop")
        shutil.rmtree(data_dir, ignore_errors=True)


def test_the_init_script_makes_roles_that_are_no_superusers_and_the_adapter_works_as_its_own(fresh_cluster):
    env = {**os.environ, "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres", "PGHOST": fresh_cluster["socket_dir"],
           "PGPORT": str(fresh_cluster["port"]), "ADAPTER_DB_PASSWORD": ADAPTER_PASSWORD, "KEYCLOAK_DB_PASSWORD": KEYCLOAK_PASSWORD}
    if os.geteuid() == 0:  # as in the image: the postgres system user runs it
        command = ["runuser", "-u", "postgres", "--preserve-environment", "--", "bash", str(INIT_SCRIPT)]
    else:
        command = ["bash", str(INIT_SCRIPT)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

    port = fresh_cluster["port"]
    with psycopg.connect(host=fresh_cluster["socket_dir"], port=port, user="postgres", dbname="postgres") as admin:
        roles = admin.execute("select rolname, rolsuper, rolcreatedb, rolcreaterole from pg_roles "
                              "where rolname in ('keybridge', 'keycloak') order by rolname").fetchall()
        owners = admin.execute("select datname, pg_get_userbyid(datdba) from pg_database "
                               "where datname in ('keybridge', 'keycloak') order by datname").fetchall()
    assert roles == [("keybridge", False, False, False), ("keycloak", False, False, False)]
    assert owners == [("keybridge", "keybridge"), ("keycloak", "keycloak")]

    # the adapter, logged in over TCP with its password as docker-compose.yml builds the URL
    url = f"postgresql+psycopg://keybridge:{ADAPTER_PASSWORD}@127.0.0.1:{port}/keybridge"
    migrations.upgrade(url, "head")
    settings = Settings.from_env({}, database_url=url, webhook_secrets=[SECRET], session_secret=SESSION_SECRET,
                                 keycloak_url="http://127.0.0.1:9")
    app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
    try:
        body = envelope("contact.invite_requested", {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1"})
        assert signed_post(app.test_client(), body, webhook_id="msg_compose").status_code == 202
    finally:
        app.extensions["keybridge"].db.dispose()
    with psycopg.connect(host="127.0.0.1", port=port, user="keybridge", password=ADAPTER_PASSWORD, dbname="keybridge") as own:
        assert own.execute("select count(*) from jobs where ref = 'msg_compose'").fetchone() == (1,)

    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(host="127.0.0.1", port=port, user="keybridge", password=ADAPTER_PASSWORD, dbname="keycloak").close()
    with psycopg.connect(host="127.0.0.1", port=port, user="keycloak", password=KEYCLOAK_PASSWORD, dbname="keycloak") as kc:
        kc.execute("create table keycloak_can_create_its_tables (id int)")
