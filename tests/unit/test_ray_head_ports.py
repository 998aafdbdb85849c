"""The test Ray head's worker port block never overlaps its named ports.

Ray refuses to start when any named port (dashboard, GCS, …) falls inside ``--min-worker-port`` ..
``--max-worker-port`` (ray-project/ray 2.60.0 ``python/ray/_private/parameter.py:294``,
``update_pre_selected_port``, raising at line 343: "Ray component worker_ports is trying to use a port
number … that is used by other components"). CI once lost
nine launcher tests to a dashboard port drawn inside the block.
"""

from __future__ import annotations

import socket

from fixtures.ray_head import WORKER_PORTS, worker_port_range


def test_the_block_skips_every_named_port_inside_it() -> None:
    lo, hi = worker_port_range(set())
    named = {lo, lo + 100, hi}
    lo2, hi2 = worker_port_range(named)
    assert not any(lo2 <= p <= hi2 for p in named)
    assert hi2 - lo2 + 1 == WORKER_PORTS


def test_the_block_skips_a_port_in_use() -> None:
    lo, _ = worker_port_range(set())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", lo + 7))
        lo2, hi2 = worker_port_range(set())
        assert not lo2 <= lo + 7 <= hi2
