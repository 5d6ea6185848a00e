"""scripts/dev's start detection: a service that is still starting is not reported as exited."""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    # Sourced, scripts/dev only defines its functions.
    prelude = f'source "{REPO}/scripts/dev"; DEV_DIR="{tmp_path}"; '
    return subprocess.run(["bash", "-c", prelude + script], capture_output=True, text=True, timeout=60)


def test_a_service_that_has_not_exec_d_its_program_yet_is_waited_for(tmp_path):
    """The window right after `setsid ... &`: the child's command line is still the
    launcher's (here a shell that sleeps before exec'ing the sink), not the sink's. The
    first `scripts/dev up` after a stop, on a busy machine, used to die there with
    'mailsink exited during start-up' while the sink came up fine."""
    port = _free_port()
    sink = tmp_path / "sink.py"
    sink.write_text("import socket, sys, time\n"
                    "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(30)\n")
    # argv carries "scripts/mailsink.py", the word scripts/dev recognises the sink by.
    launcher = tmp_path / "launch.sh"
    launcher.write_text(f"sleep 1.5\nexec python3 {sink} {port} scripts/mailsink.py\n")
    result = _run(tmp_path, f'start_service mailsink {port} bash {launcher}; wait_port mailsink {port}; echo READY; '
                            f'kill $(cat "{tmp_path}/mailsink.pid")')
    assert "READY" in result.stdout, result.stderr
    assert "exited during start-up" not in result.stderr


def test_a_service_that_really_exits_is_reported(tmp_path):
    port = _free_port()
    result = _run(tmp_path, f'start_service mailsink {port} bash -c "echo boom; exit 3"; wait_port mailsink {port}; echo READY')
    assert "READY" not in result.stdout
    assert "mailsink exited during start-up" in result.stderr
    assert "boom" in result.stderr  # the log's tail is shown


def _load_env(tmp_path: Path) -> dict[str, str]:
    """The KEYBRIDGE_* variables scripts/dev's load_env exports (in a throw-away DEV_DIR, no .env)."""
    dev = tmp_path / "dev"
    result = subprocess.run(["bash", "-c", f'source "{REPO}/scripts/dev"; REPO_DIR="{tmp_path}"; DEV_DIR="{dev}"; '
                                           'load_env >/dev/null; env | grep ^KEYBRIDGE_'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_the_dev_stack_makes_a_session_secret_for_the_org_admin_page(tmp_path):
    env = _load_env(tmp_path)
    assert len(env["KEYBRIDGE_SESSION_SECRET"]) >= 32
    assert env["KEYBRIDGE_SESSION_SECRET"] != env["KEYBRIDGE_KEYCLOAK_CLIENT_SECRET"]
    assert env["KEYBRIDGE_SESSION_COOKIE_SECURE"] == "false"  # the dev adapter is plain http
    assert _load_env(tmp_path)["KEYBRIDGE_SESSION_SECRET"] == env["KEYBRIDGE_SESSION_SECRET"]  # kept in dev.env


def test_an_older_dev_env_without_a_session_secret_gets_one(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "dev.env").write_text("KEYBRIDGE_WEBHOOK_SECRETS=whsec_dGVzdA==\nKEYBRIDGE_KEYCLOAK_CLIENT_SECRET=abc\n"
                                 "KEYBRIDGE_CRM_EVENTS_SECRET=whsec_dGVzdA==\n")
    env = _load_env(tmp_path)
    assert len(env["KEYBRIDGE_SESSION_SECRET"]) >= 32 and env["KEYBRIDGE_KEYCLOAK_CLIENT_SECRET"] == "abc"
    assert (dev / "dev.env").read_text().count("KEYBRIDGE_SESSION_SECRET=") == 1
