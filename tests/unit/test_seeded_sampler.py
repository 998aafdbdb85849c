"""``hf_backend.seeded_sampler``: sampling with one generator per row (Gumbel-max over the warped
logits) draws from the same distribution as ``generate(do_sample=True)``, and a row's draws
depend on its seed only."""

import math

import pytest

torch = pytest.importorskip("torch")

from mini_o3.rollout.hf_backend import seeded_sampler  # noqa: E402
from mini_o3.rollout.settings import SamplingConfig, request_seed  # noqa: E402

LOGITS = torch.tensor([2.0, 1.0, 0.0, -1.0, -3.0])


def draws(sampling: SamplingConfig, n: int = 4000) -> list[int]:
    processor = seeded_sampler(range(n), sampling)
    scores = processor(torch.zeros(n, 1, dtype=torch.long), LOGITS.repeat(n, 1))
    return scores.argmax(-1).tolist()


def test_frequencies_match_the_tempered_softmax():
    picks = draws(SamplingConfig(temperature=0.7))
    probs = torch.softmax(LOGITS / 0.7, -1).tolist()
    for token, p in enumerate(probs):
        share = picks.count(token) / len(picks)
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / len(picks)) + 1e-3, (token, share, p)


def test_top_k_and_top_p_restrict_the_support():
    assert set(draws(SamplingConfig(top_k=2))) == {0, 1}
    assert set(draws(SamplingConfig(top_p=0.5))) == {0}  # the top token alone holds > 0.5


def test_a_rows_draws_follow_its_seed_not_its_neighbours():
    sampling = SamplingConfig()
    alone = seeded_sampler([7], sampling)
    batch = seeded_sampler([3, 7, 5], sampling)
    for _ in range(5):  # five decoding steps
        a = alone(None, LOGITS[None].clone())
        b = batch(None, LOGITS.repeat(3, 1))
        assert torch.equal(a[0], b[1])
        assert not torch.equal(b[0], b[1])


def test_request_seed_keeps_the_openai_policys_derivation():
    """(question, sample, turn) seeds are unchanged by the generalisation to any parts."""
    import hashlib

    digest = hashlib.sha256("3\x1fq\x1f5\x1f2".encode()).digest()
    assert request_seed(3, "q", 5, 2) == int.from_bytes(digest[:8], "big") % (2**31)
    assert request_seed(3, "q#5", 2) != request_seed(3, "q#5", 1)
