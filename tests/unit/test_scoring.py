"""Answer extraction, rule scorers and reward composition (hand-written cases; the upstream golden
cases are in test_answer_*_golden.py and test_reward_format_golden.py)."""

import pytest

from mini_o3.task import RewardWeights, compose_reward, extract_answer, format_reward
from mini_o3.task import score_answer, score_free_form, score_mme_realworld, score_multiple_choice
from mini_o3.task.answer import ends_with_answer
from mini_o3.task.reward import grounding_format_reward
from mini_o3.task.scoring import mme_realworld_letter, normalize_free_form, option_letter


def test_strict_extraction_takes_the_first_answer_across_turns_unstripped():
    turns = ["<think>a</think><grounding>x</grounding>", "<answer> first </answer>", "<answer> second </answer>"]
    assert extract_answer(turns) == " first "
    assert extract_answer(["<answer>spans", "turns</answer>"]) == "spans turns"  # joined with ' '
    assert extract_answer(["no answer"]) is None
    with pytest.raises(ValueError, match="unknown answer extraction mode 'last'"):
        extract_answer(turns, mode="last")


def test_split_extraction_strips_and_never_returns_none_like_upstream():
    """Mini-o3/Mini-o3 @ 8654dbf verl/utils/reward_score/general_qa_tool.py line 287:
    ``' '.join(turns).split("<answer>")[-1].split("</answer>")[0].strip()``."""
    turns = ["<think>a</think><grounding>x</grounding>", "<answer> first </answer>", "<answer> second </answer>"]
    assert extract_answer(turns, mode="split") == "second"
    assert extract_answer([" no tags \n"], mode="split") == "no tags"
    assert extract_answer(["<answer> open"], mode="split") == "open"
    assert extract_answer(["<answer>A</answer>", "<answer>B</answer>\n"], mode="strict_v2") == "A</answer> <answer>B"


def test_void_rule():
    assert ends_with_answer("<think>x</think>\n<answer>A</answer>")
    assert not ends_with_answer("<answer>A</answer>.")


OPTIONS = ["red", "green", "blue", "yellow"]


@pytest.mark.parametrize(
    ("pred", "score"),
    [("C", 1), ("(C) blue", 1), ("C. blue", 1), ("C) blue", 1), ("c", 1), (" Blue ", 1), ("blue.", 1),
     ("(A) red", 0), ("A", 0), ("green or blue", 0), ("", 0), (None, 0), ("E", 0), ("**C**", 1), ("\\boxed{C}", 1),
     ("答案是C", 1), ("（Ｃ）", 1), ("C or D", 0), ("Cyan", 0), ("Not C", 0)],
)
def test_multiple_choice(pred, score):
    assert score_multiple_choice(pred, "C", OPTIONS) == score


def test_multiple_choice_ground_truth_forms():
    labelled = ["(A) left", "(B) right"]
    assert score_multiple_choice("B", "(B) right", labelled) == 1
    assert score_multiple_choice("right", "B", labelled) == 1
    assert option_letter("Right", labelled) == "B"
    with pytest.raises(ValueError, match="names no option"):
        score_multiple_choice("A", "purple", OPTIONS)


@pytest.mark.parametrize(
    ("pred", "gt", "score"),
    [("Yellow", "yellow.", 1), ("  the   code is K7Q ", "The code is K7Q", 1), ("3.0", "3", 1), ("three", "3", 1),
     ("1,000 people", "1000 people", 1), ("0.50", ".5", 1), ("07", "7", 1), ("K7Q", "K7O", 0), ("", "", 0),
     ("ＡＢＣ", "abc", 1), ("e-mail", "e mail", 1), (None, "x", 0), ("-3", "3", 0), ("-3.0", "-3", 1),
     ("−3", "-3", 1), ("+3", "3", 1)],
)
def test_free_form(pred, gt, score):
    assert score_free_form(pred, gt) == score


def test_normalisation():
    assert normalize_free_form("The Code: 'A-12'!") == "the code a 12"
    assert normalize_free_form("2.500 m") == "2.5 m"
    assert normalize_free_form("x -3.50, -0 and 1-2") == "x -3.5 0 and 1 2"


