"""The `mini-o3` command line, run as a user runs it (the installed console script)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the installed mini-o3 command as subprocesses

CLI = shutil.which("mini-o3") or str(Path(sys.executable).with_name("mini-o3"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, env=ENV, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_synth_writes_a_dataset(tmp_path):
    out = tmp_path / "Synth"
    proc = run("synth", "--out", str(out), "--n-train", "2", "--n-test", "2", "--seed", "1",
               "--width-range", "1024", "1536", "--height-range", "1024", "1536")
    assert "train 2" in proc.stderr and "val 2" in proc.stderr
    rows = json.loads((out / "val.json").read_text())
    assert rows[0]["images"][0].startswith("Synth/data/") and rows[0]["problem"].startswith("<image>\n")
    assert (out / "coldstart/data/train-00000-of-00001.parquet").exists()
    again = run("synth", "--out", str(out), "--n-train", "1", "--n-test", "1", ok=False)
    assert again.returncode != 0 and "overwrite" in again.stderr.lower()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["synth", "--out", "x", "--n-train", "-1"], "n-train"),
        (["synth", "--out", "x", "--n-train", "0", "--n-test", "0"], "nothing to generate"),
        (["synth", "--out", "x", "--width-range", "10", "20"], "canvas sides must be in [256, 16384]"),
        (["synth", "--out", "x", "--width-range", "3000", "2000"], "--width-range: canvas size"),
        (["synth"], "--out"),
        (["tiny-model", "--out", "FILE"], "exists and is not a directory"),
    ],
)
def test_bad_arguments_get_a_clear_message(tmp_path, args, message):
    (tmp_path / "FILE").write_text("not a directory")
    args = [str(tmp_path / a) if a in ("x", "FILE") else a for a in args]
    proc = run(*args, ok=False)
    assert proc.returncode == 2
    assert message in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_prepare_commands_on_a_synthetic_set(tmp_path):
    synth = tmp_path / "Synth"
    run("synth", "--out", str(synth), "--n-train", "2", "--n-test", "2", "--width-range", "512", "768", "--height-range", "512", "768")
    cold = tmp_path / "cold"
    proc = run("prepare", "coldstart", "--source", str(synth / "coldstart"), "--out", str(cold), "--set", "workers=1")
    assert "0 rejected" in proc.stderr
    info = json.loads((cold / "dataset_info.json").read_text())
    assert info["minio3_coldstart"]["formatting"] == "sharegpt"
    rows = json.loads((cold / "Mini-o3-Coldstart.json").read_text())
    assert rows and all(Path(p).is_file() for row in rows for p in row["images"])
    bench = tmp_path / "bench"
    run("prepare", "bench", "--name", "synthetic", "--source", str(synth), "--out", str(bench))
    assert json.loads((bench / "val.json").read_text())[0]["images"][0].startswith("bench/data/")
    assert (bench / "val.parquet").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "bench", "--name", "nope", "--source", ".", "--out", "OUT"], "nope"),
        (["prepare", "coldstart", "--source", "MISSING", "--out", "OUT"], "neither an existing path nor a hub dataset id"),
        (["prepare", "coldstart", "--source", ".", "--out", "OUT", "--set", "workers=0"], "greater than or equal to 1"),
        (["prepare", "coldstart", "--source", ".", "--out", "OUT", "--set", "colour=red"], "'colour' is not a field of ColdstartPrepConfig"),
        (["prepare", "bench", "--name", "vstar", "--source", ".", "--out", "OUT", "--set", "limit"], "must look like key=value"),
    ],
)
def test_prepare_bad_arguments(tmp_path, args, message):
    args = [str(tmp_path / a) if a in ("OUT", "MISSING") else a for a in args]
    proc = run(*args, ok=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_sft_command_trains_the_tiny_model(tmp_path):
    synth, cold, model, runs = tmp_path / "Synth", tmp_path / "cold", tmp_path / "tiny", tmp_path / "run"
    run("synth", "--out", str(synth), "--n-train", "2", "--n-test", "1", "--width-range", "512", "640", "--height-range", "512", "640")
    run("prepare", "coldstart", "--source", str(synth / "coldstart"), "--out", str(cold))
    run("tiny-model", "--out", str(model))
    sets = ["max_steps=1", "save_steps=1", "cutoff_len=4096", "preprocessing_num_workers=1", "gradient_accumulation_steps=1"]
    proc = run("sft", "--data", str(cold), "--model", str(model), "--out", str(runs), *[a for s in sets for a in ("--set", s)])
    assert "trained" in proc.stderr and "step 1" in proc.stderr
    generation = json.loads((runs / "model" / "generation_config.json").read_text())
    assert not {"do_sample", "temperature", "top_p", "top_k"} & set(generation)
    bad = run("sft", "--data", str(cold), "--model", str(model), "--out", str(runs), "--set", "learnin_rate=1", ok=False)
    assert bad.returncode == 2 and "learnin_rate" in bad.stderr


def test_rl_command_runs_the_local_engine(tmp_path):
    synth, model, out = tmp_path / "Synth", tmp_path / "tiny", tmp_path / "rl"
    run("synth", "--out", str(synth), "--n-train", "2", "--n-test", "1", "--width-range", "512", "640", "--height-range", "512", "640")
    run("tiny-model", "--out", str(model))
    sets = ["train_batch_size=2", "rollout_n=2", "ppo_mini_batch_size=2", "max_tokens_per_turn=6", "val_n=1",
            "judge.enabled=false", "rejection_sample=false", "val_before_train=false", "total_training_steps=1",
            "max_pixels=60000", "min_pixels=3136"]
    args = ["rl", "--engine", "local", "--model", str(model), "--train", str(synth), "--val", str(synth), "--out", str(out)]
    proc = run(*args, *[a for s in sets for a in ("--set", s)])
    assert "step 1" in proc.stderr
    assert (out / "checkpoints" / "latest").read_text() == "global_step_1"
    judged = run(*args[:-1], str(tmp_path / "rl2"), "--set", "total_training_steps=1", ok=False)
    assert judged.returncode == 2 and "judge" in judged.stderr and "Traceback" not in judged.stderr


def test_eval_command_with_the_local_tiny_model(tmp_path):
    synth, model, out = tmp_path / "Synth", tmp_path / "tiny", tmp_path / "eval"
    run("synth", "--out", str(synth), "--n-train", "1", "--n-test", "2", "--width-range", "512", "640", "--height-range", "512", "640")
    run("tiny-model", "--out", str(model))
    args = ["eval", "--policy", f"local:{model}", "--bench", str(synth), "--k", "2", "--out", str(out), "--set", "max_tokens_per_turn=6",
            "--protocol", "rule"]
    assert "scoring protocol rule" in run(*args).stderr
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"]["name"] == "rule" and "not comparable to the paper" in (out / "report.md").read_text()
    assert "report.md" in run(*args).stderr  # a re-run reuses the stored samples
    assert len((out / next(p.name for p in out.glob("samples-*.jsonl"))).read_text().splitlines()) == 4
    assert (out / "viewer.html").is_file() and report
    bad = run("eval", "--policy", "ftp:x", "--bench", str(synth), "--out", str(out), ok=False)
    assert bad.returncode == 2 and "ftp:x" in bad.stderr


NO_JUDGE_ENV = {k: v for k, v in ENV.items() if k not in ("END_POINT", "API_VERSION", "API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL")}


def test_eval_help_shows_the_protocol_and_the_judge():
    text = run("eval", "--help").stdout
    for flag in ("--protocol", "--judge-model", "--judge-base-url", "--judge-api", "--judge-cache", "--judge-failure",
                 "judge.base_url", "not comparable"):
        assert flag in text, flag


def test_eval_scores_under_the_paper_protocol_by_default(tmp_path, scripted_server):
    """No --protocol: the scripted OpenAI-compatible judge scores every sample (the paper's
    evaluation, Mini-o3/Mini-o3 @8654dbf README.md L181/L195: val_only with the hybrid reward
    manager, verl/trainer/main_ppo.py L149-156); without judge credentials it is one clear line."""
    from fixtures.scripted_server import ScriptedItem

    from mini_o3.data.bench import read_records, sample_meta

    synth, out = tmp_path / "Synth", tmp_path / "eval"
    run("synth", "--out", str(synth), "--n-train", "1", "--n-test", "3", "--width-range", "512", "640", "--height-range", "512", "640")
    records = read_records(synth / "val.parquet")
    server = scripted_server(items={r.problem.replace("<image>\n", "", 1): ScriptedItem(
        r.problem.replace("<image>\n", "", 1), r.answer, tuple(sample_meta(r).target_bbox_rel)) for r in records})
    base = ["eval", "--policy", f"openai:{server.base_url}#oracle", "--bench", str(synth), "--k", "1", "--out", str(out),
            "--set", "max_turns=3", "--set", "max_images=3"]
    proc = subprocess.run([CLI, *base, "--judge-model", "judge", "--set", f"judge.base_url={server.base_url}"],
                          capture_output=True, text=True, env=NO_JUDGE_ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "scoring protocol paper" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"]["name"] == "paper" and report["config"]["protocol"] == "paper"
    assert report["benchmarks"]["Synth"]["overall"]["behaviour"]["judge_calls"] == len(records)
    assert len(server.chat_requests("judge")) == len(records)
    assert "Scoring protocol **paper**" in (out / "report.md").read_text()
    missing = subprocess.run([CLI, *base[:-4], "--out", str(tmp_path / "other")], capture_output=True, text=True,
                             env=NO_JUDGE_ENV, timeout=600)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "OPENAI_API_KEY" in missing.stderr and "--protocol rule" in missing.stderr
    assert len([line for line in missing.stderr.splitlines() if "error" in line]) == 1


def test_serve_without_vllm_installed_is_a_clear_error(tmp_path):
    proc = run("serve", "--model", str(tmp_path), "--port", "0", ok=False)
    assert proc.returncode == 2 and "cannot start 'vllm'" in proc.stderr and "Traceback" not in proc.stderr
    bad = run("serve", "--model", str(tmp_path), "--set", "max_model_len=-1", ok=False)
    assert bad.returncode == 2 and "max_model_len" in bad.stderr
