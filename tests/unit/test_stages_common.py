"""Stage building blocks: benchmark specs, model references, sealed inputs, launch settings,
the library environment and the report's HTML."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mini_o3 import storage
from mini_o3.kfp import bodies
from mini_o3.stages import SFTRequest, StageError, StageResult, parse_benchmarks, sft_stage
from mini_o3.stages.common import (
    fetch,
    fetch_datasets,
    is_hub_model,
    library_env,
    resolve_model,
)
from mini_o3.stages.report import render_html


def test_parse_benchmarks():
    assert parse_benchmarks(" vstar , visualprobe_hard=/data/VP ,synthetic") == [
        ("vstar", None), ("visualprobe_hard", "/data/VP"), ("synthetic", None)]
    for spec, message in [("", "no benchmark names"), ("vstar,nope", "unknown benchmark 'nope'"),
                          ("vstar=", "empty source"), ("vstar,vstar", "repeated")]:
        with pytest.raises(StageError, match=message):
            parse_benchmarks(spec)


def test_hub_model_references(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_model("hf://Mini-o3/Mini-o3-7B-SFT") and is_hub_model("hf://org/name@main")
    assert is_hub_model("Qwen/Qwen2.5-VL-7B-Instruct")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not is_hub_model("org/name")  # an existing local path wins
    assert not is_hub_model("s3://bucket/run/sft/model") and not is_hub_model("/abs/path")


def _sealed(path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    storage.mark_complete(path)
    return path


def test_sealed_local_inputs_are_used_in_place_and_unsealed_ones_refused(tmp_path):
    sealed = _sealed(tmp_path / "bench", {"val.parquet": "x", "data/a.png": "y"})
    assert fetch(str(sealed), tmp_path / "inputs") == sealed
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    with pytest.raises(storage.IncompleteArtifactError):
        fetch(str(half), tmp_path / "inputs")
    with pytest.raises(storage.IncompleteArtifactError):
        resolve_model(str(half), tmp_path / "inputs")
    (sealed / "val.parquet").write_text("tampered")
    with pytest.raises(storage.IncompleteArtifactError):
        fetch(str(sealed), tmp_path / "inputs")


def test_datasets_from_single_folders_and_collections(tmp_path):
    single = _sealed(tmp_path / "VP", {"val.parquet": "a"})
    collection = _sealed(tmp_path / "coll", {"vstar/val.parquet": "b", "hr/val.parquet": "c", "hr/train.parquet": "d",
                                             "notes/readme.txt": "e"})
    found = fetch_datasets([str(single), str(collection)], tmp_path / "in", "val")
    assert found == [single, collection / "hr", collection / "vstar"]
    assert fetch_datasets([str(collection)], tmp_path / "in", "train") == [collection / "hr"]
    with pytest.raises(StageError, match="holds no train.parquet"):
        fetch_datasets([str(single)], tmp_path / "in", "train")


def test_model_folder_needs_a_config(tmp_path):
    model = _sealed(tmp_path / "model", {"weights.bin": "w"})
    with pytest.raises(StageError, match="not a Hugging Face model folder"):
        resolve_model(str(model), tmp_path / "in")
    assert resolve_model(str(_sealed(tmp_path / "m2", {"config.json": "{}"})), tmp_path / "in") == tmp_path / "m2"


def test_hub_model_download_failure_names_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(StageError, match="could not download hub model 'hf://no-org/no-model'"):
        resolve_model("hf://no-org/no-model", tmp_path)


def test_bad_overrides_fail_before_any_input_is_read(tmp_path):
    with pytest.raises(ValueError, match="no_such_field"):
        sft_stage(SFTRequest(data_uri=str(tmp_path / "missing"), model="org/model", out_uri=str(tmp_path / "out"),
                             overrides=["no_such_field=1"]))
    assert not (tmp_path / "out").exists()


def test_library_env_hides_mlflow_and_restores(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    with library_env({"EXTRA": "1"}):
        assert "MLFLOW_TRACKING_URI" not in os.environ and os.environ["EXTRA"] == "1"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and "EXTRA" not in os.environ


def test_launch_settings_reference_secrets_by_name():
    settings = bodies.launch_settings(
        mode="rayjob", ray_address="", workers=2, gpus_per_worker=8, node_selector={"pool": "h100"},
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        overrides=["memory_per_worker=512Gi", "namespace=ml"], image="", s3_secret_name="s3-creds",
        judge_secret_name="judge", hf_token_secret_name="", env={"MINI_O3_S3_ENDPOINT": "http://minio:9000",
                                                                 "MLFLOW_TRACKING_URI": ""})
    assert settings.workers == 2 and settings.memory_per_worker == "512Gi" and settings.namespace == "ml"
    assert settings.env == {"MINI_O3_S3_ENDPOINT": "http://minio:9000"}
    refs = {k: (v.name, v.key, v.optional) for k, v in settings.secret_env.items()}
    assert refs["AWS_SECRET_ACCESS_KEY"] == ("s3-creds", "AWS_SECRET_ACCESS_KEY", False)
    assert refs["API_KEY"] == ("judge", "API_KEY", True) and "HF_TOKEN" not in refs
    with pytest.raises(ValueError, match="launch setting"):
        bodies.launch_settings(mode="rayjob", ray_address="", workers=1, gpus_per_worker=1, node_selector={},
                              tolerations=[], overrides=["no_such=1"], image="", s3_secret_name="",
                              judge_secret_name="", hf_token_secret_name="", env={})


def test_use_artifact_hands_on_the_result_the_artifact_was_sealed_with(tmp_path):
    """A skip branch passes downstream what the stage that made the artifact recorded (its run/ output,
    metrics), not a bare URI; artifacts without a matching record become a ``given`` result."""
    sealed = _sealed(tmp_path / "model", {"config.json": "{}"})
    given = bodies.use_artifact(uri=str(sealed), kind="model")
    assert (given["stage"], given["model_uri"], given["outputs"]) == ("given", str(sealed), {"model": str(sealed)})
    hub = bodies.use_artifact(uri="hf://Mini-o3/Mini-o3-7B-SFT", kind="model")
    assert (hub["stage"], hub["model_uri"]) == ("given", "hf://Mini-o3/Mini-o3-7B-SFT")
    with pytest.raises(storage.IncompleteArtifactError, match="RL data URI .* is not a complete artifact"):
        bodies.use_artifact(uri=str(tmp_path / "nothing"), kind="RL data")
    sft = tmp_path / "sft"
    record = StageResult("sft", str(sft), model_uri=str(sft / "model"), metrics={"train_loss": 0.5},
                         outputs={"model": str(sft / "model"), "run": str(sft / "run")})
    model = _sealed(sft / "model", {"config.json": "{}"})
    _sealed(sft / "run", {"stage.json": record.to_json()})
    assert bodies.use_artifact(uri=str(model), kind="model") == record.to_dict()
    assert bodies.run_of(record.to_dict(), "sft") == str(sft / "run") and bodies.run_of(given, "sft") == ""
    moved = _sealed(tmp_path / "copy" / "model", {"config.json": "{}"})  # a copy elsewhere: its record names sft/
    _sealed(tmp_path / "copy" / "run", {"stage.json": record.to_json()})
    assert bodies.use_artifact(uri=str(moved), kind="model")["stage"] == "given"
    data = _sealed(tmp_path / "data", {"stage.json": StageResult("prepare_coldstart", str(tmp_path / "data")).to_json()})
    assert bodies.use_artifact(uri=str(data), kind="cold-start data")["stage"] == "prepare_coldstart"


def test_a_malformed_upstream_result_names_the_input():
    with pytest.raises(StageError, match=r"^sft: expected a stage result with keys stage, out_uri"):
        bodies.model_of({"uri": "x"}, "sft")
    with pytest.raises(StageError, match=r"^rl: the prepare_rl_data stage result at 's3://b/d' holds no model"):
        bodies.model_of(StageResult("prepare_rl_data", "s3://b/d").to_dict(), "rl")
    assert bodies.out_of({}, "base_eval") == ""


def test_report_html_renders_tables_lists_and_inline_images(tmp_path):
    png = tmp_path / "plot.png"
    png.write_bytes(b"\x89PNG fake")
    html = render_html("# T <x>\n\n| a | b |\n|---|---:|\n| `c` | 1 |\n\n- one\n- two\n\ntext & more\n",
                       [(png, "Avg@k")], "Title")
    assert "<h1>T &lt;x&gt;</h1>" in html
    assert "<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td><code>c</code></td><td>1</td></tr>" in html
    assert "<ul><li>one</li><li>two</li></ul>" in html and "<p>text &amp; more</p>" in html
    assert 'src="data:image/png;base64,iVBORyBmYWtl"' in html and "<figcaption>Avg@k</figcaption>" in html
