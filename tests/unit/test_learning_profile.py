"""The learning profile's pieces: the grid family, the paired learning summary, RL progress and the
barren-policy stop."""

from __future__ import annotations

import json

import pytest

from mini_o3.data.synthetic import SynthConfig, make_item, oracle_rollouts
from mini_o3.data.synthetic.grid import GridSpec, cell_name, quadrants
from mini_o3.evaluate.learning import learning_summary, paired_delta
from mini_o3.evaluate.metrics import chance_level, follows_protocol
from mini_o3.rl.local.collect import Group, NotEnoughValidGroups, collect_groups
from mini_o3.rl.rewards import Score

GRID = SynthConfig(family="grid", width_range=(896, 896), height_range=(896, 896), coldstart_strategies=("zoom",),
                   coldstart_rollouts=1, coldstart_pixels=(3136, 12544))


def test_grid_names_every_cell_by_one_quadrant_per_level():
    names = {cell_name(r, c, 2) for r in range(4) for c in range(4)}
    assert len(names) == 16
    assert cell_name(3, 0, 2) == "cell 3 of the southwest block"  # cells in reading order inside the block
    assert cell_name(0, 3, 2) == "cell 2 of the northeast block"
    assert quadrants(3, 0, 2) == [2, 2] and quadrants(0, 3, 2) == [1, 1]


@pytest.mark.parametrize("seed", range(6))
def test_grid_oracle_zooms_coarse_to_fine_onto_the_asked_glyph(seed):
    item = make_item(GRID, seed, f"g{seed}", "g.png")
    [(strategy, traj)] = oracle_rollouts(item, ["zoom"], seed, GRID)
    assert traj.termination == "answer" and traj.answer == item.meta.solution and traj.num_crops == 2
    box = item.meta.target_bbox
    x0, y0 = traj.turns[0].crop.box[:2]
    fx0, fy0 = traj.turns[1].crop.box[:2]
    ox, oy = x0 + fx0, y0 + fy0  # the final crop on the original
    w, h = traj.raw_images[2].size
    assert ox <= box[0] and oy <= box[1] and box[2] <= ox + w and box[3] <= oy + h
    # on the 112 px first view the glyph is about one 14 px vision patch (among 16 glyphs); on the
    # last observation it is 4x larger and spans several patches
    first_scale = traj.images[0].size[0] / item.image.size[0]
    last_scale = traj.images[2].size[0] / w
    side = box[2] - box[0]
    assert side * first_scale <= 16 and side * last_scale >= 36
    assert last_scale == pytest.approx(4 * first_scale, rel=0.02)


def test_grid_options_are_the_shapes_in_a_fixed_order_so_chance_is_a_quarter():
    metas = [make_item(GRID, s, f"g{s}", "g.png").meta for s in range(20)]
    assert all(m.options == list(GridSpec().shapes) for m in metas)
    assert chance_level([m.options for m in metas]) == pytest.approx(0.25)
    assert chance_level([[], ["a", "b"]]) == pytest.approx(0.25)


def test_grid_config_refuses_strategies_of_the_other_family():
    with pytest.raises(ValueError, match="not strategies of family 'grid'"):
        SynthConfig(family="grid", coldstart_strategies=("direct",))


def _sample(q, s, score, termination="answer", error=None):
    return {"benchmark": "b", "question_id": q, "sample": s, "score": score, "termination": termination,
            "answer": "A" if termination == "answer" else None, "num_turns": 3,
            "trajectory": {"turns": [{"error": error}]}}


def test_follows_protocol_needs_an_answer_and_no_failed_call():
    assert follows_protocol(_sample("q", 0, 1.0))
    assert not follows_protocol(_sample("q", 0, 0.0, termination="void"))
    assert not follows_protocol(_sample("q", 0, 1.0, error="bad box"))


def _write_eval(path, samples):
    path.mkdir()
    (path / "samples-x.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (path / "report.json").write_text(json.dumps({"store": "samples-x.jsonl",
                                                  "benchmarks": {"b": {"overall": {"chance": 0.25}}}}))


def test_learning_summary_pairs_questions_and_resamples_them_whole(tmp_path):
    sft = [_sample(f"q{i}", j, float(i % 2 == 0 and j == 0)) for i in range(40) for j in range(4)]
    rl = [_sample(f"q{i}", j, float(i % 2 == 0)) for i in range(40) for j in range(4)]
    _write_eval(tmp_path / "sft", sft)
    _write_eval(tmp_path / "rl", rl)
    out = learning_summary({"sft": tmp_path / "sft", "rl": tmp_path / "rl"})
    assert out["chance"] == 0.25
    assert out["models"]["sft"]["avg_at_k"] == pytest.approx(0.125)
    assert out["models"]["rl"]["avg_at_k"] == pytest.approx(0.5)
    delta = out["deltas"]["rl_minus_sft"]
    assert delta["mean"] == pytest.approx(0.375) and delta["excludes_zero"] and delta["questions"] == 40
    assert "zoom_minus_no_zoom" not in out["deltas"]


def test_paired_delta_of_identical_models_includes_zero():
    a = {("b", f"q{i}"): float(i % 3 == 0) for i in range(30)}
    d = paired_delta(a, dict(a))
    assert d["mean"] == 0 and not d["excludes_zero"]
    with pytest.raises(ValueError, match="share no question"):
        paired_delta(a, {("b", "other"): 1.0})


def _batch(reward):
    def generate(k):
        return [Group(f"{k}-{g}", None, [_Traj()] * 4, [Score(reward, reward, 0.0)] * 4)
                for g in range(2)]
    return generate


class _Traj:
    termination = "answer"


def test_rejection_sampling_reports_progress_and_stops_a_policy_without_reward_variance():
    """Today's failure mode: a weak policy (all rewards 0) looped silently through 256 batches."""
    lines: list[str] = []
    with pytest.raises(NotEnoughValidGroups, match="no reward variance in 3 generation batches"):
        collect_groups(_batch(0.0), 2, rejection_sample=True, max_gen_batches=256, max_barren_gen_batches=3,
                       progress=lines.append)
    assert lines == [f"generation batch {k}/256: 0/2 valid groups ({2 * k} filtered)" for k in (1, 2, 3)]
