"""The embedded run's tasks get one OpenMP thread per idle core (benchmarks/RESULTS.md, "Learning
profile": two threads make an idle 2-core SFT step 1.5x faster; beside other load, 4-5x slower)."""

from __future__ import annotations

import os

import pytest

from mini_o3.kfp import local_run


@pytest.mark.parametrize("load, threads", [(0.05, 2), (0.6, 1), (1.4, 1), (7.0, 1)])
def test_busy_cores_are_left_out(monkeypatch, tmp_path, load, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert local_run.idle_cores() == threads
    assert local_run.task_env(tmp_path)["OMP_NUM_THREADS"] == str(threads)


def test_the_callers_thread_count_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert local_run.task_env(tmp_path)["OMP_NUM_THREADS"] == "3"
