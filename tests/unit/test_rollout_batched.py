"""Lock-step batching of the local engine's rollouts with a scripted backend (no model)."""

import pytest
from PIL import Image

from mini_o3.rollout.settings import SamplingConfig
from mini_o3.rollout.batched_rollout import RolloutError, rollout
from mini_o3.task import EpisodeSample, PolicyOutput, RolloutLimits, answer_turn, tool_turn

CALL = tool_turn("z", [0.1, 0.1, 0.6, 0.6])
ANSWER = answer_turn("s", "A")
LIMITS = RolloutLimits(max_turns=4, min_pixels=3136, max_pixels=60_000)


class ScriptedBackend:
    """Episode k calls the tool k times, then answers; records every batch it is given."""

    def __init__(self):
        self.batches = []

    def generate(self, requests, sampling):
        self.batches.append([(r.prompt.split("Q")[1][0], len(r.images)) for r in requests])
        outputs = []
        for r in requests:
            calls_wanted = int(r.prompt.split("Q")[1][0])
            outputs.append(PolicyOutput(CALL if len(r.images) <= calls_wanted else ANSWER))
        return outputs


def samples(counts):
    return [EpisodeSample(f"<image>\nQ{k}", Image.new("RGB", (200, 200)), f"s{i}") for i, k in enumerate(counts)]


def test_all_live_episodes_share_one_generate_call():
    backend = ScriptedBackend()
    trajs = rollout(backend, samples([0, 2, 1]), LIMITS, SamplingConfig())
    assert [t.num_turns for t in trajs] == [1, 3, 2]
    assert [t.sample_id for t in trajs] == ["s0", "s1", "s2"]
    assert all(t.termination == "answer" for t in trajs)
    # Turn 0: all three; turn 1: the two still live; turn 2: the last one. Episode order kept.
    assert backend.batches == [[("0", 1), ("2", 1), ("1", 1)], [("2", 2), ("1", 2)], [("2", 3)]]


def test_max_live_bounds_the_batch_and_refills():
    backend = ScriptedBackend()
    trajs = rollout(backend, samples([0, 0, 0]), LIMITS, SamplingConfig(), max_live=2)
    assert len(trajs) == 3
    assert [len(b) for b in backend.batches] == [2, 1]


def test_backend_failure_names_the_sample():
    class Broken:
        def generate(self, requests, sampling):
            raise RuntimeError("device lost")

    with pytest.raises(RolloutError, match="s0.*device lost"):
        rollout(Broken(), samples([0, 1]), LIMITS, SamplingConfig())
