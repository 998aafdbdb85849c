"""The local engine's update plumbing against hand computations on tiny tensors."""

import math
from types import SimpleNamespace

import pytest
import torch

from mini_o3.rl.local.batch import TrainSample
from mini_o3.rl.local.trainer import (
    LossSettings,
    compute_old_logprobs,
    micro_batch_loss,
    mini_batch_normalizer,
    update_policy,
)


def stub(n_trainable):
    mask = torch.tensor([0.0] + [1.0] * n_trainable)
    return TrainSample(torch.zeros(len(mask), dtype=torch.long), mask, None, None)


@pytest.mark.parametrize("mode, denominator", [("code", 3), ("paper", 2)])
def test_clipped_loss_matches_hand_values(mode, denominator):
    settings = LossSettings(clip_low=0.2, clip_high=0.3, agg="seq-mean-token-mean", mode=mode)
    samples = [stub(2), stub(1), stub(0)]  # the third is an exceed row: no trainable token
    normalizer = mini_batch_normalizer(samples, settings)
    assert normalizer == denominator
    lp1, old1 = torch.tensor([0.0, -1.0]), torch.tensor([-0.5, -1.0])
    lp2, old2 = torch.tensor([-2.0]), torch.tensor([-1.0])
    out1 = micro_batch_loss([lp1], [old1], [1.0], settings, normalizer)
    out2 = micro_batch_loss([lp2], [old2], [-0.5], settings, normalizer)
    # Row 1: ratio (e^0.5, 1) -> max(-r, -clip(r, .8, 1.3)) = (-1.3, -1) -> mean -1.15.
    # Row 2: ratio e^-1 -> max(0.5 r, 0.5 * 0.8) = 0.4.
    assert float(out1.loss + out2.loss) == pytest.approx((-1.15 + 0.4) / denominator, abs=1e-5)
    assert float(out1.clip_fraction) == pytest.approx(0.5, abs=1e-5)
    assert float(out2.clip_fraction) == pytest.approx(1.0, abs=1e-5)
    # One micro-batch of both rows gives the same mini-batch loss.
    both = micro_batch_loss([lp1, lp2], [old1, old2], [1.0, -0.5], settings, normalizer)
    assert float(both.loss) == pytest.approx(float(out1.loss + out2.loss), abs=1e-6)


class TableModel(torch.nn.Module):
    """logits[t] = W[t]: a model whose log-probs are a hand-checkable function of W."""

    def __init__(self, length, vocab):
        super().__init__()
        torch.manual_seed(0)
        self.W = torch.nn.Parameter(torch.randn(length, vocab))

    def forward(self, input_ids, attention_mask, logits_to_keep, use_cache, **_):
        return SimpleNamespace(logits=self.W[logits_to_keep][None])


def test_update_step_applies_the_hand_gradient():
    model = TableModel(4, 3)
    a = TrainSample(torch.tensor([0, 1, 2, 1]), torch.tensor([0.0, 1.0, 1.0, 0.0]), None, None, advantage=1.5)
    b = TrainSample(torch.tensor([0, 2, 0, 0]), torch.tensor([0.0, 0.0, 0.0, 1.0]), None, None, advantage=-0.5)
    c = TrainSample(torch.tensor([0, 2, 0, 0]), torch.tensor([0.0, 0.0, 0.0, 0.0]), None, None, advantage=0.0)
    samples = [a, b, c]
    compute_old_logprobs(model, samples, "cpu")
    # Hand loss gradient (on-policy, ratio 1 -> d pg = -A * d logp): seq-mean-token-mean over 3 rows ("code").
    W = model.W.detach().clone().requires_grad_(True)
    lsm = torch.log_softmax(W, dim=-1)
    row_a = (lsm[0, 1] + lsm[1, 2]) / 2
    row_b = lsm[2, 0]
    hand = (-1.5 * row_a + 0.5 * row_b) / 3
    hand.backward()
    before = model.W.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    metrics = update_policy(model, optimizer, samples, settings=LossSettings(), mini_batch_size=3,
                            micro_batch_size=1, ppo_epochs=1, grad_clip=1e9, device="cpu")
    assert torch.allclose(before - model.W.detach(), W.grad, atol=1e-5)
    # The value is -A * ratio (ratio 1 on-policy); only its gradient is -A * dlogp.
    assert metrics["actor/pg_loss"] == pytest.approx((-1.5 + 0.5) / 3, abs=1e-5)
    assert metrics["actor/clip_fraction"] == 0.0
    assert math.isfinite(metrics["actor/entropy"])


