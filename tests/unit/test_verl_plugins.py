"""verl plug-ins on CPU: the grounding parser on strings, the crop tool on PIL images with a fake
agent state, the reward function, and the golden groups through the advantage estimators and the
group filter (tests/data/golden_rl)."""

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mini_o3.rl.verl.advantage import compute_grpo_minio3_code, compute_grpo_minio3_paper, minio3_scores
from mini_o3.rl.verl.parser import GroundingToolParser, LenientGroundingToolParser, grounding_call
from mini_o3.rl.verl.reward import compute_score
from mini_o3.rl.verl.sampler import filtered_groups
from mini_o3.rl.verl.tool import CropTool
from mini_o3.task import answer_turn, tool_turn
from mini_o3.task.grounding import STRICT_NO_MATCH
from verl.experimental.agent_loop.tool_parser import ToolParser
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

GROUPS = json.loads((Path(__file__).parents[1] / "data" / "golden_rl" / "groups.json").read_text())["groups"]
CALL = tool_turn("x", [0.25, 0.5, 0.75, 1.0], "observation_1")


# -- parser ------------------------------------------------------------------------------------
def test_parser_reads_a_strict_call():
    call = grounding_call(CALL)
    assert call.name == "crop"
    assert json.loads(call.arguments) == {"bbox_2d": [0.25, 0.5, 0.75, 1.0], "source": "observation_1"}


def test_parser_turns_a_malformed_call_into_the_reference_error():
    text = '<grounding>{"bbox_2d":[0.1,0.1,0.2,0.2],"source":"original_image"}</grounding>'
    assert json.loads(grounding_call(text).arguments) == {"error": STRICT_NO_MATCH}
    assert json.loads(grounding_call(text, "lenient").arguments)["source"] == "original_image"


def test_parser_sees_no_call_in_an_answer_turn():
    assert grounding_call("<think>done</think><answer>K7Q</answer>") is None
    assert grounding_call("<grounding> unclosed") is None


def test_parsers_are_registered_and_decode_ids():
    class Tok:
        def decode(self, ids, skip_special_tokens=True):
            return CALL if ids else "<answer>A</answer>"

    assert isinstance(ToolParser.get_tool_parser("minio3_grounding", Tok()), GroundingToolParser)
    assert isinstance(ToolParser.get_tool_parser("minio3_grounding_lenient", Tok()), LenientGroundingToolParser)
    text, calls = asyncio.run(ToolParser.get_tool_parser("minio3_grounding", Tok()).extract_tool_calls([1, 2]))
    assert text == CALL and [c.name for c in calls] == ["crop"]
    assert asyncio.run(ToolParser.get_tool_parser("minio3_grounding", Tok()).extract_tool_calls([]))[1] == []


# -- crop tool -------------------------------------------------------------------------------------
def _gradient(w, h):
    image = Image.new("RGB", (w, h))
    image.putdata([(x % 256, y % 256, 0) for y in range(h) for x in range(w)])
    return image


def _execute(tool, parameters, state):
    return asyncio.run(tool.execute("id", parameters, agent_data=state))


def test_crop_tool_crops_the_raw_source_and_returns_the_model_facing_copy():
    raw = _gradient(1000, 800)
    crop1 = raw.crop((100, 100, 300, 300))
    state = SimpleNamespace(raw_images=[raw, crop1], image_data=[raw.resize((500, 400)), crop1])
    tool = CropTool({"min_pixels": 40_000, "max_pixels": 2_000_000})
    response, reward, info = _execute(tool, {"bbox_2d": [0.5, 0.5, 1.0, 1.0], "source": "observation_1"}, state)
    assert reward == 0.0 and info["source_index"] == 1 and info["box"] == [100, 100, 199, 199]
    assert info["raw_crop"].image.size == (99, 99)
    assert info["raw_crop"].image.getpixel((0, 0)) == crop1.getpixel((100, 100)) == (200, 200, 0)
    (shown,) = response.image
    assert shown.mode == "RGB" and shown.size[0] * shown.size[1] >= 40_000  # upscaled (NEAREST) to min_pixels
    assert response.text is None


