"""The local GRPO engine end to end on the tiny model and a synthetic set (CPU)."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from mini_o3.data.synthetic import SynthConfig, generate
from mini_o3.rl.local import run_rl_local
from mini_o3.rollout.hf_backend import GenerationRequest, HFBackend
from mini_o3.rollout.settings import SamplingConfig
from mini_o3.task import get_prompt_set

pytestmark = pytest.mark.slow

TINY = [
    "train_batch_size=2", "rollout_n=2", "ppo_mini_batch_size=2", "max_tokens_per_turn=10", "max_turns=3",
    "val_n=1", "val_max_turns=2", "val_do_sample=false", "save_freq=1", "test_freq=2", "val_before_train=false",
    "judge.enabled=false", "rejection_sample=false", "min_pixels=3136", "max_pixels=60000",
]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "syn"
    generate(SynthConfig(width_range=(512, 768), height_range=(512, 768)), out, 4, 2, seed=0, progress=False)
    return out


@pytest.fixture(scope="module")
def full_run(tiny_dir, synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("rl") / "full"
    result = run_rl_local(tiny_dir, [synth], [synth], out, overrides=TINY + ["total_training_steps=2"], progress=False)
    return out, result


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_steps_end_to_end(full_run):
    out, result = full_run
    assert result.global_step == 2 and result.resumed_from_step is None
    ckpts = out / "checkpoints"
    assert (ckpts / "latest").read_text() == "global_step_2"
    for step in (1, 2):
        folder = ckpts / f"global_step_{step}"
        for name in ("config.json", "model.safetensors", "optimizer.pt", "rng.pt", "trainer_state.json"):
            assert (folder / name).is_file(), name
        assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == step
    assert not list(ckpts.glob(".tmp-*"))
    metrics = lines(out / "metrics.jsonl")
    train = [m for m in metrics if "rollout/reward" in m]
    assert [m["step"] for m in train] == [1, 2]
    for key in ("rollout/accuracy", "rollout/exceed_ratio", "rollout/void_ratio", "batch/filtered_groups",
                "actor/clip_fraction", "actor/entropy", "perf/tokens_per_s", "timing/forward_backward"):
        assert key in train[0], key
    assert sum(v for k, v in train[0].items() if k.startswith("rollout/turns_")) == pytest.approx(1.0)
    val = [m for m in metrics if "val/avg@1" in m]
    assert [m["step"] for m in val] == [2] and 0.0 <= val[0]["val/avg@1"] <= 1.0
    assert len(lines(out / "validation" / "step_2.jsonl")) == 2  # 2 questions x val_n 1
    assert len(lines(out / "rollouts" / "step_1.jsonl")) == 4  # 2 prompts x rollout_n 2


def test_resume_continues_with_the_same_step_data_and_rng(full_run, tiny_dir, synth, tmp_path):
    full, _ = full_run
    out = tmp_path / "resumed"
    first = run_rl_local(tiny_dir, [synth], [synth], out, overrides=TINY + ["total_training_steps=1"], progress=False)
    assert first.global_step == 1
    second = run_rl_local(tiny_dir, [synth], [synth], out, overrides=TINY + ["total_training_steps=2"], progress=False)
    assert second.resumed_from_step == 1 and second.global_step == 2
    assert (out / "checkpoints" / "latest").read_text() == "global_step_2"
    # Same data position and the same sampled rollouts as the uninterrupted run (RNG restored).
    for step in (1, 2):
        assert lines(out / "rollouts" / f"step_{step}.jsonl") == lines(full / "rollouts" / f"step_{step}.jsonl")
    assert [m["step"] for m in lines(out / "metrics.jsonl") if "rollout/reward" in m] == [1, 2]
    a = torch.load(out / "checkpoints" / "global_step_2" / "optimizer.pt", weights_only=False)["optimizer"]["state"]
    b = torch.load(full / "checkpoints" / "global_step_2" / "optimizer.pt", weights_only=False)["optimizer"]["state"]
    assert a.keys() == b.keys()
    for key in a:
        assert float(a[key]["step"]) == float(b[key]["step"]) == 2.0
        assert torch.equal(a[key]["exp_avg_sq"], b[key]["exp_avg_sq"])


def test_bad_inputs_are_named(tiny_dir, synth, tmp_path):
    with pytest.raises(FileNotFoundError, match="no train.parquet"):
        run_rl_local(tiny_dir, [tmp_path], [synth], tmp_path / "o", overrides=TINY, progress=False)
    with pytest.raises(ValueError, match="END_POINT"):
        run_rl_local(tiny_dir, [synth], [synth], tmp_path / "o", overrides=[o for o in TINY if "judge" not in o],
                     progress=False)


def test_batched_generation_matches_one_at_a_time(tiny_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_dir))
    model = AutoModelForImageTextToText.from_pretrained(str(tiny_dir))
    torch.manual_seed(1)
    with torch.no_grad():  # larger weights so that greedy text depends on the prompt
        for weight in model.parameters():
            if weight.ndim >= 2:
                weight.normal_(0, weight.shape[-1] ** -0.5)
    prompts = get_prompt_set("mini-o3-v1")
    requests = [
        GenerationRequest(prompts.initial_prompt("<image>\nWhat colour?"), (Image.new("RGB", (280, 224), "red"),), 8,
                          ("</grounding>",)),
        GenerationRequest(prompts.initial_prompt("<image>\nWhere is the very small blue thing in this picture?"),
                          (Image.new("RGB", (336, 448), "blue"),), 10, ("</grounding>",)),
    ]
    backend = HFBackend(model, processor)
    greedy = SamplingConfig(do_sample=False)
    batched = backend.generate(requests, greedy)
    single = [backend.generate([r], greedy)[0] for r in requests]
    assert batched == single
    assert batched[0].text != batched[1].text  # the two prompts really differ (left padding exercised)
    assert [o.num_tokens for o in batched] == [8, 10]
    # temperature 0 means greedy (vLLM's SamplingParams rule; HF generate refuses temperature=0 with sampling on)
    assert backend.generate(requests, SamplingConfig(do_sample=True, temperature=0.0)) == batched


def test_the_kl_loss_runs_against_the_starting_policy(tiny_dir, synth, tmp_path):
    """``use_kl_loss=true`` (off in the seed) loads the starting policy as a frozen reference:
    its log-probs are computed every step and the KL term is reported (0 at the first step, where the
    policy is the reference). Before this, the local engine ignored the setting; the term's value
    and gradient are checked by hand in ``test_rl_local_loss.py``."""
    out = tmp_path / "kl"
    run_rl_local(tiny_dir, [synth], [synth], out, progress=False,
                 overrides=TINY + ["total_training_steps=2", "save_freq=-1", "use_kl_loss=true", "kl_loss_coef=0.1"])
    train = [m for m in lines(out / "metrics.jsonl") if "rollout/reward" in m]
    assert all("timing/ref_logprobs" in m and "actor/kl_loss" in m for m in train)
    assert train[0]["actor/kl_loss"] == pytest.approx(0.0, abs=1e-6)
