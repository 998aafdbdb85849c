"""The embedded run's tasks get one OpenMP thread per idle core (benchmarks/RESULTS.md, "Learning
profile": two threads make an idle 2-core SFT step 1.5x faster; beside other load, 4-5x slower)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mini_o3.kfp import local_run


@pytest.mark.parametrize("busy, threads", [(0.05, 2), (0.6, 1), (1.4, 1), (7.0, 1)])
def test_busy_cores_are_left_out(monkeypatch, tmp_path, busy, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(local_run, "busy_cores", lambda: busy)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert local_run.idle_cores() == threads
    assert local_run.task_env(tmp_path)["OMP_NUM_THREADS"] == str(threads)


def test_the_callers_thread_count_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(local_run, "busy_cores", lambda: 9.0)
    assert local_run.task_env(tmp_path)["OMP_NUM_THREADS"] == "3"


def test_busy_cores_sees_load_now_not_the_last_minutes(monkeypatch):
    """A core spinning now counts; a load average left by work that has ended does not (the
    demo after ``make setup`` ran its SFT on one thread: 0.45 s/step instead of 0.25)."""
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 2.0, 2.0))  # what the old rule read
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert local_run.busy_cores(window_s=0.5) > 0.7
    finally:
        spinner.kill()
        spinner.wait()


def test_busy_cores_falls_back_to_the_load_average(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "getloadavg", lambda: (1.25, 1.0, 1.0))
    assert local_run.busy_cores(window_s=0.0, stat=tmp_path / "missing") == 1.25