def test_crop_tool_reports_reference_errors_without_an_image():
    raw = _gradient(100, 100)
    state = SimpleNamespace(raw_images=[raw], image_data=[raw])
    tool = CropTool({})
    response, _, info = _execute(tool, {"bbox_2d": [0.1, 0.1, 0.2, 0.2], "source": "observation_3"}, state)
    assert response.image is None and response.text == 'Error in predicting the source observation: "observation_3".'
    response, _, _ = _execute(tool, {"bbox_2d": [0.5, 0.5, 0.5, 0.9], "source": "original_image"}, state)
    assert response.text.startswith("The bounding box is not valid in width")
    response, _, _ = _execute(tool, {"error": STRICT_NO_MATCH}, state)
    assert response.text == STRICT_NO_MATCH
    response, _, _ = _execute(tool, {"source": "original_image"}, state)
    assert "invalid crop arguments" in response.text


def test_crop_tool_needs_the_raw_images():
    with pytest.raises(ValueError, match="raw_images"):
        _execute(CropTool({}), {"bbox_2d": [0, 0, 1, 1], "source": "original_image"}, SimpleNamespace(image_data=[]))
    with pytest.raises(ValueError, match="min_pixels"):
        CropTool({"min_pixels": 10, "max_pixels": 5})


# -- reward ----------------------------------------------------------------------------------------
RECORD = {"id": "q1", "data_source": "vstar_bench", "problem": "<image>\nWhat colour?\n(A) red\n(B) blue",
          "question": "What colour?", "answer": "B", "answer_type": "mc", "options": ["red", "blue"],
          "images": ["vstar/q1.jpg"], "category": "", "metadata": "{}"}


def _score(outputs, **extra):
    info = {"turn_outputs": outputs, "record": RECORD, **extra}
    return compute_score("vstar_bench", "ignored", "B", info, judge=None)


def test_reward_scores_the_turn_texts_not_the_decoded_response():
    right = _score([CALL, answer_turn("t", "(B) blue")], exceed=False, turns=2)
    assert right == {"score": 1.0, "acc": 1.0, "format": 1.0, "judge_failed": False, "exceed": False, "void": False, "turns": 2}
    assert _score([answer_turn("t", "A")])["score"] == 0.0
    # An exceed trajectory has no answer: 0, flagged for the filter and metrics.
    assert _score([CALL] * 6, exceed=True) | {} == {"score": 0.0, "acc": 0.0, "format": 0.0, "judge_failed": False,
                                                   "exceed": True, "void": False, "turns": 6}


def test_reward_rejects_rows_that_did_not_come_through_the_agent_loop():
    with pytest.raises(ValueError, match="turn_outputs"):
        compute_score("vstar_bench", "<answer>B</answer>", "B", {"record": RECORD})
    with pytest.raises(ValueError, match="ground truth"):
        compute_score("vstar_bench", "", "A", {"turn_outputs": ["<answer>A</answer>"], "record": RECORD})


def test_reward_calls_the_judge_and_reports_failures(monkeypatch):
    from mini_o3.rl.verl import reward

    verdicts = iter([1.0, None])
    monkeypatch.setattr(reward, "_judge", lambda config_json: lambda q, gt, pred: next(verdicts))
    info = {"turn_outputs": ["<think>t</think><answer>blue</answer>"], "record": RECORD}
    assert compute_score("vstar_bench", "", "B", dict(info), judge="{}")["score"] == 1.0
    failed = compute_score("vstar_bench", "", "B", dict(info, split="val"), judge="{}")
    assert failed["judge_failed"] is True and failed["score"] == 0.0


# -- golden groups: advantages and keep flags ----------------------------------------------------
def _tensors(group, mode):
    """One row per member: reward on its last token; exceed rows fully masked (ignore_exceed)."""
    n, length = len(group["rewards"]), 5
    rewards = torch.zeros(n, length)
    rewards[:, -1] = torch.tensor(group["rewards"])
    mask = torch.ones(n, length)
    mask[torch.tensor(group["exceed"])] = 0
    return rewards, mask, np.array(["uid"] * n, dtype=object)


