"""The verl agent loop on CPU: the real tiny tokenizer / processor, verl's own AgentLoopBase and
dataset class, and a scripted server manager (a fake: vLLM cannot run here) that returns the
token ids of scripted turns. The golden RL trajectories must give the same token stream, masks,
images and flags; a dry run's converted parquet must load in verl's RLHFDataset and roll out."""

import asyncio
import json
from pathlib import Path

import pytest
from fixtures.golden import unrle
from fixtures.verl_loop import IdServer, ScriptedServer, make_loop
from fixtures.verl_loop import run as run_loop
from omegaconf import OmegaConf
from PIL import Image
from transformers import AutoProcessor
from verl.utils.dataset.rl_dataset import RLHFDataset

from mini_o3.rl.verl import run_rl_verl
from mini_o3.task import answer_turn, resize_observation, tool_turn

pytestmark = pytest.mark.slow

GOLDEN = json.loads((Path(__file__).parents[1] / "data" / "golden_rl" / "trajectories.json").read_text())
SAMPLE = GOLDEN["sample"]
FLAGS = "ignore_exceed=True"


@pytest.fixture(scope="module")
def processor(tiny_dir):
    return AutoProcessor.from_pretrained(str(tiny_dir))


def golden_turns(traj):
    """(text, ends with EOS) per scripted turn: answer turns that stopped carry the EOS id."""
    return [(p["text"], p["finish_reason"] == "stop" and "</grounding>" not in p["text"]) for p in traj["policy"]]


def run(loop, problem=SAMPLE["problem"], image=None):
    return run_loop(loop, problem, image or Image.new("RGB", tuple(SAMPLE["image"]["size"]), SAMPLE["image"]["color"]))


def expected(loop, traj, images):
    """The golden segments (after the prompt) as ids and mask: model text tokenised, env text with
    its image expanded by the processor; trainable per the recipe flags."""
    ids, mask = [], []
    for seg in traj["segments"][1:]:
        seg_ids = loop.encode(seg["text"], [images[seg["image"]]] if seg["image"] is not None else None)
        ids += seg_ids
        mask += [int(seg["trainable"][FLAGS])] * len(seg_ids)
    return ids, mask


@pytest.mark.parametrize("name", ["tool_answer", "error_turn", "void_answer", "direct_answer", "exceed_turns"])
def test_golden_trajectories_replay(processor, name):
    traj = GOLDEN["trajectories"][name]
    server = ScriptedServer(processor.tokenizer, golden_turns(traj))
    loop = make_loop(processor, server)
    out = run(loop)
    images = out.multi_modal_data["images"]
    assert [list(im.size) for im in images] == traj["image_sizes"]  # images grow with each crop
    ids, mask = expected(loop, traj, images)
    assert out.response_ids == ids  # the reference token stream, segment by segment
    assert out.response_mask == mask  # 1 on generated tokens, 0 on observations; exceed all 0
    assert out.prompt_ids == loop.encode(traj["segments"][0]["text"], images[:1])
    fields = out.extra_fields
    assert (fields["termination"], fields["exceed_reason"], fields["turns"]) == (traj["termination"], traj["exceed_reason"], traj["num_turns"])
    assert fields["exceed"] == (traj["termination"] == "exceed") and fields["void"] == (traj["termination"] == "void")
    assert fields["turn_outputs"] == [p["text"] for p in traj["policy"]]
    assert fields["num_crops"] == len(images) - 1 and fields["split"] == "train"
    assert [c["images"] for c in server.calls] == [min(i + 1, len(images)) if name != "error_turn" else [1, 1, 2][i]
                                                   for i in range(len(server.calls))]
    assert all(c["params"]["stop"] == ["</grounding>"] and c["params"]["max_tokens"] == 8192 for c in server.calls)


UPSTREAM = json.loads((Path(__file__).parents[1] / "data" / "golden_rl" / "upstream_masks.json").read_text())


@pytest.mark.parametrize("name", sorted(UPSTREAM["cases"]))
def test_masks_are_upstreams(processor, name):
    """Upstream's response ids and loss mask, obtained by running Mini-o3/Mini-o3 @8654dbf on the
    same turns: _async_rollout_a_request + post_process (vllm_async_engine.py:584-803, 888-923;
    attention = get_final_eos_mask, torch_functional.py:171-198, 1 through the last <|im_end|>)
    times multi_turn_response_mask, rows zeroed by dp_actor.py:304-330 per flag. Length-cut turns
    are 8192 ids long, so the loop sees them reach max_tokens (verl reports no finish reason)."""
    case = UPSTREAM["cases"][name]
    up = case["upstream"]
    for setting, flags in UPSTREAM["settings"].items():
        loop = make_loop(processor, IdServer([unrle(t["ids"]) for t in case["turns"]]), ignore_exceed=flags["ignore_exceed"], ignore_void=flags["ignore_void"])
        out = run(loop)
        assert out.response_ids == unrle(up["response_ids"])
        assert out.response_mask == unrle(up["loss_mask"][setting]), setting
        assert (out.extra_fields["exceed"], out.extra_fields["void"]) == (up["exceed"], up["void"])
        assert [list(im.size) for im in out.multi_modal_data["images"]] == up["image_sizes"]
        assert len(out.prompt_ids) == UPSTREAM["prompt"]["expanded_prompt_len"]


