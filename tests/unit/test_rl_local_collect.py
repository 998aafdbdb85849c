"""Rejection sampling refill and the seeded data order of the local engine."""

import pytest

from mini_o3.rl.config import RLJudgeConfig
from mini_o3.rl.local.collect import Group, NotEnoughValidGroups, collect_groups
from mini_o3.rl.local.order import DataCursor, DataOrder
from mini_o3.rl.rewards import Score, make_judge


class T:
    def __init__(self, termination="answer"):
        self.termination = termination


def group(uid, rewards, exceed=()):
    trajs = [T("exceed" if i in exceed else "answer") for i in range(len(rewards))]
    return Group(uid, None, trajs, [Score(r, r, 0.0) for r in rewards])


def test_refills_until_full_and_truncates():
    batches = [
        [group("a", [0, 0]), group("b", [1, 0])],  # a: zero variance, dropped
        [group("c", [1, 1]), group("d", [0, 1]), group("e", [1, 0])],
    ]
    out = collect_groups(lambda k: batches[k], 2, rejection_sample=True, max_gen_batches=5)
    assert [g.uid for g in out.groups] == ["b", "d"]
    assert out.gen_batches == 2 and out.filtered_groups == 2 and len(out.generated) == 5


def test_gives_up_after_max_gen_batches():
    with pytest.raises(NotEnoughValidGroups, match="max_num_gen_batches"):
        collect_groups(lambda k: [group(f"g{k}", [0, 0])], 1, rejection_sample=True, max_gen_batches=3)


def test_without_rejection_everything_is_kept():
    out = collect_groups(lambda k: [group("a", [0, 0]), group("b", [1, 1])], 2, rejection_sample=False, max_gen_batches=1)
    assert [g.uid for g in out.groups] == ["a", "b"] and out.filtered_groups == 0


def test_paper_mode_ignores_exceed_in_the_filter():
    # code: rewards (1, 0) differ -> kept; paper: only the non-exceed reward 1 counts -> nan std -> kept
    # too; (0, 0) with one exceed: code drops (std 0), paper keeps (one member, undefined std).
    batch = [group("x", [0, 0], exceed=(1,))]
    assert collect_groups(lambda k: batch, 1, rejection_sample=True, max_gen_batches=1, mode="paper").groups
    with pytest.raises(NotEnoughValidGroups):
        collect_groups(lambda k: batch, 1, rejection_sample=True, max_gen_batches=1, mode="code")


def test_data_order_is_a_seeded_permutation_per_epoch():
    order = DataOrder(size=5, batch_size=2, seed=3)
    assert order.batches_per_epoch == 2  # the last partial batch is dropped
    cursor, seen = DataCursor(), []
    for _ in range(4):
        batch, cursor = order.take(cursor)
        seen.append(batch)
    assert cursor == DataCursor(2, 0)
    assert seen[0] + seen[1] == order.permutation(0)[:4] and seen[2] + seen[3] == order.permutation(1)[:4]
    assert order.permutation(0) != order.permutation(1)
    assert DataOrder(5, 2, 3).permutation(1) == order.permutation(1)
    with pytest.raises(ValueError, match="train_batch_size"):
        DataOrder(size=1, batch_size=2, seed=0)


def test_judge_hook_errors_clearly(monkeypatch):
    assert make_judge(RLJudgeConfig(enabled=False)) is None
    for name in ("END_POINT", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="END_POINT"):
        make_judge(RLJudgeConfig())


def test_judge_scores_through_the_evaluator_client(monkeypatch, scripted_server):
    server = scripted_server()
    monkeypatch.delenv("END_POINT", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    judge = make_judge(RLJudgeConfig(model="judge", retry_sleep_s=0.0, rate_limit_sleep_s=0.0))
    assert judge("<image>\nWhat colour?", "Red.", "red") == 1.0
    assert judge("<image>\nWhat colour?", "Red.", "blue") == 0.0
    failing = make_judge(RLJudgeConfig(model="judge_5xx", max_attempts=2, retry_sleep_s=0.0, rate_limit_sleep_s=0.0))
    assert failing("<image>\nWhat colour?", "Red.", "red") is None  # a failed call: the group is filtered