CHOICES = ["(A) a red car", "(B) a bus", "(C) a bicycle", "(D) a truck", "(E) none of the above"]


@pytest.mark.parametrize(
    ("answer", "letter"),
    [("The best answer is B", "B"), ("(C) a bicycle", "C"), ("D", "D"), ("a bus", "B"),
     ("It is probably the vehicle in the left corner near the two people walking", ""),
     ("A red car", "A"), ("bicycle", "C"), ("", "A"),  # the official rule maps "" into the first choice
     ("The best option isThe correct option is E", "E")],
)
def test_mme_realworld_letter_rule(answer, letter):
    assert mme_realworld_letter(answer, CHOICES) == letter


def test_mme_realworld_scores_the_answer_span_only():
    assert score_mme_realworld("B", "B", CHOICES) == 1
    assert score_mme_realworld(None, "A", CHOICES) == 0
    # Applied to a whole chain of thought, the first capital A-E wins: why we score the span.
    assert mme_realworld_letter("After zooming, the answer is C", CHOICES) == "A"


def test_reward_defaults_are_pure_accuracy():
    assert compose_reward(1.0, 0.0, used_tool=True) == 1.0
    assert compose_reward(0.0, 1.0, used_tool=False) == 0.0
    weights = RewardWeights(accuracy=1.0, format=1.0, tool_call_penalty=0.1, use_tool=0.4)
    assert compose_reward(1.0, 1.0, used_tool=True, weights=weights) == pytest.approx(0.9 + 1.0 + 0.4)
    assert compose_reward(1.0, 0.0, used_tool=False, weights=weights) == 1.0


def test_format_reward():
    tool = '<think>a</think> <grounding>{"bbox_2d": [0, 0, 1, 1], "source": "original_image"}</grounding>'
    final = "<think>b</think> <answer>x</answer>"
    assert format_reward([final]) == 1.0
    assert format_reward([tool, tool, final]) == 1.0
    assert format_reward([tool]) == 0.0
    assert format_reward([final, final]) == 0.0  # an answer turn before the last
    assert format_reward(["<think>b</think><think>c</think> <answer>x</answer>"]) == 0.0
    assert format_reward(["<answer>x</answer>"]) == 0.0
    assert format_reward([]) == 0.0


def test_format_reward_strips_as_upstream():
    """Mini-o3/Mini-o3 @ 8654dbf verl/utils/reward_score/general_qa_tool.py lines 257, 268 and 276: a lone
    turn and every tool turn are ``.strip()``-ed, the final turn of several is not; the tool-turn count
    check (line 181) is ``!= 1 and != 1``."""
    tool = '<think>a</think> <grounding>{"bbox_2d": [0, 0, 1, 1]}</grounding>'
    final = "<think>b</think> <answer>x</answer>"
    assert format_reward([" " + final + "\n\n"]) == 1.0
    assert format_reward(["\n" + tool + " ", final]) == 1.0
    assert format_reward([tool, " " + final]) == 0.0
    assert format_reward([tool, final + "\n"]) == 1.0  # "$" matches before one final newline
    assert format_reward([tool, final + "\n\n"]) == 0.0
    assert grounding_format_reward(["<think>a</think><grounding>x</grounding><grounding>y</grounding>", final]) == (0.0, 1)
    assert grounding_format_reward(["<think>a</think><grounding>x<grounding>y</grounding>", final]) == (1.0, 1)
    assert grounding_format_reward([final + "</grounding>"]) == (0.0, 0)
    assert grounding_format_reward(["bad", tool, final]) == (0.0, 0)  # counting stops at the first bad turn


def test_score_answer_dispatches_by_type():
    assert score_answer("(B) green", "B", "mc", OPTIONS) == 1
    assert score_answer("Green!", "green", "free") == 1
    assert score_answer("The best answer is B", "B", "mme", CHOICES) == 1
    with pytest.raises(ValueError, match="unknown answer type 'number'"):
        score_answer("1", "1", "number")
