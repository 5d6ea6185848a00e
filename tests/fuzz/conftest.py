"""Prints the fuzz tally (cases per operation and status) at the end of the run."""
from __future__ import annotations

import sys


def pytest_terminal_summary(terminalreporter):
    module = sys.modules.get("tests.fuzz.test_fuzz_api")
    TALLY = getattr(module, "TALLY", None)
    if not TALLY:
        return
    terminalreporter.section("fuzz cases")
    for (path, mode, status), count in sorted(TALLY.items()):
        terminalreporter.write_line(f"{path:40} {mode:9} {status:14} {count}")
    terminalreporter.write_line(f"total: {sum(TALLY.values())} cases, 5xx: {sum(c for (p, m, s), c in TALLY.items() if s.startswith('5'))}")
