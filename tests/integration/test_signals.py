"""Signals stop the whole tree: SIGTERM reaches every descendant (same session or its own), unwinds
the main thread (MLflow stage runs end KILLED) and leaves a resumable evaluation store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fixtures.fault_server import Fault, fault_server_fixture  # noqa: F401 (registers `fault_server`)
from fixtures.scripted_server import ScriptedItem

from mini_o3.data.bench import read_records
from mini_o3.data.synthetic import SynthConfig, generate

pytestmark = pytest.mark.slow  # SIGTERM to child processes

CLI = str(Path(sys.executable).with_name("mini-o3"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_line(proc: subprocess.Popen, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{needle!r} not printed; exit {proc.poll()}")


def _spawn(code: str) -> subprocess.Popen:
    # own session: a stray signal can never reach pytest
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, start_new_session=True)


def test_sigterm_stops_every_descendant_and_unwinds():
    proc = _spawn("""
        import subprocess, sys, time
        from mini_o3.interrupts import stop_tree_on_signals
        stop_tree_on_signals()
        sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
        child = subprocess.Popen(sleep)
        server = subprocess.Popen(sleep, start_new_session=True)  # like the vLLM server
        try:  # "pids" inside the try: a signal right after it must still unwind (a race under load)
            print("pids", child.pid, server.pid, flush=True)
            time.sleep(120)
        finally:
            print("unwound", flush=True)
    """)
    try:
        pids = [int(p) for p in _wait_line(proc, "pids").split()[1:]]
        assert all(_alive(p) for p in pids)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 128 + signal.SIGTERM and "unwound" in out, err
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
    finally:
        proc.kill()


def test_sigterm_marks_the_stage_run_killed(tmp_path):
    """A KFP task process (no CLI): SIGTERM inside a stage's MLflow run ends it KILLED, not RUNNING."""
    from mini_o3 import tracking

    uri = tracking.default_tracking_uri(tmp_path)
    parent = tracking.start_pipeline_run(experiment="sig", kfp_run_id="r1", pipeline="p", params={}, tracking_uri=uri)
    proc = _spawn(f"""
        import time
        from mini_o3 import tracking
        with tracking.stage_run(parent_run_id={parent!r}, stage="evaluate", tracking_uri={uri!r}) as t:
            print("started", t.run_id, flush=True)
            time.sleep(120)
    """)
    try:
        run_id = _wait_line(proc, "started").split()[1]
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM
        assert tracking.client(uri).get_run(run_id).info.status == "KILLED"
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "synth"
    generate(SynthConfig(width_range=(256, 288), height_range=(256, 288)), out, 1, 6, 9, progress=False)
    return out


def test_sigterm_stops_eval_promptly_and_the_store_resumes(bench, fault_server, tmp_path):
    records = read_records(bench / "val.parquet")
    questions = [r.problem.replace("<image>\n", "", 1) for r in records]
    items = {q: ScriptedItem(q, r.answer) for q, r in zip(questions, records)}
    server = fault_server(items=items, faults=[Fault("slow", question=questions[2], delay_s=30)])
    out = tmp_path / "out"
    args = [CLI, "eval", "--policy", f"openai:{server.base_url}#no_zoom", "--bench", str(bench), "--k", "2",
            "--out", str(out), "--protocol", "rule", "--set", "max_turns=2", "--set", "concurrency=2"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while server.question_of(server.requests[-1].body if server.requests else {}) != questions[2] \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert time.monotonic() - began < 15  # the 30 s in-flight request is not waited for
        assert "re-run the same command to resume" in err and "Traceback" not in err
    finally:
        proc.kill()
    store = next(out.glob("samples-*.jsonl"))
    done = [json.loads(line) for line in store.read_text().splitlines()]
    assert 0 < len(done) < 12 and not any(r.get("error") for r in done)
    server.faults.clear()
    again = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=300)
    assert again.returncode == 0, again.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["benchmarks"]["synth"]["overall"]["samples"] == 12 and report["errors"]["count"] == 0


def test_sigterm_to_mini_o3_run_stops_the_tasks_and_marks_mlflow_killed(tmp_path):
    """``mini-o3 run`` (the embedded kfp.local run): SIGTERM while the SFT task runs stops every
    task process, and the pipeline's parent run and the SFT stage run end KILLED, not RUNNING
    (the pipeline's exit handler, which closes the parent, never runs after a signal)."""
    from mini_o3 import tracking
    from mini_o3.interrupts import descendants

    out = tmp_path / "run"
    env = {k: v for k, v in ENV.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([CLI, "run", "--out", str(out), "--profile", "smoke"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        _wait_line(proc, "─ SFT ─", timeout=400)
        tree = descendants(proc.pid)
        assert tree  # the kfp.local task process (and what it started)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM, rest[-3000:]
        assert "marked KILLED" in rest and "Traceback" not in rest.split("stopped")[-1], rest[-3000:]
        assert not any(_alive(p) for p in tree)
    finally:
        proc.kill()
    client = tracking.client(tracking.default_tracking_uri(out))
    runs = client.search_runs([client.get_experiment_by_name("mini-o3-embedded").experiment_id])
    statuses = {(r.data.tags.get("mini_o3.run_kind"), r.data.tags.get("mini_o3.stage")): r.info.status for r in runs}
    assert statuses[("pipeline", None)] == "KILLED" and statuses[("stage", "sft")] == "KILLED", statuses
    assert "RUNNING" not in statuses.values(), statuses