def test_exceed_context_undoes_the_observation(processor):
    traj = GOLDEN["trajectories"]["exceed_context"]
    (text, _), = golden_turns(traj)
    probe = make_loop(processor, None)
    first = probe.encode(traj["segments"][0]["text"], [Image.new("RGB", (640, 480), "white")])
    call = len(probe.tokenizer.encode(text, add_special_tokens=False))
    # The crop of [0.3, 0.3, 0.6, 0.6] on 640x480 is 192x144, shown upscaled to >= 40k px.
    shown = resize_observation(Image.new("RGB", (192, 144)), 40_000, 2_000_000)
    obs = len(probe.encode(probe.prompts.observation_injection(0), [shown]))
    # The call fits under the cap, its observation does not.
    loop = make_loop(processor, ScriptedServer(processor.tokenizer, [(text, False)]),
                     max_context=len(first) + call + obs + 2000)
    out = run(loop)
    assert out.extra_fields["exceed_reason"] == "context" and len(out.multi_modal_data["images"]) == 1
    assert out.response_ids == probe.tokenizer.encode(text, add_special_tokens=False)
    assert out.response_mask == [0] * call


def test_validation_loop_allows_twelve_turns_and_ignore_flags(processor):
    call = GOLDEN["trajectories"]["exceed_turns"]["policy"][0]["text"]
    turns = [(call, False)] * 8 + [(answer_turn("t", "K7Q"), True)]
    out = run(make_loop(processor, ScriptedServer(processor.tokenizer, turns), max_turns=12, split="val"))
    assert out.extra_fields["termination"] == "answer" and out.extra_fields["turns"] == 9 and out.extra_fields["split"] == "val"
    assert len(out.multi_modal_data["images"]) == 9
    # ignore_exceed=False keeps the generated tokens of an exceed trajectory trainable, except the
    # call it ends on: it follows the last <|im_end|> (upstream's get_final_eos_mask).
    out = run(make_loop(processor, ScriptedServer(processor.tokenizer, [(call, False)] * 6), ignore_exceed=False))
    assert out.extra_fields["exceed"] and sum(out.response_mask) == 5 * len(processor.tokenizer.encode(call, add_special_tokens=False))
    # ignore_void=True zeroes a void trajectory.
    out = run(make_loop(processor, ScriptedServer(processor.tokenizer, [("<answer>K7Q</answer> more", True)]), ignore_void=True))
    assert out.extra_fields["void"] and sum(out.response_mask) == 0


def test_dry_run_data_loads_in_verl_and_rolls_out(processor, tiny_dir, tmp_path):
    from mini_o3.data.synthetic import SynthConfig, generate
    from mini_o3.rl.verl.reward import compute_score

    synth = tmp_path / "syn"
    generate(SynthConfig(width_range=(512, 640), height_range=(512, 640)), synth, 2, 1, seed=0, progress=False)
    result = run_rl_verl(str(tiny_dir), [synth], [synth], tmp_path / "run", overrides=["judge.enabled=false"],
                         n_gpus_per_node=1, dry_run=True, progress=False)
    assert result.returncode is None and result.command[1:3] == ["-m", "mini_o3.rl.verl.main"]
    assert json.loads(result.files["command.json"].read_text()) == result.command
    # The length filter needs qwen_vl_utils (verl-core extra, in the rl image, not on CPU CI).
    data_cfg = OmegaConf.create({"max_prompt_length": 8192, "filter_overlong_prompts": False, "image_key": "images"})
    dataset = RLHFDataset([str(result.files["val.parquet"])], processor.tokenizer, data_cfg, processor)
    assert len(dataset) == 1
    row = dataset[0]
    assert row["agent_name"] == "minio3_val" and row["extra_info"]["split"] == "val"
    (image,) = [b["image"] for b in row["raw_prompt"][1]["content"] if b["type"] == "image"]
    original = Image.open(synth / row["extra_info"]["record"]["images"][0].split("/", 1)[1])
    assert image.size == original.size  # full resolution travels with the row
    answer = row["reward_model"]["ground_truth"]
    server = ScriptedServer(processor.tokenizer, [
        (tool_turn("z", [0.0, 0.0, 0.5, 0.5]), False),
        (answer_turn("t", answer), True),
    ])
    loop = make_loop(processor, server, max_turns=12, split="val")
    out = asyncio.run(loop.run({"temperature": 0}, **{k: row[k] for k in ("raw_prompt", "extra_info", "index")}))
    assert out.extra_fields["termination"] == "answer" and len(out.multi_modal_data["images"]) == 2
    info = dict(row["extra_info"]) | out.extra_fields
    score = compute_score(row["data_source"], "", answer, info, judge=None)
    assert score["score"] == 1.0 and score["acc"] == 1.0
