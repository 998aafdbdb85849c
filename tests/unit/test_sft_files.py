"""SFT run folder: generated yaml / dataset_info / DeepSpeed files, data checks, prepare_sft_run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mini_o3.sft import Hardware, SFTConfig, prepare_sft_run
from mini_o3.sft.files import check_dataset, deepspeed_config

from fixtures.sft_run import NO_GPU, data_dir_fixture, model_dir_fixture, prepare  # noqa: F401 (registers `data_dir`, `model_dir`)

GPU = Hardware(gpus=8, flash_attn=True, deepspeed=True)


def test_run_folder_files_on_cpu(data_dir: Path, model_dir: Path, tmp_path: Path):
    run = prepare(data_dir, model_dir, tmp_path / "run", ["learning_rate=2e-5", "extra_args.save_total_limit=3"])
    assert {p.name for p in run.run_dir.iterdir()} == {"llamafactory_sft.yaml", "dataset_info.json", "sft_run.json"}
    args = yaml.safe_load(run.files.yaml.read_text())
    assert args["do_train"] is True and args["stage"] == "sft" and args["template"] == "qwen2_vl"
    assert args["model_name_or_path"] == str(model_dir.resolve())
    assert args["output_dir"] == str(run.run_dir / "model") == str(run.model_dir)
    assert args["dataset_dir"] == str(run.run_dir) and args["media_dir"] == str(data_dir.resolve())
    assert args["dataset"] == "minio3_coldstart" and args["image_max_pixels"] == 2_000_000
    assert args["learning_rate"] == 2e-5 and args["save_total_limit"] == 3
    assert args["overwrite_output_dir"] is False and args["report_to"] == "none"
    # CPU fallback, recorded
    assert (args["bf16"], args["flash_attn"]) == (False, "sdpa") and "deepspeed" not in args
    assert [a.key for a in run.adjustments] == ["bf16", "flash_attn", "deepspeed"]
    record = json.loads((run.run_dir / "sft_run.json").read_text())
    assert [a["key"] for a in record["adjustments"]] == ["bf16", "flash_attn", "deepspeed"]
    assert record["samples"] == 2 and record["images"] == 4 and record["config"]["bf16"] is False
    # every yaml key is an SFTConfig field, a key we own or an extra_args key
    owned = {"do_train", "output_dir", "dataset_dir", "media_dir"}
    assert set(args) <= set(SFTConfig.model_fields) | owned | {"save_total_limit"}
    info = json.loads(run.files.dataset_info.read_text())
    assert info == {
        "minio3_coldstart": {
            "file_name": str(data_dir.resolve() / "Mini-o3-Coldstart.json"),
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "images": "images"},
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt", "system_tag": "system"},
        }
    }
    assert run.command[1:] == ["train", str(run.files.yaml)] and run.command[0].endswith("llamafactory-cli")
    assert "FORCE_TORCHRUN" not in run.env and run.resume_from is None


def test_gpu_run_keeps_the_recipe_and_writes_our_deepspeed_json(data_dir: Path, model_dir: Path, tmp_path: Path):
    run = prepare(data_dir, model_dir, tmp_path / "run", hardware=GPU)
    args = yaml.safe_load(run.files.yaml.read_text())
    assert (args["bf16"], args["flash_attn"]) == (True, "fa2") and run.adjustments == []
    assert args["deepspeed"] == str(run.run_dir / "deepspeed_z3_offload.json") == str(run.files.deepspeed)
    assert json.loads(run.files.deepspeed.read_text()) == deepspeed_config("z3_offload")
    assert run.env["FORCE_TORCHRUN"] == "1"  # LLaMA-Factory refuses DeepSpeed without a distributed launch


def test_deepspeed_configs():
    z2, z3, offload = (deepspeed_config(s) for s in ("z2", "z3", "z3_offload"))
    for config in (z2, z3, offload):
        assert config["bf16"] == {"enabled": "auto"} and config["train_micro_batch_size_per_gpu"] == "auto"
        json.dumps(config)
    assert z2["zero_optimization"]["stage"] == 2 and "offload_param" not in z2["zero_optimization"]
    assert z3["zero_optimization"]["stage"] == 3 and "offload_optimizer" not in z3["zero_optimization"]
    zero = offload["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert zero["offload_optimizer"] == zero["offload_param"] == {"device": "cpu", "pin_memory": True}
    with pytest.raises(ValueError, match="unknown DeepSpeed stage 'z1'"):
        deepspeed_config("z1")


def test_data_folder_with_its_own_dataset_info(data_dir: Path):
    (data_dir / "sub").mkdir()
    (data_dir / "Mini-o3-Coldstart.json").rename(data_dir / "sub" / "cold.json")
    entry = {"file_name": "sub/cold.json", "formatting": "sharegpt", "columns": {"messages": "conversations", "images": "images"}}
    (data_dir / "dataset_info.json").write_text(json.dumps({"minio3_coldstart": entry}))
    summary = check_dataset(data_dir, "minio3_coldstart")
    assert summary.json_path == data_dir.resolve() / "sub" / "cold.json" and summary.samples == 2


@pytest.mark.parametrize(
    ("breakage", "error", "message"),
    [
        ("no_json", FileNotFoundError, "has no Mini-o3-Coldstart.json"),
        ("not_json", ValueError, "cannot read the SFT data"),
        ("empty", ValueError, "non-empty JSON list"),
        ("missing_image", FileNotFoundError, "sample 1: image 'images/s0/observation_1.png' not found"),
        ("extra_placeholder", ValueError, "sample 0: 3 '<image>' placeholders for 2 images"),
        ("roles", ValueError, "sample 0: roles must be \\[system\\] then human/gpt alternating"),
    ],
)
def test_bad_data_is_named(data_dir: Path, breakage: str, error: type, message: str):
    path = data_dir / "Mini-o3-Coldstart.json"
    rows = json.loads(path.read_text())
    if breakage == "no_json":
        path.unlink()
    elif breakage == "not_json":
        path.write_text("[{")
    elif breakage == "empty":
        path.write_text("[]")
    elif breakage == "missing_image":
        (data_dir / "images" / "s0" / "observation_1.png").rename(data_dir / "moved.png")
        rows[0]["images"][1] = str(data_dir / "moved.png")
        path.write_text(json.dumps(rows))
    elif breakage == "extra_placeholder":
        rows[0]["conversations"][1]["value"] += " <image>"
        path.write_text(json.dumps(rows))
    elif breakage == "roles":
        rows[0]["conversations"][2]["from"] = "human"
        path.write_text(json.dumps(rows))
    with pytest.raises(error, match=message):
        check_dataset(data_dir, "minio3_coldstart")
    with pytest.raises(FileNotFoundError, match="SFT data folder .* does not exist"):
        check_dataset(data_dir / "nope", "minio3_coldstart")


def test_bad_model_and_run_folder_inputs(data_dir: Path, model_dir: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="model '/no/such/model' is neither an existing folder nor"):
        prepare(data_dir, Path("/no/such/model"), tmp_path / "run")
    (model_dir / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        prepare(data_dir, model_dir, tmp_path / "run")
    run = prepare_sft_run(data_dir, "Qwen/Qwen2.5-VL-7B-Instruct", tmp_path / "run", hardware=NO_GPU, environ={})
    assert run.config.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"  # hub ids pass through
    with pytest.raises(ValueError, match="--model"):
        prepare_sft_run(data_dir, "Qwen/x", tmp_path / "run", overrides=["model_name_or_path=a/b"], hardware=NO_GPU)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        prepare_sft_run(data_dir, "Qwen/x", tmp_path / "file", hardware=NO_GPU, environ={})


def test_deepspeed_on_gpu_without_the_package_is_a_clear_error(data_dir: Path, model_dir: Path, tmp_path: Path):
    from mini_o3.sft import SFTError

    with pytest.raises(SFTError, match="needs the deepspeed package.*--set deepspeed=none"):
        prepare(data_dir, model_dir, tmp_path / "run", hardware=Hardware(gpus=1, flash_attn=True, deepspeed=False))


def test_mlflow_tracking_uri_adds_the_reporter(data_dir: Path, model_dir: Path, tmp_path: Path, monkeypatch):
    import mini_o3.sft.run as run_module

    monkeypatch.setattr(run_module, "_importable", lambda name: True)
    run = prepare(data_dir, model_dir, tmp_path / "run", environ={"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert run.config.report_to == ["mlflow"] and yaml.safe_load(run.files.yaml.read_text())["report_to"] == ["mlflow"]
    assert (run.adjustments[0].key, run.adjustments[0].new) == ("report_to", ["mlflow"])
    assert run.env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    monkeypatch.setattr(run_module, "_importable", lambda name: False)
    with pytest.raises(run_module.SFTError, match="mlflow package is not installed"):
        prepare(data_dir, model_dir, tmp_path / "run", environ={"MLFLOW_TRACKING_URI": "http://mlflow:5000"})


def test_resume_rules(data_dir: Path, model_dir: Path, tmp_path: Path):
    out = tmp_path / "run"
    first = prepare(data_dir, model_dir, out)
    (first.model_dir / "checkpoint-2").mkdir(parents=True)
    (first.model_dir / "checkpoint-10").mkdir()
    (first.model_dir / "checkpoint-x").mkdir()
    again = prepare(data_dir, model_dir, out, ["max_steps=20"])
    assert again.resume_from == first.model_dir / "checkpoint-10"  # numeric order, like HF's get_last_checkpoint
    assert prepare(data_dir, model_dir, out, ["overwrite_output_dir=true"]).resume_from is None
    other_model = tmp_path / "other"
    other_model.mkdir()
    (other_model / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="holds checkpoints trained with model .*base model"):
        prepare(data_dir, other_model, out)
    finished = tmp_path / "finished"
    (finished / "model").mkdir(parents=True)
    (finished / "model" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="finished model without checkpoints"):
        prepare(data_dir, model_dir, finished)
    with pytest.raises(FileNotFoundError, match="resume_from_checkpoint '/nope' is not a folder"):
        prepare(data_dir, model_dir, out, ["resume_from_checkpoint=/nope"])


def test_only_the_main_node_checks_and_post_processes_outputs(data_dir: Path, model_dir: Path, tmp_path: Path):
    from mini_o3.sft import SFTError
    from mini_o3.sft.run import _finish

    torchrun = ["launch.mode=torchrun", "launch.nnodes=2", "launch.master_addr=head", "deepspeed=none"]
    worker = prepare(data_dir, model_dir, tmp_path / "w", [*torchrun, "launch.node_rank=1"], hardware=GPU)
    result = _finish(worker, 1.0, tmp_path / "w" / "train.log")  # rank 0 writes the model, maybe elsewhere
    assert result.global_step == 0 and result.loss_curve is None
    main = prepare(data_dir, model_dir, tmp_path / "m", [*torchrun, "launch.node_rank=0"], hardware=GPU)
    with pytest.raises(SFTError, match="training exited 0 but wrote no model weights to .*/m/model"):
        _finish(main, 1.0, tmp_path / "m" / "train.log")
