"""Loss masks of the local engine on scripted trajectories (exact ids, no model)."""

import json
from pathlib import Path

import pytest
from fixtures.golden import unrle
from PIL import Image

from mini_o3.rl.local.batch import build_sample
from mini_o3.rollout.hf_backend import TokenizerCounter
from mini_o3.task import (
    TRAIN_LIMITS,
    EpisodeSample,
    PolicyOutput,
    RolloutLimits,
    answer_turn,
    image_tokens,
    run_episode,
    tool_turn,
)
from mini_o3.tiny import build_tiny_processor

IMAGE_PAD = 151655
IM_END = 151645
CALL = tool_turn("zoom", [0.25, 0.25, 0.75, 0.75])
BAD_CALL = '<think>zoom</think>\n<grounding>{"bbox_2d":[0.1,0.1],"source":"x"}</grounding>'
ANSWER = answer_turn("seen", "B")
LIMITS = RolloutLimits(max_turns=4, min_pixels=3136, max_pixels=100_000)


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor()


def scripted(processor, *texts):
    """A policy that emits fixed texts and reports their ids (+ EOS on a turn without a tool call)."""
    tok = processor.tokenizer
    outputs = iter(texts)

    def policy(request):
        text = next(outputs)
        ids = tok.encode(text, add_special_tokens=False) + ([IM_END] if "</grounding>" not in text else [])
        return PolicyOutput(text, "stop", len(ids), tuple(ids))

    return policy


def generated_ids(processor, *texts):
    tok = processor.tokenizer
    return [tok.encode(t, add_special_tokens=False) + ([IM_END] if "</grounding>" not in t else []) for t in texts]


def episode(policy, limits=LIMITS):
    return run_episode(policy, EpisodeSample("<image>\nWhich?", Image.new("RGB", (400, 300), "teal"), "s0"), limits)


def runs(mask):
    """(start, length) of each run of ones."""
    out, start = [], None
    for i, m in enumerate(mask + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i - start))
            start = None
    return out


@pytest.mark.slow
def test_mask_is_one_exactly_on_generated_ids(processor):
    texts = (CALL, BAD_CALL, ANSWER)
    traj = episode(scripted(processor, *texts))
    assert traj.termination == "answer" and len(traj.images) == 2
    sample = build_sample(traj, processor)
    ids, mask = sample.input_ids.tolist(), [int(m) for m in sample.loss_mask.tolist()]
    gen = generated_ids(processor, *texts)
    # Ones are exactly the generated ids, in three runs, one per turn.
    assert [ids[s:s + n] for s, n in runs(mask)] == gen
    # The first run starts right after the prompt with its image expanded.
    prompt_len = len(processor.tokenizer.encode(traj.segments[0].text, add_special_tokens=False))
    assert runs(mask)[0][0] == prompt_len - 1 + image_tokens(traj.images[0].size)
    # Every image token (initial + observation) is expanded and masked 0.
    pads = [i for i, t in enumerate(ids) if t == IMAGE_PAD]
    assert len(pads) == sum(image_tokens(im.size) for im in traj.images)
    assert all(mask[i] == 0 for i in pads)
    assert sample.image_grid_thw.shape == (2, 3)
    # Observation and error injections (env segments) are all 0: total ones == generated count.
    assert sum(mask) == sum(len(g) for g in gen)
    # The targets of the log-prob gather are the generated ids.
    assert sample.targets().tolist() == [t for g in gen for t in g]


def test_exceed_trajectory_is_all_zero(processor):
    traj = episode(scripted(processor, CALL, CALL), LIMITS.with_(max_turns=2))
    assert traj.termination == "exceed"
    sample = build_sample(traj, processor)
    assert sample.loss_mask.sum() == 0 and sample.num_trainable == 0
    kept = build_sample(traj, processor, ignore_exceed=False)
    # The row is kept, but the call it ends on follows the last <|im_end|>: only the first call trains.
    assert kept.num_trainable == len(generated_ids(processor, CALL)[0])


def test_void_trains_unless_ignored(processor):
    traj = episode(scripted(processor, "<think>no answer tags</think>"))
    assert traj.termination == "void"
    assert build_sample(traj, processor).num_trainable > 0
    assert build_sample(traj, processor, ignore_void=True).num_trainable == 0


def test_text_only_model_segments_are_tokenised(processor):
    traj = episode(lambda request: ANSWER)  # no ids reported: text re-tokenised, EOS segment added
    sample = build_sample(traj, processor)
    ids, mask = sample.input_ids.tolist(), [int(m) for m in sample.loss_mask.tolist()]
    assert [ids[s:s + n] for s, n in runs(mask)] == generated_ids(processor, ANSWER)


