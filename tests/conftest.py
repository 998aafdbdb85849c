"""Suite-wide fixtures, and a report of the tests over 5 s that are not marked ``slow`` (``make
test-fast`` runs every unmarked test: keep it under a minute). ``tests/`` is on ``sys.path``
(pytest puts a rootless conftest's folder there), so test modules import helpers as
``fixtures.<module>``."""

import pytest

from fixtures.ray_head import ray_head_fixture  # noqa: F401  (registers `ray_head`)
from fixtures.s3 import _s3_session, s3_server  # noqa: F401  (registers `s3_server`)
from fixtures.scripted_server import scripted_server_fixture  # noqa: F401  (registers `scripted_server`)

#: A test slower than this (setup + call + teardown) belongs behind ``@pytest.mark.slow``.
SLOW_S = 5.0
_unmarked_slow: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "slow" not in report.keywords:
        _unmarked_slow[report.nodeid] = _unmarked_slow.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    over = sorted(((s, n) for n, s in _unmarked_slow.items() if s > SLOW_S), reverse=True)
    if over:
        terminalreporter.section(f"tests over {SLOW_S:.0f} s without @pytest.mark.slow (a loaded machine inflates these)")
        for seconds, nodeid in over:
            terminalreporter.write_line(f"{seconds:6.1f}s {nodeid}")
