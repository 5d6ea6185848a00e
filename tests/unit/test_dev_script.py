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