@pytest.mark.parametrize("name", sorted(GROUPS))
@pytest.mark.parametrize("mode", ["code", "paper"])
def test_golden_group_advantages(name, mode):
    group = GROUPS[name]
    rewards, mask, index = _tensors(group, mode)
    assert minio3_scores(rewards, mask, index, mode) == pytest.approx(group["advantages"][mode], abs=1e-6)
    estimator = get_adv_estimator_fn("grpo_minio3" if mode == "code" else "grpo_minio3_paper")
    assert estimator is (compute_grpo_minio3_code if mode == "code" else compute_grpo_minio3_paper)
    advantages, returns = estimator(token_level_rewards=rewards, response_mask=mask, index=index, config=None)
    expected = torch.tensor(group["advantages"][mode], dtype=torch.float32).unsqueeze(-1) * mask
    torch.testing.assert_close(advantages, expected, atol=1e-6, rtol=0)
    assert torch.equal(advantages, returns)


@pytest.mark.parametrize("name", sorted(GROUPS))
@pytest.mark.parametrize("mode", ["code", "paper"])
def test_golden_group_keep_flags(name, mode):
    group = GROUPS[name]
    infos = [{"score": r, "judge_failed": f, "exceed": e}
             for r, f, e in zip(group["rewards"], group["judge_failed"], group["exceed"])]
    dropped = filtered_groups({name: infos}, mode=mode)
    assert (name not in dropped) == all(group["valid"][mode])


def test_group_filter_needs_the_reward_fields():
    with pytest.raises(KeyError, match="judge_failed"):
        filtered_groups({"g": [{"score": 1.0, "exceed": False}]})


@pytest.fixture
def replay_buffer_cls(monkeypatch):
    """verl's real V1 ReplayBuffer under ``MiniO3ReplayBuffer``, with a stand-in for TransferQueue
    (a distributed store that is not installed on CPU CI) serving the trajectories' extra_fields."""
    import importlib
    import sys
    import types

    store: dict[str, dict] = {}
    fake = types.ModuleType("transfer_queue")
    fake.KVBatchMeta = object
    fake.kv_batch_get = lambda keys, partition_id, select_fields: {"extra_fields": [store[k] for k in keys]}
    monkeypatch.setitem(sys.modules, "transfer_queue", fake)
    monkeypatch.delitem(sys.modules, "verl.trainer.ppo.v1.replay_buffer", raising=False)
    import mini_o3.rl.verl.sampler as sampler

    importlib.reload(sampler)
    yield sampler.MiniO3ReplayBuffer, store
    sys.modules.pop("verl.trainer.ppo.v1.replay_buffer", None)
    monkeypatch.undo()
    importlib.reload(sampler)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["code", "paper"])
def test_replay_buffer_evicts_the_golden_groups_mini_o3_drops(replay_buffer_cls, mode):
    cls, store = replay_buffer_cls
    buffer = cls(trainer_mode="sync", trainer_config={}, max_off_policy_threshold=8, max_off_policy_strategy="drop",
                 sampler_kwargs={"over_turn_mode": mode, "min_group_std": 1e-4, "train_batch_size": 2},
                 refill_fn=lambda n: None)
    assert buffer.filter_groups_metric == "score" and buffer.gen_batch_size == 1
    for uid, group in GROUPS.items():
        uid = uid.replace("_", "-")  # verl keys are "<uid>_<sample>"
        for i, (r, f, e) in enumerate(zip(group["rewards"], group["judge_failed"], group["exceed"])):
            store[f"{uid}_{i}"] = {"reward_extra_info": {"score": r, "judge_failed": f, "exceed": e}}
            buffer.partitions["train"][f"{uid}_{i}"] = {}
        buffer.finished_keys["train"].add(uid)
    dropped, counts = buffer._dapo_filtered_keys("train")
    assert dropped == {name.replace("_", "-") for name, g in GROUPS.items() if not all(g["valid"][mode])}
    assert sum(counts.values()) == len(dropped)
    assert buffer._dapo_filtered_keys("val") == (set(), {})