# -- upstream's masks (tests/data/golden_rl/upstream_masks.json) ------------------------------------
UPSTREAM = json.loads((Path(__file__).parents[1] / "data" / "golden_rl" / "upstream_masks.json").read_text(encoding="utf-8"))


def replay(processor, case):
    """The scripted turns (ids + finish reason, as vLLM returned them to upstream) through run_episode."""
    tok = processor.tokenizer
    turns = [unrle(t["ids"]) for t in case["turns"]]
    outputs = iter(PolicyOutput(tok.decode(ids, skip_special_tokens=True), t["finish_reason"], len(ids), tuple(ids))
                   for ids, t in zip(turns, case["turns"]))
    sample = UPSTREAM["sample"]
    image = Image.new(sample["image"]["mode"], tuple(sample["image"]["size"]), sample["image"]["color"])
    return run_episode(lambda request: next(outputs), EpisodeSample(sample["problem"], image, "golden"), TRAIN_LIMITS,
                       counter=TokenizerCounter(tok))


@pytest.mark.parametrize("name", sorted(UPSTREAM["cases"]))
def test_masks_are_upstreams(processor, name):
    """Upstream's loss mask, obtained by running Mini-o3/Mini-o3 @8654dbf on the same turns:
    _async_rollout_a_request + post_process (vllm_async_engine.py:584-803, 888-923: response,
    multi_turn_response_mask, attention = get_final_eos_mask, torch_functional.py:171-198) and
    dp_actor.update_policy's mask lines (dp_actor.py:304-330), for the recipe flags, ignore_exceed=False
    and ignore_void=True. A last turn cut by the length limit, or without <|im_end|>, gets no loss."""
    case = UPSTREAM["cases"][name]
    up = case["upstream"]
    traj = replay(processor, case)
    assert (traj.termination == "exceed", traj.termination == "void") == (up["exceed"], up["void"])
    assert [list(im.size) for im in traj.images] == up["image_sizes"] and traj.num_turns == up["round_num"]
    start = UPSTREAM["prompt"]["expanded_prompt_len"]
    for setting, flags in UPSTREAM["settings"].items():
        sample = build_sample(traj, processor, ignore_exceed=flags["ignore_exceed"], ignore_void=flags["ignore_void"])
        assert sample.input_ids[start:].tolist() == unrle(up["response_ids"])
        assert [int(m) for m in sample.loss_mask[start:].tolist()] == unrle(up["loss_mask"][setting]), setting


def test_a_length_cut_last_turn_gets_no_loss(processor):
    """The case the old code got wrong: the cut answer turn (no <|im_end|>) was trained in full."""
    traj = replay(processor, UPSTREAM["cases"]["length_cut_answer"])
    gen = unrle(UPSTREAM["cases"]["length_cut_answer"]["turns"][0]["ids"])
    assert traj.termination == "void" and build_sample(traj, processor).num_trainable == len(gen)


def test_a_final_turn_stopped_at_the_tool_stop_without_a_call_trains_only_when_asked(processor):
    """Upstream's ``get_final_eos_mask`` (Mini-o3 ``verl/utils/torch_functional.py:171``, applied in
    ``verl/workers/rollout/vllm_rollout/vllm_async_engine.py:916``) ends the loss at the last ``<|im_end|>``: a last turn that the
    ``</grounding>`` stop ended without a parsable ``<grounding>`` (void, no ``<|im_end|>``) is never
    penalised — the failure GRPO amplified on the learning profile (benchmarks/RESULTS.md).
    ``mask_cut_final_turn=False`` trains it with the row's advantage."""
    garbled = '<think>Zoom in on cell 1.0.5, 1.0], "source": "original_image"}</grounding>'
    traj = episode(scripted(processor, CALL, garbled))
    call_ids, garbled_ids = generated_ids(processor, CALL, garbled)
    assert traj.termination == "void" and IM_END not in garbled_ids
    assert build_sample(traj, processor).num_trainable == len(call_ids)
    trained = build_sample(traj, processor, mask_cut_final_turn=False)
    assert trained.num_trainable == len(call_ids) + len(garbled_ids)
    assert trained.input_ids[-len(garbled_ids):].tolist() == garbled_ids
    assert trained.loss_mask[-len(garbled_ids):].tolist() == [1.0] * len(garbled_ids)
