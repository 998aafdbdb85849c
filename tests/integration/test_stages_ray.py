"""The RL component's remote path against a real local Ray head (Jobs API): the launcher seals the
request and submits ``mini-o3 stage run <uri>``, the job seals its output in storage and logs its
MLflow child run, and the launcher reads the result back from storage."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from mini_o3 import storage
from mini_o3.kfp import bodies
from mini_o3.kfp.local_run import TINY_RL
from mini_o3.launch import LaunchSettings, job_name
from mini_o3.stages import prepare_bench_stage
from mini_o3.tracking import start_pipeline_run

pytestmark = pytest.mark.slow


def test_rl_runs_as_a_ray_job_and_returns_its_sealed_model(ray_head, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_root = tmp_path / "artifacts" / "run-ray-1"
    data = prepare_bench_stage("synthetic", str(run_root / "data" / "rl_data"), progress=False,
                               synthetic=["n_train=2", "n_test=1", "config.width_range=[512,640]",
                                          "config.height_range=[512,640]"]).out_uri
    model = tmp_path / "base-model"
    shutil.copytree(tiny_dir, model)
    storage.mark_complete(model)
    tracking_uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # the launcher pod's platform ConfigMap
    parent = start_pipeline_run(experiment="ray-test", kfp_run_id="run-ray-1", pipeline="mini-o3-train", params={},
                                tracking_uri=tracking_uri)
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "MLFLOW_ALLOW_FILE_STORE": "true", "TOKENIZERS_PARALLELISM": "false"}
    launch = LaunchSettings(mode="ray", ray_address=ray_head.address, workers=1, gpus_per_worker=0, env=env)
    request = bodies.rl_request(engine="local", model_uri=str(model), train_uri=data, val_uri="", run_root=str(run_root),
                                overrides=[*TINY_RL, "test_freq=-1"], launch=launch, parent_run_id=parent,
                                gpus=0)
    result = bodies.run_request(request)
    assert result.model_uri == str(run_root / "rl" / "model") and storage.is_complete(result.model_uri)
    assert storage.is_complete(str(run_root / "rl" / "run")) and result.metrics["global_step"] == 1.0

    from ray.job_submission import JobSubmissionClient

    info = JobSubmissionClient(ray_head.address).get_job_info(job_name("mo3-rl", "run-ray-1"))
    assert info.status.value == "SUCCEEDED" and info.entrypoint == f"mini-o3 stage run {run_root}/rl-request"

    from mlflow import MlflowClient

    runs = MlflowClient(tracking_uri=tracking_uri).search_runs(
        [MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name("ray-test").experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    assert [r.data.tags["mini_o3.stage"] for r in children] == ["rl"] and children[0].info.status == "FINISHED"


def test_sigterm_to_the_rl_component_stops_its_ray_job(ray_head, tiny_dir, tmp_path):
    """A terminated KFP run: the pod gets SIGTERM; the component must not swallow it and the
    launcher stops the Ray job, so no remote work is left behind and nothing is sealed."""
    import json
    import signal
    import subprocess
    import time

    from ray.job_submission import JobSubmissionClient

    run_root = tmp_path / "artifacts" / "run-term-1"
    data = prepare_bench_stage("synthetic", str(run_root / "data" / "rl_data"), progress=False,
                               synthetic=["n_train=2", "n_test=1", "config.width_range=[512,640]",
                                          "config.height_range=[512,640]"]).out_uri
    model = tmp_path / "base-model"
    shutil.copytree(tiny_dir, model)
    storage.mark_complete(model)
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    launch = dict(mode="ray", ray_address=ray_head.address, workers=1, gpus_per_worker=0, env=env)
    call = ("from mini_o3.kfp import bodies; from mini_o3.launch import LaunchSettings; "
            f"bodies.run_request(bodies.rl_request(engine='local', model_uri={str(model)!r}, train_uri={data!r}, "
            f"val_uri='', run_root={str(run_root)!r}, overrides={[*TINY_RL, 'total_training_steps=500']!r}, "
            f"launch=LaunchSettings(**json.loads({json.dumps(launch)!r})), parent_run_id='', gpus=0))")
    log = tmp_path / "component.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", f"import json; {call}"], stdout=out, stderr=subprocess.STDOUT)
    name = job_name("mo3-rl", "run-term-1")
    jobs = JobSubmissionClient(ray_head.address)
    try:
        deadline = time.monotonic() + 180
        while "step 1" not in log.read_text() and time.monotonic() < deadline:  # training is under way
            assert proc.poll() is None, log.read_text()
            time.sleep(1)
        assert "step 1" in log.read_text(), log.read_text()
        assert jobs.get_job_info(name).status.value == "RUNNING"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 143, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 60
    while jobs.get_job_info(name).status.value != "STOPPED" and time.monotonic() < deadline:
        time.sleep(1)
    assert jobs.get_job_info(name).status.value == "STOPPED"
    assert not storage.is_complete(str(run_root / "rl" / "model"))
