"""GRPO maths: group advantages, the rejection filter, loss masks and the clipped policy loss.

Numbers are worked out by hand in the comments (eps = 1e-6 unless said otherwise)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.golden import unrle
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mini_o3.task import (
    MINI_O3_V1,
    TRAIN_LIMITS,
    Segment,
    Trajectory,
    entropy_from_logits,
    group_advantages,
    kl_penalty,
    loss_normalizer,
    masked_mean,
    policy_loss,
    trainable_segments,
    trajectory_trainable,
    valid_groups,
)
from mini_o3.task.grpo import final_eos_mask

EPS = 1e-6
LOG = math.log


# -- group_advantages ----------------------------------------------------------------------------
def test_advantages_of_one_group_use_the_unbiased_std():
    # mean .5; sum of squares 4 * .25 = 1; std = sqrt(1 / 3) = .57735; A = ±.5 / .57735 = ±.86603
    a = 0.5 / (math.sqrt(1 / 3) + EPS)
    assert group_advantages([1, 0, 0, 1], ["q"] * 4) == pytest.approx([a, -a, -a, a], rel=1e-12)
    assert a == pytest.approx(0.866025, abs=1e-5)


def test_groups_are_keyed_not_contiguous():
    # a = {1, 3}: mean 2, std sqrt(2); b = {2, 6}: mean 4, std sqrt(8); every A = ±1/sqrt(2)
    adv = group_advantages([1, 2, 3, 6], ["a", "b", "a", "b"])
    assert adv == pytest.approx([-0.707107, -0.707107, 0.707107, 0.707107], abs=1e-6)


def test_a_group_of_one_uses_mean_0_and_std_1():
    assert group_advantages([0.5, 2.0], ["a", "b"]) == pytest.approx([0.5 / (1 + EPS), 2.0 / (1 + EPS)], rel=1e-12)


def test_equal_rewards_give_zero_and_eps_is_the_guard():
    assert group_advantages([1, 1, 1], [0, 0, 0]) == [0.0, 0.0, 0.0]
    # {0, 1}: std sqrt(.5) = .70711; eps = .29289 makes the denominator 1 -> A = ±.5
    assert group_advantages([0, 1], [0, 0], eps=1 - math.sqrt(0.5)) == pytest.approx([-0.5, 0.5])


def test_code_mode_counts_exceed_rewards_paper_mode_drops_them():
    rewards, exceed = [1, 0, 0, 0], [False, False, True, True]
    # code: mean .25, squares .5625 + 3 * .0625 = .75, std sqrt(.25) = .5 -> 1.5, -.5, -.5, -.5
    assert group_advantages(rewards, [0] * 4, exceed) == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-5)
    assert group_advantages(rewards, [0] * 4, exceed, mode="code") == group_advantages(rewards, [0] * 4)
    # paper: stats over {1, 0}: mean .5, std .70711 -> ±.70711; exceed members 0
    a = 0.5 / (math.sqrt(0.5) + EPS)
    assert group_advantages(rewards, [0] * 4, exceed, mode="paper") == pytest.approx([a, -a, 0, 0], rel=1e-12)


def test_paper_mode_edge_groups():
    # no completed member: all 0; one completed member: size-1 rule -> r / (1 + eps)
    assert group_advantages([0, 0], [0, 0], [True, True], mode="paper") == [0.0, 0.0]
    assert group_advantages([0, 1], [0, 0], [True, False], mode="paper") == pytest.approx([0.0, 1 / (1 + EPS)])


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="groups has 1 entries for 2 rewards"):
        group_advantages([0, 1], [0])
    with pytest.raises(ValueError, match="exceed has 1 entries"):
        group_advantages([0, 1], [0, 0], [True])
    with pytest.raises(ValueError, match="mode"):
        group_advantages([0, 1], [0, 0], mode="other")
    with pytest.raises(ValueError, match="judge_failed"):
        valid_groups([0, 1], [0, 0], [True])


rewards_lists = st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=16)


@settings(max_examples=100, deadline=None)
@given(rewards_lists)
def test_code_advantages_of_a_group_sum_to_zero(rewards):
    assert math.fsum(group_advantages(rewards, [0] * len(rewards))) == pytest.approx(0, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(rewards_lists, st.floats(0.1, 100), st.floats(-10, 10))
def test_affine_reward_changes_leave_advantages_alone(rewards, scale, shift):
    mean = sum(rewards) / len(rewards)
    assume(math.sqrt(sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1)) > 0.1)
    base = group_advantages(rewards, [0] * len(rewards))
    moved = group_advantages([scale * r + shift for r in rewards], [0] * len(rewards))
    assert moved == pytest.approx(base, rel=1e-4, abs=1e-4)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1, allow_nan=False), st.booleans()), min_size=1, max_size=12))
def test_paper_mode_is_code_mode_on_the_completed_members(members):
    rewards = [r for r, _ in members]
    exceed = [e for _, e in members]
    paper = group_advantages(rewards, [0] * len(members), exceed, mode="paper")
    completed = [r for r, e in members if not e]
    code = iter(group_advantages(completed, [0] * len(completed)))
    assert paper == [0.0 if e else next(code) for e in exceed]


# -- valid_groups ------------------------------------------------------------------------------
def test_zero_variance_groups_are_dropped_and_a_group_of_one_is_kept():
    # group 0 all right, group 1 all wrong -> dropped; group 2 has one member: torch.std is nan,
    # nan < 1e-4 is False -> kept (seed semantics)
    assert valid_groups([1, 1, 0, 0, 1], [0, 0, 1, 1, 2]) == [False, False, False, False, True]


def test_the_std_threshold_is_strict():
    # std{0, x} = x / sqrt(2): 1e-4 -> 7.07e-5 < 1e-4 dropped; 2e-4 -> 1.41e-4 kept
    assert valid_groups([0, 1e-4], [0, 0]) == [False, False]
    assert valid_groups([0, 2e-4], [0, 0]) == [True, True]
    assert valid_groups([0, 1e-4], [0, 0], min_std=5e-5) == [True, True]


def test_a_judge_failure_drops_the_whole_group_only():
    flags = valid_groups([1, 0, 1, 0], ["a", "a", "b", "b"], judge_failed=[False, True, False, False])
    assert flags == [False, False, True, True]


def test_exceed_members_count_in_code_mode_only():
    rewards, exceed = [0, 0, 1, 1], [True, True, False, False]
    assert valid_groups(rewards, [0] * 4, exceed=exceed, mode="code") == [True] * 4  # {0, 0, 1, 1}
    assert valid_groups(rewards, [0] * 4, exceed=exceed, mode="paper") == [False] * 4  # {1, 1}
    # paper: a group with no completed member has no signal
    assert valid_groups([0, 1], [0, 0], exceed=[True, True], mode="paper") == [False, False]
    assert valid_groups([0, 1], [0, 0], exceed=[True, True], mode="code") == [True, True]


# -- trainable_segments ---------------------------------------------------------------------------
def _trajectory(termination):
    segments = [
        Segment("env", "<prompt>", image=0),
        Segment("model", "<grounding>…</grounding>", token_ids=(1, 2)),
        Segment("env", "<observation>", image=1),
        Segment("model", "<answer>x</answer>"),
        Segment("model", "<|im_end|>"),
    ]
    return Trajectory("<image>\nq", MINI_O3_V1, TRAIN_LIMITS, segments=segments, termination=termination)


@pytest.mark.parametrize(
    ("termination", "ignore_exceed", "ignore_void", "row"),
    [
        ("answer", True, False, True),
        ("answer", True, True, True),
        ("void", True, False, True),  # seed: void is only logged, and trained
        ("void", True, True, False),
        ("exceed", True, False, False),  # seed: over-turn masking
        ("exceed", False, False, True),
        ("exceed", False, True, True),
    ],
)
def test_model_segments_train_unless_the_row_is_dropped(termination, ignore_exceed, ignore_void, row):
    traj = _trajectory(termination)
    flags = trainable_segments(traj, ignore_exceed=ignore_exceed, ignore_void=ignore_void)
    assert [segment for segment, _ in flags] == traj.segments
    assert [trainable for _, trainable in flags] == [False, row, False, row, row]
    assert trajectory_trainable(traj, ignore_exceed=ignore_exceed, ignore_void=ignore_void) is row


def test_seed_defaults_drop_exceed_and_keep_void():
    assert [t for _, t in trainable_segments(_trajectory("exceed"))] == [False] * 5
    assert [t for _, t in trainable_segments(_trajectory("void"))] == [False, True, False, True, True]


# Upstream's get_final_eos_mask, run on these ids (tests/data/golden_rl/upstream_masks.json).
UPSTREAM = json.loads((Path(__file__).parents[1] / "data" / "golden_rl" / "upstream_masks.json").read_text(encoding="utf-8"))
IM_END_ID = UPSTREAM["eos_id"]


@pytest.mark.parametrize("row", UPSTREAM["get_final_eos_mask"], ids=lambda r: str(r["ids"]))
def test_final_eos_mask_is_upstreams_on_edge_rows(row):
    """Mini-o3/Mini-o3 verl/utils/torch_functional.py:171-198 @8654dbf (``get_final_eos_mask``,
    eos_token=[151645]): 1 through the last <|im_end|>, 0 after, all 0 without one."""
    assert final_eos_mask(row["ids"], IM_END_ID) == row["mask"]


@pytest.mark.parametrize("name", sorted(UPSTREAM["cases"]))
def test_final_eos_mask_is_upstreams_attention_mask(name):
    """The response attention mask upstream's post_process builds (vllm_async_engine.py:916 @8654dbf)
    for each scripted trajectory: length-cut last turns and exceed tails fall after the last <|im_end|>."""
    up = UPSTREAM["cases"][name]["upstream"]
    assert final_eos_mask(unrle(up["response_ids"]), IM_END_ID) == unrle(up["attention_mask"])


def test_final_eos_mask_edges():
    assert final_eos_mask([], 7) == []
    assert final_eos_mask([7], 7) == [1]
    assert final_eos_mask([1, 7, 2], 7) == [1, 1, 0]


def _episode(last_model, termination):
    """prompt, call, observation, then ``last_model``."""
    segments = [
        Segment("env", "<|im_start|>assistant\n", image=0),
        Segment("model", "<grounding>…</grounding>"),
        Segment("env", "<|im_end|>\n<|im_start|>user\nobs<|im_end|>\n<|im_start|>assistant\n", image=1),
        Segment("model", last_model),
    ]
    return Trajectory("<image>\nq", MINI_O3_V1, TRAIN_LIMITS, segments=segments, termination=termination)


@pytest.mark.parametrize(
    ("last", "termination", "flags"),
    [
        ("<answer>x</answer><|im_end|>", "answer", [False, True, False, True]),  # EOS closes the last turn
        ("<answer>x</answer> more<|im_end|>", "void", [False, True, False, True]),  # void but closed: trained
        ("<think>cut by the length lim", "void", [False, True, False, False]),  # length cut: no <|im_end|>
        ("<answer>x</answer> cut by the len", "void", [False, True, False, False]),
    ],
)
def test_a_last_turn_without_im_end_is_not_trained(last, termination, flags):
    """Upstream's loss mask is attention (1 through the last <|im_end|>, get_final_eos_mask,
    vllm_async_engine.py:916) x multi_turn_response_mask (dp_actor.py:310-312 @8654dbf)."""
    assert [t for _, t in trainable_segments(_episode(last, termination))] == flags


def test_the_call_an_exceed_episode_ends_on_is_not_trained_even_when_kept():
    """ignore_exceed=False keeps the row (dp_actor.py:316-322 not applied), but the unclosed call
    after the last injected <|im_end|> still has attention 0."""
    traj = _episode("<grounding>…</grounding>", "exceed")
    assert [t for _, t in trainable_segments(traj, ignore_exceed=False)] == [False, True, False, False]
    assert [t for _, t in trainable_segments(traj)] == [False] * 4


def test_nothing_trains_without_any_im_end():
    traj = Trajectory("<image>\nq", MINI_O3_V1, TRAIN_LIMITS, termination="void",
                      segments=[Segment("env", "<|im_start|>assistant\n", image=0), Segment("model", "cut")])
    assert [t for _, t in trainable_segments(traj)] == [False, False]


# -- masked_mean, kl_penalty, entropy ------------------------------------------------------------------
def as_torch(x):
    return torch.tensor(np.asarray(x, dtype=np.float64))


BACKENDS = [pytest.param(np.asarray, id="numpy"), pytest.param(as_torch, id="torch")]


@pytest.mark.parametrize("to", BACKENDS)
def test_masked_mean(to):
    values = to([[1.0, 2.0, 3.0], [4.0, math.nan, math.inf]])
    mask = to([[1, 0, 1], [0, 0, 0]])
    # all: (1 + 3) / (2 + eps); per row: [2, 0 / eps = 0]; nan/inf under mask 0 never leak
    assert float(masked_mean(values, mask)) == pytest.approx(2.0, rel=1e-6)
    assert np.asarray(masked_mean(values, mask, axis=-1)).tolist() == pytest.approx([2.0, 0.0], rel=1e-6)


@pytest.mark.parametrize("to", BACKENDS)
def test_kl_estimators(to):
    logp, ref = to([LOG(0.5)]), to([LOG(0.25)])
    # kl = logp - ref = log 2 = .693147; abs the same; mse = .5 * .480453 = .240227
    # low_var_kl: k = ref - logp = -log 2, exp(k) - k - 1 = .5 + .693147 - 1 = .193147
    assert float(kl_penalty(logp, ref, "kl")[0]) == pytest.approx(0.693147, abs=1e-6)
    assert float(kl_penalty(logp, ref, "abs")[0]) == pytest.approx(0.693147, abs=1e-6)
    assert float(kl_penalty(logp, ref, "mse")[0]) == pytest.approx(0.240227, abs=1e-6)
    assert float(kl_penalty(logp, ref, "low_var_kl")[0]) == pytest.approx(0.193147, abs=1e-6)
    # low_var_kl is clamped to [-10, 10]: k = 20 -> e^20 - 21 -> 10
    assert float(kl_penalty(to([0.0]), to([20.0]))[0]) == 10.0
    with pytest.raises(ValueError, match="kl_type"):
        kl_penalty(logp, ref, "full")


def test_entropy_from_logits():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    expected = torch.distributions.Categorical(logits=logits).entropy()
    entropy = entropy_from_logits(logits)
    assert entropy[0].item() == pytest.approx(math.log(4))  # uniform over 4
    assert entropy[1].item() == pytest.approx(0.0, abs=1e-6)  # one-hot
    assert torch.allclose(entropy, expected)


# -- policy_loss -------------------------------------------------------------------------------
# Example 1, no clipping. Row 0 (A = +1): ratios 1.25, 1.0 (third token masked);
# row 1 (A = -1): ratios 1.0, 1.5, 1.0.
#   row 0: pg = max(-1.25, -clip(1.25) = -1.25) = -1.25 and -1.0           -> sum -2.25 over 2
#   row 1: pg = max(1.0, 1.0), max(1.5, 1.3) = 1.5 (unclipped), max(1, 1)  -> sum  3.50 over 3
LOGP = [[LOG(0.5), LOG(0.5), LOG(0.1)], [LOG(0.2), LOG(0.3), LOG(0.3)]]
OLD = [[LOG(0.4), LOG(0.5), LOG(0.2)], [LOG(0.2), LOG(0.2), LOG(0.3)]]
ADV = [1.0, -1.0]
MASK = [[1, 1, 0], [1, 1, 1]]


@pytest.mark.parametrize("to", BACKENDS)
@pytest.mark.parametrize(
    ("agg", "normalizer", "expected"),
    [
        ("token-mean", None, 1.25 / (5 + EPS)),  # (-2.25 + 3.5) / 5
        ("token-mean", 10.0, 0.125),
        ("seq-mean-token-mean", None, (-2.25 / (2 + EPS) + 3.5 / (3 + EPS)) / 2),  # (-1.125 + 1.16667) / 2
        ("seq-mean-token-mean", 4.0, (-2.25 / (2 + EPS) + 3.5 / (3 + EPS)) / 4),
        ("seq-mean-token-sum", None, (-2.25 + 3.5) / 2),
    ],
)
def test_policy_loss_aggregations(to, agg, normalizer, expected):
    out = policy_loss(to(LOGP), to(OLD), to(ADV), to(MASK), agg=agg, normalizer=normalizer)
    assert float(out.loss) == pytest.approx(expected, rel=1e-9)
    assert float(out.pg_loss) == float(out.loss) and out.kl is None and out.entropy is None
    assert float(out.clip_fraction) == 0.0  # the ratio 1.5 at A < 0 is not clipped (max takes it)
    # approx_kl = mean(old - logp) over the 5 tokens = -(log 1.25 + log 1.5) / 5 = -.125722
    assert float(out.approx_kl) == pytest.approx(-(LOG(1.25) + LOG(1.5)) / 5, rel=1e-5)


# Example 2, clipping. Row 0 (A = +1): ratios 1.5, 1.0 -> pg max(-1.5, -1.3) = -1.3 (clipped), -1.0;
# row 1 (A = -1): ratios .5, 1.2 -> pg max(.5, .8) = .8 (clipped), 1.2.
# token-mean = (-1.3 - 1 + .8 + 1.2) / 4 = -.075; clip fraction 2 / 4.
LOGP2 = [[LOG(0.6), LOG(0.3)], [LOG(0.1), LOG(0.6)]]
OLD2 = [[LOG(0.4), LOG(0.3)], [LOG(0.2), LOG(0.5)]]


@pytest.mark.parametrize("to", BACKENDS)
def test_policy_loss_clips_at_0_8_and_1_3(to):
    out = policy_loss(to(LOGP2), to(OLD2), to(ADV), to([[1, 1], [1, 1]]))
    assert float(out.loss) == pytest.approx(-0.3 / (4 + EPS), rel=1e-9)
    assert float(out.clip_fraction) == pytest.approx(0.5, rel=1e-6)
    # symmetric clip 0.2 would clip row 0 at 1.2: pg -1.2 instead of -1.3
    sym = policy_loss(to(LOGP2), to(OLD2), to(ADV), to([[1, 1], [1, 1]]), clip_high=0.2)
    assert float(sym.loss) == pytest.approx(-0.2 / (4 + EPS), rel=1e-9)


def test_torch_gradients_push_logprobs_along_the_advantage():
    logp = torch.tensor(LOGP2, dtype=torch.float64, requires_grad=True)
    out = policy_loss(logp, torch.tensor(OLD2, dtype=torch.float64), torch.tensor(ADV, dtype=torch.float64),
                      torch.ones(2, 2))
    out.loss.backward()
    # clipped tokens get no gradient; d/dlogp of -A * ratio / N is -A * ratio / 4:
    # (0, 1): -1 * 1.0 / 4 = -.25 (descent raises logp, A > 0); (1, 1): +1 * 1.2 / 4 = .3 (lowers it)
    assert logp.grad.flatten().tolist() == pytest.approx([0.0, -0.25, 0.0, 0.3], rel=1e-5)
    assert out.clip_fraction.requires_grad is False and out.approx_kl.requires_grad is False


def test_numpy_and_torch_agree_and_token_advantages_broadcast():
    rng = np.random.default_rng(0)
    logp, old = np.log(rng.uniform(0.05, 1, (3, 5))), np.log(rng.uniform(0.05, 1, (3, 5)))
    adv = rng.normal(size=3)
    mask = (rng.uniform(size=(3, 5)) > 0.3).astype(np.int64)
    for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"):
        a = policy_loss(logp, old, adv, mask, agg=agg)
        b = policy_loss(torch.tensor(logp), torch.tensor(old), torch.tensor(adv), torch.tensor(mask), agg=agg)
        c = policy_loss(logp, old, np.repeat(adv[:, None], 5, axis=1), mask, agg=agg)
        assert float(a.loss) == pytest.approx(b.loss.item(), rel=1e-12) == float(c.loss)
        assert float(a.clip_fraction) == pytest.approx(b.clip_fraction.item())


@pytest.mark.parametrize("to", BACKENDS)
def test_kl_term_is_added_only_when_on(to):
    logp, ref, mask = to([[LOG(0.5), 0.0]]), to([[LOG(0.25), 0.0]]), to([[1, 0]])
    base = policy_loss(logp, logp, to([1.0]), mask)  # ratio 1 -> pg = -1 on the one token
    assert float(base.loss) == pytest.approx(-1 / (1 + EPS))
    assert policy_loss(logp, logp, to([1.0]), mask, ref_logprobs=ref).kl is None  # coef 0: off
    on = policy_loss(logp, logp, to([1.0]), mask, ref_logprobs=ref, kl_coef=0.5)
    # low_var_kl .193147 on the one token; loss = -1 + .5 * .193147
    assert float(on.kl) == pytest.approx(0.193147 / (1 + EPS), abs=1e-6)
    assert float(on.loss) == pytest.approx((-1 + 0.5 * 0.193147) / (1 + EPS), abs=1e-6)
    assert policy_loss(logp, logp, to([1.0]), mask, kl_coef=0.5).kl is None  # no reference


@pytest.mark.parametrize("to", BACKENDS)
def test_entropy_is_aggregated_and_only_weighted_when_asked(to):
    logp, mask = to([[0.0, 0.0]]), to([[1, 1]])
    out = policy_loss(logp, logp, to([0.0]), mask, entropy=to([[1.0, 3.0]]))
    assert float(out.entropy) == pytest.approx(2.0, rel=1e-6) and float(out.loss) == 0.0
    out = policy_loss(logp, logp, to([0.0]), mask, entropy=to([[1.0, 3.0]]), entropy_coef=0.1)
    assert float(out.loss) == pytest.approx(-0.2, rel=1e-6)


def test_masked_padding_never_produces_nan():
    logp = torch.tensor([[LOG(0.5), -math.inf]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[LOG(0.5), 0.0]], dtype=torch.float64)
    out = policy_loss(logp, old, torch.tensor([1.0]), torch.tensor([[1, 0]]))
    out.loss.backward()
    assert math.isfinite(out.loss.item()) and torch.isfinite(logp.grad).all()
    np_out = policy_loss(logp.detach().numpy(), old.numpy(), np.array([1.0]), np.array([[1, 0]]))
    assert math.isfinite(float(np_out.loss)) and math.isfinite(float(np_out.approx_kl))


def test_an_all_masked_batch_gives_zero_loss():
    out = policy_loss(np.zeros((2, 3)), np.zeros((2, 3)), np.ones(2), np.zeros((2, 3)), agg="seq-mean-token-mean")
    assert float(out.loss) == 0.0 and float(out.clip_fraction) == 0.0


def test_policy_loss_rejects_bad_shapes_and_modes():
    with pytest.raises(ValueError, match="must match"):
        policy_loss(np.zeros((2, 3)), np.zeros((2, 2)), np.ones(2), np.ones((2, 3)))
    with pytest.raises(ValueError, match="agg"):
        policy_loss(np.zeros((2, 3)), np.zeros((2, 3)), np.ones(2), np.ones((2, 3)), agg="sum")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-3, 3), st.integers(0, 4)), min_size=1, max_size=6))
def test_on_policy_loss_is_minus_the_masked_mean_advantage(rows):
    # ratio = 1 everywhere -> pg = -A on every token, nothing clipped
    adv = np.array([a for a, _ in rows])
    mask = np.array([[1] * n + [0] * (4 - n) for _, n in rows])
    logp = np.log(np.full((len(rows), 4), 0.3))
    out = policy_loss(logp, logp, adv, mask)
    tokens = mask.sum()
    assert float(out.loss) == pytest.approx(-(adv * mask.sum(1)).sum() / (tokens + EPS), abs=1e-9)
    assert float(out.clip_fraction) == 0.0


# -- seed equivalence and micro-batching -----------------------------------------------------------------
def test_seed_token_mean_per_trajectory_over_grad_accumulation_is_seq_mean_token_mean():
    # The seed: micro-batch 1, token-mean per micro-batch, loss / gradient_accumulation.
    rng = np.random.default_rng(1)
    logp = torch.tensor(np.log(rng.uniform(0.05, 1, (4, 6))), requires_grad=True)
    old = torch.tensor(np.log(rng.uniform(0.05, 1, (4, 6))))
    adv = torch.tensor(rng.normal(size=4))
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6, [0] * 6, [1, 0, 0, 0, 0, 0]])  # row 2: exceed, fully masked
    seed = sum(policy_loss(logp[i : i + 1], old[i : i + 1], adv[i : i + 1], mask[i : i + 1]).loss / 4 for i in range(4))
    (seed_grad,) = torch.autograd.grad(seed, logp)
    ours = policy_loss(logp, old, adv, mask, agg="seq-mean-token-mean").loss
    (ours_grad,) = torch.autograd.grad(ours, logp)
    assert ours.item() == pytest.approx(seed.item(), rel=1e-12)
    assert torch.allclose(ours_grad, seed_grad)


def test_loss_normalizer():
    mask = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0]])
    assert loss_normalizer(mask, agg="token-mean") == 3.0
    assert loss_normalizer(mask, agg="seq-mean-token-mean", mode="code") == 3.0  # every row
    assert loss_normalizer(mask, agg="seq-mean-token-sum", mode="paper") == 2.0  # completed rows
    assert loss_normalizer(np.zeros((2, 3)), agg="token-mean") == 1.0  # never 0
    assert loss_normalizer(torch.tensor(mask), agg="seq-mean-token-mean", mode="paper") == 2.0
    with pytest.raises(ValueError, match="agg"):
        loss_normalizer(mask, agg="sum")


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
@pytest.mark.parametrize("mode", ["code", "paper"])
def test_micro_batches_with_the_mini_batch_normalizer_add_up_to_the_mini_batch_loss(agg, mode):
    rng = np.random.default_rng(2)
    logp, old = np.log(rng.uniform(0.05, 1, (6, 5))), np.log(rng.uniform(0.05, 1, (6, 5)))
    adv = rng.normal(size=6)
    mask = (rng.uniform(size=(6, 5)) > 0.4).astype(np.int64)
    mask[3] = 0  # an exceed row
    norm = loss_normalizer(mask, agg=agg, mode=mode)
    whole = policy_loss(logp, old, adv, mask, agg=agg, normalizer=norm).loss
    parts = sum(
        float(policy_loss(logp[i : i + 2], old[i : i + 2], adv[i : i + 2], mask[i : i + 2], agg=agg, normalizer=norm).loss)
        for i in range(0, 6, 2)
    )
    assert parts == pytest.approx(float(whole), rel=1e-12)
    if agg != "token-mean":
        rows = 5 if mode == "paper" else 6
        assert float(whole) == pytest.approx(float(policy_loss(logp, old, adv, mask, agg=agg).loss) * 6 / rows)
