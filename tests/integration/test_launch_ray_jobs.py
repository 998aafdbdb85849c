"""Mode ``ray``: the launcher against a real local Ray head (Jobs API, log streaming, stop on SIGTERM)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from mini_o3.launch import LaunchError, LaunchSettings, SecretRef, run_remote

pytestmark = pytest.mark.slow  # a Ray head starts once per session (20-40 s on two busy cores)


def client(ray_head):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(ray_head.address)


def status_of(ray_head, sid: str) -> str:
    return client(ray_head).get_job_info(sid).status.value


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


PRINT_ENV = "import os; print('settings-env', os.environ['FROM_SETTINGS']); print('runtime-env', os.environ['FROM_RUNTIME'])"


def test_success_streams_logs_with_both_env_sources_and_a_retry_adopts(ray_head):
    settings = LaunchSettings(mode="ray", ray_address=ray_head.address, env={"FROM_SETTINGS": "s-value"})
    echoed: list[str] = []
    name = unique("ok")
    result = run_remote([sys.executable, "-c", PRINT_ENV], settings, name=name,
                        runtime_env={"env_vars": {"FROM_RUNTIME": "r-value"}}, echo=echoed.append)
    assert result.status == "SUCCEEDED" and result.mode == "ray" and result.name == name
    assert "settings-env s-value" in echoed and "runtime-env r-value" in echoed  # streamed through echo
    assert "runtime-env r-value" in result.logs_tail
    # A retried launcher pod (same name) adopts the finished job instead of submitting a second one.
    again: list[str] = []
    assert run_remote([sys.executable, "-c", "raise SystemExit(9)"], settings, name=name, echo=again.append).status == "SUCCEEDED"
    assert any("adopting existing job" in line for line in again)
    assert [j.submission_id for j in client(ray_head).list_jobs() if j.submission_id.startswith(name)] == [name]


def test_failure_raises_with_the_log_tail_and_a_rerun_is_a_new_attempt(ray_head):
    settings = LaunchSettings(mode="ray", ray_address=ray_head.address)
    name = unique("fail")
    script = "import sys; print('computing'); print('boom: bad shard 7', file=sys.stderr); sys.exit(3)"
    with pytest.raises(LaunchError, match=f"Ray job {name} ended FAILED") as info:
        run_remote([sys.executable, "-c", script], settings, name=name, echo=lambda line: None)
    assert "boom: bad shard 7" in str(info.value) and info.value.status == "FAILED"
    assert status_of(ray_head, name) == "FAILED"
    result = run_remote([sys.executable, "-c", "print('fixed')"], settings, name=name, echo=lambda line: None)
    assert result.name == f"{name}-2" and "fixed" in result.logs_tail


def test_client_side_timeout_stops_the_job(ray_head):
    settings = LaunchSettings(mode="ray", ray_address=ray_head.address, timeout_s=2)
    name = unique("slow")
    with pytest.raises(LaunchError, match="exceeded launch.timeout_s=2s"):
        run_remote([sys.executable, "-c", "import time; time.sleep(300)"], settings, name=name, echo=lambda line: None)
    assert wait_for(lambda: status_of(ray_head, name) == "STOPPED", 30, "the job to be STOPPED")


def test_sigterm_to_the_launcher_stops_the_remote_job(ray_head, tmp_path):
    name = unique("term")
    launcher = textwrap.dedent(f"""
        import sys
        from mini_o3.launch import LaunchSettings, run_remote
        run_remote([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(600)"],
                   LaunchSettings(mode="ray", ray_address={ray_head.address!r}), name={name!r})
    """)
    log = tmp_path / "launcher.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", launcher], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "started" in log.read_text().splitlines(), 90, f"the job's first log line in the launcher output ({log})")
        assert status_of(ray_head, name) == "RUNNING"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status_of(ray_head, name) == "STOPPED"
    assert f"stop requested for {name}" in log.read_text()


def test_bad_settings_are_named(ray_head):
    echoed: list[str] = []
    secret = LaunchSettings(mode="ray", ray_address=ray_head.address, secret_env={"SECRET_K": SecretRef(name="s", key="k")})
    name = unique("secret")
    result = run_remote([sys.executable, "-c", "import os; print('has-secret', 'SECRET_K' in os.environ)"], secret,
                        name=name, echo=echoed.append)
    assert "the Ray cluster's pods must already carry SECRET_K" in echoed[0]
    assert "has-secret False" in result.logs_tail  # never copied into the job
    with pytest.raises(ValueError, match="runs in the calling process"):
        run_remote(["true"], LaunchSettings(), name="x")
    with pytest.raises(LaunchError, match="cannot reach the Ray Jobs API at http://127.0.0.1:9"):
        run_remote(["true"], LaunchSettings(mode="ray", ray_address="http://127.0.0.1:9"), name="x")


TINY_RL = [
    "train_batch_size=2", "rollout_n=2", "ppo_mini_batch_size=2", "max_tokens_per_turn=8", "max_turns=2",
    "val_n=1", "val_max_turns=2", "val_do_sample=false", "save_freq=1", "test_freq=1", "val_before_train=false",
    "judge.enabled=false", "rejection_sample=false", "min_pixels=3136", "max_pixels=40000", "total_training_steps=1",
]


def test_reference_engine_runs_through_the_launcher(ray_head, tiny_dir, tmp_path):
    """Requirement 4: `mini-o3 rl --engine local` as a Ray job, no GPU (the RayJob mode runs the same entrypoint)."""
    from mini_o3.data.synthetic import SynthConfig, generate

    synth = tmp_path / "syn"
    generate(SynthConfig(width_range=(512, 640), height_range=(512, 640)), synth, 2, 1, seed=0, progress=False)
    out = tmp_path / "rl"
    entry = ["mini-o3", "rl", "--engine", "local", "--model", str(tiny_dir), "--train", str(synth), "--val", str(synth),
             "--out", str(out), *(arg for item in TINY_RL for arg in ("--set", item))]
    settings = LaunchSettings(mode="ray", ray_address=ray_head.address, timeout_s=240,
                              env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    result = run_remote(entry, settings, name=unique("rl-local"), echo=lambda line: None)
    assert result.status == "SUCCEEDED"
    assert (out / "checkpoints" / "latest").read_text() == "global_step_1"
    assert (out / "checkpoints" / "global_step_1" / "model.safetensors").is_file()
    assert any("done" in line and "step 1" in line for line in result.logs_tail), result.logs_tail


def test_hostile_arguments_reach_the_program_unchanged_through_the_real_job_supervisor(ray_head):
    """Ray 2.60 job_supervisor.py:182-184 runs the entrypoint with shell=True: every argument must be
    quoted (shlex.join) so `;`, `$(...)`, backticks, pipes and quotes reach the program as text."""
    import json

    hostile = ["a;touch PWNED", "$(touch PWNED)", "`touch PWNED`", "a|touch PWNED", "it's", 'say "$HOME"', "new\nline"]
    code = "import json, sys; print('ARGV ' + json.dumps(sys.argv[1:]))"
    settings = LaunchSettings(mode="ray", ray_address=ray_head.address)
    result = run_remote([sys.executable, "-c", code, *hostile], settings, name=unique("quote"), echo=lambda _: None)
    line = next(x for x in result.logs_tail if x.startswith("ARGV "))
    assert json.loads(line[len("ARGV "):]) == hostile
