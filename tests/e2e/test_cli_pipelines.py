"""The pipeline commands as users run them: compile / --check, upload, submit, schedule against a
fake KFP API on loopback, and the stage entrypoints' error handling."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.kfp_server import FakeKFPServer

pytestmark = pytest.mark.slow  # compiles pipelines, mini-o3 subprocesses

REPO = Path(__file__).resolve().parents[2]
CLI = shutil.which("mini-o3") or str(Path(sys.executable).with_name("mini-o3"))


def run(*args: str, ok: bool = True, home: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    env.pop("MINI_O3_IMAGE_REGISTRY", None)
    env.pop("MINI_O3_IMAGE_TAG", None)
    if home:
        env["HOME"] = str(home)
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=300, cwd=REPO, input=stdin,
                          check=False)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def kfp(tmp_path):
    with FakeKFPServer() as state:
        yield state


def test_cli_import_stays_light():
    code = "import sys, mini_o3.cli; print(sorted(m for m in ('kfp', 'torch', 'transformers', 'mlflow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_compile_check(tmp_path):
    assert "up to date" in run("compile", "--check").stderr
    run("compile", "--out-dir", str(tmp_path))
    assert (tmp_path / "pipelines" / "train.yaml").read_bytes() == (REPO / "pipelines" / "train.yaml").read_bytes()
    (tmp_path / "components" / "report.yaml").write_text("stale\n")
    proc = run("compile", "--check", "--out-dir", str(tmp_path), ok=False)
    assert proc.returncode == 1 and "components/report.yaml" in proc.stderr and "run `mini-o3 compile`" in proc.stderr


def test_upload_twice_reuses(kfp, tmp_path):
    first = run("upload", "--host", kfp.url, home=tmp_path).stdout.splitlines()
    assert [line.split("\t")[0] for line in first] == ["mini-o3-train", "mini-o3-evaluate"]
    assert all(line.endswith("\tuploaded") for line in first)
    again = run("upload", "--host", kfp.url, home=tmp_path).stdout.splitlines()
    assert all(line.endswith("\treused") for line in again)
    assert [line.split("\t")[1:3] for line in again] == [line.split("\t")[1:3] for line in first]


def test_submit_and_wait(kfp, tmp_path):
    proc = run("submit", "--host", kfp.url, "--pipeline", "evaluate", "--param", "model_uri=s3://b/r/rl/model",
               "--param", "k=4", "--experiment", "evals", "--run-name", "smoke", "--wait", home=tmp_path)
    assert proc.stdout.splitlines()[-1] == "state=SUCCEEDED"
    (run_body,) = kfp.runs.values()
    assert run_body["display_name"] == "smoke" and run_body["runtime_config"]["parameters"]["k"] == 4
    bad = run("submit", "--host", kfp.url, "--param", "nope=1", ok=False, home=tmp_path)
    assert bad.returncode == 2 and "unknown parameter 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_schedule_shows_the_plan_then_creates(kfp, tmp_path):
    proc = run("schedule", "--host", kfp.url, "--cron", "0 3 * * *", "--name", "nightly", "--yes",
               "--param", "model_uri=hf://Mini-o3/Mini-o3-7B-v1", "--param", "benchmarks=vstar", home=tmp_path)
    assert "cron for KFP (seconds first): 0 0 3 * * *" in proc.stderr
    assert proc.stderr.count("next: ") == 3 and "CRON_SCHEDULE_TIMEZONE" in proc.stderr
    (made,) = kfp.recurring_runs.values()
    assert made["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *" and made["display_name"] == "nightly"
    assert "recurring_run_id=" in proc.stdout and "\tcron=0 0 3 * * *\t" in proc.stdout


def test_schedule_declined_or_invalid_creates_nothing(kfp, tmp_path):
    declined = run("schedule", "--host", kfp.url, "--cron", "@daily", ok=False, home=tmp_path, stdin="n\n")
    assert declined.returncode == 1 and "nothing created" in declined.stderr
    bad = run("schedule", "--host", kfp.url, "--cron", "61 * * * *", "--yes", ok=False, home=tmp_path)
    assert bad.returncode == 2 and "cron field minute '61': 61 is outside 0-59" in bad.stderr
    assert not kfp.recurring_runs and not [r for r in kfp.requests if r[0] == "POST"]


def test_stage_refuses_a_half_written_model(tmp_path):
    half = tmp_path / "sft" / "model"
    half.mkdir(parents=True)
    (half / "config.json").write_text("{}")
    proc = run("stage", "rl", "--model-uri", str(half), "--train-uri", str(tmp_path / "data"),
               "--out-uri", str(tmp_path / "rl"), ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(half) in proc.stderr and "_MINI_O3_COMPLETE.json" in proc.stderr
    assert not (tmp_path / "rl").exists()


def test_stage_run_reads_a_sealed_request_and_refuses_an_unsealed_or_malformed_one(tmp_path):
    """``mini-o3 stage run <uri>`` (what Ray jobs and RayJobs run) runs the request it finds there:
    the same half-written model refusal as ``stage rl``; unsealed or malformed requests: one line."""
    from mini_o3.dispatch import seal_request
    from mini_o3.stages import RLRequest

    half = tmp_path / "sft" / "model"
    half.mkdir(parents=True)
    (half / "config.json").write_text("{}")
    request = RLRequest(model_uri=str(half), train_uris=[str(tmp_path / "data")], out_uri=str(tmp_path / "rl"))
    sealed = seal_request(request, str(tmp_path / "rl-request"))
    proc = run("stage", "run", sealed, ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "_MINI_O3_COMPLETE.json" in proc.stderr
    assert str(half) in proc.stderr and not (tmp_path / "rl").exists()
    unsealed = tmp_path / "unsealed"
    unsealed.mkdir()
    (unsealed / "request.json").write_text(request.model_dump_json())
    proc = run("stage", "run", str(unsealed), ok=False)
    assert proc.returncode == 2 and "is not a sealed request folder" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"stage": "rl", "model_uri": "m", "out_uri": "o", "nnodes": 0}')
    proc = run("stage", "run", str(bad), ok=False)
    assert proc.returncode == 2 and "nnodes" in proc.stderr and "Traceback" not in proc.stderr


def test_upload_reads_the_packages_the_base_image_ships(kfp, tmp_path):
    """In the base image (the chart's post-install Job) there is no checkout: `upload` finds the
    compiled packages through MINI_O3_PIPELINES_DIR, from any working directory."""
    shipped = tmp_path / "image-home" / "pipelines"
    shutil.copytree(REPO / "pipelines", shipped)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path), "COLUMNS": "500",
           "MINI_O3_PIPELINES_DIR": str(shipped)}
    proc = subprocess.run([CLI, "upload", "--host", kfp.url], capture_output=True, text=True, env=env, cwd=elsewhere,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == ["mini-o3-train", "mini-o3-evaluate"]
    (shipped / "train.yaml").unlink()
    missing = subprocess.run([CLI, "upload", "--host", kfp.url], capture_output=True, text=True, env=env,
                             cwd=elsewhere, timeout=300, check=False)
    assert missing.returncode == 2 and str(shipped / "train.yaml") in missing.stderr
