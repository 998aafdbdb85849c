"""Rule scorers applied to an extracted answer span (never to the whole chain of thought).

* ``score_multiple_choice``: the option letter ``choice.option_letter`` reads (the lmms-eval /
  VLMEvalKit consensus: "(B) red", "The answer is B", "**B**", "\\boxed{B}", "答案是B", full-width…).
* ``score_free_form``: exact match after normalising case, spaces, punctuation and numbers
  (a number keeps its sign: "-3" is not "3").
* ``score_mme_realworld``: MME-RealWorld's official ``extract_characters_regex`` letter rule.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal, Optional, Sequence

from .choice import option_letter

__all__ = [
    "AnswerType", "mme_realworld_letter", "normalize_free_form", "option_letter", "score_answer",
    "score_free_form", "score_mme_realworld", "score_multiple_choice",
]

_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
#: A number takes a sign (and may start with ".") only when no letter or digit precedes it
#: ("-3", "x -3", ".5"; not "e-3", "1-2").
_TOKEN_RE = re.compile(r"(?<![^\W_])[-+]?(?:\d+(?:\.\d+)?|\.\d+)|\d+(?:\.\d+)?|[^\W_]+", re.UNICODE)
_MINUS = str.maketrans({"\u2212": "-"})


def normalize_free_form(text: str) -> str:
    """Lower-case, NFKC, drop punctuation, fold spaces, canonicalise numbers ("3.0", "three" → "3",
    "+3" → "3", "-3.50" → "-3.5", ".5" → "0.5"; the sign stays)."""
    text = unicodedata.normalize("NFKC", text).translate(_MINUS).lower().strip()
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # 1,000 -> 1000
    tokens = []
    for token in _TOKEN_RE.findall(text):
        token = _NUMBER_WORDS.get(token, token)
        if token[0].isdigit() or token[0] in "+-.":
            token = _canonical_number(token)
        tokens.append(token)
    return " ".join(tokens)


def _canonical_number(token: str) -> str:
    sign, digits = ("-", token[1:]) if token[0] == "-" else ("", token.lstrip("+"))
    whole, _, fraction = digits.partition(".")
    digits = (whole.lstrip("0") or "0") + ("." + fraction.rstrip("0") if fraction.rstrip("0") else "")
    return digits if digits == "0" else sign + digits


def score_free_form(prediction: Optional[str], ground_truth: str) -> float:
    """1.0 when the normalised prediction equals the normalised ground truth."""
    if prediction is None:
        return 0.0
    pred = normalize_free_form(prediction)
    return float(bool(pred) and pred == normalize_free_form(ground_truth))


def score_multiple_choice(prediction: Optional[str], ground_truth: str, options: Sequence[str] = ()) -> float:
    """1.0 when prediction and ground truth name the same option letter."""
    if prediction is None:
        return 0.0
    gt = option_letter(ground_truth, options)
    if gt is None:
        raise ValueError(f"ground truth {ground_truth!r} names no option of {list(options)}")
    return float(option_letter(prediction, options) == gt)


# -- MME-RealWorld (yfzhang114/MME-RealWorld evaluation/eval_your_results.py) -----------------
# The official list lacks two commas, so two pairs of prefixes are concatenated; kept as is.
_MME_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is" "The correct option is",
    "Best answer:" "Best option:",
)


def mme_realworld_letter(text: str, choices: Sequence[str]) -> str:
    """The official ``extract_characters_regex``: first A–E after stripping answer prefixes.

    ``choices`` are "(A) …" strings; like the official rule, an answer contained in a choice's
    text maps to that choice (so an empty answer maps to the first choice).
    """
    s = text.strip()
    for prefix in _MME_PREFIXES:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search("[ABCDE]", s):
        return ""
    match = re.search(r"[ABCDE]", s)
    if match is None:
        for choice in choices:
            if len(choice) > 1 and s.lower() in choice.lower():
                return choice[1]
        return ""
    return match[0]


def score_mme_realworld(prediction: Optional[str], ground_truth: str, choices: Sequence[str]) -> float:
    """MME-RealWorld accuracy on the extracted answer span; no answer scores 0."""
    if prediction is None:
        return 0.0
    return float(mme_realworld_letter(prediction, choices) == ground_truth.strip())


AnswerType = Literal["mc", "free", "mme"]


def score_answer(prediction: Optional[str], ground_truth: str, answer_type: AnswerType, options: Sequence[str] = ()) -> float:
    """Dispatch to the rule scorer of an answer type: ``mc``, ``free`` (free-form) or ``mme``."""
    if answer_type == "mc":
        return score_multiple_choice(prediction, ground_truth, options)
    if answer_type == "free":
        return score_free_form(prediction, ground_truth)
    if answer_type == "mme":
        return score_mme_realworld(prediction, ground_truth, options)
    raise ValueError(f"unknown answer type {answer_type!r}; expected 'mc', 'free' or 'mme'")