def test_gradient_is_clipped_to_the_max_norm():
    model = TableModel(4, 3)
    a = TrainSample(torch.tensor([0, 1, 2, 1]), torch.tensor([0.0, 1.0, 1.0, 0.0]), None, None, advantage=100.0)
    compute_old_logprobs(model, [a], "cpu")
    before = model.W.detach().clone()
    update_policy(model, torch.optim.SGD(model.parameters(), lr=1.0), [a], settings=LossSettings(),
                  mini_batch_size=1, micro_batch_size=1, ppo_epochs=1, grad_clip=0.5, device="cpu")
    assert float((before - model.W.detach()).norm()) == pytest.approx(0.5, rel=1e-4)


def test_kl_loss_pulls_toward_the_reference_with_the_hand_gradient():
    """``use_kl_loss`` in the local engine: the loss adds ``kl_coef`` x the low-variance KL
    (verl ``kl_penalty`` "low_var_kl": ``exp(ref - logp) - (ref - logp) - 1``, aggregated like
    the policy loss) to the reference log-probs, and ``actor/kl_loss`` reports it."""
    model = TableModel(4, 3)
    reference = TableModel(4, 3)
    with torch.no_grad():
        reference.W.add_(torch.tensor([[0.0, 1.0, 0.0]] * 4))  # the reference prefers token 1
    a = TrainSample(torch.tensor([0, 1, 2, 1]), torch.tensor([0.0, 1.0, 1.0, 0.0]), None, None, advantage=0.0)
    compute_old_logprobs(model, [a], "cpu")
    compute_old_logprobs(reference, [a], "cpu", into="ref_logprobs")
    W = model.W.detach().clone().requires_grad_(True)
    lsm = torch.log_softmax(W, dim=-1)
    ref = a.ref_logprobs
    logp = torch.stack([lsm[0, 1], lsm[1, 2]])
    diff = ref - logp
    hand_kl = (torch.exp(diff) - diff - 1).mean()  # seq-mean-token-mean over one row
    (0.5 * hand_kl).backward()
    before = model.W.detach().clone()
    metrics = update_policy(model, torch.optim.SGD(model.parameters(), lr=1.0), [a],
                            settings=LossSettings(kl_coef=0.5), mini_batch_size=1, micro_batch_size=1,
                            ppo_epochs=1, grad_clip=1e9, device="cpu")
    assert float(hand_kl) > 0.01
    assert torch.allclose(before - model.W.detach(), W.grad, atol=1e-5)
    assert metrics["actor/kl_loss"] == pytest.approx(float(hand_kl), abs=1e-5)


def test_kl_loss_without_reference_log_probs_is_refused():
    a = TrainSample(torch.tensor([0, 1]), torch.tensor([0.0, 1.0]), None, None, advantage=1.0)
    a.old_logprobs = torch.tensor([-1.0])
    with pytest.raises(ValueError, match="no reference log-probs"):
        micro_batch_loss([torch.tensor([-1.0])], [a.old_logprobs], [1.0], LossSettings(kl_coef=0.1), 1.0,
                         ref_logprobs=[None])


def test_the_kl_settings_come_from_the_config_only_with_a_reference_model():
    from mini_o3.rl.config import RLConfig

    assert LossSettings.from_config(RLConfig()).kl_coef == 0.0  # seed: off
    assert LossSettings.from_config(RLConfig(use_kl_loss=True, kl_loss_coef=0.0)).kl_coef == 0.0
    on = LossSettings.from_config(RLConfig(use_kl_loss=True, kl_loss_coef=0.05, kl_loss_type="kl"))
    assert (on.kl_coef, on.kl_type) == (0.05, "kl")
