"""The local HF policy (``LocalHFPolicy``) rolls out episodes with the tiny model on CPU."""

import pytest
from PIL import Image

from mini_o3.evaluate.config import EvalConfig
from mini_o3.rollout.hf_backend import TokenizerCounter
from mini_o3.rollout.local_policy import LocalHFPolicy
from mini_o3.task import EpisodeSample, PolicyRequest, run_episode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def policy(tiny_dir):
    config = EvalConfig(max_tokens_per_turn=6, concurrency=1)
    return LocalHFPolicy(tiny_dir, config.limits(), config.sampling, prompt_set=config.prompt_set, parser=config.parser,
                         concurrency=config.concurrency)


def test_tiny_model_rolls_out_an_episode(policy):
    sample = EpisodeSample("<image>\nWhat colour is the star?", Image.new("RGB", (640, 480), "navy"), "t0")
    counter = policy.counter
    (traj,) = policy.rollout_batch([sample], seed=3)
    assert traj.termination in ("answer", "exceed", "void")
    turn = traj.turns[0]
    assert 1 <= turn.tokens <= 6
    if turn.tokens < 6:  # stopped early: EOS or the </grounding> stop string
        assert turn.finish_reason == "stop"
    # Exact context accounting: prompt tokens + expanded image - 1 pad + generated tokens.
    prompt = traj.segments[0].text
    image = counter.image(traj.images[0].size)
    assert traj.context_tokens >= counter.text(prompt) + image - 1 + turn.tokens


def test_prompt_is_the_exact_token_stream_with_expanded_images(policy):
    sample = EpisodeSample("<image>\nq", Image.new("RGB", (280, 224)), "t1")
    seen = {}

    def spy(request: PolicyRequest):
        stream = request.trajectory.token_stream()
        inputs = policy.processor(text=[stream], images=list(request.trajectory.images), return_tensors="pt")
        seen["pads"] = int((inputs["input_ids"] == 151655).sum())
        seen["grid"] = inputs["image_grid_thw"].tolist()
        return "<answer>x</answer>"

    run_episode(spy, sample)
    t, h, w = seen["grid"][0]
    assert seen["pads"] == t * h * w // 4 == TokenizerCounter(policy.processor.tokenizer).image((280, 224))


def test_same_seed_same_text(policy):
    sample = EpisodeSample("<image>\nq", Image.new("RGB", (300, 200), "red"), "t2")
    (a,) = policy.rollout_batch([sample], seed=7)
    (b,) = policy.rollout_batch([sample], seed=7)
    assert a.model_outputs == b.model_outputs


def test_a_samples_draws_do_not_depend_on_its_batch(tiny_dir):
    """Per-request seeds (``rollout(seed=...)``, as vLLM's seeded requests): a sample rolled out
    alone and inside a larger batch yields the same tokens, so an evaluation's samples do not
    depend on ``concurrency`` or on resuming, and two models evaluated with one seed are paired."""
    config = EvalConfig(max_tokens_per_turn=12, concurrency=4)
    policy = LocalHFPolicy(tiny_dir, config.limits(), config.sampling, prompt_set=config.prompt_set,
                           parser=config.parser, concurrency=config.concurrency)
    image = Image.new("RGB", (300, 200), "teal")
    samples = [EpisodeSample("<image>\nWhich shape?", image, f"q#{j}") for j in range(4)]
    (alone,) = policy.rollout_batch([samples[2]], seed=11)
    batched = policy.rollout_batch(samples, seed=11)
    assert batched[2].model_outputs == alone.model_outputs
    assert len({tuple(t.model_outputs) for t in batched}) > 1  # each sample id draws its own tokens
    assert policy.rollout_batch(samples, seed=12)[2].model_outputs != alone.model_outputs
